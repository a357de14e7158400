"""Codebook rules compiled into spaCy matchers and applied to segments.

``compile`` turns a codebook's rules into matchers (and names them in evidence), ``gates``
works out which texts a token pattern or regex can match at all, and ``matching`` applies the
compiled rules to segments.
"""

from qualcode.rules.compile import (
    MAX_VARIANTS_PER_PHRASE,
    CompiledRules,
    pattern_label,
    phrase_label,
    regex_label,
    rule_labels,
    word_forms,
)
from qualcode.rules.gates import (
    LiteralGates,
    PatternGates,
    longest_match,
    regex_gates,
    regex_literals,
)
from qualcode.rules.matching import MAX_EVIDENCE, RuleMatcher, compile_rules

__all__ = [
    "MAX_EVIDENCE",
    "MAX_VARIANTS_PER_PHRASE",
    "CompiledRules",
    "LiteralGates",
    "PatternGates",
    "RuleMatcher",
    "compile_rules",
    "longest_match",
    "pattern_label",
    "phrase_label",
    "regex_gates",
    "regex_label",
    "regex_literals",
    "rule_labels",
    "word_forms",
]
