"""A study: a folder with ``qualcode.toml`` and ``qualcode.sqlite`` that keeps a project's history.

The database (stdlib ``sqlite3``, WAL mode, schema versioned by ``PRAGMA user_version`` with
migrations) holds the documents with their content hash, the segments and machine codings of
every run, every codebook version applied (full text and sha256), and every human decision with
its coder and time. Every write is one transaction (``BEGIN IMMEDIATE`` with a busy timeout), so
two processes can write to one study, and a run killed half-way leaves the study as it was.
"""

from qualcode.study.decisions import ImportOutcome
from qualcode.study.folder import Study
from qualcode.study.runs import StudyStatus
from qualcode.study.schema import (
    BACKUP_FOLDER,
    BACKUPS_KEPT,
    CONFIG_NAME,
    DATABASE_NAME,
    MIGRATIONS,
    StudyConfig,
    find_study,
)

__all__ = [
    "BACKUPS_KEPT",
    "BACKUP_FOLDER",
    "CONFIG_NAME",
    "DATABASE_NAME",
    "MIGRATIONS",
    "ImportOutcome",
    "Study",
    "StudyConfig",
    "StudyStatus",
    "find_study",
]
