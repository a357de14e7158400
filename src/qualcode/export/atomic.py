"""Writing outputs so that an interrupted run never leaves a half-written file or loses the old one."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import re
import secrets
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from qualcode.errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None


def check_output_path(
    output: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]]
) -> Path:
    """Refuse an output that is an input, lies inside an input folder, holds an input, or has no folder to go in."""
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
        if resolved in source.parents:
            # Replacing a folder of CSV files would take the input with it.
            raise OutputError(
                f"{output}: the output folder holds the input {raw}; write the output elsewhere"
            )
    parent = resolved.parent
    if not parent.is_dir():
        raise OutputError(f"{output}: folder {output.parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{output}: folder {output.parent} is not writable")
    if output.exists() and not os.access(output, os.W_OK):
        raise OutputError(f"{output}: the existing file is not writable")
    return output


def _temporary_names(target: Path) -> Iterator[Path]:
    """Temporaries this module has made for ``target``, by any run."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{12}}\.tmp")
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            if pattern.fullmatch(entry.name):
                yield target.parent / entry.name


def _lock(path: Path) -> int | None:
    """Hold an exclusive lock on ``path`` for as long as the returned descriptor is open; None if another holds it.

    The lock marks a temporary as in use: it goes when its run ends, however it ends (kill -9
    included), which is how a later run tells a stale temporary from a running one's.
    """
    if fcntl is None:  # pragma: no cover - not on POSIX
        return None
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete temporaries of ``target`` left by runs that were killed; a running run's are left alone."""
    removed = []
    for temporary in _temporary_names(target):
        descriptor = _lock(temporary)
        if descriptor is None:
            continue
        try:
            if temporary.is_dir():
                shutil.rmtree(temporary, ignore_errors=True)
            else:
                temporary.unlink(missing_ok=True)
            removed.append(temporary)
        finally:
            os.close(descriptor)
    return removed


@contextlib.contextmanager
def _beside(target: Path, kind: str, create) -> Iterator[Path]:
    """A new temporary path beside ``target``, made by ``create(path)`` (a ``kind``: file or folder), locked while in use.

    Unlike ``tempfile``, whose files only their owner may read, ``create`` lets the umask decide,
    as for any file a program writes: a workbook in a shared project folder stays readable there.
    Temporaries that killed runs left beside ``target`` are removed first.
    """
    remove_stale_temporaries(target)
    for _ in range(100):
        temporary = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        # Known as in use before it exists: a SIGTERM between making it and noting it would leave
        # it behind (a test that signals as soon as the file appears hit that window under load).
        _IN_USE.add(temporary)
        try:
            create(temporary)
        except FileExistsError:
            _IN_USE.discard(temporary)
            continue
        except OSError as error:
            _IN_USE.discard(temporary)
            raise OutputError(
                f"{target}: cannot create a {kind} in {target.parent} ({error.strerror})"
            ) from error
        break
    else:
        raise OutputError(f"{target}: cannot find a free temporary name in {target.parent}")
    descriptor = _lock(temporary)
    try:
        yield temporary
    finally:
        _IN_USE.discard(temporary)
        if descriptor is not None:
            os.close(descriptor)


# The temporaries this process is writing, for remove_temporaries_in_use.
_IN_USE: set[Path] = set()


def remove_temporaries_in_use() -> None:
    """Delete every temporary this process is writing, for a process about to end at once (SIGTERM).

    Safe at any point of a write: a temporary already renamed into place is gone by its old name.
    """
    for temporary in list(_IN_USE):
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                temporary.unlink()


# Errors that mean the output's disk or quota, not the run, failed.
_WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def _write_failure(error: BaseException) -> OSError | None:
    """The OSError behind ``error`` when writing the output failed for lack of room (or a bad disk)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _WRITE_FAILURES:
            return error
        # xlsxwriter wraps the OSError as its only argument; others chain it.
        wrapped = error.args[0] if error.args and isinstance(error.args[0], BaseException) else None
        error = wrapped or error.__cause__ or error.__context__
    return None


def _release_quietly(error: BaseException) -> None:
    """Drop what the failed writer still holds, without the tracebacks its finalizers print.

    A zip file left open by the writer tries to flush once more when it is collected, fails again
    for the same lack of room, and Python prints that second failure, which says nothing new.
    """
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: (
        None if isinstance(unraisable.exc_value, OSError) else hook(unraisable)
    )
    try:
        while error is not None:
            traceback.clear_frames(error.__traceback__)
            error = error.__cause__ or error.__context__
        gc.collect()
    finally:
        sys.unraisablehook = hook


def _cannot_write(target: Path, error: BaseException) -> OutputError:
    failure = _write_failure(error)
    _release_quietly(error)
    return OutputError(
        f"{target}: cannot be written ({failure.strerror}); nothing was replaced, "
        "and no partial file is left"
    )


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


def _keep_permissions(target: Path, replacement: Path) -> None:
    """Give ``replacement`` the permissions of the ``target`` it replaces, if there is one."""
    with contextlib.suppress(
        OSError
    ):  # gone meanwhile, or not ours to change: the umask's say stands
        shutil.copymode(target, replacement)


@contextlib.contextmanager
def atomic_file(
    target: Path, *, before_replace: Callable[[], None] | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one rename.

    The new file has the permissions of the one it replaces, else those the umask gives.
    ``before_replace`` runs just before the rename; if it raises, ``target`` stays as it is.
    """
    with _beside(target, "file", _new_file) as temporary:
        try:
            yield temporary
            if before_replace is not None:
                before_replace()
            _keep_permissions(target, temporary)
            os.replace(temporary, target)
        except BaseException as error:
            temporary.unlink(missing_ok=True)
            if _write_failure(error):
                raise _cannot_write(target, error) from error
            raise


@contextlib.contextmanager
def atomic_folder(
    target: Path, *, before_replace: Callable[[], None] | None = None
) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it takes ``target``'s place (permissions and
    ``before_replace`` as ``atomic_file``)."""
    with _beside(target, "folder", lambda path: os.mkdir(path, 0o777)) as temporary:
        try:
            yield temporary
            if before_replace is not None:
                before_replace()
            _keep_permissions(target, temporary)
            if target.exists():
                previous = target.parent / f".{target.name}.{secrets.token_hex(6)}.old"
                os.replace(target, previous)
                os.replace(temporary, target)
                shutil.rmtree(previous, ignore_errors=True)
            else:
                os.replace(temporary, target)
        except BaseException as error:
            shutil.rmtree(temporary, ignore_errors=True)
            if _write_failure(error):
                raise _cannot_write(target, error) from error
            raise
