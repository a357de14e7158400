"""Rules, classifier and language model as assistants, combined under the one policy."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SAMPLE
from qualcode.assistants import RuleHits, Scores, Verdicts, combine_suggestions
from qualcode.codebook import load_codebook
from qualcode.combine import Policy
from qualcode.llm.parse import Answer, CodeAnswer
from qualcode.models import CodeAssignment, Evidence, Segment
from qualcode.rules import compile_rules

CODES = ("trust", "continuity")
SEGMENTS = [
    Segment("d1:0-24", "d1", 0, 24, "I could trust her fully.", 0),
    Segment("d1:25-50", "d1", 25, 50, "She left after two weeks.", 1),
]
TRUST_HIT = CodeAssignment(
    "d1:0-24", "trust", "rule", evidence=(Evidence('phrase "trust"', "trust", 8, 13),)
)


def _codings(assignments) -> dict[tuple[str, str], tuple[str, str]]:
    return {(a.segment_id, a.code_id): (a.source, a.status) for a in assignments}


def test_rule_hits_scores_and_verdicts_combine_under_the_policy():
    scores = Scores(
        np.array([[0.01, 0.2], [0.3, 0.9]]), lambda pairs: [[("left", 1.5)] for _ in pairs]
    )
    combined = combine_suggestions(SEGMENTS, [RuleHits([TRUST_HIT]), scores], CODES, Policy())
    # The classifier contradicts the rule hit (below the veto) and suggests continuity on its own.
    assert _codings(combined) == {
        ("d1:0-24", "trust"): ("rule", "downgraded"),
        ("d1:25-50", "continuity"): ("classifier", "suggested"),
    }
    assert [e.matched for a in combined if a.source == "classifier" for e in a.evidence] == ["left"]

    says_no = Verdicts(
        {"d1:25-50": Answer({"continuity": CodeAnswer(False, 0.8, "", None)})}, "tiny"
    )
    with_model = combine_suggestions(
        SEGMENTS, [says_no, scores, RuleHits([TRUST_HIT])], CODES, Policy()
    )
    assert _codings(with_model)[("d1:25-50", "continuity")] == ("classifier", "downgraded")

    assert _codings(combine_suggestions(SEGMENTS, [RuleHits([TRUST_HIT])], CODES, Policy())) == {
        ("d1:0-24", "trust"): ("rule", "suggested")
    }


def test_one_suggestion_of_each_kind_is_combined():
    with pytest.raises(ValueError, match="two RuleHits"):
        combine_suggestions(SEGMENTS, [RuleHits([TRUST_HIT]), RuleHits([])], CODES, Policy())


def test_the_rules_are_an_assistant(nlp):
    matcher = compile_rules(load_codebook(), nlp)
    segments = [
        Segment(f"s{number}", "d", 0, len(text), text, number)
        for number, text in enumerate(
            (SAMPLE / "essays" / "reflective_essay_01.md").read_text(encoding="utf-8").split("\n\n")
        )
    ]
    suggested = matcher.suggest(segments)
    assert matcher.name == "rules" and isinstance(suggested, RuleHits)
    assert suggested.assignments and list(suggested.assignments) == list(matcher.match(segments))
