"""How the language model's answers combine with rules and classifier (after ``combine.combine``).

For each coded segment and code, once rules and classifier are combined:
- where the model answered on the code, its judgement decides:
  - it applies: suggested with source ``llm`` and the model's confidence; the evidence is the
    model's quote (marked in the text) when it is a verbatim span of the segment, else a note that
    it was not, followed by any rule or classifier evidence for the same code;
  - it does not apply: a rule or classifier suggestion for the code stays in Codings with status
    ``downgraded`` and the model's verdict first in its evidence; it is not counted as coded;
- where the model gave no usable answer on the code (unreadable, or the code missing from it),
  rules and classifier decide as without a model.
Human decisions are applied after this and remain final.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from qualcode.llm.parse import Answer
from qualcode.models import COUNTED_STATUSES, CodeAssignment, Evidence, Segment


def _confidence(value: float | None) -> str:
    return "" if value is None else f", confidence {value:.2f}"


def with_llm(
    segments: Sequence[Segment],
    assignments: Sequence[CodeAssignment],
    answers: Mapping[str, Answer],
    code_ids: Sequence[str],
    model: str,
) -> list[CodeAssignment]:
    """``assignments`` (rules and classifier, combined) for ``segments`` with the model's ``answers`` applied."""
    machine = {(a.segment_id, a.code_id): a for a in assignments}
    merged: list[CodeAssignment] = []
    done: set[tuple[str, str]] = set()
    for segment in segments:
        answer = answers.get(segment.segment_id)
        for code_id in code_ids:
            key = (segment.segment_id, code_id)
            before = machine.get(key)
            verdict = answer.codes.get(code_id) if answer is not None and answer.usable else None
            if verdict is None:
                if before is not None:
                    merged.append(before)
                    done.add(key)
                continue
            done.add(key)
            other = before.evidence if before is not None else ()
            if verdict.applies:
                label = f"llm {model}{_confidence(verdict.confidence)}"
                if verdict.span is not None:
                    start, end = verdict.span
                    quote = Evidence(
                        label,
                        segment.text[start:end],
                        segment.start_char + start,
                        segment.start_char + end,
                    )
                elif verdict.quote.strip():
                    quote = Evidence(
                        f"{label}; its quote is not a verbatim span of the segment, so it is not shown",
                        "",
                    )
                else:
                    quote = Evidence(f"{label}; no quote given", "")
                merged.append(
                    CodeAssignment(
                        segment.segment_id,
                        code_id,
                        "llm",
                        "suggested",
                        verdict.confidence,
                        (quote, *other),
                    )
                )
            elif before is not None and before.status in COUNTED_STATUSES:
                note = Evidence(f"llm {model}: does not apply{_confidence(verdict.confidence)}", "")
                merged.append(
                    CodeAssignment(
                        segment.segment_id,
                        code_id,
                        before.source,
                        "downgraded",
                        before.confidence,
                        (note, *other),
                    )
                )
            elif before is not None:
                merged.append(before)
    # Anything on a segment or code not asked about (none in a run) is kept as it was.
    merged.extend(a for a in assignments if (a.segment_id, a.code_id) not in done)
    return merged
