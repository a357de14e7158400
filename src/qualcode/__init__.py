"""qualcode: rule- and classifier-assisted coding of qualitative data against a codebook.

The pipeline in three imports::

    from qualcode import read_documents, load_codebook, code_corpus, write_result
    corpus = read_documents(["corpora/sample"])
    result = code_corpus(corpus, load_codebook())
    write_result(result, "coded.xlsx")
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qualcode")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

from qualcode.codebook import default_codebook_path, load_codebook, validate_codebook  # noqa: E402
from qualcode.coding import CodingOptions, code_corpus  # noqa: E402
from qualcode.export import write_result  # noqa: E402
from qualcode.ingest import read_documents  # noqa: E402
from qualcode.segment import build_pipeline, segment_documents  # noqa: E402

__all__ = [
    "__version__",
    "CodingOptions",
    "build_pipeline",
    "code_corpus",
    "default_codebook_path",
    "load_codebook",
    "read_documents",
    "segment_documents",
    "validate_codebook",
    "write_result",
]
