"""Finding a researcher's review work in an earlier output before it could be replaced.

The guard reads cells exactly as the review reader does (``qualcode.review_cells``): what it
calls safe to replace holds nothing the reader would import. Whatever it cannot read in full
counts as work, since only a person can say what it holds.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qualcode.errors import InputDataError
from qualcode.review_cells import (
    CODINGS_HEADER,
    QUALCODE_SHEETS,
    SEGMENTS_HEADER,
    find_sheet,
    marks_earlier_review,
    read_mark,
    sheet_headers,
)
from qualcode.workbooks import open_workbook


@dataclass(frozen=True)
class ReviewWork:
    """What replacing an output would lose.

    ``decisions`` describes decisions qualcode can read (a study that stores them all may let the
    output go); ``unreadable`` describes what qualcode cannot read or did not write, which only
    ``--force`` may replace.
    """

    decisions: str | None = None
    unreadable: str | None = None

    def __bool__(self) -> bool:
        return bool(self.decisions or self.unreadable)

    def __str__(self) -> str:
        return "; ".join(part for part in (self.unreadable, self.decisions) if part)


class _Unreadable(Exception):
    """A cell or sheet the review reader would refuse: the output holds something only a person can judge."""


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _mark(value: object, sheet: str, row: int, column: str) -> bool:
    mark = read_mark(_text(value))
    if mark is None:
        raise _Unreadable(
            f"sheet '{sheet}', row {row}, column '{column}' holds '{_text(value).strip()}', "
            "which is neither yes nor no"
        )
    return mark


def _count_segment_work(rows: Iterator[tuple], sheet: str) -> tuple[int, int]:
    header = [str(cell).strip() if cell is not None else "" for cell in next(rows, ())]
    if not SEGMENTS_HEADER <= set(header):
        raise ValueError("no Segments table")
    reviewed_at, text_at, codes_at = (
        header.index("reviewed"),
        header.index("text"),
        header.index("codes"),
    )
    decided_by_at = header.index("decided by") if "decided by" in header else None
    code_columns = list(range(text_at + 1, codes_at))
    reviewed = edited = 0
    for number, row in enumerate(rows, start=2):
        row = tuple(row) + (None,) * (len(header) - len(row))
        copied = decided_by_at is not None and marks_earlier_review(_text(row[decided_by_at]))
        if _mark(row[reviewed_at], sheet, number, "reviewed") and not copied:
            reviewed += 1
        listed = {code.strip() for code in str(row[codes_at] or "").split(";") if code.strip()}
        ticked = {
            header[column]
            for column in code_columns
            if _mark(row[column], sheet, number, header[column])
        }
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
        decided = decision_at is not None and not _blank(row[decision_at])
        # qualcode writes a status on every row it writes, so a row without one was added by a person.
        added = (
            status_at is not None
            and _blank(row[status_at])
            and any(not _blank(value) for value in row)
        )
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


def _sheets(names: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _xlsx_review_work(path: Path) -> ReviewWork:
    try:
        workbook = open_workbook(path)
    except InputDataError:
        return ReviewWork(unreadable="it is not a workbook qualcode can read")
    try:
        try:
            headers = sheet_headers(workbook)
        except (
            Exception
        ):  # a damaged sheet: whatever openpyxl trips on, it is not ours to throw away
            return ReviewWork(unreadable="a sheet of it cannot be read")
        segments, candidates = find_sheet(headers, "Segments", SEGMENTS_HEADER)
        if segments is None:
            if candidates:
                return ReviewWork(
                    unreadable=f"sheets {_sheets(candidates)} all look like its Segments sheet"
                )
            return ReviewWork(
                unreadable="it is not a qualcode workbook (no sheet has the Segments columns)"
            )
        codings, candidates = find_sheet(headers, "Codings", CODINGS_HEADER)
        if codings is None:
            found = (
                f"sheets {_sheets(candidates)} all look like its Codings sheet"
                if candidates
                else "no sheet has the Codings columns (segment_id, code, status, decision)"
            )
            return ReviewWork(unreadable=f"qualcode cannot read all of it: {found}")
        foreign = [
            name
            for name in headers
            if name not in QUALCODE_SHEETS and name not in (segments, codings)
        ]
        if foreign:
            return ReviewWork(
                unreadable=f"it holds sheets qualcode did not write ({_sheets(foreign)})"
            )
        try:
            reviewed, edited = _count_segment_work(
                workbook[segments].iter_rows(values_only=True), segments
            )
        except _Unreadable as error:
            return ReviewWork(unreadable=f"qualcode cannot read all of it: {error}")
        decided = _count_coding_work(workbook[codings].iter_rows(values_only=True))
    finally:
        workbook.close()
    return ReviewWork(decisions=_describe(reviewed, edited, decided))


def _csv_rows(path: Path) -> Iterator[tuple]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        yield from (tuple(row) for row in csv.reader(handle))


def _csv_folder_review_work(path: Path) -> ReviewWork:
    segments = path / "segments.csv"
    if not any(path.iterdir()):
        return ReviewWork()
    if not segments.is_file():
        return ReviewWork(unreadable="it is not a qualcode CSV folder (no segments.csv)")
    try:
        reviewed, edited = _count_segment_work(_csv_rows(segments), "segments.csv")
        codings = path / "codings.csv"
        decided = _count_coding_work(_csv_rows(codings)) if codings.is_file() else 0
    except _Unreadable as error:
        return ReviewWork(
            unreadable=f"qualcode cannot read all of it: {str(error).replace('sheet ', '', 1)}"
        )
    except (ValueError, UnicodeDecodeError, csv.Error):
        return ReviewWork(unreadable="it is not a qualcode CSV folder qualcode can read")
    return ReviewWork(decisions=_describe(reviewed, edited, decided))


def review_work(path: Path) -> ReviewWork:
    """What an earlier output at ``path`` holds that replacing it would lose; empty (false) when it is safe.

    Review work is a row marked reviewed, code cells that differ from the machine's ``codes``
    list, a coding row with a decision, or a coding row a person added. Rows qualcode wrote as
    copies of earlier decisions are not work. A file that is not a qualcode output, a sheet it did
    not write, a cell it cannot read, or sheets it cannot tell apart count as work too: they are
    not ours to delete.
    """
    if not path.exists():
        return ReviewWork()
    if path.is_dir():
        return _csv_folder_review_work(path)
    return _xlsx_review_work(path)


def existing_review_work(path: Path) -> str | None:
    """``review_work`` in one phrase, or None when replacing ``path`` loses nothing."""
    return str(review_work(path)) or None
