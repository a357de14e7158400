"""Opening, creating and backing up a study; ``Study`` joins its decisions and its runs."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

from qualcode.codebook import default_codebook_path, load_codebook
from qualcode.combine import default_suggest_at
from qualcode.errors import InputMissingError, OutputError, StudyDatabaseError
from qualcode.semantic import corpus_thresholds, default_representation
from qualcode.study.decisions import StudyDecisions
from qualcode.study.runs import StudyRuns
from qualcode.study.schema import (
    BACKUP_FOLDER,
    BACKUPS_KEPT,
    CONFIG_NAME,
    CONFIG_TEMPLATE,
    DATABASE_NAME,
    StudyConfig,
    connect,
    migrate,
    read_config,
    restore_hint,
    toml_table,
)


class Study(StudyDecisions, StudyRuns):
    """An open study. Use ``Study.open(root)`` or ``Study.create(root, ...)``; close it, or use it as a context."""

    def __init__(self, config: StudyConfig, connection: sqlite3.Connection):
        self.config = config
        self.connection = connection

    @property
    def root(self) -> Path:
        return self.config.root

    @classmethod
    def create(
        cls,
        root: str | os.PathLike[str],
        *,
        coder: str,
        codebook: str | os.PathLike[str] | None = None,
        unit: str | None = None,
        representation: str | None = None,
    ) -> Study:
        """Create ``root/qualcode.toml`` and ``root/qualcode.sqlite``; the codebook is copied in so it can be edited.

        ``representation`` is what the classifier reads in every round; by default qualcode's
        default where the embedding model is installed, else n-grams.
        """
        if representation is None:
            representation = default_representation()[0]
        root = Path(root)
        if (root / CONFIG_NAME).exists():
            raise OutputError(f"{root}: already a qualcode study ({CONFIG_NAME} exists)")
        try:
            root.mkdir(parents=True, exist_ok=True)
            source = Path(codebook) if codebook else default_codebook_path()
            # Pinned, as the threshold is, so a later model's choice never moves the study.
            thresholds = (
                corpus_thresholds(load_codebook(source)) if representation == "embeddings" else {}
            )
            target = root / "codebook.yaml"
            if not target.exists():
                target.write_bytes(source.read_bytes())
            (root / CONFIG_NAME).write_text(
                CONFIG_TEMPLATE.format(
                    codebook="codebook.yaml",
                    coder=coder.replace('"', "'"),
                    unit=unit or "default",
                    representation=representation,
                    suggest_at=default_suggest_at(representation),
                    code_thresholds=toml_table(thresholds),
                ),
                encoding="utf-8",
            )
        except FileNotFoundError:
            raise InputMissingError(f"{codebook}: no such codebook file") from None
        except OSError as error:
            raise OutputError(f"{root}: cannot create the study ({error.strerror})") from error
        return cls.open(root, new=True)

    @classmethod
    def open(cls, root: str | os.PathLike[str], *, new: bool = False) -> Study:
        """Open the study at ``root``; its database must exist and be sound unless ``new``."""
        root = Path(root).resolve()
        config = read_config(root)
        path = root / DATABASE_NAME
        if not new and (not path.is_file() or path.stat().st_size == 0):
            state = "is empty" if path.is_file() else "is missing"
            raise StudyDatabaseError(f"{path}: the study database {state}; {restore_hint(root)}")
        try:
            connection = connect(path)
            try:
                migrate(connection, path)
                verdict = connection.execute("PRAGMA quick_check(1)").fetchone()[0]
            except BaseException:
                connection.close()
                raise
        except sqlite3.DatabaseError as error:
            raise StudyDatabaseError(
                f"{path}: the study database is damaged ({error}); {restore_hint(root)}"
            ) from None
        if verdict != "ok":
            connection.close()
            raise StudyDatabaseError(
                f"{path}: the study database is damaged ({verdict}); {restore_hint(root)}"
            )
        return cls(config, connection)

    def back_up(self) -> Path:
        """Copy the database to ``backups/`` (a consistent copy, even while others write); keep the last few."""
        folder = self.root / BACKUP_FOLDER
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        target = folder / f"qualcode-{stamp}.sqlite"
        try:
            folder.mkdir(exist_ok=True)
            copy = sqlite3.connect(target)
            try:
                self.connection.backup(copy)
            finally:
                copy.close()
        except (OSError, sqlite3.Error) as error:
            target.unlink(missing_ok=True)
            raise OutputError(
                f"{target}: cannot back up the study database before changing it ({error})"
            ) from error
        for old in sorted(folder.glob("qualcode-*.sqlite"))[:-BACKUPS_KEPT]:
            old.unlink(missing_ok=True)
        return target

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
