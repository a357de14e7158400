"""The same tables as the workbook, as UTF-8 CSV files in a folder (segments.csv, codings.csv, ...)."""

from __future__ import annotations

import csv
from pathlib import Path

from qualcode.export.tables import all_tables
from qualcode.models import CodingResult
from qualcode.review_cells import CODED_WORKBOOK_SHEETS


def csv_name(sheet: str) -> str:
    return sheet.lower().replace(" ", "-") + ".csv"


CSV_FILES = frozenset(csv_name(sheet) for sheet in CODED_WORKBOOK_SHEETS)


def foreign_entries(folder: Path) -> list[str]:
    """Names in ``folder`` that a qualcode CSV export does not write: replacing it would delete them."""
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.name not in CSV_FILES or not entry.is_file()
    )


def write_csv_folder(result: CodingResult, folder: Path) -> None:
    """Write one CSV per sheet into ``folder``. Text is written exactly as it is in the documents."""
    for table in all_tables(result):
        with (folder / csv_name(table.name)).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(table.header)
            writer.writerows(table.rows)
