"""Reading inputs into ``Document`` objects: one reader per format behind ``read_documents``."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from qualcode.errors import InputDataError, InputMissingError
from qualcode.ingest.captions import captions_to_transcript
from qualcode.ingest.encoding import decode_text
from qualcode.ingest.tables import read_survey_table
from qualcode.ingest.word import read_docx_text
from qualcode.models import Corpus, Document, InputFile, SkippedFile
from qualcode.turns import looks_like_transcript

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".text"})
CAPTION_SUFFIXES = frozenset({".vtt", ".srt"})
TABLE_SUFFIXES = frozenset({".csv", ".tsv", ".xlsx"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | CAPTION_SUFFIXES | TABLE_SUFFIXES | {".docx"}

__all__ = ["read_documents", "SUPPORTED_SUFFIXES", "list_input_files"]


def _unreadable(error: OSError) -> None:
    raise InputDataError(f"{error.filename}: cannot be read ({error.strerror})") from error


def _candidate_files(path: Path, skipped: list[SkippedFile]) -> list[tuple[Path, str]]:
    """(file, document id) pairs under ``path``; ids are paths relative to the folder named.

    Linked folders are followed once: a link back to a folder already read is listed in
    ``skipped`` instead of being read again (or forever). An unreadable folder is an error, as an
    unreadable file is: nothing named is left out without a word.
    """
    if path.is_file():
        return [(path, path.name)]
    found = []
    seen = {_identity(path)}
    for root, folders, files in os.walk(path, onerror=_unreadable, followlinks=True):
        kept = []
        for folder in sorted(folder for folder in folders if not folder.startswith(".")):
            identity = _identity(Path(root) / folder)
            if identity in seen:
                skipped.append(
                    SkippedFile(str(Path(root) / folder), "a link to a folder read already")
                )
            else:
                seen.add(identity)
                kept.append(folder)
        folders[:] = kept
        for name in sorted(files):
            if not name.startswith("."):
                file = Path(root) / name
                found.append((file, file.relative_to(path).as_posix()))
    return found


def _identity(folder: Path) -> tuple[int, int]:
    try:
        status = folder.stat()
    except OSError as error:
        _unreadable(error)
    return status.st_dev, status.st_ino


def list_input_files(
    paths: Iterable[str | os.PathLike[str]], skipped: list[SkippedFile] | None = None
) -> list[tuple[Path, str]]:
    """Every candidate file with its document id, in a stable order. Missing paths are an error.

    Folders not read (links to folders read already) are added to ``skipped``.
    """
    files: list[tuple[Path, str]] = []
    skipped = [] if skipped is None else skipped
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputMissingError(f"{path}: no such file or folder")
        files.extend(_candidate_files(path, skipped))
    return files


def _read_text_document(file: Path, doc_id: str, text: str, kind: str | None) -> Document:
    detected = kind or ("transcript" if looks_like_transcript(text) else "essay")
    return Document(doc_id=doc_id, source=str(file), kind=detected, text=text)


def _read_file(
    file: Path,
    data: bytes,
    doc_id: str,
    *,
    kind: str | None,
    text_column: str | None,
    id_column: str | None,
    sheet: str | None,
) -> list[Document]:
    suffix = file.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return [
            Document(
                doc_id=f"{doc_id}#{answer.respondent}",
                source=str(file),
                kind="survey",
                text=answer.text,
                attributes={"respondent": answer.respondent, **answer.attributes},
            )
            for answer in read_survey_table(
                file,
                text_column=text_column,
                id_column=id_column,
                data=data,
                sheet=sheet if suffix == ".xlsx" else None,
            )
        ]
    if suffix == ".docx":
        return [_read_text_document(file, doc_id, read_docx_text(file, data), kind)]
    text = decode_text(data, str(file))
    if suffix in CAPTION_SUFFIXES:
        return [
            Document(
                doc_id=doc_id,
                source=str(file),
                kind="transcript",
                text=captions_to_transcript(text, str(file)),
            )
        ]
    return [_read_text_document(file, doc_id, text, kind)]


def read_documents(
    paths: Iterable[str | os.PathLike[str]],
    *,
    kind: str | None = None,
    text_column: str | None = None,
    id_column: str | None = None,
    sheet: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Corpus:
    """Read files and folders (recursively, in sorted order) into documents.

    ``kind`` ("transcript" or "essay") overrides transcript detection for text files; survey
    tables are always one document per row, read from the first sheet of a workbook unless
    ``sheet`` names another. Unsupported files are listed in ``Corpus.skipped``.
    Raises ``InputMissingError`` for a missing path or an empty corpus, ``InputDataError`` for an
    unreadable file or duplicate document ids.
    """
    paths = list(paths)
    skipped: list[SkippedFile] = []
    candidates = list_input_files(paths, skipped)
    documents: list[Document] = []
    files: list[InputFile] = []
    origin: dict[str, str] = {}
    for done, (file, doc_id) in enumerate(candidates, start=1):
        suffix = file.suffix.lower()
        if file.name.startswith("~$"):
            skipped.append(SkippedFile(str(file), "an Office lock file"))
        elif suffix not in SUPPORTED_SUFFIXES:
            skipped.append(SkippedFile(str(file), f"unsupported file type '{suffix or file.name}'"))
        else:
            try:
                data = file.read_bytes()
            except OSError as error:
                raise InputDataError(f"{file}: cannot be read ({error.strerror})") from error
            read = _read_file(
                file,
                data,
                doc_id,
                kind=kind,
                text_column=text_column,
                id_column=id_column,
                sheet=sheet,
            )
            for document in read:
                if document.doc_id in origin:
                    raise InputDataError(
                        f"{file}: document id '{document.doc_id}' is also given by {origin[document.doc_id]}; "
                        "name each file once, or pass the folder that holds both"
                    )
                origin[document.doc_id] = str(file)
            empty = [document for document in read if not document.text.strip()]
            for document in empty:
                logger.warning("%s: no text; nothing to code", document.source)
            documents.extend(document for document in read if document.text.strip())
            files.append(
                InputFile(str(file), hashlib.sha256(data).hexdigest(), len(read) - len(empty))
            )
        if progress is not None:
            progress(done, len(candidates))
    for skip in skipped:
        logger.info("skipped %s: %s", skip.path, skip.reason)
    if not documents:
        named = ", ".join(str(path) for path in paths) or "(no paths given)"
        supported = " ".join(sorted(SUPPORTED_SUFFIXES))
        raise InputMissingError(f"{named}: no documents with text found (supported: {supported})")
    return Corpus(documents=tuple(documents), files=tuple(files), skipped=tuple(skipped))
