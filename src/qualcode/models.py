"""The plain data that flows through the pipeline: ingest -> segment -> code -> export.

Nothing here imports spaCy, scikit-learn or does I/O, so every stage can be tested alone and
a notebook can build these objects by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DocumentKind = Literal["transcript", "essay", "survey"]
Unit = Literal["turn", "paragraph", "sentence", "document"]
Source = Literal["rule", "classifier", "llm", "human"]
# "downgraded": a rule hit the classifier strongly contradicts; listed with its evidence, not counted as coded.
Status = Literal["suggested", "accepted", "rejected", "downgraded"]
COUNTED_STATUSES = frozenset({"suggested", "accepted"})
EVIDENCE_SHOWN = 5

UNITS: tuple[str, ...] = ("turn", "paragraph", "sentence", "document")
DEFAULT_UNIT: dict[str, str] = {"transcript": "turn", "essay": "paragraph", "survey": "document"}


@dataclass(frozen=True)
class Document:
    """One text to code.

    ``text`` has its line endings normalised to ``\\n``; every offset in the pipeline points into it.
    ``attributes`` holds case variables (survey columns, participant id, site, ...) as strings.
    """

    doc_id: str
    source: str
    kind: DocumentKind
    text: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Segment:
    """A coded unit: a slice ``document.text[start_char:end_char]`` of one document."""

    segment_id: str
    doc_id: str
    start_char: int
    end_char: int
    text: str
    index: int
    speaker: str | None = None
    timestamp: str | None = None
    is_interviewer: bool = False

    def __reduce__(self):
        # Every segment crosses from a worker to the writing process; rebuilding it through the
        # constructor unpickles about twice as fast as the slots-dataclass default.
        return (
            Segment,
            (
                self.segment_id,
                self.doc_id,
                self.start_char,
                self.end_char,
                self.text,
                self.index,
                self.speaker,
                self.timestamp,
                self.is_interviewer,
            ),
        )


@dataclass(frozen=True)
class PhraseRule:
    """A case-insensitive phrase matched on every inflection of each of its words."""

    text: str
    line: int | None = None


@dataclass(frozen=True)
class PatternRule:
    """A named spaCy ``Matcher`` token pattern."""

    name: str
    pattern: tuple[dict, ...]
    line: int | None = None


@dataclass(frozen=True)
class RegexRule:
    """A Python regular expression, applied case-insensitively to the segment text."""

    pattern: str
    line: int | None = None


@dataclass(frozen=True)
class Rules:
    phrases: tuple[PhraseRule, ...] = ()
    patterns: tuple[PatternRule, ...] = ()
    regex: tuple[RegexRule, ...] = ()
    exclude: tuple[PhraseRule, ...] = ()

    def __len__(self) -> int:
        return len(self.phrases) + len(self.patterns) + len(self.regex)


@dataclass(frozen=True)
class Code:
    code_id: str
    name: str
    definition: str
    color: str | None = None
    parent: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    positive_examples: tuple[str, ...] = ()
    negative_examples: tuple[str, ...] = ()
    rules: Rules = field(default_factory=Rules)
    threshold: float | None = None
    replaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Codebook:
    name: str
    version: str
    codes: tuple[Code, ...]
    description: str = ""
    source: str | None = None
    sha256: str | None = None

    @property
    def code_ids(self) -> tuple[str, ...]:
        return tuple(code.code_id for code in self.codes)

    def code(self, code_id: str) -> Code:
        for code in self.codes:
            if code.code_id == code_id:
                return code
        raise KeyError(code_id)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a code was given: which rule matched, and the words it matched."""

    rule: str
    matched: str
    start_char: int | None = None
    end_char: int | None = None

    def describe(self) -> str:
        return f'"{self.matched}" ({self.rule})' if self.matched else self.rule

    def __reduce__(self):  # see Segment.__reduce__
        return (Evidence, (self.rule, self.matched, self.start_char, self.end_char))


@dataclass(frozen=True, slots=True)
class CodeAssignment:
    segment_id: str
    code_id: str
    source: Source
    status: Status = "suggested"
    confidence: float | None = None
    evidence: tuple[Evidence, ...] = ()

    def __reduce__(self):  # see Segment.__reduce__
        return (
            CodeAssignment,
            (
                self.segment_id,
                self.code_id,
                self.source,
                self.status,
                self.confidence,
                self.evidence,
            ),
        )

    @property
    def evidence_text(self) -> str:
        """The first few pieces of evidence, readable in one cell."""
        shown = "; ".join(item.describe() for item in self.evidence[:EVIDENCE_SHOWN])
        hidden = len(self.evidence) - EVIDENCE_SHOWN
        return f"{shown}; (+{hidden} more)" if hidden > 0 else shown


@dataclass(frozen=True)
class HumanDecision:
    """A coder's decision that a code does (``applies``) or does not apply to a segment.

    The segment's document, offsets and text at the time of the decision let it follow the text
    when the document changes between rounds.
    """

    segment_id: str
    doc_id: str
    start_char: int
    end_char: int
    text: str
    code_id: str
    applies: bool
    coder: str
    decided_at: str
    origin: str = "review"

    def as_row(self) -> tuple[str, str, int, int, str, str, int, str, str, str]:
        """The fields in order, ``applies`` as 0/1: one row of a table or of the study's decisions."""
        return (
            self.segment_id,
            self.doc_id,
            self.start_char,
            self.end_char,
            self.text,
            self.code_id,
            int(self.applies),
            self.coder,
            self.decided_at,
            self.origin,
        )


@dataclass(frozen=True)
class InputFile:
    """An input file that was read, with its hash for the run record."""

    path: str
    sha256: str
    documents: int


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class Corpus:
    """Everything ingest produced: the documents and an account of the files behind them."""

    documents: tuple[Document, ...]
    files: tuple[InputFile, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()


@dataclass(frozen=True)
class CodingResult:
    """The output of a coding run, ready for export."""

    corpus: Corpus
    segments: tuple[Segment, ...]
    assignments: tuple[CodeAssignment, ...]
    codebook: Codebook
    options: dict[str, object] = field(default_factory=dict)
    orphaned_reviews: tuple[HumanDecision, ...] = ()
    # The human decision that counts per (segment id of this run, code id): shown where the researcher reviews.
    decisions: dict[tuple[str, str], HumanDecision] = field(default_factory=dict)
