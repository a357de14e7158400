"""A study: a folder with ``qualcode.toml`` and ``qualcode.sqlite`` that keeps a project's history.

The database (stdlib ``sqlite3``, WAL mode, schema versioned by ``PRAGMA user_version`` with
migrations) holds the documents with their content hash, the segments and machine codings of
every run, every codebook version applied (full text and sha256), and every human decision with
its coder and time. Every write is one transaction (``BEGIN IMMEDIATE`` with a busy timeout), so
two processes can write to one study, and a run killed half-way leaves the study as it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qualcode import __version__
from qualcode.codebook import default_codebook_path
from qualcode.errors import ConfigurationError, InputDataError, InputMissingError, OutputError, StudyDatabaseError
from qualcode.llm.settings import settings_from_table
from qualcode.models import Codebook, CodingResult, Corpus, Document, HumanDecision
from qualcode.reviews import ReviewImport

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
# Classifier probability needed to suggest a code without a rule hit.
suggest_at = 0.5
# A rule hit the classifier puts below this probability is downgraded.
veto_below = 0.05
# Whose decisions count when coders disagree: "" for the latest decision, or a coder's name.
decisive_coder = ""
# Train on the labelled seed set shipped with the default codebook.
seed = true

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
    suggest_at: float
    veto_below: float
    decisive_coder: str | None
    seed: bool = True
    llm: dict = dataclasses.field(default_factory=dict)  # [llm]: keyword arguments for llm.LlmSettings


@dataclass(frozen=True)
class StudyStatus:
    documents: int
    segments: int
    runs: int
    codebook: str
    reviewed_segments: dict[str, int]
    decisions_by_coder: dict[str, int]
    codes_by_source: dict[str, int]
    retired_code_decisions: dict[str, int]
    rereview: dict[str, int]


@dataclass(frozen=True)
class ImportOutcome:
    """What an import stored: new decisions (``changed`` of them overturn the coder's earlier ones),
    and those the study already held from that coder."""

    import_id: int
    stored: int
    already_held: int
    changed: int = 0

    def __str__(self) -> str:
        changed = f" ({self.changed} change an earlier decision)" if self.changed else ""
        return f"{self.stored} new decisions stored{changed}, {self.already_held} already in the study"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def find_study(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the current folder) holding ``qualcode.toml``."""
    folder = Path(start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    return None


def _read_config(root: Path) -> StudyConfig:
    path = root / CONFIG_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputMissingError(f"{root}: not a qualcode study (no {CONFIG_NAME}); create one with qualcode init") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{path}: {error}") from error
    study, coding = data.get("study", {}), data.get("coding", {})
    unit = str(study.get("unit", "default")) or "default"
    if unit not in ("default", "turn", "paragraph", "sentence", "document"):
        raise ConfigurationError(f"{path}: [study] unit = '{unit}' is not one of default, turn, paragraph, sentence, document")
    try:
        suggest_at, veto_below = float(coding.get("suggest_at", 0.5)), float(coding.get("veto_below", 0.05))
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"{path}: [coding] thresholds must be numbers ({error})") from error
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
        llm=settings_from_table(data.get("llm", {}), str(path)),
    )


def _restore_hint(root: Path) -> str:
    backups = sorted((root / BACKUP_FOLDER).glob("qualcode-*.sqlite"))
    if backups:
        return (f"restore the latest backup by copying {backups[-1]} to {root / DATABASE_NAME} "
                "(the README's 'Restoring a study' says how)")
    return "no backup was found in its backups folder; restore the file from your own backups"


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: all of it is stored, or none of it."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    with _transaction(connection):
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise ConfigurationError(f"{path}: written by a newer qualcode (schema {version}); upgrade qualcode")
        for number in range(version, len(MIGRATIONS)):
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number + 1}")


class Study:
    """An open study. Use ``Study.open(root)`` or ``Study.create(root, ...)``; close it, or use it as a context."""

    def __init__(self, config: StudyConfig, connection: sqlite3.Connection):
        self.config = config
        self.connection = connection

    @property
    def root(self) -> Path:
        return self.config.root

    @classmethod
    def create(cls, root: str | os.PathLike[str], *, coder: str, codebook: str | os.PathLike[str] | None = None,
               unit: str | None = None) -> Study:
        """Create ``root/qualcode.toml`` and ``root/qualcode.sqlite``; the codebook is copied in so it can be edited."""
        root = Path(root)
        if (root / CONFIG_NAME).exists():
            raise OutputError(f"{root}: already a qualcode study ({CONFIG_NAME} exists)")
        try:
            root.mkdir(parents=True, exist_ok=True)
            source = Path(codebook) if codebook else default_codebook_path()
            target = root / "codebook.yaml"
            if not target.exists():
                target.write_bytes(source.read_bytes())
            (root / CONFIG_NAME).write_text(
                CONFIG_TEMPLATE.format(codebook="codebook.yaml", coder=coder.replace('"', "'"), unit=unit or "default"),
                encoding="utf-8")
        except FileNotFoundError:
            raise InputMissingError(f"{codebook}: no such codebook file") from None
        except OSError as error:
            raise OutputError(f"{root}: cannot create the study ({error.strerror})") from error
        return cls.open(root, new=True)

    @classmethod
    def open(cls, root: str | os.PathLike[str], *, new: bool = False) -> Study:
        """Open the study at ``root``; its database must exist and be sound unless ``new``."""
        root = Path(root).resolve()
        config = _read_config(root)
        path = root / DATABASE_NAME
        if not new and (not path.is_file() or path.stat().st_size == 0):
            state = "is empty" if path.is_file() else "is missing"
            raise StudyDatabaseError(f"{path}: the study database {state}; {_restore_hint(root)}")
        try:
            connection = _connect(path)
            try:
                _migrate(connection, path)
                verdict = connection.execute("PRAGMA quick_check(1)").fetchone()[0]
            except BaseException:
                connection.close()
                raise
        except sqlite3.DatabaseError as error:
            raise StudyDatabaseError(f"{path}: the study database is damaged ({error}); {_restore_hint(root)}") from None
        if verdict != "ok":
            connection.close()
            raise StudyDatabaseError(f"{path}: the study database is damaged ({verdict}); {_restore_hint(root)}")
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
            raise OutputError(f"{target}: cannot back up the study database before changing it ({error})") from error
        for old in sorted(folder.glob("qualcode-*.sqlite"))[:-BACKUPS_KEPT]:
            old.unlink(missing_ok=True)
        return target

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- human decisions ---------------------------------------------------------------------

    def _check_segments_known(self, review: ReviewImport) -> None:
        """Refuse a decision on a segment the study cannot place: no run cut it, no stored document holds its text."""
        db = self.connection
        wanted = {decision.segment_id: decision for decision in review.decisions}
        known = {row[0] for row in db.execute("SELECT DISTINCT segment_id FROM segments")}
        unknown = [decision for segment_id, decision in wanted.items() if segment_id not in known]
        if not unknown:
            return
        texts = dict(db.execute("SELECT doc_id, text FROM documents"))
        for decision in unknown:
            text = texts.get(decision.doc_id)
            if text is not None and decision.text and decision.text in text:
                continue  # cut at another unit, say: the decision can follow its text
            place = review.places.get(decision.segment_id, "sheet 'Segments'")
            hint = ("the study has no run yet; run qualcode code inside it first" if not known and not texts else
                    "import the workbook of a run of this study, or put back the segment id qualcode wrote")
            raise InputDataError(f"{review.path}: {place}, column 'segment_id': '{decision.segment_id}' matches no "
                                 f"segment and no document text in the study; {hint}")

    def import_reviews(self, review: ReviewImport) -> ImportOutcome:
        """Store the decisions of one reviewed workbook in one transaction, all or nothing.

        A decision the coder's latest stored decision on that segment and code already says is not
        stored again, so importing a workbook twice changes nothing. A decision on a segment the
        study cannot place is refused with its row.
        """
        digest = hashlib.sha256(Path(review.path).read_bytes()).hexdigest()
        self._check_segments_known(review)
        latest = {(row[0], row[1], row[2]): bool(row[3]) for row in self.connection.execute(
            "SELECT coder, segment_id, code_id, applies FROM decisions ORDER BY decided_at, decision_id")}
        new = [d for d in review.decisions if latest.get((d.coder, d.segment_id, d.code_id)) != d.applies]
        changed = sum(1 for d in new if (d.coder, d.segment_id, d.code_id) in latest)
        outcome = ImportOutcome(0, len(new), len(review.decisions) - len(new), changed)
        self.back_up()
        with _transaction(self.connection) as db:
            cursor = db.execute("INSERT INTO imports (path, sha256, coder, imported_at, summary) VALUES (?, ?, ?, ?, ?)",
                                (review.path, digest, review.coder, _now(), f"{review.summary()}; {outcome}"))
            import_id = cursor.lastrowid
            db.executemany(
                "INSERT INTO decisions (import_id, segment_id, doc_id, start, end, text, code_id, applies, coder, "
                "decided_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(import_id, d.segment_id, d.doc_id, d.start_char, d.end_char, d.text, d.code_id, int(d.applies),
                  d.coder, d.decided_at, d.origin) for d in new])
        return dataclasses.replace(outcome, import_id=import_id)

    def holds_decisions_of(self, workbook: str | os.PathLike[str], code_ids) -> bool:
        """Whether every decision in an earlier workbook is already stored here, so replacing it loses nothing."""
        from qualcode.errors import QualcodeError
        from qualcode.reviews import read_review_workbook

        try:
            found = read_review_workbook(workbook, coder="", code_ids=code_ids)
        except QualcodeError:
            return False
        return _decision_keys(found.decisions) <= _decision_keys(self.decisions())

    def decisions(self) -> list[HumanDecision]:
        rows = self.connection.execute(
            "SELECT segment_id, doc_id, start, end, text, code_id, applies, coder, decided_at, origin FROM decisions "
            "ORDER BY decided_at, decision_id")
        return [HumanDecision(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9]) for r in rows]

    def coder_labels(self, code_ids) -> list:
        """One ``LabelFile`` per coder, of the segments that coder decided for every code (for ``agree``).

        The latest decision of each coder counts; a segment where a coder decided only some codes
        is left out of that coder's file, since agreement needs a decision on every code.
        """
        from qualcode.labels import LabelFile, LabelledUnit

        latest: dict[str, dict[tuple[str, str], HumanDecision]] = {}
        for decision in self.decisions():
            if decision.code_id in code_ids:
                latest.setdefault(decision.coder, {})[(decision.segment_id, decision.code_id)] = decision
        files = []
        for coder, decided in sorted(latest.items()):
            by_segment: dict[str, dict[str, HumanDecision]] = {}
            for (segment_id, code_id), decision in decided.items():
                by_segment.setdefault(segment_id, {})[code_id] = decision
            units = []
            for segment_id, codes in by_segment.items():
                if set(codes) == set(code_ids):
                    any_decision = next(iter(codes.values()))
                    units.append(LabelledUnit(segment_id, any_decision.doc_id, any_decision.start_char,
                                              any_decision.end_char, any_decision.text,
                                              {code_id: int(codes[code_id].applies) for code_id in code_ids},
                                              f"decisions of {coder}"))
            if units:
                files.append(LabelFile(f"{self.root} ({coder})", coder, tuple(code_ids), tuple(units)))
        return files

    # --- runs ----------------------------------------------------------------------------------

    def _codebook_id(self, db: sqlite3.Connection, codebook: Codebook) -> int:
        text = Path(codebook.source).read_text(encoding="utf-8-sig") if codebook.source and Path(codebook.source).is_file() else ""
        row = db.execute("SELECT codebook_id FROM codebooks WHERE sha256 = ?", (codebook.sha256,)).fetchone()
        if row:
            return row[0]
        cursor = db.execute("INSERT INTO codebooks (sha256, name, version, source, text, first_used) VALUES (?, ?, ?, ?, ?, ?)",
                            (codebook.sha256, codebook.name, codebook.version, codebook.source, text, _now()))
        return cursor.lastrowid

    def record_run(self, result: CodingResult, *, started_at: str, output: str | None = None) -> int:
        """Store a finished run (documents, segments, machine codings, the codebook) in one transaction."""
        self.back_up()
        with _transaction(self.connection) as db:
            codebook_id = self._codebook_id(db, result.codebook)
            cursor = db.execute(
                "INSERT INTO runs (started_at, finished_at, codebook_id, qualcode_version, options, documents, segments, "
                "output) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (started_at, _now(), codebook_id, __version__, json.dumps(result.options, default=str),
                 len(result.corpus.documents), len(result.segments), output))
            run_id = cursor.lastrowid
            db.executemany(
                "INSERT INTO documents (doc_id, source, kind, sha256, text, attributes, last_run) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (doc_id) DO UPDATE SET source = excluded.source, kind = excluded.kind, "
                "sha256 = excluded.sha256, text = excluded.text, attributes = excluded.attributes, last_run = excluded.last_run",
                [(d.doc_id, d.source, d.kind, hashlib.sha256(d.text.encode("utf-8")).hexdigest(), d.text,
                  json.dumps(d.attributes, sort_keys=True), run_id) for d in result.corpus.documents])
            db.executemany(
                "INSERT INTO segments (run_id, segment_id, doc_id, start, end, text, speaker, timestamp, is_interviewer) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, s.segment_id, s.doc_id, s.start_char, s.end_char, s.text, s.speaker, s.timestamp,
                  int(s.is_interviewer)) for s in result.segments])
            db.executemany(
                "INSERT INTO assignments (run_id, segment_id, code_id, source, status, confidence, evidence) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, a.segment_id, a.code_id, a.source, a.status, a.confidence, a.evidence_text)
                 for a in result.assignments])
        return run_id

    def corpus(self) -> Corpus:
        """The documents as stored by the latest run that read each of them."""
        rows = self.connection.execute("SELECT doc_id, source, kind, text, attributes FROM documents ORDER BY doc_id")
        documents = tuple(Document(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows)
        if not documents:
            raise InputMissingError(f"{self.root}: the study has no documents yet; run qualcode code PATH first")
        return Corpus(documents=documents)

    # --- reporting -----------------------------------------------------------------------------

    def status(self, codebook: Codebook) -> StudyStatus:
        db = self.connection
        latest = db.execute("SELECT MAX(run_id) FROM runs").fetchone()[0]
        reviewed = dict(db.execute("SELECT coder, COUNT(DISTINCT segment_id) FROM decisions GROUP BY coder"))
        by_coder = dict(db.execute("SELECT coder, COUNT(*) FROM decisions GROUP BY coder"))
        sources = Counter()
        if latest is not None:
            sources.update(dict(db.execute(
                "SELECT source, COUNT(*) FROM assignments WHERE run_id = ? AND status IN ('suggested', 'accepted') "
                "GROUP BY source", (latest,))))
        decided_codes = dict(db.execute("SELECT code_id, COUNT(*) FROM decisions GROUP BY code_id"))
        retired = {code: count for code, count in decided_codes.items() if code not in codebook.code_ids}
        replaced = {old for code in codebook.codes for old in code.replaces}
        rereview = {code: count for code, count in decided_codes.items() if code in replaced}
        return StudyStatus(
            documents=db.execute("SELECT COUNT(*) FROM documents").fetchone()[0],
            segments=db.execute("SELECT COUNT(*) FROM segments WHERE run_id = ?", (latest,)).fetchone()[0] if latest else 0,
            runs=db.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
            codebook=f"{codebook.name} version {codebook.version} ({codebook.sha256[:12]})",
            reviewed_segments=reviewed,
            decisions_by_coder=by_coder,
            codes_by_source=dict(sources),
            retired_code_decisions=retired,
            rereview=rereview,
        )

    def history(self) -> list[tuple]:
        """Runs with their codebook version, and imports, oldest first: (time, what, detail)."""
        runs = self.connection.execute(
            "SELECT r.finished_at, r.run_id, c.name, c.version, substr(c.sha256, 1, 12), r.documents, r.segments, r.output "
            "FROM runs r JOIN codebooks c USING (codebook_id)")
        events = [(row[0], f"run {row[1]}", f"codebook '{row[2]}' version {row[3]} ({row[4]}); {row[5]} documents, "
                                            f"{row[6]} segments -> {row[7] or '-'}") for row in runs]
        imports = self.connection.execute("SELECT imported_at, import_id, coder, path, summary FROM imports")
        events += [(row[0], f"import {row[1]}", f"{row[2]}: {row[3]}: {row[4]}") for row in imports]
        first_use = self.connection.execute("SELECT first_used, name, version, substr(sha256, 1, 12) FROM codebooks")
        events += [(row[0], "codebook", f"'{row[1]}' version {row[2]} ({row[3]}) first applied") for row in first_use]
        return sorted(events, key=lambda event: event[0])


def _decision_keys(decisions) -> set[tuple[str, str, bool]]:
    return {(d.segment_id, d.code_id, d.applies) for d in decisions}
