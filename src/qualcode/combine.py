"""One documented policy that turns rule hits and classifier probabilities into suggestions.

For each (segment, code):
- a rule hit is suggested with source ``rule``; its confidence is the classifier's probability
  when the code has a trained model;
- a rule hit the classifier strongly contradicts (probability below ``veto_below``) is kept in
  the Codings sheet with status ``downgraded``: listed with its evidence, not counted as coded;
- without a rule hit, a probability at or above the code's threshold (``suggest_at``, or the
  code's own ``threshold`` in the codebook, or a per-code override) is suggested with source
  ``classifier`` and the n-grams that pushed it as evidence.

With a language model (``--llm``), its answers are applied on top of this by ``llm.policy``: the
model's judgement decides where it answered, rules and classifier are its evidence and decide
where it did not. Human decisions come last and are final.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from qualcode.errors import ConfigurationError
from qualcode.models import CodeAssignment, Codebook, Evidence, Segment

DEFAULT_SUGGEST_AT = 0.5
DEFAULT_VETO_BELOW = 0.05
# Where a run sets no threshold, each representation suggests at the one that agreed best with
# the gold on sources the rules were not written from (corpora/dev, cross-validation grouped by
# source over its 888 passages of the four spent test splits; docs/real-text-evaluation.md). The
# embedding model's probabilities are calibrated, and for a calibrated model the threshold that
# agrees best lies below 0.5 (rules + embeddings: alpha 0.40 at 0.35, 0.37 at 0.5); the n-gram
# model, trained on invented text, is overconfident on real writing and does best at 0.5.
SUGGEST_AT_BY_REPRESENTATION = {"ngrams": 0.5, "embeddings": 0.35, "both": 0.5}


def default_suggest_at(representation: str) -> float:
    """The threshold a run over ``representation`` suggests at when none is set."""
    return SUGGEST_AT_BY_REPRESENTATION.get(representation, DEFAULT_SUGGEST_AT)


@dataclass(frozen=True)
class Policy:
    suggest_at: float = DEFAULT_SUGGEST_AT
    veto_below: float = DEFAULT_VETO_BELOW
    per_code: Mapping[str, float] = field(default_factory=dict)

    def threshold(self, code_id: str) -> float:
        return self.per_code.get(code_id, self.suggest_at)

    @classmethod
    def for_codebook(
        cls,
        codebook: Codebook,
        *,
        suggest_at: float = DEFAULT_SUGGEST_AT,
        veto_below: float = DEFAULT_VETO_BELOW,
        overrides: Mapping[str, float] | None = None,
        model_thresholds: Mapping[str, float] | None = None,
    ) -> Policy:
        """The model's own thresholds per code first, the codebook's over them, then command-line
        overrides on top; a code with none of these suggests at ``suggest_at``."""
        per_code = {
            code_id: value
            for code_id, value in (model_thresholds or {}).items()
            if code_id in codebook.code_ids  # a code renamed since they were chosen has none
        }
        per_code.update(
            (code.code_id, code.threshold) for code in codebook.codes if code.threshold is not None
        )
        for code_id in overrides or {}:
            if code_id not in codebook.code_ids:
                raise ConfigurationError(
                    f"--threshold names code '{code_id}', which is not in the codebook "
                    f"({', '.join(codebook.code_ids)})"
                )
        per_code.update(overrides or {})
        return cls(suggest_at=suggest_at, veto_below=veto_below, per_code=per_code)

    def as_record(self) -> dict[str, object]:
        thresholds = ", ".join(f"{code}={value:g}" for code, value in sorted(self.per_code.items()))
        return {
            "suggest_at": self.suggest_at,
            "veto_below": self.veto_below,
            "code_thresholds": thresholds or "none",
        }


def combine(
    segments: Sequence[Segment],
    rule_assignments: Sequence[CodeAssignment],
    probabilities: np.ndarray | None,
    code_ids: Sequence[str],
    policy: Policy,
    explain=None,
) -> list[CodeAssignment]:
    """Merge rule assignments and a (segments x codes) probability matrix under ``policy``.

    ``explain(pairs)`` returns, for each (row, code_id) classifier suggestion, its [(n-gram, weight), ...]
    (``ClassifierModel.explain_rows``) or [(example, similarity, description), ...] (an embedding
    model's most similar examples); it is called once, for all of them.
    """
    row_of = {segment.segment_id: row for row, segment in enumerate(segments)}
    column_of = {code_id: column for column, code_id in enumerate(code_ids)}
    rules = {
        (row_of[a.segment_id], column_of[a.code_id]): a
        for a in rule_assignments
        if a.segment_id in row_of and a.code_id in column_of
    }
    # Only (segment, code) pairs with a rule hit or a probability at the threshold can yield a
    # coding; finding them with numpy skips the rest of the matrix.
    candidates = set(rules)
    values: list[list[float]] = []
    if probabilities is not None:
        thresholds = np.array([policy.threshold(code_id) for code_id in code_ids])
        with np.errstate(invalid="ignore"):
            candidates.update(map(tuple, np.argwhere(probabilities >= thresholds).tolist()))
        values = probabilities.tolist()
    merged: list[CodeAssignment | None] = []
    suggestions: list[tuple[int, int, str, float]] = []  # (place in merged, row, code, probability)
    for row, column in sorted(candidates):
        code_id = code_ids[column]
        rule = rules.get((row, column))
        probability = None
        if values and not math.isnan(values[row][column]):
            probability = values[row][column]
        if rule is not None:
            if probability is not None and probability < policy.veto_below:
                merged.append(
                    CodeAssignment(
                        rule.segment_id, code_id, "rule", "downgraded", probability, rule.evidence
                    )
                )
            else:
                merged.append(
                    CodeAssignment(
                        rule.segment_id, code_id, "rule", rule.status, probability, rule.evidence
                    )
                )
        elif probability is not None and probability >= policy.threshold(code_id):
            suggestions.append((len(merged), row, code_id, probability))
            merged.append(None)  # filled below, once every suggestion's evidence is known
    if suggestions:
        explained = (
            explain([(row, code_id) for _, row, code_id, _ in suggestions]) if explain else None
        )
        for number, (place, row, code_id, probability) in enumerate(suggestions):
            evidence = tuple(
                Evidence(*_described(item)) for item in (explained[number] if explained else ())
            )
            merged[place] = CodeAssignment(
                segments[row].segment_id, code_id, "classifier", "suggested", probability, evidence
            )
    return merged


def _described(item: tuple) -> tuple[str, str]:
    """(description, text) of one piece of classifier evidence."""
    if len(item) > 2:
        text, _, description = item
        return description, text
    ngram, weight = item
    return f"classifier {weight:+.2f}", ngram
