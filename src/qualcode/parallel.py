"""Where chunks run: in this process, on all cores, or on a Dask cluster, with the same output as one process.

Documents go out in chunks of whole documents, in order (``chunks.process_chunk`` is the work on
one). Each worker builds the spaCy pipeline and compiles the rules once. Results come back in the
order the chunks left, so ``--jobs 4`` and ``--dask ADDRESS`` write exactly what ``--jobs 1``
writes, and the caller writes each chunk while later ones are computed.

Only a few chunks per worker are in flight at a time, so a slow writer never piles up finished
chunks in memory. Given the classifier, workers classify and combine the chunks as well.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future

from qualcode.chunks import ChunkResult, ChunkTask, compiled, process_chunk
from qualcode.errors import ConfigurationError
from qualcode.models import Document

logger = logging.getLogger(__name__)

WORDS_PER_CHUNK = 25_000
FIRST_CHUNK_SHARE = (
    8  # the first chunk holds WORDS_PER_CHUNK // FIRST_CHUNK_SHARE words (chunk_documents)
)
# Chunks in flight per worker: enough to keep every worker busy while the caller writes.
CHUNKS_AHEAD_PER_WORKER = 4
DASK_CONNECT_TIMEOUT = "10s"
# How far below the writing process workers run (see yield_to_the_writer): 10 gives the writer
# about nine tenths of a core it shares with a worker.
WORKER_NICENESS = 10
_PR_SET_PDEATHSIG = 1
# Below this many words, starting worker processes costs more than it saves.
PARALLEL_FROM_WORDS = 150_000


def chunk_documents(
    documents: Sequence[Document], words_per_chunk: int | None = None
) -> list[list[Document]]:
    """Consecutive runs of whole documents of about ``words_per_chunk`` words (default ``WORDS_PER_CHUNK``).

    The first chunk is an eighth of that: the process writing the output has nothing to do until
    it is back, and a small one comes back sooner.
    """
    words_per_chunk = words_per_chunk or WORDS_PER_CHUNK
    chunks: list[list[Document]] = []
    current: list[Document] = []
    words = 0
    for document in documents:
        current.append(document)
        words += len(document.text.split())
        if words >= (words_per_chunk if chunks else words_per_chunk // FIRST_CHUNK_SHARE):
            chunks.append(current)
            current, words = [], 0
    if current:
        chunks.append(current)
    return chunks


def resolve_jobs(jobs: int, documents: Sequence[Document]) -> int:
    """``jobs`` 0 means automatic: every core for a corpus big enough to gain, else one process."""
    if jobs > 0:
        return jobs
    words = 0
    for document in documents:  # stops counting once the corpus is big enough: start-up cost
        words += len(document.text.split())
        if words >= PARALLEL_FROM_WORDS:
            return os.cpu_count() or 1
    return 1


class ChunkStream:
    """The chunk results of a run, in document order, computed by a backend (see ``chunk_results``)."""

    def __init__(self, backend, chunks: Sequence, ahead: int):
        self._backend = backend
        self._waiting = collections.deque(
            chunks
        )  # what the backend's ``submit`` takes: documents or spans
        self._ahead = max(1, ahead)
        self._in_flight: collections.deque = collections.deque()

    def _fill(self) -> None:
        while self._waiting and len(self._in_flight) < self._ahead:
            self._in_flight.append(self._backend.submit(self._waiting.popleft()))

    def __iter__(self) -> Iterator[ChunkResult]:
        self._fill()
        while self._in_flight:
            result = self._backend.result(self._in_flight.popleft())
            self._fill()
            yield result

    def cancel(self) -> None:
        for pending in self._in_flight:
            pending.cancel()
        self._in_flight.clear()
        self._waiting.clear()


class _InProcess:
    """Chunks computed here, one at a time, when the caller reads them."""

    def __init__(self, task: ChunkTask, nlp, model):
        self.task, self.nlp, self.model = task, nlp, model

    def submit(self, chunk) -> Future:
        future: Future = Future()
        future.set_result(chunk)
        return future

    def result(self, future: Future) -> ChunkResult:
        return process_chunk(self.task, future.result(), self.nlp, self.model)


_WORKER_TASK: ChunkTask | None = None
_WORKER_DOCUMENTS: Sequence[Document] = ()
_WORKER_MODEL = None


@contextlib.contextmanager
def sigterm_held_while_forking() -> Iterator[None]:
    """Hold SIGTERM in this thread while it forks children that call ``die_with_parent``.

    A child forked with SIGTERM held keeps it pending until it has reset its handler, so a child
    stopped the moment it starts still ends; this process takes a signal that came meanwhile
    once the fork is done.
    """
    import signal

    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def die_with_parent() -> None:
    """Ask Linux to end this process when the coding process dies, so a killed run leaves no orphans.

    A forked child also takes SIGTERM's default action again. It inherited the command's handler,
    which removes the command's own temporaries and which Python runs only on the main thread:
    with that thread waiting in a read and the signal taken by a BLAS thread, a terminated child
    waited for ever, and so did the run that joined it (about one failed run in twenty).
    """
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):  # held by sigterm_held_while_forking until now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def yield_to_the_writer() -> None:
    """Lower this worker's scheduling priority below the process that writes the output.

    With a worker per core (the default), a run has one more process than cores: the workers
    and the process writing the workbook, which no one can help and which the whole run waits
    for. At equal priority it got about two thirds of a core and fell behind, then wrote its
    backlog alone while a core stood idle; yielding to it, the workers take every cycle it
    leaves. They yield to the machine's other work too, as a batch job should. Where the
    platform has no ``nice`` (or refuses it), the workers run as they are.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.nice(WORKER_NICENESS)


def _initialise_worker(task: ChunkTask, documents: Sequence[Document], model, yields: bool) -> None:
    global _WORKER_TASK, _WORKER_DOCUMENTS, _WORKER_MODEL
    die_with_parent()
    if yields:
        yield_to_the_writer()
    _WORKER_TASK, _WORKER_DOCUMENTS, _WORKER_MODEL = task, documents, model
    compiled(task)


def _run_in_worker(span: tuple[int, int]) -> ChunkResult:
    return process_chunk(_WORKER_TASK, _WORKER_DOCUMENTS[span[0] : span[1]], model=_WORKER_MODEL)


class _LocalPool:
    """Chunks computed by worker processes.

    The workers are given every document and the model when they start (a forked worker inherits
    them without copying), so a chunk goes out as its span of document positions.
    """

    def __init__(self, pool):
        self.pool = pool

    def submit(self, span: tuple[int, int]) -> Future:
        return self.pool.submit(_run_in_worker, span)

    def result(self, future: Future) -> ChunkResult:
        return future.result()


class _Dask:
    """Chunks computed on a Dask cluster; the task and the model are scattered to every worker once."""

    def __init__(self, client, task: ChunkTask, model):
        self.client = client
        self.task = client.scatter(task, broadcast=True)
        self.model = client.scatter(model, broadcast=True) if model is not None else None

    def submit(self, chunk) -> Future:
        return self.client.submit(process_chunk, self.task, chunk, None, self.model, pure=False)

    def result(self, future) -> ChunkResult:
        return future.result()

    def workers(self) -> int:
        return max(1, sum(self.client.nthreads().values()))


def _connect_to_dask(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise ConfigurationError(
            "--dask needs the dask extra: pip install 'qualcode[dask]'"
        ) from None
    try:
        return Client(address, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as error:
        raise ConfigurationError(
            f"cannot reach the Dask scheduler at {address} ({error})"
        ) from error


@contextlib.contextmanager
def chunk_results(
    documents: Sequence[Document],
    task: ChunkTask,
    *,
    jobs: int = 1,
    dask_address: str | None = None,
    nlp=None,
    model=None,
) -> Iterator[ChunkStream]:
    """A ``ChunkStream`` over ``documents``: iterate it for the chunk results in document order.

    With ``model`` (a ``ClassifierModel``), or without a classifier in ``task``, every chunk comes
    back coded. Chunks are sent when the stream is first read.
    """
    chunks = chunk_documents(documents)
    if dask_address:
        client = _connect_to_dask(dask_address)
        try:
            backend = _Dask(client, task, model)
            stream = ChunkStream(backend, chunks, CHUNKS_AHEAD_PER_WORKER * backend.workers())
            try:
                yield stream
            finally:
                stream.cancel()
        finally:
            client.close()
    elif jobs > 1 and len(chunks) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        compiled(task, nlp)  # forked workers inherit the compiled rules
        context = (
            multiprocessing.get_context("fork")
            if "fork" in multiprocessing.get_all_start_methods()
            else None
        )
        workers = min(jobs, len(chunks))
        ends = list(itertools.accumulate(len(chunk) for chunk in chunks))
        spans = list(zip([0, *ends[:-1]], ends))
        # Workers yield to the writing process when they leave it no core of its own.
        yields = workers >= (os.cpu_count() or 1)
        with ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_initialise_worker,
            initargs=(task, documents, model, yields),
        ) as pool:
            stream = ChunkStream(_LocalPool(pool), spans, CHUNKS_AHEAD_PER_WORKER * workers)
            try:
                yield stream
            except BaseException:
                stream.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    else:
        yield ChunkStream(_InProcess(task, nlp, model), chunks, 1)
