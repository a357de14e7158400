"""Human (or machine) code labels per segment, read from a gold CSV, a coder's table or a qualcode workbook.

A label file has one row per unit, identified by ``segment_id`` or by ``document`` + ``start`` +
``end``, and one 0/1 column per code (blank counts as 0). In a qualcode workbook or CSV export the
code columns are the ones between ``text`` and ``codes``; elsewhere they are the columns named
after the codebook's code ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from qualcode.errors import InputDataError, InputMissingError
from qualcode.ingest.tables import read_table
from qualcode.review_cells import read_mark
from qualcode.workbooks import xlsx_sheet_names

META_COLUMNS = frozenset(
    {
        "segment_id",
        "document",
        "start",
        "end",
        "speaker",
        "text",
        "timestamp",
        "unit",
        "reviewed",
        "codes",
        "respondent",
        "notes",
        "note",
        "coder",
        "index",
        "decided by",
        "decision",
    }
)
_TRUE = {"1", "1.0"}
_FALSE = {"", "0", "0.0"}


@dataclass(frozen=True)
class LabelledUnit:
    segment_id: str | None
    document: str | None
    start: int | None
    end: int | None
    text: str | None
    labels: dict[str, int]
    place: str

    @property
    def key(self) -> tuple:
        """How the unit is matched across files: its segment id, else its document and offsets."""
        if self.segment_id:
            return ("id", self.segment_id)
        return ("span", self.document, self.start, self.end)


@dataclass(frozen=True)
class LabelFile:
    path: str
    coder: str
    code_ids: tuple[str, ...]
    units: tuple[LabelledUnit, ...]
    written_by_qualcode: bool = False
    # A qualcode workbook's Run sheet (field -> value): what its classifier was trained on.
    run: dict[str, str] = field(default_factory=dict)


def _int_or_none(value: str, path: Path, place: str, column: str) -> int | None:
    if not value.strip():
        return None
    try:
        return int(float(value))
    except ValueError:
        raise InputDataError(
            f"{path}: {place}: column '{column}' should be a character offset, not '{value}'"
        ) from None


def _is_binary_column(rows, column: str) -> bool:
    values = {row.values.get(column, "").strip() for row in rows}
    return values <= (_TRUE | _FALSE) and bool(values & _TRUE)


def read_label_file(
    path: str | os.PathLike[str], code_ids: tuple[str, ...] | None = None
) -> LabelFile:
    """Read one coder's labels. ``code_ids`` (the codebook's) decide which columns are codes outside qualcode exports.

    Raises ``InputDataError`` naming the file, row and column for a value that is not 0/1, a
    0/1 column that is not in the codebook, or rows without an id.
    """
    path = Path(path)
    if not path.is_file():
        raise InputMissingError(f"{path}: no such file")
    written_by_qualcode = False
    sheet = None
    if path.suffix.lower() == ".xlsx":
        sheets = xlsx_sheet_names(path)
        if "Segments" in sheets:
            sheet = "Segments"
            written_by_qualcode = "Run" in sheets
    header, row_iter = read_table(path, sheet)
    rows = list(row_iter)
    if "text" in header and "codes" in header and header.index("codes") > header.index("text"):
        codes = tuple(header[header.index("text") + 1 : header.index("codes")])
    else:
        known = set(code_ids or ())
        codes = tuple(column for column in header if column in known)
        for column in header:
            if (
                column not in known
                and column not in META_COLUMNS
                and _is_binary_column(rows, column)
            ):
                raise InputDataError(
                    f"{path}: column '{column}' holds 0/1 codes but is not a code in the codebook "
                    f"({', '.join(sorted(known)) or 'no codes given'})"
                )
    if not codes:
        raise InputDataError(
            f"{path}: no code columns found; expected columns named after the codes "
            f"({', '.join(code_ids or ())})"
        )
    if code_ids is not None:
        unknown = [code for code in codes if code not in code_ids]
        if unknown:
            raise InputDataError(
                f"{path}: column '{unknown[0]}' is not a code in the codebook "
                f"({', '.join(code_ids)})"
            )
    has_id = "segment_id" in header
    has_span = {"document", "start", "end"} <= set(header)
    if not has_id and not has_span:
        raise InputDataError(
            f"{path}: needs a 'segment_id' column, or 'document', 'start' and 'end' columns, "
            "to say which segment each row labels"
        )
    units = []
    seen: dict[tuple, str] = {}
    for row in rows:
        values = row.values
        labels = {}
        for code in codes:
            raw = values.get(code, "").strip()
            if raw in _TRUE:
                labels[code] = 1
            elif raw in _FALSE:
                labels[code] = 0
            else:
                raise InputDataError(
                    f"{path}: {row.place}: column '{code}' should be 0 or 1 (or blank), not '{raw}'"
                )
        unit = LabelledUnit(
            segment_id=values.get("segment_id", "").strip() or None,
            document=values.get("document", "").strip() or None,
            start=_int_or_none(values.get("start", ""), path, row.place, "start")
            if has_span
            else None,
            end=_int_or_none(values.get("end", ""), path, row.place, "end") if has_span else None,
            text=values.get("text") if "text" in header else None,
            labels=labels,
            place=row.place,
        )
        if unit.segment_id is None and (
            unit.document is None or unit.start is None or unit.end is None
        ):
            raise InputDataError(
                f"{path}: {row.place}: no segment_id, and document/start/end are incomplete"
            )
        if unit.key in seen:
            raise InputDataError(
                f"{path}: {row.place}: the same segment is labelled again (first at {seen[unit.key]})"
            )
        seen[unit.key] = row.place
        units.append(unit)
    if not units:
        raise InputDataError(f"{path}: no labelled rows")
    coder = "qualcode" if written_by_qualcode and not _reviewed(rows) else path.stem
    run = _run_sheet(path) if written_by_qualcode else {}
    return LabelFile(str(path), coder, codes, tuple(units), written_by_qualcode, run)


def _run_sheet(path: Path) -> dict[str, str]:
    _, rows = read_table(path, "Run")
    return {row.values.get("field", ""): row.values.get("value", "") for row in rows}


def _reviewed(rows) -> bool:
    return any(read_mark(row.values.get("reviewed", "")) for row in rows)


def match_units(
    units: tuple[LabelledUnit, ...], segments
) -> tuple[dict[str, LabelledUnit], list[LabelledUnit]]:
    """Pair labelled units with segments by id, else by document and offsets. Returns (segment_id -> unit, unmatched)."""
    by_id = {segment.segment_id: segment for segment in segments}
    by_span = {
        (segment.doc_id, segment.start_char, segment.end_char): segment for segment in segments
    }
    matched: dict[str, LabelledUnit] = {}
    unmatched: list[LabelledUnit] = []
    for unit in units:
        segment = by_id.get(unit.segment_id) if unit.segment_id else None
        if segment is None and unit.document is not None:
            segment = by_span.get((unit.document, unit.start, unit.end))
        if segment is None:
            unmatched.append(unit)
        else:
            matched[segment.segment_id] = unit
    return matched, unmatched
