"""A study's human decisions: importing a reviewed workbook's, all or nothing, and reading them back."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from qualcode.errors import InputDataError
from qualcode.models import HumanDecision
from qualcode.reviews import ReviewImport
from qualcode.study.schema import now, transaction


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
        return (
            f"{self.stored} new decisions stored{changed}, {self.already_held} already in the study"
        )


class StudyDecisions:
    """The human decisions part of ``Study`` (whose connection, root and back_up it uses): every
    decision with its coder and time, as imported."""

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
            hint = (
                "the study has no run yet; run qualcode code inside it first"
                if not known and not texts
                else "import the workbook of a run of this study, or put back the segment id qualcode wrote"
            )
            raise InputDataError(
                f"{review.path}: {place}, column 'segment_id': '{decision.segment_id}' matches no "
                f"segment and no document text in the study; {hint}"
            )

    def import_reviews(self, review: ReviewImport) -> ImportOutcome:
        """Store the decisions of one reviewed workbook in one transaction, all or nothing.

        A decision the coder's latest stored decision on that segment and code already says is not
        stored again, so importing a workbook twice changes nothing. A decision on a segment the
        study cannot place is refused with its row.
        """
        digest = hashlib.sha256(Path(review.path).read_bytes()).hexdigest()
        self._check_segments_known(review)
        latest = {
            (row[0], row[1], row[2]): bool(row[3])
            for row in self.connection.execute(
                "SELECT coder, segment_id, code_id, applies FROM decisions ORDER BY decided_at, decision_id"
            )
        }
        new = [
            d
            for d in review.decisions
            if latest.get((d.coder, d.segment_id, d.code_id)) != d.applies
        ]
        changed = sum(1 for d in new if (d.coder, d.segment_id, d.code_id) in latest)
        outcome = ImportOutcome(0, len(new), len(review.decisions) - len(new), changed)
        self.back_up()
        with transaction(self.connection) as db:
            cursor = db.execute(
                "INSERT INTO imports (path, sha256, coder, imported_at, summary) VALUES (?, ?, ?, ?, ?)",
                (review.path, digest, review.coder, now(), f"{review.summary()}; {outcome}"),
            )
            import_id = cursor.lastrowid
            db.executemany(
                "INSERT INTO decisions (import_id, segment_id, doc_id, start, end, text, code_id, applies, coder, "
                "decided_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(import_id, *d.as_row()) for d in new],
            )
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
            "ORDER BY decided_at, decision_id"
        )
        return [
            HumanDecision(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9])
            for r in rows
        ]

    def coder_labels(self, code_ids) -> list:
        """One ``LabelFile`` per coder, of the segments that coder decided for every code (for ``agree``).

        The latest decision of each coder counts; a segment where a coder decided only some codes
        is left out of that coder's file, since agreement needs a decision on every code.
        """
        from qualcode.labels import LabelFile, LabelledUnit

        latest: dict[str, dict[tuple[str, str], HumanDecision]] = {}
        for decision in self.decisions():
            if decision.code_id in code_ids:
                latest.setdefault(decision.coder, {})[(decision.segment_id, decision.code_id)] = (
                    decision
                )
        files = []
        for coder, decided in sorted(latest.items()):
            by_segment: dict[str, dict[str, HumanDecision]] = {}
            for (segment_id, code_id), decision in decided.items():
                by_segment.setdefault(segment_id, {})[code_id] = decision
            units = []
            for segment_id, codes in by_segment.items():
                if set(codes) == set(code_ids):
                    any_decision = next(iter(codes.values()))
                    units.append(
                        LabelledUnit(
                            segment_id,
                            any_decision.doc_id,
                            any_decision.start_char,
                            any_decision.end_char,
                            any_decision.text,
                            {code_id: int(codes[code_id].applies) for code_id in code_ids},
                            f"decisions of {coder}",
                        )
                    )
            if units:
                files.append(
                    LabelFile(f"{self.root} ({coder})", coder, tuple(code_ids), tuple(units))
                )
        return files


def _decision_keys(decisions) -> set[tuple[str, str, bool]]:
    return {(d.segment_id, d.code_id, d.applies) for d in decisions}
