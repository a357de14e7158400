"""The work on one chunk of documents: segment, match the rules, read off n-grams, classify and combine.

A chunk is a run of whole documents. ``process_chunk`` does everything that needs only the chunk
and the task, so it can run on any process; ``code_chunk`` classifies and combines a chunk computed
without a classifier (a run with human decisions or weak labels trains one once every chunk is
back). Both give the same result wherever they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from qualcode.assistants import RuleHits, Scores, combine_suggestions
from qualcode.combine import Policy
from qualcode.features import NgramHashes, ngram_hashes
from qualcode.models import CodeAssignment, Codebook, Document, Evidence, Segment


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs besides the documents and the classifier: plain, picklable data.

    ``features`` asks for the classifier's n-gram hashes (the run uses a classifier); ``policy``
    is how rule hits and probabilities combine.
    """

    codebook: Codebook
    spacy_model: str
    unit: str | None
    interviewer_labels: tuple[str, ...]
    code_interviewer: bool
    features: bool = False
    policy: Policy = Policy()


@dataclass(frozen=True)
class ChunkResult:
    """One chunk's segments and assignments.

    Until the chunk is ``coded``, ``assignments`` are the rule hits and ``ngrams`` the n-gram
    hashes of its coded segments; once coded, ``assignments`` are the combined suggestions and
    ``probabilities`` the classifier's (coded segments x codes; None without a classifier).
    """

    documents: int
    segments: list[Segment]
    assignments: list[CodeAssignment]
    ngrams: NgramHashes | None = None
    coded: bool = False
    probabilities: np.ndarray | None = None

    def codable(self, code_interviewer: bool) -> list[Segment]:
        """The segments that are coded, in the order of ``ngrams`` and ``probabilities``."""
        return [
            segment for segment in self.segments if code_interviewer or not segment.is_interviewer
        ]

    def __reduce__(self):
        # Every chunk crosses from a worker to the process writing the workbook. As tuples of
        # plain values its segments and assignments pickle in half the time and unpickle in
        # two thirds of it, and that process has no time to spare.
        segments = [
            (
                s.segment_id,
                s.doc_id,
                s.start_char,
                s.end_char,
                s.text,
                s.index,
                s.speaker,
                s.timestamp,
                s.is_interviewer,
            )
            for s in self.segments
        ]
        assignments = [
            (
                a.segment_id,
                a.code_id,
                a.source,
                a.status,
                a.confidence,
                tuple((e.rule, e.matched, e.start_char, e.end_char) for e in a.evidence),
            )
            for a in self.assignments
        ]
        return (
            _rebuilt_chunk,
            (self.documents, segments, assignments, self.ngrams, self.coded, self.probabilities),
        )


def _rebuilt_chunk(documents, segments, assignments, ngrams, coded, probabilities) -> ChunkResult:
    return ChunkResult(
        documents,
        [Segment(*fields) for fields in segments],
        [
            CodeAssignment(
                segment_id,
                code_id,
                source,
                status,
                confidence,
                tuple(Evidence(*fields) for fields in evidence),
            )
            for segment_id, code_id, source, status, confidence, evidence in assignments
        ],
        ngrams,
        coded,
        probabilities,
    )


_STATE: dict[tuple, tuple] = {}


def compiled(task: ChunkTask, nlp=None):
    """The pipeline and compiled rules for ``task``, built once per process."""
    from qualcode.rules import compile_rules
    from qualcode.segment import build_pipeline

    # Keyed by what the rules depend on, not by the pipeline object: a worker forked after the
    # parent compiled the rules inherits them instead of compiling again.
    key = (task.codebook.sha256, task.codebook.name, task.codebook.code_ids, task.spacy_model)
    if key not in _STATE or (nlp is not None and _STATE[key][0] is not nlp):
        pipeline = nlp if nlp is not None else build_pipeline(task.spacy_model)
        _STATE.clear()
        _STATE[key] = (pipeline, compile_rules(task.codebook, pipeline))
    return _STATE[key]


def process_chunk(
    task: ChunkTask, documents: Sequence[Document], nlp=None, model=None
) -> ChunkResult:
    """Segment a chunk, match the rules on the segments that are coded, and code it if it can be coded here.

    It can be coded here when the run has no classifier or ``model`` (a ``ClassifierModel``) is
    given; otherwise the result carries the n-gram hashes for ``code_chunk`` to finish.
    """
    from qualcode.segment import segment_documents

    pipeline, matcher = compiled(task, nlp)
    segments = segment_documents(
        documents, unit=task.unit, nlp=pipeline, interviewer_labels=task.interviewer_labels
    )
    codable = [
        segment for segment in segments if task.code_interviewer or not segment.is_interviewer
    ]
    docs = list(matcher.docs(codable))
    assignments = matcher.match_docs(codable, docs)
    result = ChunkResult(
        len(documents), segments, assignments, ngram_hashes(docs) if task.features else None
    )
    if not task.features or model is not None:
        return code_chunk(result, model, task)
    return result


def code_chunk(result: ChunkResult, model, task: ChunkTask) -> ChunkResult:
    """Classify a chunk's coded segments with ``model`` (None: rules only) and combine them with its rule hits."""
    if result.coded:
        return result
    scores = _classifier_scores(model, result.ngrams)
    suggestions = [RuleHits(result.assignments), *([scores] if scores is not None else [])]
    codable = result.codable(task.code_interviewer)
    merged = combine_suggestions(codable, suggestions, task.codebook.code_ids, task.policy)
    if scores is None:
        return replace(result, assignments=merged, ngrams=None, coded=True)
    probabilities = scores.probabilities.astype(np.float32)
    return replace(result, assignments=merged, ngrams=None, coded=True, probabilities=probabilities)


def _classifier_scores(model, ngrams: NgramHashes | None) -> Scores | None:
    """The classifier's scores on a chunk's n-grams; None without a trained model (rules only)."""
    if model is None or not model.codes or ngrams is None:
        return None
    features = model.features(ngrams)
    return Scores(model.probabilities(features), lambda pairs: model.explain_rows(features, pairs))
