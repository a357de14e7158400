"""The ``qualcode`` command line: parse options, call the library, report in one line.

Every ``QualcodeError`` becomes ``Error: <message>`` on stderr and its exit code; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import click

from qualcode import __version__
from qualcode.codebook import default_codebook_path, load_codebook, validate_codebook
from qualcode.coding import CodingOptions, code_corpus
from qualcode.errors import QualcodeError
from qualcode.export import FORMATS, check_output_path, ensure_replaceable, write_result
from qualcode.ingest import read_documents
from qualcode.models import UNITS


class _QualcodeGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except QualcodeError as error:
            click.echo(f"Error: {error}", err=True)
            ctx.exit(error.exit_code)


class _StderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        prefix = "Warning: " if record.levelno >= logging.WARNING else ""
        click.echo(f"{prefix}{record.getMessage()}", err=True)


@contextlib.contextmanager
def _logging_to_stderr(quiet: bool, verbose: bool):
    """Show the library's log on stderr for one command, then put the logger back as it was."""
    logger = logging.getLogger("qualcode")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:] = [_StderrHandler()]
    logger.setLevel(logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


class _ProgressBars:
    """One progress bar per stage on stderr, shown only on a terminal and when not quiet."""

    _LABELS = {"read": "Reading", "segment": "Segmenting", "code": "Coding"}

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._stage: str | None = None
        self._bar = None

    def __call__(self, stage: str, advance: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = click.progressbar(length=total, label=self._LABELS.get(stage, stage), file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(advance)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _quiet_option(function):
    return click.option("-q", "--quiet", is_flag=True, help="No progress bars or summary; errors only.")(function)


@click.group(cls=_QualcodeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qualcode")
def cli() -> None:
    """Code interview transcripts, essays and survey answers against a qualitative codebook."""


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The workbook to write (.xlsx), or a folder with --format csv.")
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="xlsx", show_default=True,
              help="xlsx: one workbook; csv: a folder with one CSV per sheet.")
@click.option("--codebook", "codebook_path", type=click.Path(path_type=Path),
              help="Codebook YAML (default: the built-in relationship-based social work themes).")
@click.option("--unit", type=click.Choice(UNITS), default=None,
              help="Segment unit. Default: turn for transcripts, paragraph for essays, document for survey rows.")
@click.option("--kind", type=click.Choice(["transcript", "essay"]), default=None,
              help="Treat every text file as this kind instead of detecting speaker turns.")
@click.option("--text-column", help="Survey tables: the column holding the answer text.")
@click.option("--id-column", help="Survey tables: the column holding the respondent id.")
@click.option("--code-interviewer", is_flag=True, help="Code interviewer turns too (they are exported either way).")
@click.option("--interviewer", "interviewer_labels", multiple=True, metavar="LABEL",
              help="A speaker label that marks the interviewer, besides Interviewer, INT, I, Q, Researcher, "
                   "Facilitator and Moderator. Repeatable.")
@click.option("--spacy-model", default=None, metavar="NAME",
              help="An installed trained spaCy pipeline (e.g. en_core_web_sm); default: offline blank English.")
@click.option("--force", is_flag=True, help="Replace an earlier output even if it holds review work.")
@click.option("-v", "--verbose", is_flag=True, help="Also list skipped files and other notes.")
@_quiet_option
def code(paths, output, output_format, codebook_path, unit, kind, text_column, id_column, code_interviewer,
         interviewer_labels, spacy_model, force, verbose, quiet) -> None:
    """Code PATHS (files or folders) and write coded segments with their evidence.

    Example: qualcode code corpora/sample -o coded.xlsx
    """
    check_output_path(output, paths)
    ensure_replaceable(output, force=force)
    codebook = load_codebook(codebook_path)
    options = CodingOptions(unit=unit, code_interviewer=code_interviewer, interviewer_labels=tuple(interviewer_labels),
                            spacy_model=spacy_model or "blank:en",
                            extra={"kind": kind or "detected", "text_column": text_column or "detected",
                                   "id_column": id_column or "detected", "format": output_format,
                                   "codebook": str(codebook_path or default_codebook_path())})
    progress = _ProgressBars(enabled=not quiet and sys.stderr.isatty())
    with _logging_to_stderr(quiet, verbose):
        try:
            corpus = read_documents(paths, kind=kind, text_column=text_column, id_column=id_column,
                                    progress=lambda done, total: progress("read", 1, total))
            result = code_corpus(corpus, codebook, options, progress=progress)
        finally:
            progress.close()
        write_result(result, output, format=output_format, force=force)
    if not quiet:
        coded = len({assignment.segment_id for assignment in result.assignments})
        skipped = f"; {len(corpus.skipped)} files skipped (-v lists them)" if corpus.skipped and not verbose else ""
        click.echo(f"Coded {len(result.segments)} segments from {len(corpus.documents)} documents: "
                   f"{len(result.assignments)} codings on {coded} segments -> {output}{skipped}", err=True)


@cli.group()
def codebook() -> None:
    """Check and inspect codebooks."""


@codebook.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
@_quiet_option
def codebook_validate(path, quiet) -> None:
    """Report every problem in a codebook with its line number; exit 78 if there are any.

    Example: qualcode codebook validate codebooks/relationship-themes.yaml
    """
    problems = validate_codebook(path)
    for problem in problems:
        click.echo(f"{path}:{problem.removeprefix('line ')}", err=True)
    if problems:
        click.echo(f"Error: {path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}", err=True)
        sys.exit(78)
    if not quiet:
        loaded = load_codebook(path)
        rules = sum(len(code.rules) for code in loaded.codes)
        click.echo(f"{path}: valid; {len(loaded.codes)} codes, {rules} rules "
                   f"(codebook '{loaded.name}' version {loaded.version})")


def main() -> None:
    cli(prog_name="qualcode")


if __name__ == "__main__":
    main()
