"""Opening .xlsx workbooks: for the readers of inputs, labels and reviews, and the export guard.

Every stage may need to look inside a workbook (a survey, a reviewed output, an earlier output
about to be replaced); here, none of them has to reach into another stage to do it.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from qualcode.errors import InputDataError


def open_workbook(path: Path, data: bytes | None = None):
    """Open an .xlsx workbook read-only (cached values, not formulas), else ``InputDataError``."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        source = io.BytesIO(data) if data is not None else path
        return openpyxl.load_workbook(source, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as error:
        raise InputDataError(f"{path}: not a readable .xlsx workbook ({error})") from error


def xlsx_sheet_names(path: Path) -> list[str]:
    workbook = open_workbook(path)
    try:
        return list(workbook.sheetnames)
    finally:
        workbook.close()
