"""--jobs N and --dask give exactly the output of one process."""

import pytest

from conftest import SAMPLE
from qualcode import parallel
from qualcode.codebook import load_codebook
from qualcode.coding import CodingOptions, code_corpus
from qualcode.ingest import read_documents


def _fingerprint(result):
    return (
        [(s.segment_id, s.text, s.speaker, s.timestamp, s.is_interviewer) for s in result.segments],
        [
            (a.segment_id, a.code_id, a.source, a.status, a.confidence, a.evidence)
            for a in result.assignments
        ],
    )


@pytest.fixture(scope="module")
def sample():
    return read_documents([SAMPLE]), load_codebook()


@pytest.fixture(scope="module")
def one_process(sample, nlp):
    corpus, codebook = sample
    return _fingerprint(
        code_corpus(corpus, codebook, CodingOptions(jobs=1, representation="ngrams"), nlp=nlp)
    )


def test_chunks_keep_whole_documents_in_order(sample):
    corpus, _ = sample
    chunks = parallel.chunk_documents(corpus.documents, words_per_chunk=3000)
    assert len(chunks) > 3
    assert [d.doc_id for chunk in chunks for d in chunk] == [d.doc_id for d in corpus.documents]
    # Each chunk stops at the document that takes it to its size: the first (small, so the
    # writing starts soon) to 3000 // FIRST_CHUNK_SHARE words, the others to 3000.
    targets = [3000 // parallel.FIRST_CHUNK_SHARE] + [3000] * (len(chunks) - 1)
    for chunk, target in zip(chunks, targets):
        words = [len(document.text.split()) for document in chunk]
        assert sum(words[:-1]) < target
        assert sum(words) >= target or chunk is chunks[-1]


def test_all_cores_give_the_same_output(sample, one_process, monkeypatch, nlp):
    corpus, codebook = sample
    monkeypatch.setattr(parallel, "WORDS_PER_CHUNK", 3000)
    assert len(parallel.chunk_documents(corpus.documents)) > 2
    assert (
        _fingerprint(
            code_corpus(corpus, codebook, CodingOptions(jobs=2, representation="ngrams"), nlp=nlp)
        )
        == one_process
    )


def test_automatic_jobs_use_one_process_for_small_corpora(sample):
    corpus, _ = sample
    assert parallel.resolve_jobs(0, corpus.documents) == 1
    assert parallel.resolve_jobs(3, corpus.documents) == 3


def test_a_dask_cluster_gives_the_same_output(sample, one_process, monkeypatch, nlp):
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    corpus, codebook = sample
    monkeypatch.setattr(parallel, "WORDS_PER_CHUNK", 5000)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        result = code_corpus(
            corpus,
            codebook,
            CodingOptions(dask=cluster.scheduler_address, representation="ngrams"),
            nlp=nlp,
        )
    assert _fingerprint(result) == one_process


def test_an_unreachable_scheduler_is_a_clear_error(sample, monkeypatch, nlp):
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    from qualcode.errors import ConfigurationError

    corpus, codebook = sample
    monkeypatch.setattr(parallel, "DASK_CONNECT_TIMEOUT", "1s")
    with pytest.raises(
        ConfigurationError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"
    ):
        code_corpus(corpus, codebook, CodingOptions(dask="tcp://127.0.0.1:9"), nlp=nlp)


def test_chunks_reach_the_caller_in_document_order_from_all_cores(
    sample, one_process, monkeypatch, nlp
):
    corpus, codebook = sample
    monkeypatch.setattr(parallel, "WORDS_PER_CHUNK", 3000)
    streamed_segments, streamed_assignments, calls = [], [], []

    def receive(segments, assignments):
        calls.append(len(segments))
        streamed_segments.extend(segments)
        streamed_assignments.extend(assignments)

    result = code_corpus(
        corpus, codebook, CodingOptions(jobs=2, representation="ngrams"), nlp=nlp, on_chunk=receive
    )
    assert _fingerprint(result) == one_process
    assert len(calls) == len(parallel.chunk_documents(corpus.documents)) > 2
    assert len(streamed_segments) == len(result.segments) and len(streamed_assignments) == len(
        result.assignments
    )
    assert streamed_segments == list(result.segments) and streamed_assignments == list(
        result.assignments
    )


def test_segments_and_assignments_cross_processes_with_every_field():
    import dataclasses
    import pickle

    from qualcode.models import CodeAssignment, Evidence, Segment

    segment = Segment("d:1-9", "d", 1, 9, "some text", 3, "P1", "00:01:02", True)
    assignment = CodeAssignment(
        "d:1-9",
        "trust",
        "classifier",
        "downgraded",
        0.25,
        (Evidence('phrase "x"', "x", 4, 5), Evidence("classifier", "text")),
    )
    for value in (segment, assignment, *assignment.evidence):
        fields = [getattr(value, field.name) for field in dataclasses.fields(value)]
        defaults = [field.default for field in dataclasses.fields(value)]
        assert fields != defaults
        assert pickle.loads(pickle.dumps(value)) == value


def test_a_chunk_crosses_processes_with_every_field_of_its_segments_and_assignments():
    import dataclasses
    import pickle

    import numpy as np

    from qualcode.chunks import ChunkResult
    from qualcode.models import CodeAssignment, Evidence, Segment

    segments = [
        Segment("d:1-9", "d", 1, 9, "some text", 3, "P1", "00:01:02", True),
        Segment("d:10-20", "d", 10, 20, "more text", 4),
    ]
    assignments = [
        CodeAssignment(
            "d:1-9",
            "trust",
            "classifier",
            "downgraded",
            0.25,
            (Evidence('phrase "x"', "x", 4, 5), Evidence("classifier", "text")),
        ),
        CodeAssignment("d:10-20", "empathy", "rule"),
    ]
    chunk = ChunkResult(
        1, segments, assignments, None, True, np.array([[0.25, 0.5]], dtype=np.float32)
    )
    copy = pickle.loads(pickle.dumps(chunk))
    assert copy.segments == segments and copy.assignments == assignments
    assert (copy.documents, copy.coded, copy.ngrams) == (1, True, None)
    np.testing.assert_array_equal(copy.probabilities, chunk.probabilities)
    _, (_, segment_rows, assignment_rows, *_) = chunk.__reduce__()
    assert len(segment_rows[0]) == len(dataclasses.fields(Segment))  # a new field must cross too
    assert len(assignment_rows[0]) == len(dataclasses.fields(CodeAssignment))
    assert len(assignment_rows[0][-1][0]) == len(dataclasses.fields(Evidence))


@pytest.mark.skipif(
    not hasattr(__import__("os"), "nice"), reason="the platform has no process priorities"
)
@pytest.mark.parametrize("yields", [True, False])
def test_workers_yield_the_cpu_to_the_process_writing_the_output_when_they_fill_the_cores(
    sample, yields
):
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    from qualcode.chunks import ChunkTask

    if os.nice(0) >= 19:
        pytest.skip("the tests already run at the lowest priority")
    _, codebook = sample
    task = ChunkTask(codebook, "blank:en", None, (), False)
    context = (
        multiprocessing.get_context("fork")
        if "fork" in multiprocessing.get_all_start_methods()
        else None
    )
    with ProcessPoolExecutor(
        1,
        mp_context=context,
        initializer=parallel._initialise_worker,
        initargs=(task, (), None, yields),
    ) as pool:
        worker_niceness = pool.submit(os.nice, 0).result()
    assert worker_niceness == (
        min(19, os.nice(0) + parallel.WORKER_NICENESS) if yields else os.nice(0)
    )
