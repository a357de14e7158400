"""Exporting a coding run: the reviewed-work guard, atomic replacement, then the chosen writer."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from qualcode.errors import OutputError, ReviewWorkProtectedError
from qualcode.export.atomic import atomic_file, atomic_folder, check_output_path
from qualcode.export.csvfiles import foreign_entries, write_csv_folder
from qualcode.export.guard import existing_review_work
from qualcode.export.xlsx import CodedWorkbook, write_xlsx
from qualcode.models import Codebook, CodingResult, Corpus

FORMATS = ("xlsx", "csv")

__all__ = ["FORMATS", "check_output_path", "ensure_replaceable", "write_result", "streamed_workbook",
           "existing_review_work"]


def ensure_replaceable(output: str | os.PathLike[str], *, force: bool = False, format: str = "xlsx") -> None:
    """Refuse an output of the wrong kind, or one holding review work unless ``force`` is set."""
    output = Path(output)
    if format == "xlsx" and output.is_dir():
        raise OutputError(f"{output}: is a folder; name the workbook, e.g. {output / 'coded.xlsx'}")
    if format == "xlsx" and output.suffix.lower() != ".xlsx":
        raise OutputError(f"{output}: a workbook's name should end in .xlsx (or use --format csv for a folder)")
    if format == "csv" and output.exists() and not output.is_dir():
        raise OutputError(f"{output}: is a file, but --format csv writes a folder of CSV files; name a folder")
    if format == "csv" and output.is_dir():
        foreign = foreign_entries(output)
        if foreign:  # not even --force: these files are not ours to delete
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise OutputError(f"{output}: not replaced, because it holds files qualcode did not write ({shown}); "
                              "name a new or empty folder")
    work = None if force else existing_review_work(output)
    if work:
        raise ReviewWorkProtectedError(
            f"{output}: not replaced, because {work}; write to another file with -o, or pass --force to replace it"
        )


def write_result(result: CodingResult, output: str | os.PathLike[str], *, format: str = "xlsx",
                 force: bool = False) -> Path:
    """Write ``result`` as an xlsx workbook or a folder of CSV files, replacing ``output`` atomically.

    An earlier output holding review work is never replaced unless ``force`` is set.
    """
    output = Path(output)
    ensure_replaceable(output, force=force, format=format)
    if format == "csv":
        with atomic_folder(output) as folder:
            write_csv_folder(result, folder)
    else:
        with atomic_file(output) as temporary:
            write_xlsx(result, temporary)
    return output


@contextlib.contextmanager
def streamed_workbook(output: str | os.PathLike[str], corpus: Corpus, codebook: Codebook, *,
                      code_interviewer: bool, force: bool = False) -> Iterator[CodedWorkbook]:
    """A ``CodedWorkbook`` filled while coding runs (pass its ``add`` as ``on_chunk``), then ``finish``-ed.

    ``code_interviewer`` is the run's option of that name.

    It is written beside ``output`` and renamed into place only when the block ends without an
    error after ``finish``; otherwise the earlier output stays as it was.
    """
    output = Path(output)
    ensure_replaceable(output, force=force, format="xlsx")
    with atomic_file(output) as temporary:
        workbook = CodedWorkbook(temporary, corpus, codebook, code_interviewer=code_interviewer)
        try:
            yield workbook
        except BaseException:
            workbook.abandon()
            raise
        if not workbook.finished:
            workbook.abandon()
            raise OutputError(f"{output}: the coding run ended before its workbook was finished")
