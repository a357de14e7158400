"""Word documents (.docx): the body's paragraphs, one blank line between them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from qualcode.errors import InputDataError
from qualcode.ingest.encoding import normalise_newlines
from qualcode.safezip import check_archive

# python-docx holds every part of the package in memory, parsed: a body of this size is about
# 80,000 pages of text, and far past it lies a zip bomb, not a transcript.
MAX_DOCX_PART_BYTES = 200 * 1024 * 1024
MAX_DOCX_BYTES = 1024 * 1024 * 1024
_RESAVE = "open it in Word or LibreOffice and save it again as .docx"


def read_docx_text(path: Path, data: bytes | None = None) -> str:
    """The document's paragraphs; ``data`` is the file's bytes when they were read already."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from lxml.etree import XMLSyntaxError

    data = path.read_bytes() if data is None else data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            check_archive(
                path, archive, max_entry_bytes=MAX_DOCX_PART_BYTES, max_total_bytes=MAX_DOCX_BYTES
            )
    except zipfile.BadZipFile:
        what = (
            "it is an old Word .doc file"
            if data.startswith(b"\xd0\xcf\x11\xe0")
            else "it is not the zip package a .docx is"
        )
        raise InputDataError(
            f"{path}: not a readable Word .docx document ({what}); {_RESAVE}"
        ) from None
    try:
        document = docx.Document(io.BytesIO(data))
    except (
        PackageNotFoundError,
        zipfile.BadZipFile,
        XMLSyntaxError,
        KeyError,
        ValueError,
    ) as error:
        raise InputDataError(
            f"{path}: not a readable Word .docx document ({error.__class__.__name__}: {error}); "
            f"{_RESAVE}"
        ) from error
    paragraphs = [normalise_newlines(paragraph.text).strip() for paragraph in document.paragraphs]
    return "\n\n".join(paragraph for paragraph in paragraphs if paragraph)
