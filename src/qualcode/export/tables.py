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
from qualcode.models import COUNTED_STATUSES, CodeAssignment, Codebook, CodingResult, Corpus, Segment

SEGMENT_FIXED = ("segment_id", "document", "speaker", "start", "end", "timestamp")
CODING_COLUMNS = ("segment_id", "document", "code", "source", "confidence", "evidence", "status", "text", "decision")
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
        if assignment.status in COUNTED_STATUSES and assignment.code_id not in codes[assignment.segment_id]:
            codes[assignment.segment_id].append(assignment.code_id)
    return codes


class SegmentRows:
    """Rows of the Segments sheet for any stretch of segments: one per segment, a 1 under each active code."""

    def __init__(self, corpus: Corpus, codebook: Codebook):
        self.code_ids = codebook.code_ids
        self.attributes = attribute_names(corpus)
        taken = set(SEGMENT_FIXED) | {"text", "codes", "reviewed"} | set(self.code_ids)
        attribute_columns = [_column_name(attribute, taken) for attribute in self.attributes]
        self.header = (*SEGMENT_FIXED, *attribute_columns, "text", *self.code_ids, "codes", "reviewed")
        self._documents = {document.doc_id: document for document in corpus.documents}

    def rows(self, segments: Iterable[Segment], assignments: Iterable[CodeAssignment]) -> Iterator[tuple]:
        coded = _active(assignments)
        code_ids, attributes = self.code_ids, self.attributes
        uncoded = (None,) * len(code_ids) + (None, None)  # code columns, codes, reviewed
        attribute_values: dict[str, tuple] = {}
        for segment in segments:
            values = attribute_values.get(segment.doc_id)
            if values is None:
                document = self._documents[segment.doc_id]
                values = attribute_values[segment.doc_id] = tuple(document.attributes.get(name) for name in attributes)
            active = coded.get(segment.segment_id)
            if active:
                order = [code_id for code_id in code_ids if code_id in active]
                codes = (*(1 if code_id in active else None for code_id in code_ids), "; ".join(order), None)
            else:
                codes = uncoded
            yield (segment.segment_id, segment.doc_id, segment.speaker, segment.start_char, segment.end_char,
                   segment.timestamp, *values, segment.text, *codes)


def coding_rows(segments: Sequence[Segment], assignments: Iterable[CodeAssignment],
                code_ids: Sequence[str]) -> Iterator[tuple]:
    """Rows of the Codings sheet for the assignments of ``segments``, in segment order then codebook order."""
    by_id = {segment.segment_id: segment for segment in segments}
    position = {segment.segment_id: index for index, segment in enumerate(segments)}
    order = {code_id: index for index, code_id in enumerate(code_ids)}
    for assignment in sorted(assignments, key=lambda a: (position[a.segment_id], order.get(a.code_id, len(order)))):
        segment = by_id[assignment.segment_id]
        confidence = round(assignment.confidence, 3) if assignment.confidence is not None else None
        yield (assignment.segment_id, segment.doc_id, assignment.code_id, assignment.source, confidence,
               assignment.evidence_text or None, assignment.status, segment.text, None)


def segments_table(result: CodingResult) -> Table:
    rows = SegmentRows(result.corpus, result.codebook)
    return Table("Segments", rows.header, rows.rows(result.segments, result.assignments), text_columns=("text",),
                 count=len(result.segments))


def codings_table(result: CodingResult) -> Table:
    return Table("Codings", CODING_COLUMNS, coding_rows(result.segments, result.assignments, result.codebook.code_ids),
                 text_columns=CODING_TEXT_COLUMNS, count=len(result.assignments))


def _eligible(result: CodingResult) -> list[Segment]:
    return [segment for segment in result.segments if result.options.get("code_interviewer") or not segment.is_interviewer]


# The summary sheets each take ``coded``, the counted codes of each segment (``_active``), so
# ``summary_tables`` works it out once for all of them.
Coded = Mapping[str, list[str]]


def _codes_by_document(result: CodingResult, coded: Coded) -> dict[str, Counter]:
    """For each document, how many of its segments carry each code (and ``None``: any code)."""
    doc_of = {segment.segment_id: segment.doc_id for segment in result.segments}
    counts: dict[str, Counter] = defaultdict(Counter)
    for segment_id, code_ids in coded.items():
        if code_ids:
            document = counts[doc_of[segment_id]]
            document.update(code_ids)
            document[None] += 1
    return counts


def summary_table(result: CodingResult, coded: Coded | None = None) -> Table:
    """One row per code: segments coded, their share of the segments eligible for coding, documents touched."""
    eligible = _eligible(result)
    by_document = _codes_by_document(result, _active(result.assignments) if coded is None else coded)
    total = len(eligible) or 1
    rows = []
    for code_id, name in [*((code.code_id, code.name) for code in result.codebook.codes),
                          (None, "segments with at least one code")]:
        segments = sum(counts[code_id] for counts in by_document.values())
        documents = sum(1 for counts in by_document.values() if counts[code_id])
        rows.append((code_id or "(any code)", name, segments, round(100 * segments / total, 1), documents))
    documents = len({segment.doc_id for segment in eligible})
    rows.append(("(segments)", "segments eligible for coding", len(eligible), 100.0 if eligible else 0.0, documents))
    return Table("Summary", ("code", "name", "segments", "% of segments", "documents"), rows)


def documents_table(result: CodingResult, coded: Coded | None = None) -> Table:
    """One row per document (a case, in NVivo's terms): its segments eligible for coding, coded, and per code."""
    code_ids = result.codebook.code_ids
    by_document = _codes_by_document(result, _active(result.assignments) if coded is None else coded)
    eligible = Counter(segment.doc_id for segment in _eligible(result))
    rows = [(document.doc_id, document.kind, eligible[document.doc_id], by_document[document.doc_id][None],
             *(by_document[document.doc_id][code_id] for code_id in code_ids))
            for document in result.corpus.documents]
    return Table("Documents", ("document", "kind", "segments", "segments with a code", *code_ids), rows,
                 count=len(result.corpus.documents))


def cooccurrence_table(result: CodingResult, coded: Coded | None = None) -> Table:
    code_ids = result.codebook.code_ids
    pairs: Counter = Counter()
    for assigned in (_active(result.assignments) if coded is None else coded).values():
        for first in assigned:
            for second in assigned:
                pairs[first, second] += 1
    rows = [(first, *(pairs.get((first, second), 0) for second in code_ids)) for first in code_ids]
    return Table("Co-occurrence", ("code", *code_ids), rows)


def codebook_table(result: CodingResult) -> Table:
    header = ("id", "name", "parent", "color", "definition", "include", "exclude", "positive examples",
              "negative examples", "phrases", "patterns", "regex", "exclude phrases")
    rows = []
    for code in result.codebook.codes:
        rules = code.rules
        rows.append((code.code_id, code.name, code.parent, code.color, code.definition, "\n".join(code.include),
                     "\n".join(code.exclude), "\n".join(code.positive_examples), "\n".join(code.negative_examples),
                     "\n".join(phrase.text for phrase in rules.phrases),
                     "\n".join(pattern.name for pattern in rules.patterns),
                     "\n".join(regex.pattern for regex in rules.regex),
                     "\n".join(phrase.text for phrase in rules.exclude)))
    return Table("Codebook", header, rows, text_columns=("definition", "include", "exclude", "positive examples",
                                                         "negative examples"))


def run_table(result: CodingResult, *, created: dt.datetime | None = None, coded: Coded | None = None) -> Table:
    import spacy

    created = created or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    codebook = result.codebook
    coded_segments = len(_active(result.assignments) if coded is None else coded)
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
    rows.extend([
        ("documents", len(result.corpus.documents), None),
        ("segments", len(result.segments), None),
        ("segments with a code", coded_segments, None),
        ("codings", sum(1 for a in result.assignments if a.status in COUNTED_STATUSES),
         "suggested and accepted codings (what the command line reports)"),
        ("rows in Codings", len(result.assignments), "with the rejected and downgraded ones"),
    ])
    rows.extend(("input", file.path, file.sha256) for file in result.corpus.files)
    rows.extend(("skipped", skipped.path, skipped.reason) for skipped in result.corpus.skipped)
    return Table("Run", ("field", "value", "detail"), rows)


def _as_text(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return value


def orphaned_reviews_table(result: CodingResult) -> Table:
    """Decisions whose text could not be found in this round's documents: kept, listed, never dropped."""
    rows = [(d.segment_id, d.doc_id, d.start_char, d.end_char, d.text, d.code_id, int(d.applies), d.coder, d.decided_at,
             d.origin) for d in result.orphaned_reviews]
    return Table("Orphaned reviews", ("segment_id", "document", "start", "end", "text", "code", "applies", "coder",
                                      "decided_at", "origin"), rows, text_columns=("text",))


def all_tables(result: CodingResult) -> Iterator[Table]:
    yield segments_table(result)
    yield codings_table(result)
    yield from summary_tables(result)


def summary_tables(result: CodingResult) -> Iterator[Table]:
    """The sheets after Segments and Codings, which need the whole run."""
    coded = _active(result.assignments)
    yield summary_table(result, coded)
    yield documents_table(result, coded)
    yield cooccurrence_table(result, coded)
    yield codebook_table(result)
    yield run_table(result, coded=coded)
    yield orphaned_reviews_table(result)
