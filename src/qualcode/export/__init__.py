"""Exporting a coding run: the reviewed-work guard, atomic replacement, then the chosen writer."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from qualcode.errors import OutputError, ReviewWorkProtectedError
from qualcode.export.atomic import atomic_file, atomic_folder, check_output_path
from qualcode.export.csvfiles import foreign_entries, write_csv_folder
from qualcode.export.guard import ReviewWork, existing_review_work, review_work
from qualcode.export.xlsx import CodedWorkbook, write_xlsx
from qualcode.models import Codebook, CodingResult, Corpus

FORMATS = ("xlsx", "csv")

__all__ = [
    "FORMATS",
    "ReplaceCheck",
    "check_output_path",
    "ensure_replaceable",
    "write_result",
    "streamed_workbook",
    "existing_review_work",
    "review_work",
]


def _saved_state(path: Path) -> tuple | None:
    """What changes when anyone saves ``path`` (a file, or a folder's files): None if it does not exist."""
    try:
        if path.is_dir():
            return tuple(
                sorted(
                    (entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
                    for entry in os.scandir(path)
                )
            )
        state = path.stat()
    except OSError:
        return None
    return (state.st_ino, state.st_size, state.st_mtime_ns)


@dataclass(frozen=True)
class ReplaceCheck:
    """An output found replaceable, and how it was when it was checked.

    ``recheck`` runs just before the new output is renamed into place: a run takes minutes, and a
    researcher may save review work into the old output meanwhile. If it was saved since the
    check, it is checked again from scratch; ``--force`` covered only what was there before.
    """

    output: Path
    format: str
    state: tuple | None
    kept_elsewhere: Callable[[Path], bool] | None = None

    def recheck(self) -> None:
        if _saved_state(self.output) == self.state:
            return
        _refuse_if_work(self.output, review_work(self.output), self.kept_elsewhere, during_run=True)


def _refuse_if_work(
    output: Path,
    work: ReviewWork,
    kept_elsewhere: Callable[[Path], bool] | None,
    *,
    during_run: bool = False,
) -> None:
    if not work:
        return
    if not work.unreadable and kept_elsewhere is not None and kept_elsewhere(output):
        return  # every decision in it is stored elsewhere (a study): replacing it loses none
    if during_run:
        raise ReviewWorkProtectedError(
            f"{output}: not replaced, because it was saved while this run was going ({work}); this run's output "
            "was not written: run again with another -o, or after importing that work"
        )
    raise ReviewWorkProtectedError(
        f"{output}: not replaced, because {work}; write to another file with -o, or pass --force to replace it"
    )


def ensure_replaceable(
    output: str | os.PathLike[str],
    *,
    force: bool = False,
    format: str = "xlsx",
    kept_elsewhere: Callable[[Path], bool] | None = None,
) -> ReplaceCheck:
    """Refuse an output of the wrong kind, or one holding review work unless ``force`` is set.

    ``kept_elsewhere(output)`` may say that every decision the output holds is stored elsewhere
    (in a study), which lets it be replaced; it cannot vouch for what qualcode cannot read. The
    returned check is run again just before the output is replaced (``write_result``,
    ``streamed_workbook``).
    """
    output = Path(output)
    if format == "xlsx" and output.is_dir():
        raise OutputError(f"{output}: is a folder; name the workbook, e.g. {output / 'coded.xlsx'}")
    if format == "xlsx" and output.suffix.lower() != ".xlsx":
        raise OutputError(
            f"{output}: a workbook's name should end in .xlsx (or use --format csv for a folder)"
        )
    if format == "csv" and output.exists() and not output.is_dir():
        raise OutputError(
            f"{output}: is a file, but --format csv writes a folder of CSV files; name a folder"
        )
    if format == "csv" and output.is_dir():
        foreign = foreign_entries(output)
        if foreign:  # not even --force: these files are not ours to delete
            shown = ", ".join(foreign[:3]) + (
                f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            )
            raise OutputError(
                f"{output}: not replaced, because it holds files qualcode did not write ({shown}); "
                "name a new or empty folder"
            )
    state = _saved_state(output)
    if not force:
        _refuse_if_work(output, review_work(output), kept_elsewhere)
    return ReplaceCheck(output, format, state, kept_elsewhere)


def write_result(
    result: CodingResult,
    output: str | os.PathLike[str],
    *,
    format: str = "xlsx",
    force: bool = False,
    checked: ReplaceCheck | None = None,
) -> Path:
    """Write ``result`` as an xlsx workbook or a folder of CSV files, replacing ``output`` atomically.

    An earlier output holding review work is never replaced unless ``force`` is set; ``checked``
    is the check already made (``ensure_replaceable``), else it is made here. Either way it is
    made again just before the rename.
    """
    output = Path(output)
    checked = checked or ensure_replaceable(output, force=force, format=format)
    if format == "csv":
        with atomic_folder(output, before_replace=checked.recheck) as folder:
            write_csv_folder(result, folder)
    else:
        with atomic_file(output, before_replace=checked.recheck) as temporary:
            write_xlsx(result, temporary)
    return output


@contextlib.contextmanager
def streamed_workbook(
    output: str | os.PathLike[str],
    corpus: Corpus,
    codebook: Codebook,
    *,
    code_interviewer: bool,
    force: bool = False,
    checked: ReplaceCheck | None = None,
) -> Iterator[CodedWorkbook]:
    """A ``CodedWorkbook`` filled while coding runs (pass its ``add`` as ``on_chunk``), then ``finish``-ed.

    ``code_interviewer`` is the run's option of that name; ``force`` and ``checked`` as for
    ``write_result``.

    It is written beside ``output`` and renamed into place only when the block ends without an
    error after ``finish``, and the output was not saved with review work meanwhile; otherwise the
    earlier output stays as it was.
    """
    output = Path(output)
    checked = checked or ensure_replaceable(output, force=force, format="xlsx")
    with atomic_file(output, before_replace=checked.recheck) as temporary:
        workbook = CodedWorkbook(temporary, corpus, codebook, code_interviewer=code_interviewer)
        try:
            yield workbook
        except BaseException:
            workbook.abandon()
            raise
        if not workbook.finished:
            workbook.abandon()
            raise OutputError(f"{output}: the coding run ended before its workbook was finished")
