"""Human review decisions: read from an edited workbook, anchored to segments, applied over machine coding.

What a researcher can do in a workbook qualcode wrote, and what it means:
- mark a ``Segments`` row ``reviewed``: every code cell of that row is a decision (1 applies,
  blank does not);
- edit code cells of a row without marking it: each changed cell is a decision;
- set ``decision`` to accept or reject on a ``Codings`` row: that code applies, or does not;
- add a ``Codings`` row (segment_id and code; source and status left blank or ``human``): that
  code applies.
Rows qualcode itself wrote for earlier decisions (source ``human``, status accepted or rejected,
no decision) are copies, not new decisions, and are not imported again.

A decision is final: it overrides the machine, is shown with source ``human``, is never
re-suggested once rejected, and trains the classifier. When a document changes between rounds,
a decision follows its text; one whose text cannot be found is orphaned, listed, never dropped.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qualcode.classify import HUMAN_WEIGHT, TrainingExample
from qualcode.errors import InputDataError, InputMissingError
from qualcode.ingest.tables import read_table
from qualcode.models import CodeAssignment, Evidence, HumanDecision, Segment
from qualcode.review_cells import (
    CODINGS_HEADER,
    FALSE_SHOWN,
    SEGMENTS_HEADER,
    TRUE_SHOWN,
    find_sheet,
    marks_earlier_review,
    read_mark,
    sheet_headers,
)
from qualcode.workbooks import open_workbook

ACCEPT = {"accept", "accepted", "yes", "y", "1", "true", "ok"}
REJECT = {"reject", "rejected", "no", "n", "0", "false"}


@dataclass(frozen=True)
class ReviewImport:
    """The decisions found in one workbook, and what they were.

    ``places`` names the Segments row of each segment id, so a study can point at a row whose
    segment it does not hold; ``repeated`` counts cells that said again what another cell of the
    workbook had decided (one decision is kept).
    """

    path: str
    coder: str
    decisions: tuple[HumanDecision, ...]
    reviewed_rows: int = 0
    edited_cells: int = 0
    accepted: int = 0
    rejected: int = 0
    added: int = 0
    places: Mapping[str, str] = field(default_factory=dict)
    repeated: int = 0

    def summary(self) -> str:
        return (
            f"{self.reviewed_rows} rows reviewed, {self.edited_cells} code cells edited, {self.accepted} codes "
            f"accepted, {self.rejected} rejected, {self.added} added ({len(self.decisions)} decisions by {self.coder})"
        )


def _offset(value: str, path: Path, place: str, column: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise InputDataError(
            f"{path}: {place}, column '{column}': expected a character offset, not '{value}'"
        ) from None


def _mark(value: str, path: Path, place: str, column: str) -> bool:
    mark = read_mark(value)
    if mark is None:
        what = "a code cell" if column != "reviewed" else "the reviewed column"
        raise InputDataError(
            f"{path}: {place}, column '{column}': '{value.strip()}' is neither yes nor no; "
            f"{what} takes {TRUE_SHOWN} for yes, {FALSE_SHOWN} for no"
        )
    return mark


def review_sheets(path: Path) -> tuple[str, str | None]:
    """The names of the Segments and Codings sheets of a reviewed workbook, found by their header."""
    workbook = open_workbook(path)
    try:
        headers = sheet_headers(workbook)
    finally:
        workbook.close()
    segments, candidates = find_sheet(headers, "Segments", SEGMENTS_HEADER)
    if segments is None:
        if candidates:
            raise InputDataError(
                f"{path}: sheets {_listed(candidates)} all have the Segments columns; keep one "
                "(delete or clear the others' header), so it is clear which holds your review"
            )
        raise InputDataError(
            f"{path}: no sheet has the Segments columns ({', '.join(sorted(SEGMENTS_HEADER))}); "
            "import a workbook written by qualcode code"
        )
    codings, candidates = find_sheet(headers, "Codings", CODINGS_HEADER)
    if codings is None and candidates:
        raise InputDataError(
            f"{path}: sheets {_listed(candidates)} all have the Codings columns; keep one "
            "(delete or clear the others' header), so it is clear which holds your decisions"
        )
    if codings is None and "Codings" in headers:
        missing = sorted(CODINGS_HEADER - set(headers["Codings"]))
        raise InputDataError(
            f"{path}: sheet 'Codings' has no column {', '.join(repr(m) for m in missing)}; "
            "put the column back as qualcode wrote it"
        )
    return segments, codings


def _listed(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


class _Decisions:
    """Decisions as read, one per (segment, code): a repeat is dropped, a contradiction refused with both cells."""

    def __init__(self, path: Path):
        self.path = path
        self.found: dict[tuple[str, str], tuple[HumanDecision, str]] = {}
        self.repeated = 0

    def add(self, decision: HumanDecision, place: str) -> None:
        key = (decision.segment_id, decision.code_id)
        earlier = self.found.get(key)
        if earlier is None:
            self.found[key] = (decision, place)
        elif earlier[0].applies == decision.applies:
            self.repeated += 1
        else:
            first, second = ((earlier[1], earlier[0]), (place, decision))
            raise InputDataError(
                f"{self.path}: {second[0]} says '{decision.code_id}' {_says(second[1].applies)} segment "
                f"{decision.segment_id}, but {first[0]} says it {_says(first[1].applies)}; "
                "make them agree, then import again"
            )

    @property
    def decisions(self) -> tuple[HumanDecision, ...]:
        return tuple(decision for decision, _ in self.found.values())


def _says(applies: bool) -> str:
    return "applies to" if applies else "does not apply to"


def added_by_a_person(source: str, status: str) -> bool:
    """Whether a Codings row (its lower-cased source and status) was added by a researcher, not written by qualcode."""
    return source in ("", "human") and status in ("", "human")


def read_review_workbook(
    path: str | os.PathLike[str],
    *,
    coder: str,
    code_ids: Sequence[str],
    decided_at: str | None = None,
) -> ReviewImport:
    """Every human decision in a reviewed workbook. Raises ``InputDataError`` naming sheet, row and column.

    One decision per segment and code: a cell repeating another's decision is dropped, one
    contradicting it is refused (both are named). Rows qualcode wrote as copies of earlier
    decisions (``decided by`` says "reviewed by ...", or a Codings row of source human without a
    decision) are not decisions again; only what was changed on them is.
    """
    path = Path(path)
    if not path.is_file():
        raise InputMissingError(f"{path}: no such file")
    if path.suffix.lower() != ".xlsx":
        raise InputDataError(f"{path}: reviews are read from a qualcode .xlsx workbook")
    segments_sheet, codings_sheet = review_sheets(path)
    decided_at = decided_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    header, rows = read_table(path, segments_sheet)
    code_columns = header[header.index("text") + 1 : header.index("codes")]
    for column in code_columns:
        if column not in code_ids:
            raise InputDataError(
                f"{path}: sheet '{segments_sheet}', column '{column}': not a code in the codebook "
                f"({', '.join(code_ids)})"
            )
    found = _Decisions(path)
    segments: dict[str, tuple[str, int, int, str]] = {}
    places: dict[str, str] = {}
    reviewed_rows = edited_cells = 0
    for row in rows:
        values = row.values
        segment_id = values["segment_id"].strip()
        if not segment_id:
            raise InputDataError(f"{path}: {row.place}, column 'segment_id': empty")
        anchor = (
            values["document"].strip(),
            _offset(values.get("start", ""), path, row.place, "start"),
            _offset(values.get("end", ""), path, row.place, "end"),
            values["text"],
        )
        segments[segment_id] = anchor
        places.setdefault(segment_id, row.place)
        listed = {code.strip() for code in values["codes"].split(";") if code.strip()}
        ticked = {
            column for column in code_columns if _mark(values[column], path, row.place, column)
        }
        reviewed = _mark(values["reviewed"], path, row.place, "reviewed")
        if reviewed and not marks_earlier_review(values.get("decided by", "")):
            reviewed_rows += 1
            chosen = {column: column in ticked for column in code_columns}
            origin, column_of = "reviewed row", lambda code_id: "reviewed"
        else:
            chosen = {
                column: column in ticked
                for column in code_columns
                if (column in ticked) != (column in listed)
            }
            edited_cells += len(chosen)
            origin, column_of = "edited code cell", lambda code_id: code_id
        for code_id, applies in chosen.items():
            found.add(
                HumanDecision(segment_id, *anchor, code_id, applies, coder, decided_at, origin),
                f"{row.place}, column '{column_of(code_id)}'",
            )
    accepted = rejected = added = 0
    if codings_sheet is not None:
        header, rows = read_table(path, codings_sheet)
        for row in rows:
            values = row.values
            segment_id, code_id = values["segment_id"].strip(), values["code"].strip()
            decision = values.get("decision", "").strip().lower()
            source, status = (
                values.get("source", "").strip().lower(),
                values.get("status", "").strip().lower(),
            )
            is_added = added_by_a_person(source, status)
            if not decision and not is_added:
                continue
            if segment_id not in segments:
                raise InputDataError(
                    f"{path}: {row.place}, column 'segment_id': '{segment_id}' is not "
                    f"a segment in the sheet '{segments_sheet}'"
                )
            if code_id not in code_ids:
                raise InputDataError(
                    f"{path}: {row.place}, column 'code': unknown code '{code_id}' "
                    f"(codes: {', '.join(code_ids)})"
                )
            if decision in ACCEPT or (not decision and is_added):
                applies, origin = True, "added row" if is_added and not decision else "accepted"
            elif decision in REJECT:
                applies, origin = False, "rejected"
            else:
                raise InputDataError(
                    f"{path}: {row.place}, column 'decision': '{decision}' is "
                    "neither accept nor reject"
                )
            accepted += origin == "accepted"
            rejected += origin == "rejected"
            added += origin == "added row"
            found.add(
                HumanDecision(
                    segment_id, *segments[segment_id], code_id, applies, coder, decided_at, origin
                ),
                f"{row.place}, column '{'decision' if decision else 'code'}'",
            )
    return ReviewImport(
        str(path),
        coder,
        found.decisions,
        reviewed_rows,
        edited_cells,
        accepted,
        rejected,
        added,
        places,
        found.repeated,
    )


@dataclass(frozen=True)
class ResolvedReviews:
    """Decisions anchored to the current segments: the one that counts per (segment, code), and the orphans."""

    final: dict[tuple[str, str], HumanDecision]
    orphaned: tuple[HumanDecision, ...] = ()
    reanchored: int = 0
    by_coder: dict[str, int] = field(default_factory=dict)


def _anchor(
    decision: HumanDecision, by_id: dict[str, Segment], by_document: dict[str, list[Segment]]
) -> Segment | None:
    segment = by_id.get(decision.segment_id)
    if segment is not None and segment.text == decision.text:
        return segment
    candidates = by_document.get(decision.doc_id, [])
    same_text = [s for s in candidates if s.text == decision.text]
    if same_text:
        return min(same_text, key=lambda s: abs(s.start_char - decision.start_char))
    # Segmented at another unit, or the passage was edited around: a unique segment holding the text, or held by it.
    holding = [
        s
        for s in candidates
        if decision.text and (decision.text in s.text or s.text in decision.text)
    ]
    return holding[0] if len(holding) == 1 else None


def resolve_reviews(
    decisions: Iterable[HumanDecision], segments: Sequence[Segment], *, coder: str | None = None
) -> ResolvedReviews:
    """Anchor decisions to ``segments`` and pick the one that counts.

    The rule for several coders: with ``coder``, only that coder's decisions count; otherwise the
    latest decision per (segment, code) counts, whoever made it. Every coder's decisions are kept
    in the study either way, so ``qualcode agree`` can compare them.
    """
    by_id = {segment.segment_id: segment for segment in segments}
    by_document: dict[str, list[Segment]] = {}
    for segment in segments:
        by_document.setdefault(segment.doc_id, []).append(segment)
    final: dict[tuple[str, str], HumanDecision] = {}
    orphaned: list[HumanDecision] = []
    reanchored = 0
    counts: dict[str, int] = {}
    for decision in sorted(decisions, key=lambda d: d.decided_at):
        counts[decision.coder] = counts.get(decision.coder, 0) + 1
        if coder is not None and decision.coder != coder:
            continue
        segment = _anchor(decision, by_id, by_document)
        if segment is None:
            orphaned.append(decision)
            continue
        if segment.segment_id != decision.segment_id:
            reanchored += 1
        final[(segment.segment_id, decision.code_id)] = decision
    return ResolvedReviews(final, tuple(orphaned), reanchored, counts)


def apply_reviews(
    assignments: Sequence[CodeAssignment], reviews: ResolvedReviews
) -> list[CodeAssignment]:
    """Human decisions replace machine suggestions.

    Every acceptance and every explicit rejection is listed, suggested again or not: a researcher
    sees each decision already made where they review. The codes a reviewed row left blank are
    listed only where the machine suggests them; the row itself shows its review in Segments.
    """
    machine = {(a.segment_id, a.code_id): a for a in assignments}
    merged = [a for a in assignments if (a.segment_id, a.code_id) not in reviews.final]
    for (segment_id, code_id), decision in reviews.final.items():
        note = Evidence(
            f"{decision.origin} by {decision.coder}, {decision.decided_at}", "human decision"
        )
        suggested = machine.get((segment_id, code_id))
        if decision.applies:
            merged.append(CodeAssignment(segment_id, code_id, "human", "accepted", None, (note,)))
        elif suggested is not None:
            merged.append(
                CodeAssignment(
                    segment_id,
                    code_id,
                    "human",
                    "rejected",
                    suggested.confidence,
                    (note, *suggested.evidence),
                )
            )
        elif decision.origin != "reviewed row":
            merged.append(CodeAssignment(segment_id, code_id, "human", "rejected", None, (note,)))
    return merged


def reviewed_examples(
    reviews: ResolvedReviews, segments: Sequence[Segment]
) -> list[TrainingExample]:
    """Each decided segment becomes a training example knowing the codes a human decided for it."""
    texts = {segment.segment_id: segment for segment in segments}
    labels: dict[str, dict[str, int]] = {}
    for (segment_id, code_id), decision in reviews.final.items():
        labels.setdefault(segment_id, {})[code_id] = int(decision.applies)
    return [
        TrainingExample(
            texts[segment_id].text, codes, HUMAN_WEIGHT, texts[segment_id].doc_id, "human"
        )
        for segment_id, codes in labels.items()
        if segment_id in texts
    ]


def rereview_assignments(
    decisions: Iterable[HumanDecision],
    segments: Sequence[Segment],
    codebook,
    decided: set[tuple[str, str]],
) -> list[CodeAssignment]:
    """Where a code ``replaces`` old ids (a split or a merge), a human "applies" on an old id becomes a
    suggestion of the new code, flagged for re-review, unless a human has decided the new code there."""
    successors: dict[str, list[str]] = {}
    for code in codebook.codes:
        for old in code.replaces:
            successors.setdefault(old, []).append(code.code_id)
    legacy = [d for d in decisions if d.code_id in successors and d.applies]
    resolved = resolve_reviews(legacy, segments)
    flagged: dict[tuple[str, str], CodeAssignment] = {}
    for (segment_id, old), decision in resolved.final.items():
        for new in successors[old]:
            if (segment_id, new) not in decided and (segment_id, new) not in flagged:
                note = Evidence(
                    f"re-review: {decision.coder} coded '{old}', which '{new}' replaces",
                    "human decision",
                )
                flagged[(segment_id, new)] = CodeAssignment(
                    segment_id, new, "human", "suggested", None, (note,)
                )
    return list(flagged.values())
