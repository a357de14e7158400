"""Writing outputs so that an interrupted run never leaves a half-written file or loses the old one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from qualcode.errors import OutputError


def check_output_path(output: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]]) -> Path:
    """Refuse an output that is an input, lies inside an input folder, or has no folder to go in."""
    output = Path(output)
    resolved = output.resolve()
    sources = [(raw, Path(raw).resolve()) for raw in inputs]
    if any(resolved == source for _, source in sources):
        raise OutputError(f"{output}: the output is also an input; choose another output path")
    for raw, source in sources:
        if source.is_dir() and source in resolved.parents:
            raise OutputError(
                f"{output}: the output is inside the input folder {raw}, so the next run would read it as input; "
                "write it elsewhere"
            )
    parent = resolved.parent
    if not parent.is_dir():
        raise OutputError(f"{output}: folder {output.parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{output}: folder {output.parent} is not writable")
    if output.exists() and not os.access(output, os.W_OK):
        raise OutputError(f"{output}: the existing file is not writable")
    return output


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one rename."""
    try:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise OutputError(f"{target}: cannot create a file in {target.parent} ({error.strerror})") from error
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it takes ``target``'s place."""
    try:
        temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as error:
        raise OutputError(f"{target}: cannot create a folder in {target.parent} ({error.strerror})") from error
    try:
        yield temporary
        if target.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            previous.rmdir()
            os.replace(target, previous)
            os.replace(temporary, target)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
