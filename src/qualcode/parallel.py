"""Segmenting and rule-matching documents on all cores, or on a Dask cluster, with the same output as one process.

Documents go out in chunks of whole documents, in order; each worker builds the spaCy pipeline
and compiles the rules once, segments its chunk, matches the rules and reads off the classifier's
n-gram features, and sends back plain segments, rule assignments and feature hashes. Results come
back in the order the chunks left, so ``--jobs 4`` and ``--dask ADDRESS`` write exactly what
``--jobs 1`` writes, and the caller can code and write each chunk while later ones are computed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from qualcode.errors import ConfigurationError
from qualcode.features import NgramHashes, ngram_hashes
from qualcode.models import CodeAssignment, Codebook, Document, Segment

logger = logging.getLogger(__name__)

WORDS_PER_CHUNK = 25_000
DASK_CONNECT_TIMEOUT = "10s"
_PR_SET_PDEATHSIG = 1
# Below this many words, starting worker processes costs more than it saves.
PARALLEL_FROM_WORDS = 150_000


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs besides the documents: plain, picklable data."""

    codebook: Codebook
    spacy_model: str
    unit: str | None
    interviewer_labels: tuple[str, ...]
    code_interviewer: bool
    features: bool = False


@dataclass(frozen=True)
class ChunkResult:
    """One chunk's segments, the rule assignments of its coded segments and (if asked) their n-gram hashes."""

    documents: int
    segments: list[Segment]
    assignments: list[CodeAssignment]
    ngrams: NgramHashes | None = None

    def codable(self, code_interviewer: bool) -> list[Segment]:
        """The segments that are coded, in the order of ``ngrams``."""
        return [segment for segment in self.segments if code_interviewer or not segment.is_interviewer]

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


def process_chunk(task: ChunkTask, documents: Sequence[Document], nlp=None) -> ChunkResult:
    """Segment a chunk of documents, match the rules on the segments that are coded, and read off their n-grams."""
    from qualcode.segment import segment_documents

    pipeline, matcher = compiled(task, nlp)
    segments = segment_documents(documents, unit=task.unit, nlp=pipeline, interviewer_labels=task.interviewer_labels)
    codable = [segment for segment in segments if task.code_interviewer or not segment.is_interviewer]
    docs = list(matcher.docs(codable))
    assignments = [assignment for segment, doc in zip(codable, docs) for assignment in matcher.match_doc(segment, doc)]
    return ChunkResult(len(documents), segments, assignments, ngram_hashes(docs) if task.features else None)


def chunk_documents(documents: Sequence[Document], words_per_chunk: int | None = None) -> list[list[Document]]:
    """Consecutive runs of whole documents of about ``words_per_chunk`` words (default ``WORDS_PER_CHUNK``)."""
    words_per_chunk = words_per_chunk or WORDS_PER_CHUNK
    chunks: list[list[Document]] = []
    current: list[Document] = []
    words = 0
    for document in documents:
        current.append(document)
        words += len(document.text.split())
        if words >= words_per_chunk:
            chunks.append(current)
            current, words = [], 0
    if current:
        chunks.append(current)
    return chunks


def resolve_jobs(jobs: int, documents: Sequence[Document]) -> int:
    """``jobs`` 0 means automatic: every core for a corpus big enough to gain, else one process."""
    if jobs > 0:
        return jobs
    words = sum(len(document.text.split()) for document in documents)
    return (os.cpu_count() or 1) if words >= PARALLEL_FROM_WORDS else 1


_WORKER_TASK: ChunkTask | None = None


def _die_with_parent() -> None:
    """Ask Linux to end this worker when the coding process dies, so a killed run leaves no orphans."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def _initialise_worker(task: ChunkTask) -> None:
    global _WORKER_TASK
    _die_with_parent()
    _WORKER_TASK = task
    compiled(task)


def _run_in_worker(documents: Sequence[Document]) -> ChunkResult:
    return process_chunk(_WORKER_TASK, documents)


@contextlib.contextmanager
def chunk_results(documents: Sequence[Document], task: ChunkTask, *, jobs: int = 1, dask_address: str | None = None,
                  nlp=None) -> Iterator[Iterator[ChunkResult]]:
    """Start segmenting and matching ``documents``; yield an iterator over the chunk results in document order.

    With workers or a cluster, every chunk is submitted on entry, so the caller can do other work
    (train the classifier) before reading the first result. In one process, chunks are computed as
    they are read.
    """
    chunks = chunk_documents(documents)
    if dask_address:
        client, futures = _submit_to_dask(dask_address, task, chunks)
        try:
            yield (future.result() for future in futures)
        finally:
            client.close()
    elif jobs > 1 and len(chunks) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        compiled(task, nlp)  # forked workers inherit the compiled rules
        context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
        with ProcessPoolExecutor(min(jobs, len(chunks)), mp_context=context, initializer=_initialise_worker,
                                 initargs=(task,)) as pool:
            try:
                yield pool.map(_run_in_worker, chunks)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    else:
        yield (process_chunk(task, chunk, nlp) for chunk in chunks)


def segment_and_match(documents: Sequence[Document], task: ChunkTask, *, jobs: int = 1, dask_address: str | None = None,
                      nlp=None) -> tuple[list[Segment], list[CodeAssignment]]:
    """All segments and rule assignments, in document order, computed where asked."""
    segments: list[Segment] = []
    assignments: list[CodeAssignment] = []
    with chunk_results(documents, task, jobs=jobs, dask_address=dask_address, nlp=nlp) as results:
        for result in results:
            segments.extend(result.segments)
            assignments.extend(result.assignments)
    return segments, assignments


def _submit_to_dask(address: str, task: ChunkTask, chunks: list[list[Document]]):
    try:
        from distributed import Client
    except ImportError:
        raise ConfigurationError("--dask needs the dask extra: pip install 'qualcode[dask]'") from None
    try:
        client = Client(address, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as error:
        raise ConfigurationError(f"cannot reach the Dask scheduler at {address} ({error})") from error
    try:
        task_future = client.scatter(task, broadcast=True)
        return client, client.map(process_chunk, [task_future] * len(chunks), chunks, pure=False)
    except BaseException:
        client.close()
        raise
