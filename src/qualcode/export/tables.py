"""The tables of a coding run, as header + rows, shared by the xlsx and csv writers.

This is a contract other tools read: sheet and column names change only with a new major version.
"""

from __future__ import annotations

import datetime as dt
import platform
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from qualcode import __version__
from qualcode.models import (
    COUNTED_STATUSES,
    CodeAssignment,
    Codebook,
    CodingResult,
    Corpus,
    Document,
    HumanDecision,
    Segment,
)
from qualcode.review_cells import EARLIER_REVIEW, when

SEGMENT_FIXED = ("segment_id", "document", "speaker", "start", "end", "timestamp")
SEGMENT_TAIL = ("codes", "reviewed", "decided by")
CODING_COLUMNS = (
    "segment_id",
    "document",
    "code",
    "source",
    "confidence",
    "evidence",
    "status",
    "text",
    "decision",
    "decided by",
)
CODING_TEXT_COLUMNS = ("evidence", "text")


@dataclass(frozen=True)
class Table:
    """A sheet: its header and rows. Big tables give their rows lazily, with ``count`` saying how many."""

    name: str
    header: tuple[str, ...]
    rows: Iterable[tuple]
    text_columns: tuple[str, ...] = ()
    count: int | None = None

    @property
    def size(self) -> int:
        return self.count if self.count is not None else len(self.rows)


def attribute_names(corpus: Corpus) -> list[str]:
    """Document attributes in first-seen order (``segments_table`` prefixes any that clash with a fixed column)."""
    names: dict[str, None] = {}
    for document in corpus.documents:
        names.update(dict.fromkeys(document.attributes))
    return list(names)


def _column_name(attribute: str, taken: set[str]) -> str:
    name = attribute
    while name in taken:
        name = f"attr_{name}"
    taken.add(name)
    return name


def _active(assignments: Iterable[CodeAssignment]) -> dict[str, list[str]]:
    codes: dict[str, list[str]] = defaultdict(list)
    for assignment in assignments:
        if (
            assignment.status in COUNTED_STATUSES
            and assignment.code_id not in codes[assignment.segment_id]
        ):
            codes[assignment.segment_id].append(assignment.code_id)
    return codes


def decided_by(decisions: Iterable[HumanDecision]) -> str:
    """Who decided, and when: "Ana, 2026-12-02 12:59", each coder once at their latest decision."""
    latest: dict[str, str] = {}
    for decision in decisions:
        latest[decision.coder] = max(latest.get(decision.coder, ""), decision.decided_at)
    return "; ".join(
        f"{coder}, {when(moment)}"
        for coder, moment in sorted(latest.items(), key=lambda item: item[1])
    )


def _by_segment(
    decisions: Mapping[tuple[str, str], HumanDecision] | None,
) -> dict[str, dict[str, HumanDecision]]:
    grouped: dict[str, dict[str, HumanDecision]] = defaultdict(dict)
    for (segment_id, code_id), decision in (decisions or {}).items():
        grouped[segment_id][code_id] = decision
    return grouped


class SegmentRows:
    """Rows of the Segments sheet for any stretch of segments: one per segment, a 1 under each active code.

    A segment with a human decision on every code shows ``reviewed`` yes and, in ``decided by``,
    "reviewed by" its coders (``review_cells.EARLIER_REVIEW``: a copy, not a new review); one
    with decisions on some codes names them and their coders there.
    """

    def __init__(self, corpus: Corpus, codebook: Codebook):
        self.code_ids = codebook.code_ids
        self.attributes = attribute_names(corpus)
        taken = set(SEGMENT_FIXED) | {"text", *SEGMENT_TAIL} | set(self.code_ids)
        attribute_columns = [_column_name(attribute, taken) for attribute in self.attributes]
        self.header = (*SEGMENT_FIXED, *attribute_columns, "text", *self.code_ids, *SEGMENT_TAIL)
        self._documents = {document.doc_id: document for document in corpus.documents}

    def _review(self, decided: dict[str, HumanDecision]) -> tuple[str | None, str]:
        if len(decided) >= len(self.code_ids) and all(
            code_id in decided for code_id in self.code_ids
        ):
            return "yes", EARLIER_REVIEW + decided_by(decided.values())
        codes = ", ".join(code_id for code_id in self.code_ids if code_id in decided)
        return None, f"{decided_by(decided.values())} ({codes})"

    def rows(
        self,
        segments: Iterable[Segment],
        assignments: Iterable[CodeAssignment],
        decisions: Mapping[tuple[str, str], HumanDecision] | None = None,
    ) -> Iterator[tuple]:
        coded = _active(assignments)
        decided = _by_segment(decisions)
        code_ids, attributes = self.code_ids, self.attributes
        uncoded = (None,) * len(code_ids) + (
            None,
            None,
            None,
        )  # code columns, codes, reviewed, decided by
        attribute_values: dict[str, tuple] = {}
        for segment in segments:
            values = attribute_values.get(segment.doc_id)
            if values is None:
                document = self._documents[segment.doc_id]
                values = attribute_values[segment.doc_id] = tuple(
                    document.attributes.get(name) for name in attributes
                )
            active = coded.get(segment.segment_id)
            review = (
                self._review(decided[segment.segment_id])
                if segment.segment_id in decided
                else (None, None)
            )
            if active:
                order = [code_id for code_id in code_ids if code_id in active]
                codes = (
                    *(1 if code_id in active else None for code_id in code_ids),
                    "; ".join(order),
                    *review,
                )
            elif review[1] is not None:
                codes = (*uncoded[: len(code_ids) + 1], *review)
            else:
                codes = uncoded
            yield (
                segment.segment_id,
                segment.doc_id,
                segment.speaker,
                segment.start_char,
                segment.end_char,
                segment.timestamp,
                *values,
                segment.text,
                *codes,
            )


class MarkedText(str):
    """A segment's text that knows the evidence of one coding, so the workbook can mark those words.

    A ``str`` to everything else (CSV files, readers); the xlsx writer alone asks for ``marks``.
    """

    __slots__ = ("evidence", "offset")

    def __new__(cls, text: str, evidence: tuple, offset: int):
        value = super().__new__(cls, text)
        value.evidence, value.offset = evidence, offset
        return value

    def marks(self) -> list[tuple[int, int]]:
        """Non-overlapping (start, end) spans in the text: rule matches by offset, classifier words by search."""
        spans = []
        lowered = None
        for item in self.evidence:
            if item.start_char is not None and item.end_char is not None:
                spans.append((item.start_char - self.offset, item.end_char - self.offset))
            elif item.rule.startswith("classifier") and item.matched:
                lowered = lowered if lowered is not None else self.lower()
                at = lowered.find(item.matched.lower())
                if at >= 0:
                    spans.append((at, at + len(item.matched)))
        merged: list[tuple[int, int]] = []
        for start, end in sorted(span for span in spans if 0 <= span[0] < span[1] <= len(self)):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged


def coding_rows(
    segments: Sequence[Segment],
    assignments: Iterable[CodeAssignment],
    code_ids: Sequence[str],
    decisions: Mapping[tuple[str, str], HumanDecision] | None = None,
) -> Iterator[tuple]:
    """Rows of the Codings sheet for the assignments of ``segments``, in segment order then codebook order."""
    by_id = {segment.segment_id: segment for segment in segments}
    position = {segment.segment_id: index for index, segment in enumerate(segments)}
    order = {code_id: index for index, code_id in enumerate(code_ids)}
    decisions = decisions or {}
    for assignment in sorted(
        assignments, key=lambda a: (position[a.segment_id], order.get(a.code_id, len(order)))
    ):
        segment = by_id[assignment.segment_id]
        confidence = round(assignment.confidence, 3) if assignment.confidence is not None else None
        decision = (
            decisions.get((assignment.segment_id, assignment.code_id))
            if assignment.source == "human"
            else None
        )
        text = (
            MarkedText(segment.text, assignment.evidence, segment.start_char)
            if assignment.evidence
            else segment.text
        )
        yield (
            assignment.segment_id,
            segment.doc_id,
            assignment.code_id,
            assignment.source,
            confidence,
            assignment.evidence_text or None,
            assignment.status,
            text,
            None,
            decided_by((decision,)) if decision is not None else None,
        )


def segments_table(result: CodingResult) -> Table:
    rows = SegmentRows(result.corpus, result.codebook)
    return Table(
        "Segments",
        rows.header,
        rows.rows(result.segments, result.assignments, result.decisions),
        text_columns=("text",),
        count=len(result.segments),
    )


def codings_table(result: CodingResult) -> Table:
    return Table(
        "Codings",
        CODING_COLUMNS,
        coding_rows(
            result.segments, result.assignments, result.codebook.code_ids, result.decisions
        ),
        text_columns=CODING_TEXT_COLUMNS,
        count=len(result.assignments),
    )


class CodeCounts:
    """What the summary sheets count, gathered stretch by stretch as coded segments come in.

    A stretch (``add``) must hold every assignment of its segments, as a chunk of whole documents
    or a whole run does. ``code_interviewer`` says whether interviewer turns were coded, which
    makes them eligible for coding.
    """

    def __init__(self, codebook: Codebook, *, code_interviewer: bool):
        self.code_ids = codebook.code_ids
        self.code_interviewer = code_interviewer
        self.eligible: Counter[str] = Counter()  # per document: its segments eligible for coding
        # Per document: its segments carrying each code, and under None those carrying any.
        self.by_document: dict[str, Counter] = defaultdict(Counter)
        self.pairs: Counter[tuple[str, str]] = (
            Counter()
        )  # segments carrying both codes (the same code twice: it)
        self.segments = 0
        self.coded_segments = 0
        self.codings = 0  # suggested and accepted
        self.rows = 0  # every assignment, with the rejected and downgraded ones

    @classmethod
    def of(cls, result: CodingResult) -> CodeCounts:
        counts = cls(result.codebook, code_interviewer=bool(result.options.get("code_interviewer")))
        counts.add(result.segments, result.assignments)
        return counts

    def add(self, segments: Sequence[Segment], assignments: Sequence[CodeAssignment]) -> None:
        self.segments += len(segments)
        self.eligible.update(
            segment.doc_id
            for segment in segments
            if self.code_interviewer or not segment.is_interviewer
        )
        coded = _active(assignments)
        doc_of = {segment.segment_id: segment.doc_id for segment in segments}
        for segment_id, code_ids in coded.items():
            document = self.by_document[doc_of[segment_id]]
            document.update(code_ids)
            document[None] += 1
            self.pairs.update((first, second) for first in code_ids for second in code_ids)
        self.coded_segments += len(coded)
        self.codings += sum(
            1 for assignment in assignments if assignment.status in COUNTED_STATUSES
        )
        self.rows += len(assignments)


SUMMARY_COLUMNS = ("code", "name", "segments", "% of segments", "documents")


def summary_table(result: CodingResult, counts: CodeCounts | None = None) -> Table:
    """One row per code: segments coded, their share of the segments eligible for coding, documents touched."""
    counts = counts or CodeCounts.of(result)
    eligible = sum(counts.eligible.values())
    total = eligible or 1
    rows = []
    for code_id, name in [
        *((code.code_id, code.name) for code in result.codebook.codes),
        (None, "segments with at least one code"),
    ]:
        segments = sum(document[code_id] for document in counts.by_document.values())
        documents = sum(1 for document in counts.by_document.values() if document[code_id])
        rows.append(
            (code_id or "(any code)", name, segments, round(100 * segments / total, 1), documents)
        )
    documents = sum(1 for count in counts.eligible.values() if count)
    rows.append(
        (
            "(segments)",
            "segments eligible for coding",
            eligible,
            100.0 if eligible else 0.0,
            documents,
        )
    )
    return Table("Summary", SUMMARY_COLUMNS, rows)


def documents_header(codebook: Codebook) -> tuple[str, ...]:
    return ("document", "kind", "segments", "segments with a code", *codebook.code_ids)


def document_rows(documents: Iterable[Document], counts: CodeCounts) -> Iterator[tuple]:
    """Rows of the Documents sheet: each document's segments eligible for coding, coded, and per code."""
    empty: Counter = Counter()
    for document in documents:
        coded = counts.by_document.get(document.doc_id, empty)
        yield (
            document.doc_id,
            document.kind,
            counts.eligible[document.doc_id],
            coded[None],
            *(coded[code_id] for code_id in counts.code_ids),
        )


def documents_table(result: CodingResult, counts: CodeCounts | None = None) -> Table:
    """One row per document (a case, in NVivo's terms): its segments eligible for coding, coded, and per code."""
    counts = counts or CodeCounts.of(result)
    return Table(
        "Documents",
        documents_header(result.codebook),
        list(document_rows(result.corpus.documents, counts)),
    )


def cooccurrence_table(result: CodingResult, counts: CodeCounts | None = None) -> Table:
    code_ids = result.codebook.code_ids
    pairs = (counts or CodeCounts.of(result)).pairs
    rows = [(first, *(pairs.get((first, second), 0) for second in code_ids)) for first in code_ids]
    return Table("Co-occurrence", ("code", *code_ids), rows)


def codebook_table(result: CodingResult) -> Table:
    header = (
        "id",
        "name",
        "parent",
        "color",
        "definition",
        "include",
        "exclude",
        "positive examples",
        "negative examples",
        "phrases",
        "patterns",
        "regex",
        "exclude phrases",
    )
    rows = []
    for code in result.codebook.codes:
        rules = code.rules
        rows.append(
            (
                code.code_id,
                code.name,
                code.parent,
                code.color,
                code.definition,
                "\n".join(code.include),
                "\n".join(code.exclude),
                "\n".join(code.positive_examples),
                "\n".join(code.negative_examples),
                "\n".join(phrase.text for phrase in rules.phrases),
                "\n".join(pattern.name for pattern in rules.patterns),
                "\n".join(regex.pattern for regex in rules.regex),
                "\n".join(phrase.text for phrase in rules.exclude),
            )
        )
    return Table(
        "Codebook",
        header,
        rows,
        text_columns=("definition", "include", "exclude", "positive examples", "negative examples"),
    )


def run_table(
    result: CodingResult, *, created: dt.datetime | None = None, counts: CodeCounts | None = None
) -> Table:
    import spacy

    created = created or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    codebook = result.codebook
    counts = counts or CodeCounts.of(result)
    rows: list[tuple] = [
        ("qualcode version", __version__, None),
        ("created", created.isoformat(), None),
        ("python", platform.python_version(), None),
        ("spacy", spacy.__version__, None),
        ("codebook name", codebook.name, None),
        ("codebook version", codebook.version, None),
        ("codebook file", codebook.source, None),
        ("codebook sha256", codebook.sha256, None),
    ]
    rows.extend((f"option {name}", _as_text(value), None) for name, value in result.options.items())
    rows.extend(
        [
            ("documents", len(result.corpus.documents), None),
            ("segments", len(result.segments), None),
            ("segments with a code", counts.coded_segments, None),
            (
                "codings",
                counts.codings,
                "suggested and accepted codings (what the command line reports)",
            ),
            ("rows in Codings", counts.rows, "with the rejected and downgraded ones"),
        ]
    )
    rows.extend(("input", file.path, file.sha256) for file in result.corpus.files)
    rows.extend(("skipped", skipped.path, skipped.reason) for skipped in result.corpus.skipped)
    return Table("Run", ("field", "value", "detail"), rows)


def _as_text(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return value


def orphaned_reviews_table(result: CodingResult) -> Table:
    """Decisions whose text could not be found in this round's documents: kept, listed, never dropped."""
    rows = [decision.as_row() for decision in result.orphaned_reviews]
    return Table(
        "Orphaned reviews",
        (
            "segment_id",
            "document",
            "start",
            "end",
            "text",
            "code",
            "applies",
            "coder",
            "decided_at",
            "origin",
        ),
        rows,
        text_columns=("text",),
    )


def all_tables(result: CodingResult) -> Iterator[Table]:
    yield segments_table(result)
    yield codings_table(result)
    yield from summary_tables(result)


def summary_tables(result: CodingResult) -> Iterator[Table]:
    """The sheets after Segments and Codings, which need the whole run."""
    counts = CodeCounts.of(result)
    yield summary_table(result, counts)
    yield documents_table(result, counts)
    yield from closing_tables(result, counts)


def closing_tables(result: CodingResult, counts: CodeCounts) -> Iterator[Table]:
    """The sheets after Documents."""
    yield cooccurrence_table(result, counts)
    yield codebook_table(result)
    yield run_table(result, counts=counts)
    yield orphaned_reviews_table(result)
