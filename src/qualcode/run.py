"""A coding run as one call: what ``qualcode code`` does, from Python.

``code_paths`` reads the documents, takes a study's stored decisions and the reviewed workbooks
given, has the classifier loaded or trained (in another process, started before anything else,
when the run can use it as the chunks come back), streams the coded chunks into the workbook (or
writes a folder of CSV files) and records the run in the study. The command line parses its
options, calls it and prints the ``RunSummary`` it returns; ``qualcode evaluate`` and
``qualcode suggest`` share the set-up below (study defaults, reading options, the language model).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from qualcode.classify import examples_from_labels
from qualcode.codebook import default_codebook_path, load_codebook
from qualcode.coding import CodingOptions, code_corpus, codes_as_it_goes
from qualcode.export import ensure_replaceable, streamed_workbook, write_result
from qualcode.export.atomic import check_output_path
from qualcode.ingest import read_documents
from qualcode.labels import read_label_file
from qualcode.llm.settings import LlmSettings
from qualcode.models import COUNTED_STATUSES, Codebook, CodingResult, Corpus
from qualcode.reviews import ReviewImport, read_review_workbook
from qualcode.segment import build_pipeline
from qualcode.semantic import default_representation
from qualcode.training import start_classifier, training_process

if TYPE_CHECKING:
    from qualcode.labels import LabelFile
    from qualcode.llm.coder import LlmCoder, RequestPlan
    from qualcode.study import Study, StudyConfig

PathLike = str | os.PathLike[str]
# progress(stage, advance, total[, note]): ``advance`` more items of ``total`` are done in
# ``stage`` (read, code, embed, llm); the language model's stage also gives a note on what is left.
Progress = Callable[..., None]
# What a run uses when given no options: qualcode's defaults with the command line's --jobs 0
# (every core, when the corpus is large enough to gain).
RUN_DEFAULTS = CodingOptions(jobs=0)
logger = logging.getLogger(__name__)


def default_options() -> CodingOptions:
    """``RUN_DEFAULTS``, reading n-grams (and saying why) where the embedding model is not installed."""
    representation, why_not_default = default_representation()
    if why_not_default:
        logger.warning(why_not_default)
    return replace(RUN_DEFAULTS, representation=representation)


@dataclass(frozen=True)
class ReadOptions:
    """How the documents are read: the kind of text files; a survey table's columns and sheet."""

    kind: str | None = None
    text_column: str | None = None
    id_column: str | None = None
    sheet: str | None = None

    def read(
        self, paths: Sequence[PathLike], progress: Callable[[int, int], None] | None = None
    ) -> Corpus:
        return read_documents(
            paths,
            kind=self.kind,
            text_column=self.text_column,
            id_column=self.id_column,
            sheet=self.sheet,
            progress=progress,
        )

    def as_record(self) -> dict[str, object]:
        """For the Run sheet: what was asked for, "detected" where qualcode chose."""
        return {
            "kind": self.kind or "detected",
            "text_column": self.text_column or "detected",
            "id_column": self.id_column or "detected",
            **({"sheet": self.sheet} if self.sheet else {}),
        }


def recorded(
    options: CodingOptions, reading: ReadOptions, codebook: PathLike | None, **more: object
) -> CodingOptions:
    """``options`` recording how the documents were read, the codebook file and ``more``."""
    extra = {**reading.as_record(), "codebook": str(codebook or default_codebook_path()), **more}
    return replace(options, extra={**extra, **options.extra})


def llm_settings(
    config: StudyConfig | None = None,
    *,
    model: str | None = None,
    url: str | None = None,
    concurrency: int | None = None,
    timeout: float | None = None,
) -> LlmSettings | None:
    """The run's language model: these settings, else the study's [llm]; None without a model."""
    table = dict(config.llm) if config is not None else {}
    model = model or table.get("model")
    if not model:
        return None
    given = (("url", url), ("concurrency", concurrency), ("timeout", timeout))
    table.update({key: value for key, value in given if value is not None})
    table["model"] = model
    return LlmSettings(**table)


def with_study_defaults(
    options: CodingOptions, config: StudyConfig, *, chosen: Collection[str] = ()
) -> CodingOptions:
    """``options`` with the study's settings (its qualcode.toml) wherever the caller chose none.

    ``chosen`` names the fields the caller set on purpose, which keep their value: ``suggest_at``,
    ``veto_below``, ``llm`` and ``representation``; the others take the study's. A unit left as None is the study's,
    and the seed set is used only when both allow it.
    """
    return replace(
        options,
        unit=options.unit or config.unit,
        suggest_at=options.suggest_at if "suggest_at" in chosen else config.suggest_at,
        model_thresholds=(
            options.model_thresholds if "suggest_at" in chosen else config.pinned_thresholds
        ),
        veto_below=options.veto_below if "veto_below" in chosen else config.veto_below,
        seed=options.seed and config.seed,
        llm=options.llm if "llm" in chosen else options.llm or llm_settings(config),
        representation=(
            options.representation if "representation" in chosen else config.representation
        ),
    )


@contextlib.contextmanager
def opened_llm_coder(
    settings: LlmSettings | None,
    *,
    study_root: Path | None = None,
    api_key: str | None = None,
    progress: Progress | None = None,
) -> Iterator[LlmCoder | None]:
    """The coder for ``settings`` (None without a model), caching answers in the study if any."""
    if settings is None:
        yield None
        return
    from qualcode.llm.cache import CACHE_NAME, ResponseCache
    from qualcode.llm.coder import LlmCoder, load_openai
    from qualcode.llm.run import default_answer_cache

    load_openai()
    cache = ResponseCache(study_root / CACHE_NAME) if study_root else default_answer_cache()
    done = [0]

    def on_progress(finished: int, total: int, used: int, left: int) -> None:
        if progress is not None:
            note = f"{finished}/{total}, about {left:,} tokens left" if total else None
            progress("llm", finished - done[0], total, note)
        done[0] = finished

    try:
        yield LlmCoder(settings, api_key=api_key, cache=cache, progress=on_progress)
    finally:
        cache.close()


def plan_llm_requests(
    settings: LlmSettings,
    corpus: Corpus,
    codebook: Codebook,
    options: CodingOptions,
    *,
    study_root: Path | None = None,
    gold: LabelFile | None = None,
) -> tuple[RequestPlan, Path]:
    """What a run with ``settings`` would send for the corpus's coded segments (the ``gold``'s, if
    given), and the answer cache it looked in; nothing is sent."""
    from qualcode.llm.cache import CACHE_NAME, ResponseCache
    from qualcode.llm.coder import LlmCoder
    from qualcode.llm.run import default_answer_cache, prompts_for
    from qualcode.segment import segment_documents

    segments = segment_documents(
        corpus.documents,
        unit=options.unit,
        nlp=build_pipeline(options.spacy_model),
        interviewer_labels=options.interviewer_labels,
    )
    codable = [s for s in segments if options.code_interviewer or not s.is_interviewer]
    if gold is not None:
        from qualcode.labels import match_units

        matched, _ = match_units(gold.units, segments)
        codable = [s for s in segments if s.segment_id in matched]
    cache = ResponseCache(study_root / CACHE_NAME) if study_root else default_answer_cache()
    with cache:
        prompts = prompts_for(segments, codable, codebook)
        return LlmCoder(settings, cache=cache).plan(prompts, codebook), cache.path


@dataclass(frozen=True)
class RunSummary:
    """What a coding run produced: its result, where it was written, the reviews it took in and
    its number in the study (None outside one)."""

    result: CodingResult
    output: Path
    review_imports: tuple[ReviewImport, ...] = ()
    run_id: int | None = None
    study_root: Path | None = None

    @property
    def corpus(self) -> Corpus:
        return self.result.corpus

    def codings_by_source(self) -> Counter[str]:
        """Suggested and accepted codings (what counts as coded) by source (rule, classifier...)."""
        return Counter(a.source for a in self.result.assignments if a.status in COUNTED_STATUSES)

    def describe(self) -> str:
        """The run in one line, as ``qualcode code`` reports it."""
        counted = [a for a in self.result.assignments if a.status in COUNTED_STATUSES]
        coded = len({a.segment_id for a in counted})
        sources = self.codings_by_source()
        by_source = ", ".join(f"{count} by {source}" for source, count in sorted(sources.items()))
        return (
            f"Coded {len(self.result.segments)} segments from {len(self.corpus.documents)} "
            f"documents: {len(counted)} codings ({by_source or 'none'}) on {coded} segments "
            f"-> {self.output}"
        )


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _modified_at(path: Path) -> str | None:
    """When a reviews file was last saved: where files disagree, the later decision counts."""
    if not path.is_file():
        return None
    saved = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    return saved.isoformat(timespec="seconds")


def code_paths(
    paths: Sequence[PathLike],
    output: PathLike,
    options: CodingOptions | None = None,
    *,
    reading: ReadOptions = ReadOptions(),
    codebook: PathLike | None = None,
    study: Study | None = None,
    train: Sequence[PathLike] = (),
    reviews: Sequence[PathLike] = (),
    coder: str | None = None,
    format: str = "xlsx",
    force: bool = False,
    llm_api_key: str | None = None,
    progress: Progress | None = None,
    while_coding: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> RunSummary:
    """Code ``paths`` (files or folders); write the coded segments and evidence to ``output``.

    ``options`` default to ``default_options()``, in a ``study`` (an open ``Study``) with its settings
    (``with_study_defaults``); ``codebook`` defaults to the study's, else the built-in one. In a
    study every stored human decision is applied and the run is recorded. ``train`` are label
    files (gold CSVs or reviewed workbooks) the classifier also learns from; ``reviews`` are
    reviewed workbooks whose decisions are final in this run, attributed to ``coder`` (default:
    each file's name). ``format`` is "xlsx" or "csv" (a folder); an earlier output holding
    review work is replaced only with ``force`` (or when the study holds all of it).
    ``llm_api_key`` is for ``options.llm``'s endpoint. ``while_coding()`` is a context the
    coding proper runs in, once the pipeline and the documents are loaded.
    """
    # As Paths, recorded as the command line records them ("corpora/sample/" as "corpora/sample").
    paths, train, reviews = ([Path(p) for p in group] for group in (paths, train, reviews))
    output = Path(output)
    check_output_path(output, [*paths, *reviews, *train])
    if options is None:
        options = (
            with_study_defaults(default_options(), study.config) if study else default_options()
        )
    codebook_path = codebook or (study.config.codebook if study is not None else None)
    stored = study.decisions() if study is not None else []
    # Fitting the classifier needs scikit-learn imported, about a second: a process gets that done
    # while this one reads the codebook, builds the pipeline and tokenizes the training examples,
    # then fits the model unless it is in the cache.
    early = options.classifier and not reviews and codes_as_it_goes(options, stored)
    with training_process(wanted=early and options.jobs != 1) as trainer:
        loaded = load_codebook(codebook_path)
        # In a study, an output whose every decision is already stored there may be replaced.
        kept = (
            (lambda path: study.holds_decisions_of(path, loaded.code_ids))
            if study is not None
            else None
        )
        checked = ensure_replaceable(output, force=force, format=format, kept_elsewhere=kept)
        options = recorded(
            options,
            reading,
            codebook_path,
            format=format,
            train=", ".join(str(path) for path in train) or "none",
            reviews=", ".join(str(path) for path in reviews) or "none",
            study=str(study.root) if study else "none",
            paths=json.dumps([str(path) for path in paths]),
        )
        imports = tuple(
            read_review_workbook(
                path,
                coder=coder or path.stem,
                code_ids=loaded.code_ids,
                decided_at=_modified_at(path),
            )
            for path in reviews
        )
        decisions = [*stored, *(decision for review in imports for decision in review.decisions)]
        nlp = build_pipeline(options.spacy_model)
        started_at = _now()
        with contextlib.ExitStack() as stack:
            llm_coder = stack.enter_context(
                opened_llm_coder(
                    options.llm,
                    study_root=study.root if study else None,
                    api_key=llm_api_key,
                    progress=progress,
                )
            )
            training = [
                example
                for path in train
                for example in examples_from_labels(read_label_file(path, loaded.code_ids))
            ]
            classifier = None
            # Human decisions and weak labels are known only after coding: those runs train then.
            if options.classifier and codes_as_it_goes(options, decisions):
                classifier = stack.enter_context(
                    start_classifier(
                        loaded,
                        options,
                        training,
                        trainer=trainer,
                        background=options.jobs != 1,
                        nlp=nlp,
                    )
                )
            corpus = reading.read(
                paths,
                progress=(lambda done, total: progress("read", 1, total)) if progress else None,
            )
            result = _coded(
                corpus,
                loaded,
                options,
                output,
                format,
                checked,
                while_coding,
                training=training,
                reviews=decisions,
                nlp=nlp,
                progress=progress,
                classifier=classifier,
                llm=llm_coder,
                review_coder=study.config.decisive_coder if study else None,
            )
            run_id = None
            if study is not None:
                run_id = study.record_run(result, started_at=started_at, output=str(output))
    return RunSummary(result, output, imports, run_id, study.root if study is not None else None)


def _coded(
    corpus, codebook, options, output, format, checked, while_coding, **coding
) -> CodingResult:
    """Code the corpus and write it: a workbook fills while later chunks are still being coded."""
    with while_coding():
        if format == "xlsx":
            with streamed_workbook(
                output, corpus, codebook, checked=checked, code_interviewer=options.code_interviewer
            ) as workbook:
                result = code_corpus(corpus, codebook, options, on_chunk=workbook.add, **coding)
                workbook.finish(result)
            return result
        result = code_corpus(corpus, codebook, options, **coding)
    write_result(result, output, format=format, checked=checked)
    return result
