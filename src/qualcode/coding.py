"""One coding run: segment the corpus, match the codebook's rules, ask the classifier, combine.

Chunks of documents are segmented, matched, classified and combined where ``parallel`` runs
them (this process, worker processes or a Dask cluster) and come back in document order, to be
handed to ``on_chunk`` (the streaming workbook writer) while later chunks are still computed.
The classifier comes from the model cache when its training data is unchanged; otherwise it is
trained on a worker while the others segment, and the chunks that came back before it was ready
are classified here. Human decisions and weak labels need every segment before the classifier
can be trained, so a run with either codes the chunks after all are back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from qualcode.chunks import ChunkResult, ChunkTask, code_chunk, compiled
from qualcode.classify import (ClassifierModel, TrainingExample, examples_from_codebook, seed_examples, train_model,
                               weak_examples)
from qualcode.combine import DEFAULT_SUGGEST_AT, DEFAULT_VETO_BELOW, Policy
from qualcode.models import CodeAssignment, Codebook, CodingResult, Corpus, HumanDecision, Segment
from qualcode.parallel import chunk_results, resolve_jobs
from qualcode.reviews import apply_reviews, rereview_assignments, resolve_reviews, reviewed_examples
from qualcode.rules import RuleMatcher
from qualcode.segment import DEFAULT_PIPELINE, build_pipeline

# progress(stage, advance, total): ``advance`` more items of ``total`` are done in ``stage``.
Progress = Callable[[str, int, int], None]
# on_chunk(segments, assignments): a finished stretch of the corpus, in document order.
ChunkSink = Callable[[Sequence[Segment], Sequence[CodeAssignment]], None]
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
    suggest_at: float = DEFAULT_SUGGEST_AT
    veto_below: float = DEFAULT_VETO_BELOW
    thresholds: tuple[tuple[str, float], ...] = ()
    jobs: int = 1
    dask: str | None = None
    model_cache: bool = True
    extra: dict[str, object] = field(default_factory=dict)

    def policy(self, codebook: Codebook) -> Policy:
        return Policy.for_codebook(codebook, suggest_at=self.suggest_at, veto_below=self.veto_below,
                                   overrides=dict(self.thresholds))

    def as_record(self) -> dict[str, object]:
        record = asdict(self)
        extra = record.pop("extra")
        record.pop("thresholds")
        record["unit"] = self.unit or "default (turn / paragraph / document by kind)"
        record["interviewer_labels"] = ", ".join(self.interviewer_labels)
        record["jobs"] = "automatic" if self.jobs == 0 else self.jobs
        record["dask"] = self.dask or "none"
        return {**record, **extra}


def match_rules(segments: Sequence[Segment], matcher: RuleMatcher, progress: Progress | None = None) -> list:
    assignments = []
    for offset in range(0, len(segments), _PROGRESS_CHUNK):
        chunk = segments[offset:offset + _PROGRESS_CHUNK]
        assignments.extend(matcher.match(chunk))
        if progress:
            progress("code", len(chunk), len(segments))
    return assignments


def training_examples(codebook: Codebook, options: CodingOptions, training: Sequence[TrainingExample] = (),
                      weak: Sequence[TrainingExample] = ()) -> list[TrainingExample]:
    """What the classifier learns from: human labels, codebook examples, the seed set, and weak rule labels if asked."""
    examples = list(training) + examples_from_codebook(codebook)
    if options.seed:
        examples += seed_examples(codebook)
    if options.weak_labels:
        examples += list(weak)
    return examples


def cached_model(codebook: Codebook, options: CodingOptions,
                 examples: Sequence[TrainingExample]) -> tuple[ClassifierModel | None, str | None]:
    """The model trained on exactly these examples before, if the cache has it, and its cache key.

    Both are None when the run does not use the model cache.
    """
    if not options.model_cache:
        return None, None
    from qualcode.model_cache import default_cache_dir, load_model, model_key

    key = model_key(codebook.code_ids, examples, options.spacy_model)
    return load_model(default_cache_dir(), key), key


def _remember(model: ClassifierModel, key: str | None) -> str:
    """Keep a freshly trained model in the cache; say so for the Run sheet."""
    if key is None:
        return "trained"
    from qualcode.model_cache import default_cache_dir, store_model

    store_model(default_cache_dir(), key, model)
    return f"trained (cached as {key[:12]})"


def _loaded(key: str) -> str:
    return f"loaded from the model cache ({key[:12]})"


def classifier_model(codebook: Codebook, options: CodingOptions, examples: Sequence[TrainingExample],
                     nlp) -> tuple[ClassifierModel, str]:
    """The classifier for these examples, from the model cache when it was trained on the same data before."""
    model, key = cached_model(codebook, options, examples)
    if model is not None:
        return model, _loaded(key)
    model = train_model(codebook.code_ids, examples, nlp)
    return model, _remember(model, key)


@dataclass(frozen=True)
class CodingRun:
    """A coding result with what produced it: the coded segments and the classifier's probability matrix."""

    result: CodingResult
    codable: tuple[Segment, ...]
    probabilities: object | None
    human_decided: frozenset[tuple[str, str]]


def code_corpus(corpus: Corpus, codebook: Codebook, options: CodingOptions = CodingOptions(), *,
                training: Sequence[TrainingExample] = (), reviews: Sequence[HumanDecision] = (),
                review_coder: str | None = None, nlp=None, progress: Progress | None = None,
                on_chunk: ChunkSink | None = None) -> CodingResult:
    """Segment every document, suggest codes by rule and by classifier, combine them, then apply human decisions.

    Interviewer turns are segmented (they are exported) but coded only with ``code_interviewer``.
    ``training`` adds human labels (``classify.examples_from_labels``) to what the classifier learns.
    ``reviews`` are human decisions (``reviews.read_review_workbook`` or a study): each is final,
    trains the classifier, and is orphaned, not dropped, when its text is gone. ``on_chunk``
    receives the coded segments and assignments stretch by stretch, in document order, as they
    are finished (all at once when reviews or weak labels are used).
    """
    return run_coding(corpus, codebook, options, training=training, reviews=reviews, review_coder=review_coder,
                      nlp=nlp, progress=progress, on_chunk=on_chunk).result


def run_coding(corpus: Corpus, codebook: Codebook, options: CodingOptions = CodingOptions(), *,
               training: Sequence[TrainingExample] = (), reviews: Sequence[HumanDecision] = (),
               review_coder: str | None = None, nlp=None, progress: Progress | None = None,
               on_chunk: ChunkSink | None = None) -> CodingRun:
    """``code_corpus``, keeping the classifier's probabilities for every coded segment (for active learning)."""
    nlp = nlp if nlp is not None else build_pipeline(options.spacy_model)
    documents = corpus.documents
    policy = options.policy(codebook)
    task = ChunkTask(codebook, options.spacy_model, options.unit, tuple(options.interviewer_labels),
                     options.code_interviewer, features=options.classifier, policy=policy)
    compiled(task, nlp)  # a rule the pipeline cannot serve fails here, before any worker starts
    record = {**options.as_record(), **policy.as_record()}
    # Without reviews or weak labels the classifier's data is known now: load its model from the
    # cache, or train it on a worker while the others segment; chunks come back coded and go
    # straight to ``on_chunk``.
    streaming = not reviews and not options.weak_labels
    model: ClassifierModel | None = None
    key: str | None = None
    examples: list[TrainingExample] = []
    if streaming and options.classifier:
        examples = training_examples(codebook, options, training)
        model, key = cached_model(codebook, options, examples)
        if model is not None:
            record["classifier model"] = _loaded(key)
    segments: list[Segment] = []
    codable: list[Segment] = []
    assignments: list[CodeAssignment] = []
    probabilities: list[np.ndarray] = []
    held: list[ChunkResult] = []

    def code(chunk: ChunkResult, sink: ChunkSink | None) -> None:
        chunk = code_chunk(chunk, model, task)
        segments.extend(chunk.segments)
        codable.extend(chunk.codable(options.code_interviewer))
        assignments.extend(chunk.assignments)
        if chunk.probabilities is not None:
            probabilities.append(chunk.probabilities)
        if sink:
            sink(chunk.segments, chunk.assignments)

    with chunk_results(documents, task, jobs=resolve_jobs(options.jobs, documents), dask_address=options.dask,
                       nlp=nlp, model=model) as stream:
        training_job = (stream.train(codebook.code_ids, examples)
                        if streaming and options.classifier and model is None else None)
        for chunk in stream:
            if training_job is not None and model is None and (training_job.done() or not chunk.coded):
                model = training_job.result()
                stream.use_model(model)
                record["classifier model"] = _remember(model, key)
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
        if options.classifier:
            weak = weak_examples([s for chunk in held for s in chunk.codable(options.code_interviewer)],
                                 [a for chunk in held for a in chunk.assignments]) if options.weak_labels else []
            examples = training_examples(codebook, options, [*training, *reviewed_examples(resolved, everything)], weak)
            model, record["classifier model"] = classifier_model(codebook, options, examples, nlp)
        for chunk in held:
            code(chunk, None)
        held.clear()
    if model is not None:
        record["classifier training"] = "; ".join(
            f"{code_id}: {positive}+/{negative}-" for code_id, (positive, negative) in model.training_counts.items())
        record["classifier codes"] = ", ".join(model.trained_codes) or "none (too few examples)"
    orphaned: tuple = ()
    if resolved is not None:
        if reviews:
            assignments = apply_reviews(assignments, resolved)
            flagged = rereview_assignments(reviews, segments, codebook, set(resolved.final))
            flagged_pairs = {(a.segment_id, a.code_id) for a in flagged}
            assignments = [a for a in assignments if (a.segment_id, a.code_id) not in flagged_pairs] + flagged
            retired = len(reviews) - len(current)
            record["human decisions"] = (f"{len(resolved.final)} applied ({resolved.reanchored} re-anchored), "
                                         f"{len(resolved.orphaned)} orphaned, {len(flagged)} flagged for re-review, "
                                         f"{retired} on codes not in this codebook (kept); "
                                         f"coder: {review_coder or 'latest decision'}")
        orphaned = resolved.orphaned
        if on_chunk:
            on_chunk(segments, assignments)
    result = CodingResult(corpus=corpus, segments=tuple(segments), assignments=tuple(assignments), codebook=codebook,
                          options=record, orphaned_reviews=orphaned)
    matrix = np.vstack(probabilities) if probabilities and codable else None
    return CodingRun(result, tuple(codable), matrix, frozenset(resolved.final) if resolved is not None else frozenset())
