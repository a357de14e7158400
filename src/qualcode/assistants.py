"""Assistants: what suggests codes for segments, and how their suggestions are combined.

Rules, the classifier (n-grams or embeddings) and a language model each look at a stretch of
coded segments and return their ``Suggestions``: ``RuleHits`` (the rule matches, each with the
matched words as evidence), ``Scores`` (a classifier's probabilities, with the n-grams or
examples that explain a suggestion) or ``Verdicts`` (a language model's answers, with its
quotes). ``combine_suggestions`` merges any set of them, one of each kind at most, under the one
policy: rule hits and scores by ``combine.combine`` (rule hit, veto, threshold), then verdicts on
top by ``llm.policy.with_llm`` (the model's judgement decides where it answered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from qualcode.combine import Policy, combine
from qualcode.llm.parse import Answer
from qualcode.llm.policy import with_llm
from qualcode.models import CodeAssignment, Segment


@dataclass(frozen=True)
class RuleHits:
    """One suggestion per (segment, code) a rule matched, its matched words as evidence."""

    assignments: Sequence[CodeAssignment]


@dataclass(frozen=True)
class Scores:
    """A classifier's probabilities (segments x codes, NaN where a code has no model).

    ``explain(pairs)`` gives the evidence of each (row, code) suggested: [(n-gram, weight), ...]
    or [(example, similarity, description), ...]; it is asked once, for all of them.
    """

    probabilities: np.ndarray
    explain: Callable[[Sequence[tuple[int, str]]], list[list[tuple]]] | None = None


@dataclass(frozen=True)
class Verdicts:
    """A language model's answers, by segment id; ``model`` names it in the evidence."""

    answers: Mapping[str, Answer]
    model: str

    def applied_to(
        self,
        segments: Sequence[Segment],
        assignments: Sequence[CodeAssignment],
        code_ids: Sequence[str],
    ) -> list[CodeAssignment]:
        """``assignments`` (rules and classifier, combined) with these verdicts on top."""
        return with_llm(segments, assignments, self.answers, code_ids, self.model)


Suggestions = RuleHits | Scores | Verdicts


class Assistant(Protocol):
    """Anything that suggests codes: ``name`` says which, ``suggest`` looks at coded segments."""

    name: str

    def suggest(self, segments: Sequence[Segment]) -> Suggestions: ...


def combine_suggestions(
    segments: Sequence[Segment],
    suggestions: Iterable[Suggestions],
    code_ids: Sequence[str],
    policy: Policy,
) -> list[CodeAssignment]:
    """The codings of ``segments`` from any set of suggestions on them, one of each kind at most."""
    kinds: dict[type, Suggestions] = {}
    for item in suggestions:
        if type(item) in kinds:
            raise ValueError(f"two {type(item).__name__} to combine; the policy takes one of each")
        kinds[type(item)] = item
    rules, scores, verdicts = kinds.get(RuleHits), kinds.get(Scores), kinds.get(Verdicts)
    merged = combine(
        segments,
        rules.assignments if rules is not None else (),
        scores.probabilities if scores is not None else None,
        code_ids,
        policy,
        scores.explain if scores is not None else None,
    )
    return verdicts.applied_to(segments, merged, code_ids) if verdicts is not None else merged
