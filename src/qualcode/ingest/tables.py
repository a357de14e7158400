"""Survey tables (.csv, .tsv, .xlsx): one document per row, the other columns as attributes."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qualcode.errors import InputDataError
from qualcode.ingest.encoding import decode_text
from qualcode.workbooks import open_workbook

logger = logging.getLogger(__name__)

TEXT_COLUMN_NAMES = (
    "text",
    "response",
    "answer",
    "comment",
    "comments",
    "free_text",
    "open_response",
    "verbatim",
)
TEXT_COLUMN_HINTS = ("response", "answer", "text", "comment")
ID_COLUMN_NAMES = (
    "id",
    "respondent",
    "respondent_id",
    "participant",
    "participant_id",
    "response_id",
    "case_id",
    "record_id",
)


@dataclass(frozen=True)
class TableRow:
    """A data row with a human-readable place for error messages ("line 12", "sheet 'Data', row 12")."""

    place: str
    values: dict[str, str]


@dataclass(frozen=True)
class SurveyAnswer:
    respondent: str
    text: str
    attributes: dict[str, str]


def _normalised(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _choose_column(
    columns: list[str],
    wanted: str | None,
    exact: tuple[str, ...],
    hints: tuple[str, ...],
    role: str,
    option: str,
    path: str,
) -> str:
    listing = ", ".join(repr(column) for column in columns)
    if wanted is not None:
        for column in columns:
            if column == wanted or _normalised(column) == _normalised(wanted):
                return column
        raise InputDataError(
            f"{path}: no column named '{wanted}' for {option}; the columns are {listing}"
        )
    by_name = {_normalised(column): column for column in columns}
    for name in exact:
        if name in by_name:
            return by_name[name]
    hinted = [column for column in columns if any(hint in _normalised(column) for hint in hints)]
    if len(hinted) == 1:
        return hinted[0]
    if len(hinted) > 1:
        choices = ", ".join(repr(column) for column in hinted)
        raise InputDataError(
            f"{path}: several columns could hold the {role} ({choices}); choose one with {option}"
        )
    raise InputDataError(
        f"{path}: no {role} column found; name it with {option}. The columns are {listing}"
    )


def _csv_rows(path: Path, data: bytes | None = None) -> tuple[list[str], Iterator[TableRow]]:
    text = decode_text(data if data is not None else path.read_bytes(), str(path))
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise InputDataError(f"{path}: the file is empty; expected a header row") from None
    except csv.Error as error:
        raise InputDataError(f"{path}: line 1: {error}") from error

    def rows() -> Iterator[TableRow]:
        line = reader.line_num + 1
        try:
            for record in reader:
                if any(cell.strip() for cell in record):
                    if len(record) > len(header):
                        raise InputDataError(
                            f"{path}: line {line}: {len(record)} cells but the header has {len(header)} columns"
                        )
                    yield TableRow(
                        f"line {line}",
                        dict(zip(header, record + [""] * (len(header) - len(record)))),
                    )
                line = reader.line_num + 1
        except csv.Error as error:
            raise InputDataError(f"{path}: line {line}: {error}") from error

    return header, rows()


def _sniff_delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    counts = {delimiter: first_line.count(delimiter) for delimiter in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def _xlsx_rows(
    path: Path, sheet_name: str | None = None, data: bytes | None = None
) -> tuple[list[str], Iterator[TableRow]]:
    workbook = open_workbook(path, data)
    if sheet_name is not None and sheet_name not in workbook.sheetnames:
        workbook.close()
        raise InputDataError(
            f"{path}: no sheet named '{sheet_name}' (sheets: {', '.join(workbook.sheetnames)})"
        )
    sheet = workbook[sheet_name] if sheet_name is not None else workbook.worksheets[0]
    values = sheet.iter_rows(values_only=True)
    try:
        header_cells = next(values)
    except StopIteration:
        workbook.close()
        others = [name for name in workbook.sheetnames if name != sheet.title]
        hint = (
            f"; name the sheet to read with --sheet (the others: {', '.join(others)})"
            if others
            else ""
        )
        raise InputDataError(
            f"{path}: sheet '{sheet.title}' is empty; expected a header row{hint}"
        ) from None
    header = [_cell_text(cell).strip() for cell in header_cells]
    while header and not header[-1]:
        header.pop()

    def rows() -> Iterator[TableRow]:
        try:
            for number, cells in enumerate(values, start=2):
                texts = [_cell_text(cell) for cell in cells]
                if any(text.strip() for text in texts):
                    yield TableRow(
                        f"sheet '{sheet.title}', row {number}",
                        dict(zip(header, texts + [""] * len(header))),
                    )
        finally:
            workbook.close()

    return header, rows()


def read_table(
    path: Path, sheet: str | None = None, data: bytes | None = None
) -> tuple[list[str], Iterator[TableRow]]:
    """The header and the non-blank rows of a CSV/TSV file or of one sheet of a workbook (default: the first)."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return _xlsx_rows(path, sheet, data)
    return _csv_rows(path, data)


def read_survey_table(
    path: Path,
    *,
    text_column: str | None,
    id_column: str | None,
    data: bytes | None = None,
    sheet: str | None = None,
) -> Iterator[SurveyAnswer]:
    """Yield one answer per row with text; blank answers are skipped and counted in the log.

    ``sheet`` names the workbook sheet to read (default: the first); CSV files have none.
    """
    header, rows = read_table(path, sheet=sheet, data=data)
    duplicated = {name for name in header if header.count(name) > 1 and name}
    if duplicated:
        raise InputDataError(
            f"{path}: the header names column {sorted(duplicated)[0]!r} more than once"
        )
    text_name = _choose_column(
        header,
        text_column,
        TEXT_COLUMN_NAMES,
        TEXT_COLUMN_HINTS,
        "answer text",
        "--text-column",
        str(path),
    )
    id_name = _choose_column(
        header,
        id_column,
        ID_COLUMN_NAMES,
        ("respondent", "participant"),
        "respondent id",
        "--id-column",
        str(path),
    )
    if text_name == id_name:
        raise InputDataError(f"{path}: the text column and the id column are both '{text_name}'")
    first_seen: dict[str, str] = {}
    blank = 0
    for row in rows:
        respondent = row.values[id_name].strip()
        if not respondent:
            raise InputDataError(
                f"{path}: {row.place}: column '{id_name}' is empty; every row needs an id"
            )
        if respondent in first_seen:
            raise InputDataError(
                f"{path}: {row.place}: duplicate id '{respondent}' in column '{id_name}' (first at {first_seen[respondent]})"
            )
        first_seen[respondent] = row.place
        text = row.values[text_name]
        if not text.strip():
            blank += 1
            continue
        attributes = {
            name: value.strip()
            for name, value in row.values.items()
            if name not in (text_name, id_name) and name
        }
        yield SurveyAnswer(respondent, text.replace("\r\n", "\n").replace("\r", "\n"), attributes)
    if blank:
        logger.info("%s: %d rows with a blank '%s' were skipped", path, blank, text_name)
