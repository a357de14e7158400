"""What a write-up reads: a coded workbook (reviewed or not) or a study's latest run, every human decision applied.

``load_coded`` gives one ``CodedData`` either way: the documents with their attributes, every
segment in document order, the codebook, and the codings with the human decisions applied, plus
which of them count (``counted``): by default human decisions and the suggestions still
standing; with ``reviewed_only``, only what a human accepted or added.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from qualcode.errors import InputDataError, InputMissingError
from qualcode.models import COUNTED_STATUSES, Code, Codebook, HumanDecision, Segment
from qualcode.turns import DEFAULT_INTERVIEWER_LABELS, is_interviewer

_FIXED = ("segment_id", "document", "speaker", "start", "end", "timestamp")


@dataclass(frozen=True, slots=True)
class Coding:
    """One row of the codings: a code on a segment, who or what put it there, and why."""

    segment_id: str
    code_id: str
    source: str  # rule / classifier / human
    status: str  # suggested / accepted / rejected / downgraded
    confidence: float | None = None
    evidence: str = ""


@dataclass(frozen=True)
class DocumentInfo:
    doc_id: str
    kind: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CodedData:
    """A coded corpus ready to tabulate. ``counted`` are the codings the tables count."""

    name: str
    source: str
    codebook: Codebook
    documents: tuple[DocumentInfo, ...]
    segments: tuple[Segment, ...]
    codings: tuple[Coding, ...]
    reviewed_only: bool = False
    code_interviewer: bool = False
    created: str = ""
    pending_decisions: int = (
        0  # decisions read from the workbook itself, not yet imported into a study
    )

    @property
    def counted(self) -> tuple[Coding, ...]:
        if self.reviewed_only:
            return tuple(c for c in self.codings if c.source == "human" and c.status == "accepted")
        return tuple(c for c in self.codings if c.status in COUNTED_STATUSES)

    def eligible(self, segment: Segment) -> bool:
        return self.code_interviewer or not segment.is_interviewer

    def counting_rule(self) -> str:
        """The sentence every table's caption carries: which codings count."""
        human = sum(1 for c in self.codings if c.source == "human" and c.status == "accepted")
        rejected = sum(1 for c in self.codings if c.source == "human" and c.status == "rejected")
        machine = sum(
            1 for c in self.codings if c.source != "human" and c.status in COUNTED_STATUSES
        )
        if self.reviewed_only:
            return (
                f"Codings counted: only those a human accepted or added ({human}); qualcode's {machine} "
                "suggestions not reviewed are left out (--reviewed-only)."
            )
        return (
            f"Codings counted: {human} accepted or added by a human, plus {machine} qualcode suggestions "
            f"still standing (not rejected; {rejected} rejected by a human are left out, as are rule hits the "
            "classifier downgraded)."
        )


def load_coded(source: str | os.PathLike[str], *, reviewed_only: bool = False) -> CodedData:
    """Read a coded workbook (.xlsx written by ``qualcode code``) or a study folder."""
    path = Path(source)
    if not path.exists():
        raise InputMissingError(f"{path}: no such file or folder")
    if path.is_dir():
        from qualcode.study import CONFIG_NAME, Study

        if not (path / CONFIG_NAME).is_file():
            raise InputDataError(
                f"{path}: a folder, but not a qualcode study (no {CONFIG_NAME}); name a coded "
                "workbook (.xlsx) or a study folder"
            )
        with Study.open(path) as study:
            return _from_study(study, reviewed_only)
    if path.suffix.lower() != ".xlsx":
        raise InputDataError(
            f"{path}: not a coded workbook; name the .xlsx written by qualcode code, or a study folder"
        )
    return _from_workbook(path, reviewed_only)


def _truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("true", "1", "yes")


def _labels(value: str | None) -> frozenset[str]:
    extra = {label.strip().lower() for label in str(value or "").split(",") if label.strip()}
    return DEFAULT_INTERVIEWER_LABELS | extra


def _int(value: str, path: Path, place: str, column: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise InputDataError(
            f"{path}: {place}, column '{column}': expected a character offset, not '{value}'"
        ) from None


def _from_workbook(path: Path, reviewed_only: bool) -> CodedData:
    from qualcode.ingest.tables import read_table
    from qualcode.reviews import added_by_a_person, read_review_workbook, review_sheets
    from qualcode.workbooks import xlsx_sheet_names

    segments_sheet, codings_sheet = review_sheets(path)
    sheets = xlsx_sheet_names(path)
    for needed in ("Codebook", "Run"):
        if needed not in sheets:
            raise InputDataError(
                f"{path}: no sheet '{needed}'; name a workbook written by qualcode code "
                "(its Codebook and Run sheets say what the codes are and how it was coded)"
            )
    if codings_sheet is None:
        raise InputDataError(
            f"{path}: no sheet has the Codings columns (segment_id, code, status, decision); "
            "name a workbook written by qualcode code"
        )
    _, run_rows = read_table(path, "Run")
    run = {row.values.get("field", ""): row.values.get("value", "") for row in run_rows}
    code_interviewer = _truthy(run.get("option code_interviewer"))
    labels = _labels(run.get("option interviewer_labels"))

    header, codebook_rows = read_table(path, "Codebook")
    for column in ("id", "name", "definition"):
        if column not in header:
            raise InputDataError(
                f"{path}: sheet 'Codebook' has no column '{column}'; put it back as qualcode wrote it"
            )
    codes = tuple(
        Code(
            code_id=r.values["id"].strip(),
            name=r.values.get("name", "").strip() or r.values["id"].strip(),
            definition=r.values.get("definition", ""),
            color=r.values.get("color", "").strip() or None,
            parent=r.values.get("parent", "").strip() or None,
        )
        for r in codebook_rows
        if r.values.get("id", "").strip()
    )
    if not codes:
        raise InputDataError(f"{path}: sheet 'Codebook' lists no codes")
    codebook = Codebook(
        name=run.get("codebook name") or "codebook",
        version=run.get("codebook version") or "",
        codes=codes,
    )
    code_ids = codebook.code_ids

    kinds: dict[str, str] = {}
    if "Documents" in sheets:
        _, document_rows = read_table(path, "Documents")
        kinds = {r.values.get("document", ""): r.values.get("kind", "") for r in document_rows}

    header, rows = read_table(path, segments_sheet)
    attribute_columns = (
        header[header.index("timestamp") + 1 : header.index("text")]
        if "timestamp" in header
        else []
    )
    segments: list[Segment] = []
    documents: dict[str, DocumentInfo] = {}
    review_work = (
        False  # anything a researcher may have decided here: then the review reader reads it all
    )
    seen: set[str] = set()
    for row in rows:
        values = row.values
        segment_id = values["segment_id"].strip()
        if not segment_id:
            raise InputDataError(f"{path}: {row.place}, column 'segment_id': empty")
        if segment_id in seen:
            raise InputDataError(
                f"{path}: {row.place}, column 'segment_id': '{segment_id}' appears twice"
            )
        seen.add(segment_id)
        doc_id = values["document"].strip()
        if doc_id not in documents:
            attributes = {
                _attribute_name(column): values.get(column, "").strip()
                for column in attribute_columns
            }
            documents[doc_id] = DocumentInfo(
                doc_id, kinds.get(doc_id) or "", {k: v for k, v in attributes.items() if v}
            )
        if not review_work:
            listed = {
                code.strip() for code in (values.get("codes") or "").split(";") if code.strip()
            }
            ticked = {
                code
                for code in code_ids
                if (values.get(code) or "").strip() not in ("", "0", "0.0")
            }
            review_work = listed != ticked or bool((values.get("reviewed") or "").strip())
        speaker = (values.get("speaker") or "").strip() or None
        segments.append(
            Segment(
                segment_id,
                doc_id,
                _int(values["start"], path, row.place, "start"),
                _int(values["end"], path, row.place, "end"),
                values["text"],
                len(segments),
                speaker,
                (values.get("timestamp") or "").strip() or None,
                is_interviewer(speaker, labels),
            )
        )
    if not segments:
        raise InputDataError(f"{path}: sheet '{segments_sheet}' has no segments")

    _, rows = read_table(path, codings_sheet)
    codings: list[Coding] = []
    for row in rows:
        values = row.values
        segment_id, code_id = values["segment_id"].strip(), values["code"].strip()
        source, status = (
            values.get("source", "").strip().lower(),
            values.get("status", "").strip().lower(),
        )
        review_work = review_work or bool(values.get("decision", "").strip())
        if not segment_id or added_by_a_person(source, status):
            review_work = review_work or bool(segment_id)
            continue  # an added row is a decision: read_review_workbook takes it below
        if segment_id not in seen:
            raise InputDataError(
                f"{path}: {row.place}, column 'segment_id': '{segment_id}' is not a segment in "
                f"the sheet '{segments_sheet}'"
            )
        if code_id not in code_ids:
            raise InputDataError(
                f"{path}: {row.place}, column 'code': '{code_id}' is not a code in the Codebook "
                f"sheet ({', '.join(code_ids)})"
            )
        confidence = values.get("confidence", "").strip()
        try:
            number = float(confidence) if confidence else None
        except ValueError:
            raise InputDataError(
                f"{path}: {row.place}, column 'confidence': '{confidence}' is not a number"
            ) from None
        codings.append(
            Coding(segment_id, code_id, source, status, number, values.get("evidence", ""))
        )

    decisions = ()
    if review_work:  # read as `qualcode review import` would, so the two never differ
        decisions = read_review_workbook(
            path, coder="this workbook's reviewer", code_ids=code_ids
        ).decisions
    codings = apply_decisions(codings, decisions, note="decided in this workbook, not yet imported")
    return CodedData(
        name=path.stem,
        source=str(path),
        codebook=codebook,
        documents=tuple(documents.values()),
        segments=tuple(segments),
        codings=tuple(codings),
        reviewed_only=reviewed_only,
        code_interviewer=code_interviewer,
        created=run.get("created", ""),
        pending_decisions=len(decisions),
    )


def _attribute_name(column: str) -> str:
    while column.startswith("attr_") and column[5:] in (
        *_FIXED,
        "text",
        "codes",
        "reviewed",
        "decided by",
    ):
        column = column[5:]
    return column


def apply_decisions(
    codings: Sequence[Coding], decisions: Sequence[HumanDecision], *, note: str
) -> list[Coding]:
    """Each decision replaces what the machine (or an earlier decision) said for its segment and code."""
    final = {(d.segment_id, d.code_id): d for d in decisions}
    if not final:
        return list(codings)
    machine = {(c.segment_id, c.code_id): c for c in codings}
    merged = [c for c in codings if (c.segment_id, c.code_id) not in final]
    for key, decision in final.items():
        before = machine.get(key)
        evidence = f"{decision.origin} by {decision.coder} ({note})"
        if decision.applies:
            merged.append(Coding(*key, "human", "accepted", None, evidence))
        else:
            merged.append(
                Coding(*key, "human", "rejected", before.confidence if before else None, evidence)
            )
    return merged


def _from_study(study, reviewed_only: bool) -> CodedData:
    from qualcode.codebook import parse_codebook
    from qualcode.reviews import resolve_reviews

    db = study.connection
    latest = db.execute(
        "SELECT run_id, finished_at, codebook_id, options FROM runs ORDER BY run_id DESC LIMIT 1"
    ).fetchone()
    if latest is None:
        raise InputDataError(
            f"{study.root}: the study has no runs yet; run qualcode code PATH inside it first"
        )
    run_id, finished_at, codebook_id, options_text = latest
    text, codebook_source = db.execute(
        "SELECT text, source FROM codebooks WHERE codebook_id = ?", (codebook_id,)
    ).fetchone()
    codebook, problems = parse_codebook(text, codebook_source or "study codebook")
    if codebook is None:
        raise InputDataError(
            f"{study.root}: the codebook stored for run {run_id} does not parse: {problems[0]}"
        )
    try:
        options = json.loads(options_text or "{}")
    except json.JSONDecodeError:
        options = {}
    code_interviewer = bool(options.get("code_interviewer"))
    corpus = study.corpus()
    known = {document.doc_id: document for document in corpus.documents}
    segments = tuple(
        Segment(r[0], r[1], r[2], r[3], r[4], index, r[5], r[6], bool(r[7]))
        for index, r in enumerate(
            db.execute(
                "SELECT segment_id, doc_id, start, end, text, speaker, timestamp, is_interviewer FROM segments "
                "WHERE run_id = ? ORDER BY rowid",
                (run_id,),
            )
        )
    )
    run_documents = list(dict.fromkeys(segment.doc_id for segment in segments))
    documents = tuple(
        DocumentInfo(
            doc_id,
            known[doc_id].kind if doc_id in known else "",
            dict(known[doc_id].attributes) if doc_id in known else {},
        )
        for doc_id in run_documents
    )
    codings = [
        Coding(r[0], r[1], r[2], r[3], r[4], r[5] or "")
        for r in db.execute(
            "SELECT segment_id, code_id, source, status, confidence, evidence FROM assignments WHERE run_id = ? "
            "ORDER BY rowid",
            (run_id,),
        )
        if r[1] in codebook.code_ids
    ]
    resolved = resolve_reviews(study.decisions(), segments, coder=study.config.decisive_coder)
    anchored = [
        replace(d, segment_id=segment_id, code_id=code_id)
        for (segment_id, code_id), d in resolved.final.items()
        if code_id in codebook.code_ids
    ]
    codings = apply_decisions(codings, anchored, note="stored in the study")
    return CodedData(
        name=study.root.name,
        source=str(study.root),
        codebook=codebook,
        documents=documents,
        segments=segments,
        codings=tuple(codings),
        reviewed_only=reviewed_only,
        code_interviewer=code_interviewer,
        created=finished_at or "",
    )
