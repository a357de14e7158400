"""One coding run: segment the corpus, match the codebook's rules, ask the classifier, combine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from qualcode.classify import CodeClassifier, TrainingExample, examples_from_codebook, seed_examples, weak_examples
from qualcode.combine import DEFAULT_SUGGEST_AT, DEFAULT_VETO_BELOW, Policy, combine
from qualcode.models import Codebook, CodingResult, Corpus, HumanDecision, Segment
from qualcode.reviews import apply_reviews, rereview_assignments, resolve_reviews, reviewed_examples
from qualcode.rules import RuleMatcher
from qualcode.parallel import ChunkTask, compiled, resolve_jobs, segment_and_match
from qualcode.segment import DEFAULT_PIPELINE, build_pipeline

# progress(stage, advance, total): ``advance`` more items of ``total`` are done in ``stage``.
Progress = Callable[[str, int, int], None]
_PROGRESS_CHUNK = 256
_CLASSIFY_CHUNK = 5000


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


@dataclass(frozen=True)
class CodingRun:
    """A coding result with what produced it: the coded segments and the classifier's probability matrix."""

    result: CodingResult
    codable: tuple[Segment, ...]
    probabilities: object | None
    human_decided: frozenset[tuple[str, str]]


def _classify_and_combine(codable: Sequence[Segment], rule_assignments, classifier: CodeClassifier | None,
                          codebook: Codebook, policy) -> tuple[list, np.ndarray | None]:
    """Classifier probabilities and the combined assignments, a slice of segments at a time.

    Only one slice's TF-IDF matrix is alive at once, which keeps memory flat on large corpora;
    the probabilities are kept (as float32) for active learning.
    """
    if classifier is None or not classifier.trained_codes or not codable:
        return combine(codable, rule_assignments, None, codebook.code_ids, policy), None
    by_segment: dict[str, list] = {}
    for assignment in rule_assignments:
        by_segment.setdefault(assignment.segment_id, []).append(assignment)
    probabilities = np.empty((len(codable), len(codebook.code_ids)), dtype=np.float32)
    merged = []
    for offset in range(0, len(codable), _CLASSIFY_CHUNK):
        chunk = codable[offset:offset + _CLASSIFY_CHUNK]
        features = classifier.transform([segment.text for segment in chunk])
        chunk_probabilities = classifier.probabilities(features)
        probabilities[offset:offset + len(chunk)] = chunk_probabilities
        rules = [a for segment in chunk for a in by_segment.get(segment.segment_id, ())]
        merged.extend(combine(chunk, rules, chunk_probabilities, codebook.code_ids, policy,
                              lambda row, code_id: classifier.explain(features, row, code_id)))
    return merged, probabilities


def code_corpus(corpus: Corpus, codebook: Codebook, options: CodingOptions = CodingOptions(), *,
                training: Sequence[TrainingExample] = (), reviews: Sequence[HumanDecision] = (),
                review_coder: str | None = None, nlp=None, progress: Progress | None = None) -> CodingResult:
    """Segment every document, suggest codes by rule and by classifier, combine them, then apply human decisions.

    Interviewer turns are segmented (they are exported) but coded only with ``code_interviewer``.
    ``training`` adds human labels (``classify.examples_from_labels``) to what the classifier learns.
    ``reviews`` are human decisions (``reviews.read_review_workbook`` or a study): each is final,
    trains the classifier, and is orphaned, not dropped, when its text is gone.
    """
    return run_coding(corpus, codebook, options, training=training, reviews=reviews, review_coder=review_coder,
                      nlp=nlp, progress=progress).result


def run_coding(corpus: Corpus, codebook: Codebook, options: CodingOptions = CodingOptions(), *,
               training: Sequence[TrainingExample] = (), reviews: Sequence[HumanDecision] = (),
               review_coder: str | None = None, nlp=None, progress: Progress | None = None) -> CodingRun:
    """``code_corpus``, keeping the classifier's probabilities for every coded segment (for active learning)."""
    nlp = nlp if nlp is not None else build_pipeline(options.spacy_model)
    documents = corpus.documents
    task = ChunkTask(codebook, options.spacy_model, options.unit, tuple(options.interviewer_labels),
                     options.code_interviewer)
    compiled(task, nlp)  # a rule the pipeline cannot serve fails here, before any worker starts
    # Without reviews or weak labels the classifier's data is known now: train it while workers match.
    train_early = options.classifier and not reviews and not options.weak_labels

    def train() -> CodeClassifier:
        return CodeClassifier(codebook.code_ids).fit(training_examples(codebook, options, training))

    segments, rule_assignments, early = segment_and_match(
        documents, task, jobs=resolve_jobs(options.jobs, documents), dask_address=options.dask, nlp=nlp,
        progress=progress, meanwhile=train if train_early else None)
    codable = [segment for segment in segments if options.code_interviewer or not segment.is_interviewer]
    current = [decision for decision in reviews if decision.code_id in codebook.code_ids]
    resolved = resolve_reviews(current, segments, coder=review_coder)
    training = [*training, *reviewed_examples(resolved, segments)]
    record = options.as_record()
    policy = options.policy(codebook)
    record.update(policy.as_record())
    classifier = None
    if options.classifier:
        if early is not None:
            classifier = early
        else:
            examples = training_examples(codebook, options, training, weak_examples(codable, rule_assignments))
            classifier = CodeClassifier(codebook.code_ids).fit(examples)
        record["classifier training"] = "; ".join(
            f"{code_id}: {positive}+/{negative}-" for code_id, (positive, negative) in classifier.training_counts_.items())
        record["classifier codes"] = ", ".join(classifier.trained_codes) or "none (too few examples)"
    assignments, probabilities = _classify_and_combine(codable, rule_assignments, classifier, codebook, policy)
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
    result = CodingResult(corpus=corpus, segments=tuple(segments), assignments=tuple(assignments), codebook=codebook,
                          options=record, orphaned_reviews=resolved.orphaned)
    return CodingRun(result, tuple(codable), probabilities, frozenset(resolved.final))
