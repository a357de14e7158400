"""The ``qualcode`` command line: parse options, call the library, report in one line.

Every ``QualcodeError`` becomes ``Error: <message>`` on stderr and its exit code; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import click

from qualcode import __version__
from qualcode.codebook import codebook_warnings, load_codebook, validate_codebook
from qualcode.coding import CodingOptions
from qualcode.combine import DEFAULT_VETO_BELOW, SUGGEST_AT_BY_REPRESENTATION
from qualcode.errors import (
    CodebookError,
    InputDataError,
    InputMissingError,
    OutputError,
    QualcodeError,
)
from qualcode.export import FORMATS, check_output_path, ensure_replaceable
from qualcode.export.atomic import atomic_file
from qualcode.ingest import read_documents
from qualcode.labels import read_label_file
from qualcode.llm.coder import CHARS_PER_TOKEN
from qualcode.llm.settings import (
    API_KEY_VARIABLE,
    DEFAULT_CONCURRENCY,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
)
from qualcode.models import UNITS
from qualcode.reviews import read_review_workbook
from qualcode.run import (
    ReadOptions,
    code_paths,
    llm_settings,
    opened_llm_coder,
    plan_llm_requests,
    recorded,
    with_study_defaults,
)
from qualcode.segment import DEFAULT_PIPELINE, build_pipeline
from qualcode.semantic import DEFAULT_REPRESENTATION, REPRESENTATIONS, default_representation
from qualcode.study import Study, find_study


class _QualcodeGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            with _logging_to_stderr(quiet=False, verbose=False):
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

    _LABELS = {
        "read": "Reading",
        "segment": "Segmenting",
        "code": "Coding",
        "embed": "Embedding",
        "sentences": "Reading the sentences of suggested passages",
        "llm": "Asking the language model",
    }

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._stage: str | None = None
        self._bar = None

    def __call__(self, stage: str, advance: int, total: int, note: str | None = None) -> None:
        if not self.enabled:
            return
        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = click.progressbar(
                length=total,
                label=self._LABELS.get(stage, stage),
                file=sys.stderr,
                item_show_func=lambda item: item,
            )
            self._bar.__enter__()
        self._bar.update(advance, note)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _quiet_option(function):
    return click.option(
        "-q", "--quiet", is_flag=True, help="No progress bars or summary; errors only."
    )(function)


@click.group(cls=_QualcodeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qualcode")
def cli() -> None:
    """Code interview transcripts, essays and survey answers against a qualitative codebook."""


def _corpus_options(function):
    """Options that decide what is read and how it is cut into segments; shared by code and evaluate."""
    options = [
        click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path)),
        click.option(
            "--codebook",
            "codebook_path",
            type=click.Path(path_type=Path),
            help="Codebook YAML (default: the built-in relationship-based social work themes).",
        ),
        click.option(
            "--unit",
            type=click.Choice(UNITS),
            default=None,
            help="Segment unit. Default: turn for transcripts, paragraph for essays, document for survey rows.",
        ),
        click.option(
            "--kind",
            type=click.Choice(["transcript", "essay"]),
            default=None,
            help="Treat every text file as this kind instead of detecting speaker turns.",
        ),
        click.option("--text-column", help="Survey tables: the column holding the answer text."),
        click.option("--id-column", help="Survey tables: the column holding the respondent id."),
        click.option(
            "--sheet", help="Survey workbooks (.xlsx): the sheet to read (default: the first)."
        ),
        click.option(
            "--code-interviewer",
            is_flag=True,
            help="Code interviewer turns too (they are exported either way).",
        ),
        click.option(
            "--interviewer",
            "interviewer_labels",
            multiple=True,
            metavar="LABEL",
            help="A speaker label that marks the interviewer, besides Interviewer, INT, I, Q, Researcher, "
            "Facilitator and Moderator. Repeatable.",
        ),
        click.option(
            "--spacy-model",
            default=None,
            metavar="NAME",
            help="An installed trained spaCy pipeline (e.g. en_core_web_sm); default: offline blank English.",
        ),
        click.option(
            "--no-seed",
            is_flag=True,
            help="Leave out the labelled seed set shipped with the default codebook.",
        ),
        click.option(
            "--weak-labels",
            is_flag=True,
            help="Also train on rule-matched segments as low-weight positive labels.",
        ),
        click.option(
            "--threshold",
            "thresholds",
            multiple=True,
            metavar="P|CODE=P",
            help="Classifier probability needed to suggest a code without a rule hit (default: "
            + ", ".join(
                f"{value:g} with {name}" for name, value in SUGGEST_AT_BY_REPRESENTATION.items()
            )
            + "); CODE=P sets one code's. Repeatable.",
        ),
        click.option(
            "--veto-below",
            type=click.FloatRange(0, 1),
            default=None,
            help=f"A rule hit whose classifier probability is below this is downgraded (default {DEFAULT_VETO_BELOW}).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _parse_thresholds(
    values: tuple[str, ...],
) -> tuple[float | None, tuple[tuple[str, float], ...]]:
    """The overall threshold (None: the representation's default) and the per-code ones."""
    overall, per_code = None, []
    for value in values:
        code_id, _, number = value.rpartition("=")
        try:
            probability = float(number)
        except ValueError:
            raise click.BadParameter(
                f"'{value}' is not a probability or CODE=probability", param_hint="--threshold"
            ) from None
        if not 0 < probability < 1:
            raise click.BadParameter(
                f"'{value}': the probability must lie between 0 and 1", param_hint="--threshold"
            )
        if code_id:
            per_code.append((code_id, probability))
        else:
            overall = probability
    return overall, tuple(per_code)


def ensure_replaceable_text(output: Path) -> None:
    """A codebook YAML is a researcher's work: never replace one silently."""
    if Path(output).exists():
        raise OutputError(
            f"{output}: already exists; choose another name (a codebook is never overwritten)"
        )


def _show_report(text: str, tables, output: Path | None, quiet: bool, saved: str) -> None:
    """Print a report; with -o, also write its tables as a workbook and say where."""
    from qualcode.export.reports import write_report

    click.echo(text)
    if output is not None:
        write_report(tables, output)
        if not quiet:
            click.echo(f"{saved} -> {output}", err=True)


def _study_option(function):
    return click.option(
        "--study",
        "study_dir",
        type=click.Path(path_type=Path),
        default=None,
        help="The study folder (default: the nearest folder at or above this one with qualcode.toml).",
    )(function)


def _open_study(study_dir: Path | None, *, required: bool = False) -> Study | None:
    root = study_dir or find_study()
    if root is None:
        if required:
            raise InputMissingError(
                "no qualcode study here or above; create one with qualcode init DIR, or pass --study DIR"
            )
        return None
    study = Study.open(root)
    click.get_current_context().call_on_close(study.close)
    return study


def _library_options(
    study: Study | None,
    *,
    unit,
    kind,
    text_column,
    id_column,
    sheet,
    code_interviewer,
    interviewer_labels,
    spacy_model,
    no_seed,
    weak_labels,
    thresholds,
    veto_below,
    **settings,
) -> tuple[CodingOptions, ReadOptions]:
    """The corpus options as the library takes them; in a study, its settings where none given."""
    model_thresholds = None
    if study is not None and not thresholds:
        model_thresholds = study.config.pinned_thresholds
        if study.config.suggest_at is not None:
            # The study's threshold is checked as a --threshold would be.
            thresholds = (str(study.config.suggest_at),)
    suggest_at, per_code = _parse_thresholds(thresholds)
    options = CodingOptions(
        unit=unit,
        code_interviewer=code_interviewer,
        interviewer_labels=tuple(interviewer_labels),
        spacy_model=spacy_model or DEFAULT_PIPELINE,
        seed=not no_seed,
        weak_labels=weak_labels,
        suggest_at=suggest_at,
        veto_below=DEFAULT_VETO_BELOW if veto_below is None else veto_below,
        thresholds=per_code,
        model_thresholds=model_thresholds,
        **settings,
    )
    if study is not None:
        chosen = {
            "suggest_at",
            "llm",
            "representation",
            *(["veto_below"] if veto_below is not None else []),
        }
        options = with_study_defaults(options, study.config, chosen=chosen)
    return options, ReadOptions(kind, text_column, id_column, sheet)


def _representation(requested: str | None, quiet: bool) -> str:
    """The representation asked for, else the default, saying why when the default cannot be had."""
    if requested is not None:
        return requested
    chosen, why_not_default = default_representation()
    if why_not_default and not quiet:
        click.echo(f"Warning: {why_not_default}", err=True)
    return chosen


def _llm_options(function):
    """--llm and its settings; shared by code, evaluate and suggest."""
    options = [
        click.option(
            "--llm",
            "llm_model",
            default=None,
            metavar="MODEL",
            help="Also ask this language model (e.g. llama3.1:8b) about every segment, as a third coder "
            "beside rules and classifier; its judgement decides where it answers. Sends the codebook "
            "and each segment to --llm-url. Needs pip install 'qualcode[llm]'.",
        ),
        click.option(
            "--llm-url",
            default=None,
            metavar="URL",
            help=f"An OpenAI-compatible endpoint (default: {DEFAULT_URL}, Ollama on this machine). "
            f"An API key is read from the environment variable {API_KEY_VARIABLE}.",
        ),
        click.option(
            "--llm-concurrency",
            type=click.IntRange(1, 256),
            default=None,
            help=f"Requests in flight at once (default {DEFAULT_CONCURRENCY}).",
        ),
        click.option(
            "--llm-timeout",
            type=click.FloatRange(0, min_open=True),
            default=None,
            metavar="SECONDS",
            help=f"Seconds to wait for one answer before trying again (default {DEFAULT_TIMEOUT:g}).",
        ),
        click.option(
            "--llm-dry-run",
            is_flag=True,
            help="Say how many segments and roughly how many tokens --llm would send, and send nothing.",
        ),
        click.option(
            "--no-llm",
            is_flag=True,
            help="Ask no language model, even if the study's qualcode.toml names one.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _llm_settings(model, url, concurrency, timeout, no_llm, dry_run, study=None):
    """The run's language-model settings: the options, else the study's [llm] table; None when no model is named."""
    if no_llm:
        return None
    settings = llm_settings(
        study.config if study is not None else None,
        model=model,
        url=url,
        concurrency=concurrency,
        timeout=timeout,
    )
    if settings is None:
        given = [
            name
            for name, value in (
                ("--llm-dry-run", dry_run or None),
                ("--llm-url", url),
                ("--llm-concurrency", concurrency),
                ("--llm-timeout", timeout),
            )
            if value is not None
        ]
        if given:
            raise click.UsageError(
                f"{given[0]} needs a model: --llm MODEL (or model in the study's qualcode.toml)"
            )
    return settings


def _llm_coder(settings, study, bars):
    """The coder for --llm, open until the command ends: the API key from the environment."""
    return click.get_current_context().with_resource(
        opened_llm_coder(
            settings,
            study_root=study.root if study is not None else None,
            api_key=os.environ.get(API_KEY_VARIABLE) or None,
            progress=bars,
        )
    )


def _llm_dry_run(settings, study, corpus, codebook, options, gold=None) -> None:
    """Print what --llm would send for the corpus's coded segments (those of the ``gold``, if given); send nothing."""
    plan, cache = plan_llm_requests(
        settings,
        corpus,
        codebook,
        options,
        gold=gold,
        study_root=study.root if study is not None else None,
    )
    where = "this machine" if settings.is_local else "another machine"
    click.echo(
        f"--llm-dry-run: {plan.segments} segment{'s' if plan.segments != 1 else ''} to code; "
        f"{plan.cached} answered already in {cache}; "
        f"{plan.to_send} would be sent to {settings.model} at {settings.endpoint} ({where}), with the codebook: "
        f"about {plan.prompt_tokens:,} prompt tokens and {plan.completion_tokens:,} answer tokens "
        f"(at {CHARS_PER_TOKEN} characters a token). Nothing was sent."
    )


@contextlib.contextmanager
def _garbage_collected_less():
    """Keep Python's cyclic garbage collector off what is loaded before coding: spaCy, the documents.

    A full collection rescans every object alive, and a million-word run made six of them, about
    0.4 s of the process that writes the workbook. Freezing what is loaded (forked workers share
    it untouched) and collecting the young generation less often halve the collector's time. The
    command undoes both when it ends; the library never touches the collector.
    """
    import gc

    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@cli.command()
@_corpus_options
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="The workbook to write (.xlsx), or a folder with --format csv.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="xlsx",
    show_default=True,
    help="xlsx: one workbook; csv: a folder with one CSV per sheet.",
)
@click.option(
    "--train",
    "train_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    metavar="LABELS",
    help="Human labels to train the classifier on: a gold CSV or a reviewed workbook. Repeatable.",
)
@click.option("--no-classifier", is_flag=True, help="Rules only: no classifier suggestions.")
@click.option(
    "--representation",
    type=click.Choice(REPRESENTATIONS),
    default=None,
    help="What the classifier reads: words and word pairs, sentence embeddings (all-mpnet-base-v2; "
    "about 1,000 words a second on two cores, each text once; needs the model, see README), or both. "
    f"Default: {DEFAULT_REPRESENTATION} when the model is installed, else ngrams.",
)
@click.option(
    "--no-model-cache",
    is_flag=True,
    help="Train the classifier even if a model trained on the same data is in the model cache "
    "($QUALCODE_CACHE_DIR, else ~/.cache/qualcode).",
)
@click.option(
    "--no-sentence-evidence",
    is_flag=True,
    help="Do not read each sentence of a passage the embedding classifier suggests a code for, to "
    "name the one that carries it: quicker on a first run, with similar examples as the only evidence.",
)
@click.option(
    "--reviews",
    "review_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    metavar="WORKBOOK",
    help="A reviewed workbook whose human decisions are final in this run and train the classifier. "
    "Repeatable; where files disagree, the most recently saved decision counts.",
)
@click.option(
    "--coder",
    default=None,
    help="Attribute --reviews decisions to this coder (default: each file's name).",
)
@click.option(
    "--force", is_flag=True, help="Replace an earlier output even if it holds review work."
)
@click.option(
    "--jobs",
    type=click.IntRange(0, 512),
    default=0,
    show_default=True,
    help="Processes for segmenting and rule matching; 0: every core when the corpus is large enough to gain.",
)
@click.option(
    "--dask",
    "dask_address",
    default=None,
    metavar="SCHEDULER_ADDRESS",
    help="Run segmenting and rule matching on a Dask cluster (pip install 'qualcode[dask]').",
)
@_llm_options
@_study_option
@click.option("-v", "--verbose", is_flag=True, help="Also list skipped files and other notes.")
@_quiet_option
def code(
    paths,
    output,
    output_format,
    codebook_path,
    train_paths,
    no_classifier,
    representation,
    no_model_cache,
    no_sentence_evidence,
    review_paths,
    coder,
    force,
    jobs,
    dask_address,
    llm_model,
    llm_url,
    llm_concurrency,
    llm_timeout,
    llm_dry_run,
    no_llm,
    study_dir,
    verbose,
    quiet,
    **corpus_options,
) -> None:
    """Code PATHS (files or folders) and write coded segments with their evidence.

    Inside a study (see qualcode init), every human decision stored in it is applied and the run
    is recorded; otherwise the run is stateless.

    Example: qualcode code corpora/sample -o coded.xlsx
    """
    check_output_path(output, [*paths, *review_paths, *train_paths])
    study = _open_study(study_dir)
    llm = _llm_settings(
        llm_model, llm_url, llm_concurrency, llm_timeout, no_llm, llm_dry_run, study
    )
    if representation is None and study is not None:
        representation = study.config.representation  # every round of a study reads the same way
    representation = _representation(representation, quiet or no_classifier)
    codebook_path = codebook_path or (study.config.codebook if study is not None else None)
    options, reading = _library_options(
        study,
        classifier=not no_classifier,
        model_cache=not no_model_cache,
        sentence_evidence=not no_sentence_evidence,
        representation=representation,
        jobs=jobs,
        dask=dask_address,
        llm=llm,
        **corpus_options,
    )
    with _logging_to_stderr(quiet, verbose):
        if llm_dry_run:
            codebook = load_codebook(codebook_path)
            _llm_dry_run(llm, study, reading.read(paths), codebook, options)
            return
        progress = _ProgressBars(enabled=not quiet and sys.stderr.isatty())
        try:
            summary = code_paths(
                paths,
                output,
                options,
                reading=reading,
                codebook=codebook_path,
                study=study,
                train=train_paths,
                reviews=review_paths,
                coder=coder,
                format=output_format,
                force=force,
                llm_api_key=os.environ.get(API_KEY_VARIABLE) or None,
                progress=progress,
                while_coding=_garbage_collected_less,
            )
        finally:
            progress.close()
    if not quiet:
        if summary.run_id is not None:
            click.echo(
                f"Recorded as run {summary.run_id} of the study in {summary.study_root}", err=True
            )
        for review in summary.review_imports:
            click.echo(f"{review.path}: {review.summary()}", err=True)
        orphaned = summary.result.orphaned_reviews
        if orphaned:
            click.echo(
                f"Warning: {len(orphaned)} human decisions match no segment now; "
                "they are listed in the 'Orphaned reviews' sheet",
                err=True,
            )
        skipped = summary.corpus.skipped
        more = f"; {len(skipped)} files skipped (-v lists them)" if skipped and not verbose else ""
        click.echo(summary.describe() + more, err=True)


@cli.command()
@_corpus_options
@click.option(
    "--gold",
    "gold_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Human coding of the same segments: a CSV (segment_id or document/start/end, one 0/1 column "
    "per code) or a reviewed workbook.",
)
@click.option(
    "--folds",
    type=click.IntRange(2, 50),
    default=5,
    show_default=True,
    help="Cross-validation folds, grouped by document (see --group-by).",
)
@click.option(
    "--group-by",
    default="document",
    show_default=True,
    metavar="document|folder|ATTRIBUTE",
    help="What a fold keeps together: each document, each folder of documents (a participant, a "
    "source), or the documents sharing a value of an attribute such as a survey column.",
)
@click.option(
    "--representation",
    type=click.Choice([*REPRESENTATIONS, "all"]),
    default=None,
    help="What the classifier reads: words and word pairs, sentence embeddings (needs the model: see "
    "README), both, or all three one after the other, compared. "
    f"Default: {DEFAULT_REPRESENTATION} when the model is installed, else ngrams.",
)
@click.option(
    "--min-rule-precision",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Flag rules whose precision against the gold is below this.",
)
@click.option("--no-learning-curve", is_flag=True, help="Skip the learning curve (faster).")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Also write the report, with every disagreement, to this workbook.",
)
@_llm_options
@_quiet_option
def evaluate(
    paths,
    codebook_path,
    gold_path,
    folds,
    group_by,
    representation,
    min_rule_precision,
    no_learning_curve,
    output,
    llm_model,
    llm_url,
    llm_concurrency,
    llm_timeout,
    llm_dry_run,
    no_llm,
    quiet,
    **corpus_options,
) -> None:
    """Compare machine coding of PATHS with a human gold standard, per code and overall.

    Example: qualcode evaluate corpora/sample --gold corpora/sample-gold.csv
    """
    from qualcode.evaluate import evaluate as run_evaluation
    from qualcode.export.reports import evaluation_tables, format_evaluation, format_representations

    if output is not None:
        check_output_path(output, [*paths, gold_path])
    codebook = load_codebook(codebook_path)
    llm = _llm_settings(llm_model, llm_url, llm_concurrency, llm_timeout, no_llm, llm_dry_run)
    representation = _representation(representation, quiet)
    options, reading = _library_options(None, llm=llm, **corpus_options)
    options = recorded(options, reading, codebook_path)
    with _logging_to_stderr(quiet, False):
        corpus = reading.read(paths)
        gold = read_label_file(gold_path, codebook.code_ids)
        if llm_dry_run:
            _llm_dry_run(llm, None, corpus, codebook, options, gold)
            return
        nlp = build_pipeline(options.spacy_model)
        progress = _ProgressBars(enabled=not quiet and sys.stderr.isatty())
        llm_coder = _llm_coder(llm, None, progress)
        chosen = REPRESENTATIONS if representation == "all" else (representation,)
        try:
            reports = [
                run_evaluation(
                    corpus,
                    codebook,
                    gold,
                    options=options,
                    folds=folds,
                    group_by=group_by,
                    representation=each,
                    min_rule_precision=min_rule_precision,
                    learning_curve=not no_learning_curve,
                    nlp=nlp,
                    llm=llm_coder,
                )
                for each in chosen
            ]
        finally:
            progress.close()
    text = "\n\n".join(format_evaluation(report) for report in reports)
    if len(reports) > 1:
        text += "\n\n" + format_representations(reports)
    _show_report(
        text,
        evaluation_tables(reports[-1] if len(reports) == 1 else reports[0]),
        output,
        quiet,
        f"Report with {len(reports[0].disagreements)} disagreements",
    )


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--codebook",
    "codebook_path",
    type=click.Path(path_type=Path),
    help="The codebook whose code ids name the code columns in plain CSV files (default: built-in).",
)
@click.option(
    "--coders",
    "study_coders",
    is_flag=True,
    help="Also compare the coders whose decisions are stored in the study (segments each decided in full).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Write the figures and every disagreement to this workbook.",
)
@_study_option
@_quiet_option
def agree(files, codebook_path, study_coders, output, study_dir, quiet) -> None:
    """Intercoder agreement between two or more coders' files of the same segments.

    Each file is a qualcode workbook (an unreviewed one counts as coder "qualcode") or a CSV with
    segment_id (or document, start, end) and one 0/1 column per code. With --coders, the
    coders whose reviews a study holds take part too.

    Example: qualcode agree coder_a.csv coder_b.csv -o disagreements.xlsx
    """
    from qualcode.agreement import compare_coders
    from qualcode.export.reports import agreement_tables, format_agreement

    if output is not None:
        check_output_path(output, files)
    study = _open_study(study_dir, required=True) if study_coders else None
    codebook = load_codebook(codebook_path or (study.config.codebook if study else None))
    label_files = [read_label_file(path, codebook.code_ids) for path in files]
    if study is not None:
        label_files += study.coder_labels(codebook.code_ids)
    if len(label_files) < 2:
        raise click.UsageError(
            "give at least two coders' files (or --coders in a study with two coders' reviews)"
        )
    report = compare_coders(label_files)
    _show_report(
        format_agreement(report),
        agreement_tables(report),
        output,
        quiet,
        f"Agreement and {len(report.disagreements)} disagreements",
    )


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--codebook",
    "codebook_path",
    type=click.Path(path_type=Path),
    help="The codebook to start from (copied into the study; default: the built-in one).",
)
@click.option("--coder", required=True, help="Your name, recorded with every decision you import.")
@click.option(
    "--unit",
    type=click.Choice(UNITS),
    default=None,
    help="Segment unit for the study (default: by kind).",
)
@click.option(
    "--representation",
    type=click.Choice(REPRESENTATIONS),
    default=None,
    help="What the classifier reads in every round of the study (kept in qualcode.toml). "
    f"Default: {DEFAULT_REPRESENTATION} when the model is installed, else ngrams.",
)
def init(directory, codebook_path, coder, unit, representation) -> None:
    """Create a study in DIRECTORY: qualcode.toml, codebook.yaml and the qualcode.sqlite history.

    Example: qualcode init my-study --coder "Ana Ruiz"
    """
    if codebook_path is not None:
        load_codebook(codebook_path)
    with Study.create(
        directory, coder=coder, codebook=codebook_path, unit=unit, representation=representation
    ) as study:
        click.echo(
            f"Created a study in {study.root}: edit {study.config.codebook.name}, then run qualcode code PATH -o OUT.xlsx "
            "inside it"
        )


@cli.command()
@_study_option
def status(study_dir) -> None:
    """Show the study: documents, segments, reviews per coder, codings per source, the codebook.

    Example: qualcode status
    """
    with _open_study(study_dir, required=True) as study:
        codebook = load_codebook(study.config.codebook)
        state = study.status(codebook)
    click.echo(f"Study: {study.root}")
    click.echo(f"Codebook: {state.codebook}")
    click.echo(
        f"Runs: {state.runs}; documents: {state.documents}; segments in the latest run: {state.segments}"
    )
    sources = (
        ", ".join(f"{count} by {source}" for source, count in sorted(state.codes_by_source.items()))
        or "none yet"
    )
    click.echo(f"Codings in the latest run: {sources}")
    for coder, segments in sorted(state.reviewed_segments.items()):
        click.echo(
            f"Reviewed by {coder}: {segments} segments, {state.decisions_by_coder[coder]} decisions"
        )
    if not state.reviewed_segments:
        click.echo("No reviews imported yet (qualcode review import WORKBOOK)")
    for code_id, count in sorted(state.retired_code_decisions.items()):
        click.echo(f"Retired code {code_id}: {count} decisions kept")
    for code_id, count in sorted(state.rereview.items()):
        click.echo(f"Replaced code {code_id}: {count} decisions flagged for re-review")


@cli.command()
@_study_option
def history(study_dir) -> None:
    """List the study's runs, review imports and codebook versions with their dates.

    Example: qualcode history
    """
    with _open_study(study_dir, required=True) as study:
        events = study.history()
    for when, what, detail in events:
        click.echo(f"{when}  {what:<10} {detail}")
    if not events:
        click.echo("Nothing yet: run qualcode code PATH -o OUT.xlsx inside the study")


@cli.group()
def review() -> None:
    """Bring a researcher's decisions from a reviewed workbook into the study."""


@review.command("import")
@click.argument("workbook", type=click.Path(path_type=Path))
@click.option("--coder", default=None, help="Who made the decisions (default: the study's coder).")
@_study_option
def review_import(workbook, coder, study_dir) -> None:
    """Store the decisions in WORKBOOK in the study, all or nothing.

    Example: qualcode review import coded.xlsx --coder "Ana Ruiz"
    """
    with _open_study(study_dir, required=True) as study:
        coder = coder or study.config.coder
        if not coder:
            raise click.UsageError("say who reviewed: --coder NAME (or set coder in qualcode.toml)")
        codebook = load_codebook(study.config.codebook)
        imported = read_review_workbook(workbook, coder=coder, code_ids=codebook.code_ids)
        outcome = study.import_reviews(imported)
    repeated = (
        f"; {imported.repeated} cells repeated a decision made elsewhere in it"
        if imported.repeated
        else ""
    )
    click.echo(f"Imported {workbook}: {imported.summary()}: {outcome}{repeated}")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-n",
    "limit",
    type=click.IntRange(1, 100_000),
    default=30,
    show_default=True,
    help="How many segments to suggest.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="The review workbook to write.",
)
@click.option(
    "--codebook",
    "codebook_path",
    type=click.Path(path_type=Path),
    help="Codebook YAML (default: the study's).",
)
@click.option(
    "--force", is_flag=True, help="Replace an earlier output even if it holds review work."
)
@_llm_options
@_study_option
@_quiet_option
def suggest(
    paths,
    limit,
    output,
    codebook_path,
    force,
    llm_model,
    llm_url,
    llm_concurrency,
    llm_timeout,
    llm_dry_run,
    no_llm,
    study_dir,
    quiet,
) -> None:
    """Write the segments whose review would teach the classifier most, ready to review and import.

    Without PATHS, the study's documents are used.

    Example: qualcode suggest -n 30 -o review.xlsx
    """
    from qualcode.coding import run_coding
    from qualcode.export.reports import suggestion_table
    from qualcode.export.tables import all_tables
    from qualcode.export.xlsx import write_tables
    from qualcode.suggest import rank_for_review, restrict_to

    check_output_path(output, paths)
    checked = ensure_replaceable(output, force=force)
    study = _open_study(study_dir, required=not paths)
    codebook = load_codebook(codebook_path or (study.config.codebook if study else None))
    corpus = read_documents(paths) if paths else study.corpus()
    decisions = study.decisions() if study else []
    llm = _llm_settings(
        llm_model, llm_url, llm_concurrency, llm_timeout, no_llm, llm_dry_run, study
    )
    options = CodingOptions(llm=llm)
    if study is not None:
        options = with_study_defaults(options, study.config, chosen={"llm"})
    if llm_dry_run:
        _llm_dry_run(llm, study, corpus, codebook, options)
        return
    progress = _ProgressBars(enabled=not quiet and sys.stderr.isatty())
    try:
        run = run_coding(
            corpus,
            codebook,
            options,
            reviews=decisions,
            review_coder=study.config.decisive_coder if study else None,
            llm=_llm_coder(llm, study, progress),
        )
    finally:
        progress.close()
    chosen = rank_for_review(run, decisions, limit=limit)
    subset = restrict_to(run.result, [s.segment_id for s in chosen])
    with atomic_file(Path(output), before_replace=checked.recheck) as temporary:
        write_tables([*all_tables(subset), suggestion_table(chosen)], temporary, codebook)
    if not quiet:
        click.echo(f"{len(chosen)} segments to review -> {output}", err=True)


@cli.group()
def codebook() -> None:
    """Check, compare and inspect codebooks."""


@codebook.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path), help="The .qdc file to write."
)
def codebook_export(path, output) -> None:
    """Write a codebook as REFI-QDA Codebook Exchange (.qdc) for NVivo, ATLAS.ti, MAXQDA, QualCoder.

    Codes, hierarchy, names, colours and definitions (as descriptions) travel; rules and examples
    stay in the YAML (codebook import --base puts them back).

    Example: qualcode codebook export codebooks/relationship-themes.yaml -o themes.qdc
    """
    from qualcode.interop.qdc import export_qdc

    check_output_path(output, [path])
    codebook = load_codebook(path)
    data = export_qdc(codebook)
    with atomic_file(Path(output)) as temporary:
        temporary.write_bytes(data)
    click.echo(f"{output}: {codebook.name}, {data.count(b'<Code ')} codes", err=True)


@codebook.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="The codebook YAML to write.",
)
@click.option(
    "--base",
    "base_path",
    type=click.Path(path_type=Path),
    help="A qualcode codebook whose rules, examples and criteria the recognised codes keep.",
)
def codebook_import(path, output, base_path) -> None:
    """Turn a REFI-QDA codebook (.qdc) from any tool into a qualcode codebook YAML.

    Example: qualcode codebook import nvivo-export.qdc -o codebook.yaml --base codebooks/relationship-themes.yaml
    """
    from qualcode.codebook import dump_codebook, parse_codebook
    from qualcode.interop.qdc import import_qdc

    check_output_path(output, [path, *([base_path] if base_path else [])])
    ensure_replaceable_text(output)
    codebook = import_qdc(path, base=load_codebook(base_path) if base_path else None)
    text = dump_codebook(codebook)
    _, problems = parse_codebook(text, str(output))
    if problems:
        raise CodebookError(output, problems)
    with atomic_file(Path(output)) as temporary:
        temporary.write_text(text, encoding="utf-8")
    rules = sum(len(code.rules) for code in codebook.codes)
    click.echo(f"{output}: {len(codebook.codes)} codes, {rules} rules (valid)", err=True)


@cli.group("export")
def export_group() -> None:
    """Export coded data for other tools."""


@export_group.command("qdpx")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="The .qdpx file to write.",
)
def export_qdpx_command(source, output) -> None:
    """Write a coded workbook, or a study's latest run, as a REFI-QDA project (.qdpx).

    Opens in NVivo, ATLAS.ti, MAXQDA and QualCoder: the documents, every coded segment with its
    codes, human coders as users and machine suggestions under the user "qualcode".

    Example: qualcode export qdpx coded.xlsx -o study.qdpx
    """
    from qualcode.interop.content import content_from_study, content_from_workbook
    from qualcode.interop.qdpx import export_qdpx

    check_output_path(output, [source])
    if Path(source).is_dir():
        with Study.open(source) as study:
            content = content_from_study(study)
    else:
        content = content_from_workbook(source)
    data = export_qdpx(content)
    with atomic_file(Path(output)) as temporary:
        temporary.write_bytes(data)
    click.echo(
        f"{output}: {len(content.documents)} documents, {len(content.codings)} codings", err=True
    )


@cli.group("import")
def import_group() -> None:
    """Import coded data from other tools."""


@import_group.command("qdpx")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="The labels CSV to write (segment_id, document, start, end, text, one 0/1 column per code).",
)
@click.option(
    "--unit", type=click.Choice(UNITS), default=None, help="Segment unit (default: by kind)."
)
@click.option(
    "--codebook",
    "codebook_path",
    type=click.Path(path_type=Path),
    help="Name the code columns by this codebook's ids (codes matched by name); others are left out.",
)
@click.option(
    "--user",
    default=None,
    help="Only this user's codings (default: everyone's but qualcode's own).",
)
@click.option(
    "--include-machine",
    is_flag=True,
    help="Also take the codings of the user 'qualcode' (machine suggestions in a qualcode export).",
)
@click.option(
    "--texts",
    "texts_dir",
    type=click.Path(path_type=Path),
    help="Also write each source's text to this folder, so qualcode code can read it.",
)
@click.option(
    "--save-codebook",
    "codebook_out",
    type=click.Path(path_type=Path),
    help="Also write the project's codes as a qualcode codebook YAML (rules empty, descriptions kept).",
)
def import_qdpx_command(
    path, output, unit, codebook_path, user, include_machine, texts_dir, codebook_out
) -> None:
    """Turn a project coded in another tool into training labels for qualcode.

    A code covers a segment when its coded selections cover more than half of the segment. The
    user "qualcode" (machine suggestions in a qualcode export) is left out unless --include-machine.

    Example: qualcode import qdpx nvivo-project.qdpx -o labels.csv
    """
    from qualcode.interop.qdpx import (
        choose_users,
        covered_codes,
        label_warnings,
        read_qdpx,
        relabel_for_codebook,
        write_labels,
        write_texts,
    )
    from qualcode.segment import segment_documents

    check_output_path(output, [path])
    project = read_qdpx(path)
    users = choose_users(project, user=user, include_machine=include_machine)
    segments = segment_documents(project.documents, unit=unit)
    labels = covered_codes(project, segments, users=users.taken)
    code_ids = [code.code_id for code in project.codes]
    if codebook_path is not None:
        target = load_codebook(codebook_path)
        labels, unmatched = relabel_for_codebook(project, labels, target)
        if unmatched:
            click.echo(
                f"Warning: codes not in {codebook_path}, left out: {', '.join(unmatched)}", err=True
            )
        code_ids = list(target.code_ids)
    with atomic_file(Path(output)) as temporary:
        write_labels(temporary, segments, labels, code_ids)
    if texts_dir is not None:
        write_texts(project, texts_dir)
    if codebook_out is not None:
        from qualcode.codebook import dump_codebook
        from qualcode.models import Codebook

        ensure_replaceable_text(codebook_out)
        if not project.codes:
            raise InputDataError(f"{path}: the project has no codes to save")
        imported = Codebook(
            name=f"{project.name} (from {project.origin})",
            version="1",
            codes=tuple(project.codes),
            description=f"Imported from {Path(path).name} ({project.origin}).",
        )
        with atomic_file(Path(codebook_out)) as temporary:
            temporary.write_text(dump_codebook(imported), encoding="utf-8")
    for note in project.notes:
        click.echo(f"Note: {note}", err=True)
    click.echo(f"{path}: {users.describe()}", err=True)
    for warning in label_warnings(segments, labels):
        click.echo(f"Warning: {output}: {warning}", err=True)
    coded = sum(1 for codes in labels.values() if codes)
    click.echo(
        f"{path}: from {project.origin}; positions read as {project.offset_convention}; "
        f"{len(project.codes)} codes, {len(project.documents)} text sources, {len(project.selections)} coded "
        f"selections -> {len(segments)} segments, {coded} coded -> {output}",
        err=True,
    )


@codebook.command("diff")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Also write the comparison to this workbook.",
)
@click.option(
    "--no-classifier", is_flag=True, help="Compare the rules alone, without classifier suggestions."
)
@_quiet_option
def codebook_diff(old, new, paths, output, no_classifier, quiet) -> None:
    """What changed from OLD to NEW; with PATHS, the segments each code gains and loses.

    Example: qualcode codebook diff v1.yaml v2.yaml corpora/sample
    """
    from qualcode.codebook_diff import coding_impact, diff_codebooks
    from qualcode.export.reports import codebook_diff_tables, format_codebook_diff

    if output is not None:
        check_output_path(output, [old, new, *paths])
    before, after = load_codebook(old), load_codebook(new)
    changes = diff_codebooks(before, after)
    options = CodingOptions(classifier=not no_classifier)
    impact = coding_impact(read_documents(paths), before, after, options) if paths else None
    _show_report(
        format_codebook_diff(changes, impact),
        codebook_diff_tables(changes, impact),
        output,
        quiet,
        "Comparison",
    )


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
        click.echo(
            f"Error: {path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}", err=True
        )
        sys.exit(78)
    loaded = load_codebook(path)
    warnings = codebook_warnings(loaded)
    for warning in warnings:
        line, _, message = warning.removeprefix("line ").partition(": ")
        click.echo(f"{path}:{line}: warning: {message}", err=True)
    if not quiet:
        rules = sum(len(code.rules) for code in loaded.codes)
        more = f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""
        click.echo(
            f"{path}: valid; {len(loaded.codes)} codes, {rules} rules{more} "
            f"(codebook '{loaded.name}' version {loaded.version})"
        )


def _writeup_options(function):
    """What tables and report share: which codings count, and the grouping for themes by group."""
    options = [
        click.argument("source", type=click.Path(path_type=Path)),
        click.option(
            "--reviewed-only",
            is_flag=True,
            help="Count only what a human accepted or coded (default: human decisions plus the "
            "suggestions still standing).",
        ),
        click.option(
            "--by",
            "by",
            default="folder",
            show_default=True,
            metavar="ATTRIBUTE|speaker|folder",
            help="Group participants by a document attribute (e.g. role), the speaker or the source folder.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _check_writeup_output(output: Path, source: Path) -> None:
    """A write-up may go inside a study's folder (it is never read as input), but never over its source."""
    if Path(source).is_dir():
        check_output_path(output, [])
        if Path(output).resolve() == Path(source).resolve():
            raise OutputError(
                f"{output}: the output is the study folder itself; name a file or another folder"
            )
    else:
        check_output_path(output, [source])


@cli.command()
@_writeup_options
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="A file (.xlsx, .md, .tex, .docx) for all four tables, or a folder for one file per table.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["xlsx", "md", "tex", "docx", "csv"]),
    default=None,
    help="Format of a folder's files (default csv); a file's name says its format.",
)
@click.option(
    "--quotes",
    type=click.IntRange(1, 10),
    default=1,
    show_default=True,
    help="Exemplar quotes per code in the codebook table.",
)
@_quiet_option
def tables(source, output, output_format, reviewed_only, by, quotes, quiet) -> None:
    """Write-up tables from a coded workbook or a study: codebook, themes by group, co-occurrence, quote bank.

    Example: qualcode tables coded.xlsx -o tables.docx --by role
    """
    from qualcode.writeup import analyse, load_coded, write_tables, writeup_tables

    _check_writeup_output(output, source)
    analysis = analyse(load_coded(source, reviewed_only=reviewed_only), by=by)
    made = writeup_tables(analysis, quotes=quotes)
    write_tables(made, output, output_format)
    if not quiet:
        click.echo(
            f"{len(made)} tables ({', '.join(t.title.split('. ', 1)[1] for t in made)}) -> {output}",
            err=True,
        )
        click.echo(analysis.data.counting_rule(), err=True)


@cli.command()
@_writeup_options
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path), help="The HTML file to write."
)
@click.option(
    "--quotes",
    type=click.IntRange(1, 10),
    default=2,
    show_default=True,
    help="Exemplar quotes per code in the codebook section.",
)
@_quiet_option
def report(source, output, reviewed_only, by, quotes, quiet) -> None:
    """One self-contained HTML report: codebook, charts, themes by group, co-occurrence, documents, quote bank.

    It opens from a file with no network, and prints (every section opened).

    Example: qualcode report coded.xlsx -o report.html
    """
    from qualcode.writeup import analyse, load_coded, write_report

    _check_writeup_output(output, source)
    if Path(output).suffix.lower() not in (".html", ".htm"):
        raise OutputError(f"{output}: name the report's file with .html, e.g. report.html")
    analysis = analyse(load_coded(source, reviewed_only=reviewed_only), by=by)
    write_report(analysis, output, quotes=quotes)
    if not quiet:
        click.echo(
            f"Report of {analysis.documents_total} documents, {len(analysis.eligible)} passages -> {output}",
            err=True,
        )
        click.echo(analysis.data.counting_rule(), err=True)


def _stop_at_once(signum: int, frame) -> None:
    """SIGTERM (a batch system's time limit, ``kill``): remove this run's temporaries, then end.

    Raising an exception here, as Ctrl-C does, is not enough: one that lands in a finalizer or an
    import's callback is printed and dropped, and the run goes on. Ending at once loses nothing:
    outputs are renamed into place whole or not at all, a study's writes are transactions, and
    workers end with the process that started them.
    """
    if os.getpid() == _COMMAND_PID:
        from qualcode.export.atomic import remove_temporaries_in_use

        remove_temporaries_in_use()
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(
                f"Stopped by signal {signal.Signals(signum).name}; earlier outputs are as they were\n"
            )
            sys.stderr.flush()
    os._exit(128 + signum)


_COMMAND_PID = os.getpid()


def main() -> None:
    global _COMMAND_PID
    _COMMAND_PID = os.getpid()
    signal.signal(signal.SIGTERM, _stop_at_once)
    cli(prog_name="qualcode")


if __name__ == "__main__":
    main()
