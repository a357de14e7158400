"""Turning the bytes of a text file into normalised text."""

from __future__ import annotations

import codecs
import logging

from qualcode.errors import InputDataError

logger = logging.getLogger(__name__)


def normalise_newlines(text: str) -> str:
    """CRLF and lone CR become LF, so offsets mean the same whichever system wrote the file."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode_text(data: bytes, path: str) -> str:
    """Decode UTF-8 (with or without BOM) or UTF-16 (with BOM); else fall back to cp1252 and warn.

    The result has normalised newlines and no BOM.
    """
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return normalise_newlines(data.decode(encoding))
            except UnicodeDecodeError as error:
                raise InputDataError(
                    f"{path}: starts with a {encoding.upper()} byte order mark but byte {error.start} is not valid {encoding.upper()}"
                ) from error
    _refuse_binary(data, path)
    if _is_utf8(data):
        return normalise_newlines(data.decode("utf-8"))
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; Latin-1 maps every byte, so nothing is lost.
        text = data.decode("latin-1")
    logger.warning(
        "%s: not valid UTF-8; read as Windows-1252 (cp1252). Save it as UTF-8 to be sure.", path
    )
    return normalise_newlines(text)


# Control bytes that text files hold: tab, line feed, form feed, carriage return (and ESC, rarely).
_TEXT_CONTROLS = frozenset(b"\t\n\x0c\r\x1b")
_SAMPLE_BYTES = 65_536


def _refuse_binary(data: bytes, path: str) -> None:
    """Refuse what is not text: UTF-16 without a byte order mark, or bytes mostly NUL or control codes."""
    sample = data[:_SAMPLE_BYTES]
    if not sample:
        return
    nuls = sample.count(0)
    if nuls:
        odd, even = sample[1::2].count(0), sample[0::2].count(0)
        if nuls >= len(sample) // 4 and max(odd, even) >= 0.9 * nuls:
            order = "little-endian" if odd > even else "big-endian"
            raise InputDataError(
                f"{path}: looks like UTF-16 ({order}) text without a byte order mark; "
                "save it as UTF-8 (in Notepad or Word: Save As, Encoding UTF-8)"
            )
        raise InputDataError(
            f"{path}: holds NUL bytes, so it is not a text file (a binary or damaged file?); "
            "export the text as .txt, .docx or .csv"
        )
    controls = sum(1 for byte in sample if byte < 32 and byte not in _TEXT_CONTROLS)
    if controls > len(sample) // 20:
        raise InputDataError(
            f"{path}: {100 * controls // len(sample)}% of its first bytes are control codes, so it "
            "is not a text file (a binary or damaged file?); export the text as .txt, .docx or .csv"
        )


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
