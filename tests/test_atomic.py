"""Outputs replace their target in one rename, with the permissions a researcher's files get."""

import os
import stat

import pytest

from qualcode.errors import OutputError
from qualcode.export.atomic import atomic_file, atomic_folder

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_permissions_the_umask_gives(tmp_path, umask_022):
    target = tmp_path / "coded.xlsx"
    with atomic_file(target) as temporary:
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o644
    assert [path.name for path in tmp_path.iterdir()] == ["coded.xlsx"]


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask_022):
    target = tmp_path / "coded.xlsx"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with atomic_file(target) as temporary:
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "coded.xlsx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and [path.name for path in tmp_path.iterdir()] == [
        "coded.xlsx"
    ]


def test_a_new_folder_gets_the_permissions_the_umask_gives_and_replaces_the_old(
    tmp_path, umask_022
):
    target = tmp_path / "tables"
    target.mkdir()
    (target / "old.csv").write_text("old")
    target.chmod(0o750)
    with atomic_folder(target) as folder:
        (folder / "segments.csv").write_text("new")
    assert [path.name for path in target.iterdir()] == ["segments.csv"] and _mode(target) == 0o750
    fresh = tmp_path / "fresh"
    with atomic_folder(fresh) as folder:
        (folder / "segments.csv").write_text("new")
    assert _mode(fresh) == 0o755 and sorted(path.name for path in tmp_path.iterdir()) == [
        "fresh",
        "tables",
    ]


def test_a_folder_that_cannot_take_the_output_is_a_clear_error(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(
        OutputError,
        match=r"coded.xlsx: cannot create a file in .*missing \(No such file or directory\)",
    ):
        with atomic_file(missing / "coded.xlsx"):
            pass
    with pytest.raises(
        OutputError,
        match=r"tables: cannot create a folder in .*missing \(No such file or directory\)",
    ):
        with atomic_folder(missing / "tables"):
            pass
