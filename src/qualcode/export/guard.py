"""Finding a researcher's review work in an earlier output before it could be replaced."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from qualcode.errors import InputDataError
from qualcode.ingest.tables import open_workbook


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _marked(value: object) -> bool:
    return not _blank(value) and str(value).strip() not in ("0", "0.0")


def _count_segment_work(rows: Iterator[tuple]) -> tuple[int, int]:
    header = [str(cell).strip() if cell is not None else "" for cell in next(rows, ())]
    if "reviewed" not in header or "text" not in header or "codes" not in header:
        raise ValueError("no Segments table")
    reviewed_at, text_at, codes_at = header.index("reviewed"), header.index("text"), header.index("codes")
    code_columns = list(range(text_at + 1, codes_at))
    reviewed = edited = 0
    for row in rows:
        row = tuple(row) + (None,) * (len(header) - len(row))
        if _marked(row[reviewed_at]):
            reviewed += 1
        listed = {code.strip() for code in str(row[codes_at] or "").split(";") if code.strip()}
        ticked = {header[column] for column in code_columns if _marked(row[column])}
        if listed != ticked:
            edited += 1
    return reviewed, edited


def _count_coding_work(rows: Iterator[tuple]) -> int:
    header = [str(cell).strip() if cell is not None else "" for cell in next(rows, ())]
    decision_at = header.index("decision") if "decision" in header else None
    status_at = header.index("status") if "status" in header else None
    count = 0
    for row in rows:
        row = tuple(row) + (None,) * (len(header) - len(row))
        decided = decision_at is not None and _marked(row[decision_at])
        # qualcode writes a status on every row it writes, so a row without one was added by a person.
        added = status_at is not None and _blank(row[status_at]) and any(not _blank(value) for value in row)
        if decided or added:
            count += 1
    return count


def _describe(reviewed: int, edited: int, decided: int) -> str | None:
    parts = []
    if reviewed:
        parts.append(f"{reviewed} segment rows marked reviewed")
    if edited:
        parts.append(f"{edited} segment rows with edited codes")
    if decided:
        parts.append(f"{decided} coding rows with a human decision")
    return ", ".join(parts) or None


def _xlsx_review_work(path: Path) -> str | None:
    try:
        workbook = open_workbook(path)
    except InputDataError:
        return "it is not a workbook qualcode can read"
    try:
        if "Segments" not in workbook.sheetnames:
            return "it is not a qualcode workbook (no Segments sheet)"
        try:
            reviewed, edited = _count_segment_work(workbook["Segments"].iter_rows(values_only=True))
        except ValueError:
            return "it is not a qualcode workbook (the Segments sheet lacks text, codes and reviewed columns)"
        decided = _count_coding_work(workbook["Codings"].iter_rows(values_only=True)) if "Codings" in workbook.sheetnames else 0
    finally:
        workbook.close()
    return _describe(reviewed, edited, decided)


def _csv_rows(path: Path) -> Iterator[tuple]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        yield from (tuple(row) for row in csv.reader(handle))


def _csv_folder_review_work(path: Path) -> str | None:
    segments = path / "segments.csv"
    if not any(path.iterdir()):
        return None
    if not segments.is_file():
        return "it is not a qualcode CSV folder (no segments.csv)"
    try:
        reviewed, edited = _count_segment_work(_csv_rows(segments))
        codings = path / "codings.csv"
        decided = _count_coding_work(_csv_rows(codings)) if codings.is_file() else 0
    except (ValueError, UnicodeDecodeError, csv.Error):
        return "it is not a qualcode CSV folder qualcode can read"
    return _describe(reviewed, edited, decided)


def existing_review_work(path: Path) -> str | None:
    """What an earlier output at ``path`` holds that replacing it would lose; None when it is safe to replace.

    Review work is a row marked reviewed, code cells that differ from the machine's ``codes``
    list, a coding row with a decision, or a coding row a person added. A file that is not a qualcode
    output counts as work too: it is not ours to delete.
    """
    if not path.exists():
        return None
    if path.is_dir():
        return _csv_folder_review_work(path)
    return _xlsx_review_work(path)

