"""A study's files: ``qualcode.toml`` (``StudyConfig``) and the database with its schema and migrations.

The database (stdlib ``sqlite3``, WAL mode, schema versioned by ``PRAGMA user_version`` with
``MIGRATIONS``) is written one transaction at a time (``BEGIN IMMEDIATE`` with a busy timeout), so
two processes can write to one study, and a run killed half-way leaves the study as it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qualcode.codebook import default_codebook_path
from qualcode.errors import ConfigurationError, InputMissingError
from qualcode.llm.settings import settings_from_table
from qualcode.semantic import REPRESENTATIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_NAME = "qualcode.toml"
DATABASE_NAME = "qualcode.sqlite"
BACKUP_FOLDER = "backups"
BACKUPS_KEPT = 5
BUSY_TIMEOUT_MS = 30_000

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE documents (
        doc_id TEXT PRIMARY KEY, source TEXT NOT NULL, kind TEXT NOT NULL, sha256 TEXT NOT NULL,
        text TEXT NOT NULL, attributes TEXT NOT NULL, last_run INTEGER NOT NULL);
    CREATE TABLE codebooks (
        codebook_id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, name TEXT NOT NULL, version TEXT NOT NULL,
        source TEXT, text TEXT NOT NULL, first_used TEXT NOT NULL);
    CREATE TABLE runs (
        run_id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT NOT NULL,
        codebook_id INTEGER NOT NULL REFERENCES codebooks, qualcode_version TEXT NOT NULL, options TEXT NOT NULL,
        documents INTEGER NOT NULL, segments INTEGER NOT NULL, output TEXT);
    CREATE TABLE segments (
        run_id INTEGER NOT NULL REFERENCES runs, segment_id TEXT NOT NULL, doc_id TEXT NOT NULL,
        start INTEGER NOT NULL, end INTEGER NOT NULL, text TEXT NOT NULL, speaker TEXT, timestamp TEXT,
        is_interviewer INTEGER NOT NULL, PRIMARY KEY (run_id, segment_id));
    CREATE TABLE assignments (
        run_id INTEGER NOT NULL REFERENCES runs, segment_id TEXT NOT NULL, code_id TEXT NOT NULL,
        source TEXT NOT NULL, status TEXT NOT NULL, confidence REAL, evidence TEXT NOT NULL);
    CREATE TABLE imports (
        import_id INTEGER PRIMARY KEY, path TEXT NOT NULL, sha256 TEXT NOT NULL, coder TEXT NOT NULL,
        imported_at TEXT NOT NULL, summary TEXT NOT NULL);
    CREATE TABLE decisions (
        decision_id INTEGER PRIMARY KEY, import_id INTEGER NOT NULL REFERENCES imports, segment_id TEXT NOT NULL,
        doc_id TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL, text TEXT NOT NULL,
        code_id TEXT NOT NULL, applies INTEGER NOT NULL, coder TEXT NOT NULL, decided_at TEXT NOT NULL,
        origin TEXT NOT NULL);
    CREATE INDEX decisions_by_code ON decisions (code_id);
    CREATE INDEX assignments_by_run ON assignments (run_id);
    """,
)

CONFIG_TEMPLATE = """\
# A qualcode study. Commands run inside this folder (or below it) use it; `qualcode status` shows it.
[study]
# The codebook, relative to this folder. Edit it between rounds; every version applied is kept.
codebook = "{codebook}"
# Your name: human decisions you import are recorded under it.
coder = "{coder}"
# Segment unit: "default" (turn / paragraph / document by kind), "turn", "paragraph", "sentence" or "document".
unit = "{unit}"

[coding]
# Classifier probability needed to suggest a code without a rule hit (chosen for the
# representation below: 0.35 for embeddings, 0.5 for ngrams or both), for codes given none below.
suggest_at = {suggest_at}
# Per code, the thresholds the shipped model was tuned to (embeddings with the default codebook).
# A code's own threshold in the codebook, or --threshold CODE=P, comes before these.
code_thresholds = {code_thresholds}
# A rule hit the classifier puts below this probability is downgraded.
veto_below = 0.05
# Whose decisions count when coders disagree: "" for the latest decision, or a coder's name.
decisive_coder = ""
# Train on the labelled seed set shipped with the default codebook.
seed = true
# What the classifier reads: "embeddings", "ngrams" or "both" (README: "Sentence embeddings").
# The study keeps it, so every round is coded the same way; change it on purpose, between rounds.
representation = "{representation}"

[llm]
# A language model as a third coder (README: "A language model as a third coder"). Empty: none, and
# nothing is sent anywhere. For example "llama3.1:8b" with Ollama running on this machine.
model = ""
# An OpenAI-compatible endpoint. The API key, if it needs one, goes in the environment variable
# QUALCODE_LLM_API_KEY, never in this file.
url = "http://127.0.0.1:11434/v1"
# Requests in flight at once, and seconds to wait for each answer.
concurrency = 4
timeout = 120
"""


@dataclass(frozen=True)
class StudyConfig:
    root: Path
    codebook: Path
    coder: str
    unit: str | None
    suggest_at: float | None  # None: the representation's default (combine.default_suggest_at)
    veto_below: float
    decisive_coder: str | None
    seed: bool = True
    # Per code, as pinned at init; empty (as in a study made before the setting): suggest_at for all.
    code_thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    # A study made before the setting existed was made when n-grams were the default.
    representation: str = "ngrams"
    llm: dict = dataclasses.field(
        default_factory=dict
    )  # [llm]: keyword arguments for llm.LlmSettings

    @property
    def pinned_thresholds(self) -> tuple[tuple[str, float], ...]:
        """``code_thresholds`` as ``CodingOptions.model_thresholds``: pinned, so the shipped model's
        never apply in a study; none pinned, its one threshold holds for every code."""
        return tuple(self.code_thresholds.items())


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def find_study(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the current folder) holding ``qualcode.toml``."""
    folder = Path(start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    return None


def read_config(root: Path) -> StudyConfig:
    path = root / CONFIG_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputMissingError(
            f"{root}: not a qualcode study (no {CONFIG_NAME}); create one with qualcode init"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{path}: {error}") from error
    study, coding = data.get("study", {}), data.get("coding", {})
    unit = str(study.get("unit", "default")) or "default"
    if unit not in ("default", "turn", "paragraph", "sentence", "document"):
        raise ConfigurationError(
            f"{path}: [study] unit = '{unit}' is not one of default, turn, paragraph, sentence, document"
        )
    try:
        suggest_at = float(coding["suggest_at"]) if "suggest_at" in coding else None
        veto_below = float(coding.get("veto_below", 0.05))
    except (TypeError, ValueError) as error:
        raise ConfigurationError(
            f"{path}: [coding] thresholds must be numbers ({error})"
        ) from error
    code_thresholds = _code_thresholds(coding.get("code_thresholds", {}), path)
    representation = str(coding.get("representation", "ngrams"))
    if representation not in REPRESENTATIONS:
        raise ConfigurationError(
            f"{path}: [coding] representation = '{representation}' is not one of "
            + ", ".join(REPRESENTATIONS)
        )
    codebook = study.get("codebook") or str(default_codebook_path())
    return StudyConfig(
        root=root,
        codebook=(root / codebook) if not Path(codebook).is_absolute() else Path(codebook),
        coder=str(study.get("coder", "")),
        unit=None if unit == "default" else unit,
        suggest_at=suggest_at,
        veto_below=veto_below,
        decisive_coder=str(coding.get("decisive_coder", "")) or None,
        seed=bool(coding.get("seed", True)),
        code_thresholds=code_thresholds,
        representation=representation,
        llm=settings_from_table(data.get("llm", {}), str(path)),
    )


def _code_thresholds(table: object, path: Path) -> dict[str, float]:
    if not isinstance(table, dict):
        raise ConfigurationError(
            f"{path}: [coding] code_thresholds must be a table such as {{ trust = 0.3 }}"
        )
    thresholds = {}
    for code_id, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise ConfigurationError(
                f"{path}: [coding] code_thresholds: {code_id} = {value!r} is not a probability "
                "between 0 and 1"
            )
        thresholds[code_id] = float(value)
    return thresholds


def toml_table(values: dict[str, float]) -> str:
    """``values`` as a TOML inline table, for the study file."""
    if not values:
        return "{}"
    keys = [key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key) for key in values]
    return (
        "{ " + ", ".join(f"{key} = {value:g}" for key, value in zip(keys, values.values())) + " }"
    )


def restore_hint(root: Path) -> str:
    backups = sorted((root / BACKUP_FOLDER).glob("qualcode-*.sqlite"))
    if backups:
        return (
            f"restore the latest backup by copying {backups[-1]} to {root / DATABASE_NAME} "
            "(the README's 'Restoring a study' says how)"
        )
    return "no backup was found in its backups folder; restore the file from your own backups"


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: all of it is stored, or none of it."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def migrate(connection: sqlite3.Connection, path: Path) -> None:
    with transaction(connection):
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise ConfigurationError(
                f"{path}: written by a newer qualcode (schema {version}); upgrade qualcode"
            )
        for number in range(version, len(MIGRATIONS)):
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number + 1}")
