"""Zip archives from elsewhere (.docx, .xlsx, .qdpx): refuse decompression bombs and path escapes before reading."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path, PurePosixPath

from qualcode.errors import InputDataError

MAX_ENTRY_BYTES = 512 * 1024 * 1024
MAX_TOTAL_BYTES = 2 * 1024 * 1024 * 1024
MAX_RATIO = 200
MAX_ENTRIES = 100_000
# Below this an entry may expand as much as it likes: text compresses well, and a few MB is no harm.
_RATIO_APPLIES_ABOVE = 10_000_000


def check_archive(
    path: Path,
    archive: zipfile.ZipFile,
    *,
    max_entry_bytes: int = MAX_ENTRY_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> list[zipfile.ZipInfo]:
    """The archive's entries, once each is known to unpack to a sane size inside the archive's own folder.

    Sizes are those the archive declares; ``zipfile`` never reads past them, so a reader that
    trusts them after this check cannot be made to unpack more.
    """
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise InputDataError(f"{path}: {len(infos)} entries; refused as absurdly many")
    total = 0
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise InputDataError(
                f"{path}: entry '{name}' points outside the archive's folder (zip slip); refused"
            )
        if info.file_size > max_entry_bytes:
            raise InputDataError(
                f"{path}: entry '{name}' unpacks to {info.file_size:,} bytes "
                f"(the limit is {max_entry_bytes:,}); refused as too large"
            )
        if (
            info.compress_size
            and info.file_size / info.compress_size > MAX_RATIO
            and info.file_size > _RATIO_APPLIES_ABOVE
        ):
            raise InputDataError(
                f"{path}: entry '{name}' expands {info.file_size // info.compress_size}-fold; "
                "refused as a likely zip bomb"
            )
        total += info.file_size
    if total > max_total_bytes:
        raise InputDataError(
            f"{path}: unpacks to {total:,} bytes (the limit is {max_total_bytes:,}); refused as too large"
        )
    return infos
