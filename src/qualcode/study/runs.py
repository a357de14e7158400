"""A study's runs: recording a finished run, the documents it read, and the study's status and history."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from qualcode import __version__
from qualcode.errors import InputMissingError
from qualcode.models import Codebook, CodingResult, Corpus, Document
from qualcode.study.schema import now, transaction


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


class StudyRuns:
    """The runs part of ``Study`` (whose connection, root and back_up it uses): each run's
    documents, segments and machine codings, with its codebook."""

    def _codebook_id(self, db: sqlite3.Connection, codebook: Codebook) -> int:
        text = (
            Path(codebook.source).read_text(encoding="utf-8-sig")
            if codebook.source and Path(codebook.source).is_file()
            else ""
        )
        row = db.execute(
            "SELECT codebook_id FROM codebooks WHERE sha256 = ?", (codebook.sha256,)
        ).fetchone()
        if row:
            return row[0]
        cursor = db.execute(
            "INSERT INTO codebooks (sha256, name, version, source, text, first_used) VALUES (?, ?, ?, ?, ?, ?)",
            (codebook.sha256, codebook.name, codebook.version, codebook.source, text, now()),
        )
        return cursor.lastrowid

    def record_run(
        self, result: CodingResult, *, started_at: str, output: str | None = None
    ) -> int:
        """Store a finished run (documents, segments, machine codings, the codebook) in one transaction."""
        self.back_up()
        with transaction(self.connection) as db:
            codebook_id = self._codebook_id(db, result.codebook)
            cursor = db.execute(
                "INSERT INTO runs (started_at, finished_at, codebook_id, qualcode_version, options, documents, segments, "
                "output) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    started_at,
                    now(),
                    codebook_id,
                    __version__,
                    json.dumps(result.options, default=str),
                    len(result.corpus.documents),
                    len(result.segments),
                    output,
                ),
            )
            run_id = cursor.lastrowid
            db.executemany(
                "INSERT INTO documents (doc_id, source, kind, sha256, text, attributes, last_run) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (doc_id) DO UPDATE SET source = excluded.source, kind = excluded.kind, "
                "sha256 = excluded.sha256, text = excluded.text, attributes = excluded.attributes, last_run = excluded.last_run",
                [
                    (
                        d.doc_id,
                        d.source,
                        d.kind,
                        hashlib.sha256(d.text.encode("utf-8")).hexdigest(),
                        d.text,
                        json.dumps(d.attributes, sort_keys=True),
                        run_id,
                    )
                    for d in result.corpus.documents
                ],
            )
            db.executemany(
                "INSERT INTO segments (run_id, segment_id, doc_id, start, end, text, speaker, timestamp, is_interviewer) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        s.segment_id,
                        s.doc_id,
                        s.start_char,
                        s.end_char,
                        s.text,
                        s.speaker,
                        s.timestamp,
                        int(s.is_interviewer),
                    )
                    for s in result.segments
                ],
            )
            db.executemany(
                "INSERT INTO assignments (run_id, segment_id, code_id, source, status, confidence, evidence) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        a.segment_id,
                        a.code_id,
                        a.source,
                        a.status,
                        a.confidence,
                        a.evidence_text,
                    )
                    for a in result.assignments
                ],
            )
        return run_id

    def corpus(self) -> Corpus:
        """The documents as stored by the latest run that read each of them."""
        rows = self.connection.execute(
            "SELECT doc_id, source, kind, text, attributes FROM documents ORDER BY doc_id"
        )
        documents = tuple(Document(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows)
        if not documents:
            raise InputMissingError(
                f"{self.root}: the study has no documents yet; run qualcode code PATH first"
            )
        return Corpus(documents=documents)

    # --- reporting -----------------------------------------------------------------------------

    def status(self, codebook: Codebook) -> StudyStatus:
        db = self.connection
        latest = db.execute("SELECT MAX(run_id) FROM runs").fetchone()[0]
        reviewed = dict(
            db.execute("SELECT coder, COUNT(DISTINCT segment_id) FROM decisions GROUP BY coder")
        )
        by_coder = dict(db.execute("SELECT coder, COUNT(*) FROM decisions GROUP BY coder"))
        sources = Counter()
        if latest is not None:
            sources.update(
                dict(
                    db.execute(
                        "SELECT source, COUNT(*) FROM assignments WHERE run_id = ? AND status IN ('suggested', 'accepted') "
                        "GROUP BY source",
                        (latest,),
                    )
                )
            )
        decided_codes = dict(db.execute("SELECT code_id, COUNT(*) FROM decisions GROUP BY code_id"))
        retired = {
            code: count for code, count in decided_codes.items() if code not in codebook.code_ids
        }
        replaced = {old for code in codebook.codes for old in code.replaces}
        rereview = {code: count for code, count in decided_codes.items() if code in replaced}
        return StudyStatus(
            documents=db.execute("SELECT COUNT(*) FROM documents").fetchone()[0],
            segments=db.execute(
                "SELECT COUNT(*) FROM segments WHERE run_id = ?", (latest,)
            ).fetchone()[0]
            if latest
            else 0,
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
            "FROM runs r JOIN codebooks c USING (codebook_id)"
        )
        events = [
            (
                row[0],
                f"run {row[1]}",
                f"codebook '{row[2]}' version {row[3]} ({row[4]}); {row[5]} documents, "
                f"{row[6]} segments -> {row[7] or '-'}",
            )
            for row in runs
        ]
        imports = self.connection.execute(
            "SELECT imported_at, import_id, coder, path, summary FROM imports"
        )
        events += [(row[0], f"import {row[1]}", f"{row[2]}: {row[3]}: {row[4]}") for row in imports]
        first_use = self.connection.execute(
            "SELECT first_used, name, version, substr(sha256, 1, 12) FROM codebooks"
        )
        events += [
            (row[0], "codebook", f"'{row[1]}' version {row[2]} ({row[3]}) first applied")
            for row in first_use
        ]
        return sorted(events, key=lambda event: event[0])
