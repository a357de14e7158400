"""The coded workbook, streamed with xlsxwriter (constant memory) and styled for review."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from qualcode.errors import OutputError
from qualcode.export.tables import Table, all_tables
from qualcode.models import Codebook, CodingResult

logger = logging.getLogger(__name__)

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_CELL = 32_767
_TRUNCATION_NOTE = " […truncated: Excel cells hold 32,767 characters; see --format csv]"
_WIDTHS = {"segment_id": 24, "document": 24, "speaker": 14, "start": 8, "end": 8, "timestamp": 10, "text": 80,
           "evidence": 50, "codes": 28, "reviewed": 10, "decision": 10, "code": 20, "source": 11, "confidence": 11,
           "status": 11, "definition": 60, "include": 45, "exclude": 45, "positive examples": 60,
           "negative examples": 60, "field": 22, "value": 60, "detail": 66, "name": 24}


def _text_color_for(fill: str) -> str:
    red, green, blue = (int(fill[i:i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else "#FFFFFF"


class _Formats:
    def __init__(self, workbook, codebook: Codebook | None):
        self.header = workbook.add_format({"bold": True, "bottom": 1, "text_wrap": True, "valign": "top"})
        self.wrap = workbook.add_format({"text_wrap": True, "valign": "top"})
        self.plain = workbook.add_format({"valign": "top"})
        self.code_header: dict[str, object] = {}
        self.code_cell: dict[str, object] = {}
        for code in codebook.codes if codebook else ():
            if code.color:
                style = {"bg_color": code.color, "font_color": _text_color_for(code.color)}
                self.code_header[code.code_id] = workbook.add_format({**style, "bold": True, "bottom": 1, "valign": "top"})
                self.code_cell[code.code_id] = workbook.add_format({**style, "align": "center", "valign": "top"})


def _write_value(sheet, row: int, column: int, value: object, cell_format) -> bool:
    """Write one typed cell; text is always a string cell, never a formula or a link. True if truncated."""
    if value is None:
        return False
    if isinstance(value, bool):
        sheet.write_boolean(row, column, value, cell_format)
    elif isinstance(value, (int, float)):
        sheet.write_number(row, column, value, cell_format)
    else:
        text = str(value)
        truncated = len(text) > EXCEL_MAX_CELL
        if truncated:
            text = text[:EXCEL_MAX_CELL - len(_TRUNCATION_NOTE)] + _TRUNCATION_NOTE
        sheet.write_string(row, column, text, cell_format)
        return truncated
    return False


def _write_table(workbook, table: Table, formats: _Formats, codebook: Codebook | None) -> int:
    sheet = workbook.add_worksheet(table.name)
    code_ids = set(codebook.code_ids) if codebook else set()
    column_formats = []
    for column, name in enumerate(table.header):
        wrap = name in table.text_columns
        width = _WIDTHS.get(name, 12 if name in code_ids else 16)
        sheet.set_column(column, column, width)
        if table.name == "Segments" and name in formats.code_cell:
            column_formats.append(formats.code_cell[name])
        else:
            column_formats.append(formats.wrap if wrap else formats.plain)
    for column, name in enumerate(table.header):
        header_format = formats.code_header.get(name, formats.header) if table.name in ("Segments", "Co-occurrence") else formats.header
        sheet.write_string(0, column, name, header_format)
    code_column = table.header.index("code") if table.name == "Codings" else None
    truncated = 0
    for number, values in enumerate(table.rows, start=1):
        for column, value in enumerate(values):
            cell_format = column_formats[column]
            if column == code_column:
                cell_format = formats.code_cell.get(value, cell_format)
            truncated += _write_value(sheet, number, column, value, cell_format)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(table.size, 1), len(table.header) - 1)
    if truncated:
        logger.warning("sheet %s: %d cells longer than Excel allows were truncated; the CSV output keeps them whole",
                       table.name, truncated)
    return table.size


def check_sheet_sizes(tables: Iterable[Table]) -> None:
    """Refuse, before writing anything, a sheet longer than Excel allows: never a silent cut."""
    for table in tables:
        if table.size + 1 > EXCEL_MAX_ROWS:
            raise OutputError(
                f"sheet {table.name} would need {table.size + 1:,} rows, more than Excel's limit of {EXCEL_MAX_ROWS:,}; "
                "write the tables as CSV with --format csv"
            )


def write_xlsx(result: CodingResult, path: Path) -> None:
    """Write the coded workbook to ``path`` (callers handle atomic replacement)."""
    tables = list(all_tables(result))
    check_sheet_sizes(tables)
    write_tables(tables, path, result.codebook)


def write_tables(tables: Iterable[Table], path: Path, codebook: Codebook | None = None) -> None:
    """Write tables as sheets of one workbook, styled alike; code columns take the codebook's colours."""
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {
        "constant_memory": True,
        "strings_to_formulas": False,
        "strings_to_urls": False,
        "strings_to_numbers": False,
    })
    try:
        formats = _Formats(workbook, codebook)
        for table in tables:
            _write_table(workbook, table, formats, codebook)
    finally:
        workbook.close()
