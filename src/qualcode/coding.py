"""One coding run: segment the corpus, match the codebook's rules, ask the classifier, combine.

Chunks of documents are segmented, matched, classified and combined where ``parallel`` runs
them (this process, worker processes or a Dask cluster) and come back in document order, to be
handed to ``on_chunk`` (the streaming workbook writer) while later chunks are still computed.
The classifier comes from the model cache when its training data is unchanged; otherwise it is
trained in another process, started as early as the caller can (``training.start_classifier``:
the command line starts it before reading the codebook), and the chunks are sent once it is
ready, so every chunk comes back classified. Human decisions and weak labels need every segment
before the classifier can be trained, so a run with either codes the chunks after all are back."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from qualcode.chunks import ChunkResult, ChunkTask, code_chunk, compiled
from qualcode.classify import ClassifierModel, TrainingExample, weak_examples
from qualcode.combine import DEFAULT_VETO_BELOW, Policy, default_suggest_at
from qualcode.llm.run import LanguageModelAssistant
from qualcode.llm.settings import LlmSettings
from qualcode.models import CodeAssignment, Codebook, CodingResult, Corpus, HumanDecision, Segment
from qualcode.parallel import chunk_results, resolve_jobs
from qualcode.reviews import apply_reviews, rereview_assignments, resolve_reviews, reviewed_examples
from qualcode.rules import RuleMatcher
from qualcode.segment import DEFAULT_PIPELINE, build_pipeline
from qualcode.semantic import DEFAULT_REPRESENTATION, code_semantically, corpus_thresholds
from qualcode.training import (
    PendingClassifier,
    classifier_model,
    start_classifier,
    training_examples,
)

# progress(stage, advance, total): ``advance`` more items of ``total`` are done in ``stage``.
Progress = Callable[[str, int, int], None]
# on_chunk(segments, assignments): a finished stretch of the corpus, in document order.
# Called with a stretch's segments and assignments; with human decisions, also ``decisions=`` (see CodingResult).
ChunkSink = Callable[..., None]
_PROGRESS_CHUNK = 256


@dataclass(frozen=True)
class CodingOptions:
    """Everything that shapes a coding run; recorded in the workbook's Run sheet."""

    unit: str | None = None
    code_interviewer: bool = False
    interviewer_labels: tuple[str, ...] = ()
    spacy_model: str = DEFAULT_PIPELINE
    classifier: bool = True
    seed: bool = True
    weak_labels: bool = False
    suggest_at: float | None = None  # None: the representation's (combine.default_suggest_at)
    veto_below: float = DEFAULT_VETO_BELOW
    thresholds: tuple[tuple[str, float], ...] = ()
    # The model's own threshold per code, as a study pinned them; None: the shipped model's, where
    # it is used (corpus_thresholds) and no overall threshold is set.
    model_thresholds: tuple[tuple[str, float], ...] | None = None
    jobs: int = 1
    dask: str | None = None
    model_cache: bool = True
    representation: str = DEFAULT_REPRESENTATION
    # Each suggestion over embeddings names the sentence of its passage that carries it; reading the
    # sentences costs a first run about as much again as embedding the suggested passages.
    sentence_evidence: bool = True
    llm: LlmSettings | None = (
        None  # a language model as a third coder (qualcode.llm); None: nothing is sent
    )
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        """The classifier probability that suggests a code: as set, else the representation's."""
        return (
            default_suggest_at(self.representation) if self.suggest_at is None else self.suggest_at
        )

    def default_thresholds(self, codebook: Codebook) -> dict[str, float]:
        """Per code, the model's own threshold: as pinned, else the shipped model's when this run
        reads it (embeddings learnt with the seed data of the default codebook) and sets no
        threshold of its own."""
        if self.model_thresholds is not None:
            return dict(self.model_thresholds)
        if self.suggest_at is not None or not self.seed or self.representation != "embeddings":
            return {}
        return corpus_thresholds(codebook)

    def policy(self, codebook: Codebook) -> Policy:
        return Policy.for_codebook(
            codebook,
            suggest_at=self.threshold,
            veto_below=self.veto_below,
            overrides=dict(self.thresholds),
            model_thresholds=self.default_thresholds(codebook),
        )

    def as_record(self) -> dict[str, object]:
        record = asdict(self)
        extra = record.pop("extra")
        record.pop("thresholds")
        record.pop("model_thresholds")  # the policy's record lists every code's threshold
        record.pop("llm")
        record["suggest_at"] = self.threshold
        record["unit"] = self.unit or "default (turn / paragraph / document by kind)"
        record["interviewer_labels"] = ", ".join(self.interviewer_labels)
        record["jobs"] = "automatic" if self.jobs == 0 else self.jobs
        record["dask"] = self.dask or "none"
        record.update(self.llm.as_record() if self.llm is not None else {"llm": "none"})
        return {**record, **extra}


def match_rules(
    segments: Sequence[Segment], matcher: RuleMatcher, progress: Progress | None = None
) -> list:
    assignments = []
    for offset in range(0, len(segments), _PROGRESS_CHUNK):
        chunk = segments[offset : offset + _PROGRESS_CHUNK]
        assignments.extend(matcher.match(chunk))
        if progress:
            progress("code", len(chunk), len(segments))
    return assignments


def codes_as_it_goes(options: CodingOptions, reviews: Sequence[HumanDecision]) -> bool:
    """Whether a run codes each chunk as it comes back: not with human decisions or weak labels,
    which the classifier learns from but which are known only once every chunk is back, nor with
    sentence embeddings, which are computed for the whole corpus at once (texts of one length
    together, each text once), nor with a language model, asked about every segment at once
    (several requests in flight, one progress bar)."""
    return (
        not reviews
        and not options.weak_labels
        and options.representation == "ngrams"
        and options.llm is None
    )


@dataclass(frozen=True)
class CodingRun:
    """A coding result with what produced it: the coded segments and the classifier's probability matrix."""

    result: CodingResult
    codable: tuple[Segment, ...]
    probabilities: object | None
    human_decided: frozenset[tuple[str, str]]
    llm_verdicts: dict[tuple[str, str], bool] = field(
        default_factory=dict
    )  # (segment, code) -> the model says it applies


def code_corpus(
    corpus: Corpus,
    codebook: Codebook,
    options: CodingOptions = CodingOptions(),
    *,
    training: Sequence[TrainingExample] = (),
    reviews: Sequence[HumanDecision] = (),
    review_coder: str | None = None,
    nlp=None,
    progress: Progress | None = None,
    on_chunk: ChunkSink | None = None,
    classifier: PendingClassifier | None = None,
    llm=None,
) -> CodingResult:
    """Segment every document, suggest codes by rule, classifier and (``options.llm``) a language model, combine
    them, then apply human decisions.

    Interviewer turns are segmented (they are exported) but coded only with ``code_interviewer``.
    ``training`` adds human labels (``classify.examples_from_labels``) to what the classifier learns.
    ``reviews`` are human decisions (``reviews.read_review_workbook`` or a study): each is final,
    trains the classifier, and is orphaned, not dropped, when its text is gone. ``on_chunk``
    receives the coded segments and assignments stretch by stretch, in document order, as they
    are finished (all at once when reviews or weak labels are used). ``classifier``, from
    ``training.start_classifier`` with the same codebook, options and training, is the model
    already on its way (used only without reviews and weak labels); without it the run starts one.
    ``llm``, an ``llm.coder.LlmCoder`` for ``options.llm``, carries the API key, answer cache and
    progress; without it the model is asked with no key, through the user's answer cache.
    """
    return run_coding(
        corpus,
        codebook,
        options,
        training=training,
        reviews=reviews,
        review_coder=review_coder,
        nlp=nlp,
        progress=progress,
        on_chunk=on_chunk,
        classifier=classifier,
        llm=llm,
    ).result


def run_coding(
    corpus: Corpus,
    codebook: Codebook,
    options: CodingOptions = CodingOptions(),
    *,
    training: Sequence[TrainingExample] = (),
    reviews: Sequence[HumanDecision] = (),
    review_coder: str | None = None,
    nlp=None,
    progress: Progress | None = None,
    on_chunk: ChunkSink | None = None,
    classifier: PendingClassifier | None = None,
    llm=None,
) -> CodingRun:
    """``code_corpus``, keeping the classifier's probabilities for every coded segment (for active learning)."""
    nlp = nlp if nlp is not None else build_pipeline(options.spacy_model)
    documents = corpus.documents
    jobs = resolve_jobs(options.jobs, documents)
    policy = options.policy(codebook)
    task = ChunkTask(
        codebook,
        options.spacy_model,
        options.unit,
        tuple(options.interviewer_labels),
        options.code_interviewer,
        features=options.classifier,
        policy=policy,
    )
    record = {**options.as_record(), **policy.as_record()}
    # Without reviews or weak labels the classifier's data is known before any chunk is computed:
    # its model comes from the cache or is trained in another process (started by the caller, or
    # here while the rules compile); chunks come back coded and go straight to ``on_chunk``.
    streaming = codes_as_it_goes(options, reviews)
    segments: list[Segment] = []
    codable: list[Segment] = []
    assignments: list[CodeAssignment] = []
    probabilities: list[np.ndarray] = []
    held: list[ChunkResult] = []
    model: ClassifierModel | None = None
    verdicts = None  # the language model's

    def code(chunk: ChunkResult, sink: ChunkSink | None) -> None:
        chunk = code_chunk(chunk, model, task)
        if verdicts is not None:
            codable_here = chunk.codable(options.code_interviewer)
            merged = verdicts.applied_to(codable_here, chunk.assignments, codebook.code_ids)
            chunk = replace(chunk, assignments=merged)
        segments.extend(chunk.segments)
        codable.extend(chunk.codable(options.code_interviewer))
        assignments.extend(chunk.assignments)
        if chunk.probabilities is not None:
            probabilities.append(chunk.probabilities)
        if sink:
            sink(chunk.segments, chunk.assignments)

    with contextlib.ExitStack() as stack:
        pending = None
        if streaming and options.classifier:
            # Worker processes are forked anyway with --jobs 2 or more; the training process is one more.
            pending = classifier or stack.enter_context(
                start_classifier(
                    codebook, options, training, nlp=nlp, background=jobs > 1 and not options.dask
                )
            )
        compiled(task, nlp)  # a rule the pipeline cannot serve fails here, before any worker starts
        if pending is not None:
            # Waiting for a model still in training beats starting without it: chunks computed
            # before it is ready would come back to be classified here, in the process that writes
            # the workbook, while the training competed with the workers for the cores.
            model = pending.result()
            record["classifier model"] = pending.description
        with chunk_results(
            documents, task, jobs=jobs, dask_address=options.dask, nlp=nlp, model=model
        ) as stream:
            for chunk in stream:
                if streaming:
                    code(chunk, on_chunk)
                else:
                    held.append(chunk)
                if progress:
                    progress("code", chunk.documents, len(documents))
    resolved = None
    if not streaming:
        everything = [segment for chunk in held for segment in chunk.segments]
        current = [decision for decision in reviews if decision.code_id in codebook.code_ids]
        resolved = resolve_reviews(current, everything, coder=review_coder)
        if options.llm is not None:
            asked = [s for chunk in held for s in chunk.codable(options.code_interviewer)]
            assistant = LanguageModelAssistant(
                options.llm,
                llm,
                codebook,
                context=everything,
                record=record,
                decided=resolved.final,
            )
            verdicts = assistant.suggest(asked)
        if options.classifier:
            weak = (
                weak_examples(
                    [s for chunk in held for s in chunk.codable(options.code_interviewer)],
                    [a for chunk in held for a in chunk.assignments],
                )
                if options.weak_labels
                else []
            )
            examples = training_examples(
                codebook, options, [*training, *reviewed_examples(resolved, everything)], weak
            )
            if options.representation == "ngrams":
                model, record["classifier model"] = classifier_model(
                    codebook, options, examples, nlp
                )
            else:
                held, model = code_semantically(
                    held, codebook, options, task, examples, nlp, record, progress
                )
        for chunk in held:
            code(chunk, None)
        held.clear()
    if model is not None:
        record["classifier training"] = "; ".join(
            f"{code_id}: {positive}+/{negative}-"
            for code_id, (positive, negative) in model.training_counts.items()
        )
        record["classifier codes"] = ", ".join(model.trained_codes) or "none (too few examples)"
    orphaned: tuple = ()
    if resolved is not None:
        if reviews:
            assignments = apply_reviews(assignments, resolved)
            flagged = rereview_assignments(reviews, segments, codebook, set(resolved.final))
            flagged_pairs = {(a.segment_id, a.code_id) for a in flagged}
            assignments = [
                a for a in assignments if (a.segment_id, a.code_id) not in flagged_pairs
            ] + flagged
            retired = len(reviews) - len(current)
            record["human decisions"] = (
                f"{len(resolved.final)} applied ({resolved.reanchored} re-anchored), "
                f"{len(resolved.orphaned)} orphaned, {len(flagged)} flagged for re-review, "
                f"{retired} on codes not in this codebook (kept); "
                f"coder: {review_coder or 'latest decision'}"
            )
        orphaned = resolved.orphaned
        if on_chunk:
            on_chunk(segments, assignments, decisions=resolved.final)
    result = CodingResult(
        corpus=corpus,
        segments=tuple(segments),
        assignments=tuple(assignments),
        codebook=codebook,
        options=record,
        orphaned_reviews=orphaned,
        decisions=resolved.final if resolved is not None else {},
    )
    matrix = np.vstack(probabilities) if probabilities and codable else None
    answers = verdicts.answers if verdicts is not None else {}
    llm_verdicts = {
        (segment_id, code_id): verdict.applies
        for segment_id, answer in answers.items()
        if answer.usable
        for code_id, verdict in answer.codes.items()
    }
    return CodingRun(
        result,
        tuple(codable),
        matrix,
        frozenset(resolved.final) if resolved is not None else frozenset(),
        llm_verdicts,
    )
