"""Where chunks run: in this process, on all cores, or on a Dask cluster, with the same output as one process.

Documents go out in chunks of whole documents, in order (``chunks.process_chunk`` is the work on
one). Each worker builds the spaCy pipeline and compiles the rules once. Results come back in the
order the chunks left, so ``--jobs 4`` and ``--dask ADDRESS`` write exactly what ``--jobs 1``
writes, and the caller writes each chunk while later ones are computed.

Only a few chunks per worker are in flight at a time, so a slow writer never piles up finished
chunks in memory. Once the caller hands the classifier over (``ChunkStream.use_model``), the
chunks sent after that come back classified and combined as well.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path

from qualcode.chunks import ChunkResult, ChunkTask, compiled, process_chunk
from qualcode.errors import ConfigurationError
from qualcode.models import Document

logger = logging.getLogger(__name__)

WORDS_PER_CHUNK = 25_000
# Chunks in flight per worker: enough to keep every worker busy while the caller writes.
CHUNKS_AHEAD_PER_WORKER = 4
DASK_CONNECT_TIMEOUT = "10s"
_PR_SET_PDEATHSIG = 1
# Below this many words, starting worker processes costs more than it saves.
PARALLEL_FROM_WORDS = 150_000


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
    words = 0
    for document in documents:  # stops counting once the corpus is big enough: start-up cost
        words += len(document.text.split())
        if words >= PARALLEL_FROM_WORDS:
            return os.cpu_count() or 1
    return 1


class ChunkStream:
    """The chunk results of a run, in document order, computed by a backend (see ``chunk_results``)."""

    def __init__(self, backend, chunks: Sequence, ahead: int, model=None):
        self._backend = backend
        self._waiting = collections.deque(chunks)  # what the backend's ``submit`` takes: documents or spans
        self._ahead = max(1, ahead)
        self._in_flight: collections.deque = collections.deque()
        self._model = None
        if model is not None:
            self.use_model(model)

    def _fill(self) -> None:
        while self._waiting and len(self._in_flight) < self._ahead:
            self._in_flight.append(self._backend.submit(self._waiting.popleft(), self._model))

    def use_model(self, model) -> None:
        """Classify and combine the chunks sent from now on where they are computed."""
        self._model = self._backend.share_model(model)

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

    def __init__(self, task: ChunkTask, nlp):
        self.task, self.nlp = task, nlp

    def submit(self, chunk, model) -> Future:
        future: Future = Future()
        future.set_result((chunk, model))
        return future

    def result(self, future: Future) -> ChunkResult:
        chunk, model = future.result()
        return process_chunk(self.task, chunk, self.nlp, model)

    def share_model(self, model):
        return model


_WORKER_TASK: ChunkTask | None = None
_WORKER_DOCUMENTS: Sequence[Document] = ()
_WORKER_MODELS: dict[str, object] = {}


def die_with_parent() -> None:
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


def _initialise_worker(task: ChunkTask, documents: Sequence[Document]) -> None:
    global _WORKER_TASK, _WORKER_DOCUMENTS
    die_with_parent()
    _WORKER_TASK, _WORKER_DOCUMENTS = task, documents
    compiled(task)


def _run_in_worker(span: tuple[int, int], model_path: str | None) -> ChunkResult:
    model = None
    if model_path is not None:
        if model_path not in _WORKER_MODELS:
            from qualcode.model_cache import read_model

            _WORKER_MODELS.clear()
            _WORKER_MODELS[model_path] = read_model(Path(model_path))
        model = _WORKER_MODELS[model_path]
    return process_chunk(_WORKER_TASK, _WORKER_DOCUMENTS[span[0]:span[1]], model=model)


class _LocalPool:
    """Chunks computed by worker processes.

    The workers are given every document when they start (a forked worker inherits them without
    copying), so a chunk goes out as its span of document positions; the model reaches them as a
    file they read once.
    """

    def __init__(self, pool, folder: Path):
        self.pool, self.folder = pool, folder

    def submit(self, span: tuple[int, int], model_path) -> Future:
        return self.pool.submit(_run_in_worker, span, model_path)

    def result(self, future: Future) -> ChunkResult:
        return future.result()

    def share_model(self, model) -> str:
        from qualcode.model_cache import write_model

        path = self.folder / "model.npz"
        write_model(path, model)
        return str(path)



class _Dask:
    """Chunks computed on a Dask cluster; the task and the model are scattered to every worker once."""

    def __init__(self, client, task: ChunkTask):
        self.client = client
        self.task = client.scatter(task, broadcast=True)

    def submit(self, chunk, model) -> Future:
        return self.client.submit(process_chunk, self.task, chunk, None, model, pure=False)

    def result(self, future) -> ChunkResult:
        return future.result()

    def share_model(self, model):
        return self.client.scatter(model, broadcast=True)


    def workers(self) -> int:
        return max(1, sum(self.client.nthreads().values()))


def _connect_to_dask(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise ConfigurationError("--dask needs the dask extra: pip install 'qualcode[dask]'") from None
    try:
        return Client(address, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as error:
        raise ConfigurationError(f"cannot reach the Dask scheduler at {address} ({error})") from error


@contextlib.contextmanager
def chunk_results(documents: Sequence[Document], task: ChunkTask, *, jobs: int = 1, dask_address: str | None = None,
                  nlp=None, model=None) -> Iterator[ChunkStream]:
    """A ``ChunkStream`` over ``documents``: iterate it for the chunk results in document order.

    With ``model`` (a ``ClassifierModel``), or without a classifier in ``task``, every chunk comes
    back coded. Chunks are sent when the stream is first read.
    """
    chunks = chunk_documents(documents)
    if dask_address:
        client = _connect_to_dask(dask_address)
        try:
            backend = _Dask(client, task)
            stream = ChunkStream(backend, chunks, CHUNKS_AHEAD_PER_WORKER * backend.workers(), model)
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
        context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
        workers = min(jobs, len(chunks))
        ends = list(itertools.accumulate(len(chunk) for chunk in chunks))
        spans = list(zip([0, *ends[:-1]], ends))
        with tempfile.TemporaryDirectory(prefix="qualcode-run-") as folder, \
                ProcessPoolExecutor(workers, mp_context=context, initializer=_initialise_worker,
                                    initargs=(task, documents)) as pool:
            stream = ChunkStream(_LocalPool(pool, Path(folder)), spans, CHUNKS_AHEAD_PER_WORKER * workers, model)
            try:
                yield stream
            except BaseException:
                stream.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    else:
        yield ChunkStream(_InProcess(task, nlp), chunks, 1, model)
