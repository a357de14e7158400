"""Compiling a codebook's rules into spaCy matchers, and how each rule is named in evidence.

Phrases are lemma-aware without running a lemma lookup per token at match time: each phrase
word is expanded once, at compile time, into every word form the English lookup table maps to
the same lemma ("involve" -> involve, involves, involved, involving), and the variants go into a
``PhraseMatcher`` on the ``NORM`` attribute (lower case, with contractions and curly apostrophes
normalised: "can’t" and "can't" match alike). Token patterns get a ``Matcher`` each; regular
expressions are compiled to run on the segment text, case-insensitively.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import regex

from qualcode.errors import ConfigurationError
from qualcode.models import Code, Codebook
from qualcode.regexes import compile_regex
from qualcode.rules.gates import REPEAT_OPERATOR, PatternGates, longest_match, regex_gates
from qualcode.segment import lemma_lookup_table

logger = logging.getLogger(__name__)

MAX_VARIANTS_PER_PHRASE = 5000
# Token attributes a blank pipeline cannot supply; patterns using them need a trained --spacy-model.
_ANNOTATION_ATTRS = {
    "POS": "tagger",
    "TAG": "tagger",
    "MORPH": "morphologizer",
    "DEP": "parser",
    "ENT_TYPE": "ner",
    "ENT_IOB": "ner",
    "ENT_ID": "ner",
    "ENT_KB_ID": "ner",
    "HEAD": "parser",
}


@lru_cache(maxsize=1)
def _forms_by_lemma() -> dict[str, frozenset[str]]:
    forms: dict[str, set[str]] = defaultdict(set)
    for form, lemma in lemma_lookup_table().items():
        forms[lemma.lower()].add(form.lower())
    return {lemma: frozenset(words | {lemma}) for lemma, words in forms.items()}


def word_forms(word: str) -> frozenset[str]:
    """Every lower-case form sharing ``word``'s lookup lemma, ``word`` itself included."""
    lower = word.lower()
    table = lemma_lookup_table()
    lemma = table.get(lower, lower).lower()
    return _forms_by_lemma().get(lemma, frozenset()) | {lower, lemma}


def phrase_label(text: str) -> str:
    return f'phrase "{text}"'


def pattern_label(name: str) -> str:
    return f"pattern {name}"


SHOWN_REGEX = 40  # characters of a pattern a reader can take in beside the words it matched


def regex_label(pattern: str, line: int | None = None) -> str:
    """A regex as evidence names it: short ones whole; a long one by its line in the codebook,
    since two hundred characters of pattern in every margin bury the words it matched."""
    if len(pattern) <= SHOWN_REGEX or line is None:
        return f"regex /{pattern}/"
    return f"regex, codebook line {line}"


def rule_labels(code: Code) -> list[str]:
    """How each of a code's rules is named in evidence, in codebook order."""
    return (
        [phrase_label(rule.text) for rule in code.rules.phrases]
        + [pattern_label(rule.name) for rule in code.rules.patterns]
        + [regex_label(rule.pattern, rule.line) for rule in code.rules.regex]
    )


@dataclass(frozen=True)
class RuleRef:
    code_id: str
    description: str


class CompiledRules:
    """A codebook's rules compiled for one spaCy pipeline: phrase and token-pattern matchers,
    regexes, and the gates that say which texts to try them on (``matching.RuleMatcher`` applies them).
    """

    def __init__(self, codebook: Codebook, nlp):
        from spacy.matcher import Matcher, PhraseMatcher

        self.codebook = codebook
        self.nlp = nlp
        self._phrases = PhraseMatcher(nlp.vocab, attr="NORM")
        self._exclusions = PhraseMatcher(nlp.vocab, attr="NORM")
        # One matcher per token pattern, run only on texts holding every word the pattern requires,
        # in order and close enough together (see gates.PatternGates): token patterns are the slowest
        # rules, and most texts hold none of their anchor words.
        self._gated_patterns: list[tuple[object, list[tuple[int, frozenset[int]]], int | None]] = []
        self._refs: dict[str, RuleRef] = {}
        self._regexes: list[tuple[regex.Pattern[str], RuleRef, tuple[frozenset[str], ...]]] = []
        self._needs_lemmas = False
        for code in codebook.codes:
            for index, phrase in enumerate(code.rules.phrases):
                key = self._ref(code.code_id, "phrase", index, phrase_label(phrase.text))
                self._phrases.add(key, self._variants(phrase.text))
            for index, phrase in enumerate(code.rules.exclude):
                key = self._ref(code.code_id, "exclude", index, f'exclude "{phrase.text}"')
                self._exclusions.add(key, self._variants(phrase.text))
            for index, rule in enumerate(code.rules.patterns):
                self._check_annotations(code.code_id, rule.name, rule.pattern)
                key = self._ref(code.code_id, "pattern", index, pattern_label(rule.name))
                rewritten = self._lemmas_as_norms(rule.pattern)
                self._needs_lemmas |= rewritten is None
                final = list(rewritten if rewritten is not None else rule.pattern)
                matcher = Matcher(nlp.vocab, validate=True)
                matcher.add(key, [final])
                self._gated_patterns.append((matcher, self._gates(final), longest_match(final)))
            for index, rule in enumerate(code.rules.regex):
                key = self._ref(code.code_id, "regex", index, regex_label(rule.pattern, rule.line))
                self._regexes.append(
                    (compile_regex(rule.pattern), self._refs[key], regex_gates(rule.pattern))
                )
        self._regex_gate_key = tuple(gates for _, _, gates in self._regexes)
        self._pattern_gates = PatternGates(
            [(gates, longest) for _, gates, longest in self._gated_patterns]
        )

    def _ref(self, code_id: str, kind: str, index: int, description: str) -> str:
        key = f"{code_id}\x1f{kind}\x1f{index}"
        self._refs[key] = RuleRef(code_id, description)
        return key

    def _variants(self, phrase: str) -> list:
        from spacy.tokens import Doc

        vocab = self.nlp.vocab
        tokens = self.nlp.make_doc(phrase)
        choices = [
            sorted({vocab[form].norm_ for form in word_forms(token.norm_)}) for token in tokens
        ]
        count = 1
        for options in choices:
            count *= len(options)
        if count > MAX_VARIANTS_PER_PHRASE:
            logger.warning(
                "phrase %r has %d inflected variants; only the first %d are matched",
                phrase,
                count,
                MAX_VARIANTS_PER_PHRASE,
            )
        combos = itertools.islice(itertools.product(*choices), MAX_VARIANTS_PER_PHRASE)
        return [Doc(vocab, words=list(words)) for words in combos]

    def _norms_of(self, lemmas) -> list[str]:
        vocab = self.nlp.vocab
        return sorted({vocab[form].norm_ for lemma in lemmas for form in word_forms(str(lemma))})

    def _lemmas_as_norms(self, pattern: Sequence[dict]) -> list[dict] | None:
        """The pattern with each LEMMA test turned into a NORM test over the lemma's word forms.

        The lookup table decides lemmas either way, so the matches are the same, but no lemma has
        to be computed for each token at run time. None when a test cannot be rewritten (another
        LEMMA predicate, or NORM already tested on that token): then the lemmatizer runs.
        """
        rewritten = []
        for token in pattern:
            token = dict(token)
            value = token.pop("LEMMA", None)
            if value is not None:
                if "NORM" in token:
                    return None
                if isinstance(value, str):
                    token["NORM"] = {"IN": self._norms_of([value])}
                elif isinstance(value, dict) and set(value) <= {"IN", "NOT_IN"}:
                    token["NORM"] = {
                        predicate: self._norms_of(values) for predicate, values in value.items()
                    }
                else:
                    return None
            rewritten.append(token)
        return rewritten

    def _gates(self, pattern: Sequence[dict]) -> list[tuple[int, frozenset[int]]]:
        """For each token the pattern requires, in order, the attribute and the string hashes one of which it has."""
        from spacy.attrs import LOWER, NORM

        strings = self.nlp.vocab.strings
        gates = []
        for token in pattern:
            token = {
                str(key).upper(): value for key, value in token.items()
            }  # spaCy reads "op" as "OP"
            operator = str(token.get("OP", ""))
            bounds = REPEAT_OPERATOR.match(operator)
            required = operator in ("", "+") or (
                bounds is not None and int(bounds.group(1) or 0) >= 1
            )
            if not required:
                continue
            for name, attr in (("NORM", NORM), ("LOWER", LOWER)):
                value = token.get(name)
                values = (
                    [value]
                    if isinstance(value, str)
                    else (value.get("IN") if isinstance(value, dict) else None)
                )
                if values and (not isinstance(value, dict) or set(value) == {"IN"}):
                    gates.append((attr, frozenset(strings.add(str(item)) for item in values)))
                    break
        return gates

    @property
    def pipes_needed(self) -> tuple[str, ...]:
        """The pipeline components matching uses: none but the tokenizer, unless a pattern needs lemmas or tags."""
        needed = [
            name
            for name in self.nlp.pipe_names
            if name
            in (
                "tok2vec",
                "tagger",
                "morphologizer",
                "parser",
                "attribute_ruler",
                "ner",
                "senter",
                "transformer",
            )
        ]
        if self._needs_lemmas:
            needed += [name for name in self.nlp.pipe_names if "lemma" in name]
        return tuple(needed)

    def _check_annotations(self, code_id: str, name: str, pattern: Iterable[dict]) -> None:
        for token in pattern:
            for attr in token:
                component = _ANNOTATION_ATTRS.get(str(attr).upper())
                if component and not any(component in pipe for pipe in self.nlp.pipe_names):
                    raise ConfigurationError(
                        f"codebook {self.codebook.source}: code '{code_id}', pattern '{name}' uses {attr}, "
                        f"which needs a trained spaCy pipeline with a {component}; pass --spacy-model NAME"
                    )
