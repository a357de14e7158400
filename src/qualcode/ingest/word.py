"""Word documents (.docx): the body's paragraphs, one blank line between them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from qualcode.errors import InputDataError
from qualcode.ingest.encoding import normalise_newlines


def read_docx_text(path: Path, data: bytes | None = None) -> str:
    """The document's paragraphs; ``data`` is the file's bytes when they were read already."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from lxml.etree import XMLSyntaxError

    try:
        document = docx.Document(io.BytesIO(data) if data is not None else str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, XMLSyntaxError, KeyError, ValueError) as error:
        raise InputDataError(f"{path}: not a readable Word .docx document ({error.__class__.__name__})") from error
    paragraphs = [normalise_newlines(paragraph.text).strip() for paragraph in document.paragraphs]
    return "\n\n".join(paragraph for paragraph in paragraphs if paragraph)
