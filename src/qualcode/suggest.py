"""Active learning: the segments whose review would teach the classifier most.

A segment scores high when the classifier is unsure of a code (probability near 0.5), when rules
and classifier disagree on it, when a language model (``--llm``) disagrees with them, and when the
code has few human labels yet. Segments a human has already decided are never suggested again.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from qualcode.coding import CodingRun
from qualcode.models import CodingResult, HumanDecision


@dataclass(frozen=True)
class Suggestion:
    segment_id: str
    score: float
    reason: str


def rank_for_review(
    run: CodingRun, reviews: Sequence[HumanDecision] = (), *, limit: int = 30
) -> list[Suggestion]:
    """The ``limit`` best segments to review next, best first (ties broken by segment id, so runs agree)."""
    code_ids = run.result.codebook.code_ids
    human_labels = Counter(decision.code_id for decision in reviews)
    # A rule hit the language model confirmed has source llm; its rule evidence still says so.
    rule_hits = {
        (a.segment_id, a.code_id)
        for a in run.result.assignments
        if a.source == "rule"
        or any(_by_rule(item.rule) for item in a.evidence if a.source == "llm")
    }
    decided_segments = {segment_id for segment_id, _ in run.human_decided}
    suggestions = []
    for row, segment in enumerate(run.codable):
        if segment.segment_id in decided_segments:
            continue
        best, reason = 0.0, ""
        for column, code_id in enumerate(code_ids):
            probability = (
                None if run.probabilities is None else float(run.probabilities[row, column])
            )
            rule = (segment.segment_id, code_id) in rule_hits
            if probability is None or math.isnan(probability):
                score, why = (0.5, f"{code_id}: rule hit, no classifier") if rule else (0.0, "")
            else:
                uncertainty = 1 - abs(2 * probability - 1)
                disagreement = 0.5 if rule != (probability >= 0.5) else 0.0
                scarcity = 1 / (1 + human_labels[code_id])
                score = uncertainty * (1 + scarcity) + disagreement
                parts = [f"p={probability:.2f}"]
                if disagreement:
                    parts.append("rule and classifier disagree")
                verdict = run.llm_verdicts.get((segment.segment_id, code_id))
                if verdict is not None and verdict != (rule or probability >= 0.5):
                    score += 0.5
                    parts.append(
                        "the language model disagrees with "
                        + ("the rule" if rule else "the classifier")
                    )
                parts.append(f"{human_labels[code_id]} human labels")
                why = f"{code_id}: " + ", ".join(parts)
            if score > best:
                best, reason = score, why
        if best > 0:
            suggestions.append(Suggestion(segment.segment_id, round(best, 6), reason))
    suggestions.sort(key=lambda s: (-s.score, s.segment_id))
    return suggestions[:limit]


def _by_rule(description: str) -> bool:
    return not description.startswith(("classifier", "llm"))


def restrict_to(result: CodingResult, segment_ids: Sequence[str]) -> CodingResult:
    """The same result with only the chosen segments (in the chosen order) and their codings."""
    chosen = set(segment_ids)
    order = {segment_id: index for index, segment_id in enumerate(segment_ids)}
    segments = sorted(
        (s for s in result.segments if s.segment_id in chosen), key=lambda s: order[s.segment_id]
    )
    documents = {s.doc_id for s in segments}
    corpus = type(result.corpus)(
        documents=tuple(d for d in result.corpus.documents if d.doc_id in documents),
        files=result.corpus.files,
        skipped=result.corpus.skipped,
    )
    return CodingResult(
        corpus=corpus,
        segments=tuple(segments),
        assignments=tuple(a for a in result.assignments if a.segment_id in chosen),
        codebook=result.codebook,
        options=result.options,
        decisions={key: d for key, d in result.decisions.items() if key[0] in chosen},
    )
