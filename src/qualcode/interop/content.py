"""Gathering what a project export needs from a coded workbook or from a study."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

from qualcode.codebook import parse_codebook
from qualcode.errors import InputDataError
from qualcode.ingest import read_documents
from qualcode.ingest.tables import read_table
from qualcode.interop.qdpx import ProjectCoding, ProjectContent
from qualcode.models import COUNTED_STATUSES, Code, Codebook, Segment
from qualcode.study import Study
from qualcode.workbooks import xlsx_sheet_names

_HUMAN_BY = re.compile(r" by (?P<coder>.+?), \d{4}-\d{2}-\d{2}")


def _coder(source: str, evidence: str) -> str | None:
    if source != "human":
        return None
    found = _HUMAN_BY.search(evidence or "")
    return found.group("coder") if found else "human"


def _utc(value: str | None) -> str:
    try:
        moment = dt.datetime.fromisoformat(value) if value else dt.datetime.now(dt.timezone.utc)
    except ValueError:
        moment = dt.datetime.now(dt.timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def content_from_workbook(path: str | Path) -> ProjectContent:
    """A qualcode workbook's codings, with the documents re-read from the inputs its Run sheet names.

    Each input must still hash to the sha256 recorded when the workbook was written, so the
    offsets are sure to point at the same text.
    """
    path = Path(path)
    sheets = xlsx_sheet_names(path)
    for sheet in ("Segments", "Codings", "Codebook", "Run"):
        if sheet not in sheets:
            raise InputDataError(
                f"{path}: no sheet '{sheet}'; export a workbook written by qualcode code"
            )
    _, run_rows = read_table(path, "Run")
    run = [row.values for row in run_rows]
    options = {
        row["field"].removeprefix("option "): row["value"]
        for row in run
        if row["field"].startswith("option ")
    }
    inputs = [(row["value"], row["detail"]) for row in run if row["field"] == "input"]
    for file, digest in inputs:
        try:
            actual = hashlib.sha256(Path(file).read_bytes()).hexdigest()
        except OSError:
            raise InputDataError(
                f"{path}: its input {file} cannot be read any more; the texts are needed for export"
            ) from None
        if actual != digest:
            raise InputDataError(
                f"{path}: its input {file} has changed since the workbook was written (sha256 differs)"
            )

    def option(name: str) -> str | None:
        value = options.get(name, "")
        return None if value in ("", "detected") else value

    try:
        given = json.loads(options.get("paths") or "[]")
    except json.JSONDecodeError:
        given = []
    if not given:
        raise InputDataError(
            f"{path}: its Run sheet does not say which paths were coded; code them again with "
            "this version of qualcode"
        )
    corpus = read_documents(
        given, kind=option("kind"), text_column=option("text_column"), id_column=option("id_column")
    )
    texts = {document.doc_id: document.text for document in corpus.documents}
    _, segment_rows = read_table(path, "Segments")
    segments = []
    for row in segment_rows:
        values = row.values
        document, start, end = (
            values["document"],
            int(float(values["start"])),
            int(float(values["end"])),
        )
        if document not in texts or texts[document][start:end] != values["text"]:
            raise InputDataError(
                f"{path}: {row.place}: segment {values['segment_id']} no longer matches its document"
            )
        segments.append(
            Segment(
                values["segment_id"],
                document,
                start,
                end,
                values["text"],
                len(segments),
                values.get("speaker") or None,
            )
        )
    _, coding_rows = read_table(path, "Codings")
    codings = [
        ProjectCoding(
            r.values["segment_id"],
            r.values["code"],
            _coder(r.values["source"], r.values["evidence"]),
        )
        for r in coding_rows
        if r.values["status"] in COUNTED_STATUSES
    ]
    _, codebook_rows = read_table(path, "Codebook")
    codes = tuple(
        Code(
            code_id=r.values["id"],
            name=r.values["name"],
            definition=r.values["definition"],
            color=r.values["color"] or None,
            parent=r.values["parent"] or None,
        )
        for r in codebook_rows
    )
    fields = {row["field"]: row["value"] for row in run}
    codebook = Codebook(
        name=fields.get("codebook name", "codebook"),
        version=fields.get("codebook version", "1"),
        codes=codes,
    )
    return ProjectContent(
        name=path.stem,
        documents=corpus.documents,
        segments=tuple(segments),
        codings=tuple(codings),
        codebook=codebook,
        created=_utc(fields.get("created")),
    )


def content_from_study(study: Study) -> ProjectContent:
    """The latest run of a study: its documents, segments and codings, with each human decision's coder."""
    db = study.connection
    latest = db.execute(
        "SELECT run_id, finished_at, codebook_id FROM runs ORDER BY run_id DESC LIMIT 1"
    ).fetchone()
    if latest is None:
        raise InputDataError(
            f"{study.root}: the study has no runs yet; run qualcode code PATH first"
        )
    run_id, finished_at, codebook_id = latest
    text, source = db.execute(
        "SELECT text, source FROM codebooks WHERE codebook_id = ?", (codebook_id,)
    ).fetchone()
    codebook, problems = parse_codebook(text, source or "study codebook")
    if codebook is None:
        raise InputDataError(
            f"{study.root}: the codebook stored for run {run_id} does not parse: {problems[0]}"
        )
    corpus = study.corpus()
    segments = tuple(
        Segment(r[0], r[1], r[2], r[3], r[4], index, r[5])
        for index, r in enumerate(
            db.execute(
                "SELECT segment_id, doc_id, start, end, text, speaker FROM segments WHERE run_id = ? ORDER BY rowid",
                (run_id,),
            )
        )
    )
    codings = tuple(
        ProjectCoding(r[0], r[1], _coder(r[2], r[3]))
        for r in db.execute(
            "SELECT segment_id, code_id, source, evidence FROM assignments WHERE run_id = ? AND status IN "
            "('suggested', 'accepted')",
            (run_id,),
        )
    )
    return ProjectContent(
        name=study.root.name,
        documents=corpus.documents,
        segments=segments,
        codings=codings,
        codebook=codebook,
        created=_utc(finished_at),
    )
