"""The ``qualcode`` command line: parse options, call the library, report in one line.

Every ``QualcodeError`` becomes ``Error: <message>`` on stderr and its exit code; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections import Counter
from pathlib import Path

import click

from qualcode import __version__
from qualcode.codebook import default_codebook_path, load_codebook, validate_codebook
from qualcode.coding import CodingOptions, code_corpus
from qualcode.errors import QualcodeError
from qualcode.export import FORMATS, check_output_path, ensure_replaceable, write_result
from qualcode.ingest import read_documents
from qualcode.classify import examples_from_labels
from qualcode.combine import DEFAULT_SUGGEST_AT, DEFAULT_VETO_BELOW
from qualcode.labels import read_label_file
from qualcode.models import COUNTED_STATUSES, UNITS
from qualcode.reviews import read_review_workbook


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


def _corpus_options(function):
    """Options that decide what is read and how it is cut into segments; shared by code and evaluate."""
    options = [
        click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path)),
        click.option("--codebook", "codebook_path", type=click.Path(path_type=Path),
                     help="Codebook YAML (default: the built-in relationship-based social work themes)."),
        click.option("--unit", type=click.Choice(UNITS), default=None,
                     help="Segment unit. Default: turn for transcripts, paragraph for essays, document for survey rows."),
        click.option("--kind", type=click.Choice(["transcript", "essay"]), default=None,
                     help="Treat every text file as this kind instead of detecting speaker turns."),
        click.option("--text-column", help="Survey tables: the column holding the answer text."),
        click.option("--id-column", help="Survey tables: the column holding the respondent id."),
        click.option("--code-interviewer", is_flag=True, help="Code interviewer turns too (they are exported either way)."),
        click.option("--interviewer", "interviewer_labels", multiple=True, metavar="LABEL",
                     help="A speaker label that marks the interviewer, besides Interviewer, INT, I, Q, Researcher, "
                          "Facilitator and Moderator. Repeatable."),
        click.option("--spacy-model", default=None, metavar="NAME",
                     help="An installed trained spaCy pipeline (e.g. en_core_web_sm); default: offline blank English."),
        click.option("--no-seed", is_flag=True,
                     help="Leave out the labelled seed set shipped with the default codebook."),
        click.option("--weak-labels", is_flag=True,
                     help="Also train on rule-matched segments as low-weight positive labels."),
        click.option("--threshold", "thresholds", multiple=True, metavar="P|CODE=P",
                     help="Classifier probability needed to suggest a code without a rule hit (default 0.5); "
                          "CODE=P sets one code's. Repeatable."),
        click.option("--veto-below", type=click.FloatRange(0, 1), default=DEFAULT_VETO_BELOW, show_default=True,
                     help="A rule hit whose classifier probability is below this is downgraded."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _parse_thresholds(values: tuple[str, ...]) -> tuple[float, tuple[tuple[str, float], ...]]:
    overall, per_code = DEFAULT_SUGGEST_AT, []
    for value in values:
        code_id, _, number = value.rpartition("=")
        try:
            probability = float(number)
        except ValueError:
            raise click.BadParameter(f"'{value}' is not a probability or CODE=probability", param_hint="--threshold")
        if not 0 < probability < 1:
            raise click.BadParameter(f"'{value}': the probability must lie between 0 and 1", param_hint="--threshold")
        if code_id:
            per_code.append((code_id, probability))
        else:
            overall = probability
    return overall, tuple(per_code)


def _modified_at(path: Path) -> str | None:
    """When a reviews file was last saved: where files disagree, the later decision counts."""
    import datetime as dt

    if not path.is_file():
        return None
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).isoformat(timespec="seconds")


def _coding_options(unit, kind, text_column, id_column, code_interviewer, interviewer_labels, spacy_model, no_seed,
                    weak_labels, thresholds, veto_below, codebook_path, classifier=True, **extra) -> CodingOptions:
    suggest_at, per_code = _parse_thresholds(thresholds)
    return CodingOptions(unit=unit, code_interviewer=code_interviewer, interviewer_labels=tuple(interviewer_labels),
                         spacy_model=spacy_model or "blank:en", classifier=classifier, seed=not no_seed,
                         weak_labels=weak_labels, suggest_at=suggest_at, veto_below=veto_below, thresholds=per_code,
                         extra={"kind": kind or "detected", "text_column": text_column or "detected",
                                "id_column": id_column or "detected",
                                "codebook": str(codebook_path or default_codebook_path()), **extra})


@cli.command()
@_corpus_options
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The workbook to write (.xlsx), or a folder with --format csv.")
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="xlsx", show_default=True,
              help="xlsx: one workbook; csv: a folder with one CSV per sheet.")
@click.option("--train", "train_paths", multiple=True, type=click.Path(path_type=Path), metavar="LABELS",
              help="Human labels to train the classifier on: a gold CSV or a reviewed workbook. Repeatable.")
@click.option("--no-classifier", is_flag=True, help="Rules only: no classifier suggestions.")
@click.option("--reviews", "review_paths", multiple=True, type=click.Path(path_type=Path), metavar="WORKBOOK",
              help="A reviewed workbook whose human decisions are final in this run and train the classifier. "
                   "Repeatable; where files disagree, the most recently saved decision counts.")
@click.option("--coder", default=None, help="Attribute --reviews decisions to this coder (default: each file's name).")
@click.option("--force", is_flag=True, help="Replace an earlier output even if it holds review work.")
@click.option("-v", "--verbose", is_flag=True, help="Also list skipped files and other notes.")
@_quiet_option
def code(paths, output, output_format, codebook_path, train_paths, no_classifier, review_paths, coder, force, verbose,
         quiet, **corpus_options) -> None:
    """Code PATHS (files or folders) and write coded segments with their evidence.

    Example: qualcode code corpora/sample -o coded.xlsx
    """
    check_output_path(output, [*paths, *review_paths, *train_paths])
    ensure_replaceable(output, force=force)
    codebook = load_codebook(codebook_path)
    options = _coding_options(codebook_path=codebook_path, classifier=not no_classifier, format=output_format,
                              train=", ".join(str(path) for path in train_paths) or "none",
                              reviews=", ".join(str(path) for path in review_paths) or "none", **corpus_options)
    imports = [read_review_workbook(path, coder=coder or path.stem, code_ids=codebook.code_ids,
                                    decided_at=_modified_at(path)) for path in review_paths]
    progress = _ProgressBars(enabled=not quiet and sys.stderr.isatty())
    with _logging_to_stderr(quiet, verbose):
        try:
            corpus = read_documents(paths, kind=corpus_options["kind"], text_column=corpus_options["text_column"],
                                    id_column=corpus_options["id_column"],
                                    progress=lambda done, total: progress("read", 1, total))
            training = [example for path in train_paths
                        for example in examples_from_labels(read_label_file(path, codebook.code_ids))]
            result = code_corpus(corpus, codebook, options, training=training, progress=progress,
                                 reviews=[decision for review in imports for decision in review.decisions])
        finally:
            progress.close()
        write_result(result, output, format=output_format, force=force)
    if not quiet:
        for review in imports:
            click.echo(f"{review.path}: {review.summary()}", err=True)
        if result.orphaned_reviews:
            click.echo(f"Warning: {len(result.orphaned_reviews)} human decisions match no segment now; "
                       "they are listed in the 'Orphaned reviews' sheet", err=True)
        coded = len({a.segment_id for a in result.assignments if a.status in COUNTED_STATUSES})
        sources = Counter(a.source for a in result.assignments if a.status in COUNTED_STATUSES)
        by_source = ", ".join(f"{count} by {source}" for source, count in sorted(sources.items()))
        skipped = f"; {len(corpus.skipped)} files skipped (-v lists them)" if corpus.skipped and not verbose else ""
        click.echo(f"Coded {len(result.segments)} segments from {len(corpus.documents)} documents: "
                   f"{sum(sources.values())} codings ({by_source or 'none'}) on {coded} segments -> {output}{skipped}",
                   err=True)


@cli.command()
@_corpus_options
@click.option("--gold", "gold_path", required=True, type=click.Path(path_type=Path),
              help="Human coding of the same segments: a CSV (segment_id or document/start/end, one 0/1 column "
                   "per code) or a reviewed workbook.")
@click.option("--folds", type=click.IntRange(2, 50), default=5, show_default=True,
              help="Cross-validation folds, grouped by document.")
@click.option("--min-rule-precision", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Flag rules whose precision against the gold is below this.")
@click.option("--no-learning-curve", is_flag=True, help="Skip the learning curve (faster).")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Also write the report, with every disagreement, to this workbook.")
@_quiet_option
def evaluate(paths, codebook_path, gold_path, folds, min_rule_precision, no_learning_curve, output, quiet,
             **corpus_options) -> None:
    """Compare machine coding of PATHS with a human gold standard, per code and overall.

    Example: qualcode evaluate corpora/sample --gold corpora/sample-gold.csv
    """
    from qualcode.evaluate import evaluate as run_evaluation
    from qualcode.export.reports import evaluation_tables, format_evaluation, write_report

    if output is not None:
        check_output_path(output, [*paths, gold_path])
    codebook = load_codebook(codebook_path)
    options = _coding_options(codebook_path=codebook_path, **corpus_options)
    with _logging_to_stderr(quiet, False):
        corpus = read_documents(paths, kind=corpus_options["kind"], text_column=corpus_options["text_column"],
                                id_column=corpus_options["id_column"])
        gold = read_label_file(gold_path, codebook.code_ids)
        report = run_evaluation(corpus, codebook, gold, options=options, folds=folds,
                                min_rule_precision=min_rule_precision, learning_curve=not no_learning_curve)
    click.echo(format_evaluation(report))
    if output is not None:
        write_report(evaluation_tables(report), output)
        if not quiet:
            click.echo(f"Report with {len(report.disagreements)} disagreements -> {output}", err=True)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--codebook", "codebook_path", type=click.Path(path_type=Path),
              help="The codebook whose code ids name the code columns in plain CSV files (default: built-in).")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write the figures and every disagreement to this workbook.")
@_quiet_option
def agree(files, codebook_path, output, quiet) -> None:
    """Intercoder agreement between two or more coders' files of the same segments.

    Each file is a qualcode workbook (an unreviewed one counts as coder "qualcode") or a CSV with
    segment_id (or document, start, end) and one 0/1 column per code.

    Example: qualcode agree coder_a.csv coder_b.csv -o disagreements.xlsx
    """
    from qualcode.agreement import compare_coders
    from qualcode.export.reports import agreement_tables, format_agreement, write_report

    if len(files) < 2:
        raise click.UsageError("give at least two coders' files")
    if output is not None:
        check_output_path(output, files)
    codebook = load_codebook(codebook_path)
    report = compare_coders([read_label_file(path, codebook.code_ids) for path in files])
    click.echo(format_agreement(report))
    if output is not None:
        write_report(agreement_tables(report), output)
        if not quiet:
            click.echo(f"Agreement and {len(report.disagreements)} disagreements -> {output}", err=True)


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
