"""Building the spaCy pipeline and cutting documents into segments.

Units: ``turn`` (a speaker's turn in a transcript), ``paragraph`` (blank-line separated, inside a
turn for transcripts), ``sentence`` (spaCy sentences inside each paragraph) and ``document``.
Every segment is an exact slice of its document's text, so ``text[start_char:end_char]`` is the
segment text, and its id is derived from the document id and those offsets.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from qualcode.errors import ConfigurationError
from qualcode.models import DEFAULT_UNIT, UNITS, Document, Segment
from qualcode.turns import DEFAULT_INTERVIEWER_LABELS, is_interviewer, parse_turns, strip_span

logger = logging.getLogger(__name__)

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
DEFAULT_PIPELINE = "blank:en"
# spaCy refuses texts over ``nlp.max_length`` characters (1,000,000) because a parser or NER needs
# about 1 GB per 100,000 characters. The blank pipeline has neither: a 10-million-character text
# takes about 600 MB, so it is allowed that much. Longer segments are cut into pieces (see _pieces).
BLANK_PIPELINE_MAX_CHARS = 10_000_000
_PIECE_BREAKS = (re.compile(r"[.!?][\"'”’)\]]*\s+"), re.compile(r"\s+"))


@lru_cache(maxsize=1)
def lemma_lookup_table() -> dict[str, str]:
    """spaCy's English lookup lemmas (word form -> lemma), read from spacy-lookups-data."""
    data = resources.files("spacy_lookups_data") / "data" / "en_lemma_lookup.json.gz"
    with data.open("rb") as handle:
        return json.loads(gzip.decompress(handle.read()))


def _register_lemma_fallback() -> None:
    from spacy.language import Language

    if "qualcode_lemma_lower_fallback" in Language.factories:
        return

    @Language.component("qualcode_lemma_lower_fallback")
    def lemma_lower_fallback(doc):
        # The lookup table is case-sensitive: "Involved" at a sentence start would keep its form.
        table = lemma_lookup_table()
        for token in doc:
            if not token.is_lower and token.lemma_ == token.text:
                token.lemma_ = table.get(token.lower_, token.lower_)
        return doc


def _add_upper_case_contractions(nlp) -> None:
    """Split "DIDN'T" like "didn't": spaCy's exceptions cover lower and title case only, and survey answers shout."""
    from spacy.attrs import NORM, ORTH

    rules = nlp.tokenizer.rules
    for text, tokens in list(rules.items()):
        upper = text.upper()
        if (
            ("'" in text or "’" in text)
            and upper != text
            and upper not in rules
            and len(tokens) > 1
        ):
            nlp.tokenizer.add_special_case(
                upper,
                [
                    {ORTH: token[ORTH].upper(), NORM: token.get(NORM, token[ORTH].lower())}
                    for token in tokens
                ],
            )


def build_pipeline(model: str | None = None):
    """The spaCy pipeline for segmenting and matching; offline unless ``model`` names an installed package.

    Default: ``spacy.blank("en")`` + sentencizer + lookup lemmatizer (spacy-lookups-data) + a
    lower-case fallback so capitalised words get their lemma too.
    """
    import spacy

    if model and model != DEFAULT_PIPELINE:
        if not spacy.util.is_package(model):
            raise ConfigurationError(
                f"spaCy pipeline '{model}' is not installed; install its package (e.g. pip install {model}) "
                "or leave out --spacy-model to use the built-in offline pipeline"
            )
        nlp = spacy.load(model)
        if not (nlp.has_pipe("parser") or nlp.has_pipe("senter") or nlp.has_pipe("sentencizer")):
            nlp.add_pipe("sentencizer")
        return nlp
    _register_lemma_fallback()
    nlp = spacy.blank("en")
    _add_upper_case_contractions(nlp)
    nlp.add_pipe("sentencizer")
    lemmatizer = nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    nlp.add_pipe("qualcode_lemma_lower_fallback")
    # Only the lemmatizer needs initialising, and reading its table is half the cost of a pipeline.
    lemmatizer.initialize(lookups=_lemma_lookups())
    nlp.max_length = BLANK_PIPELINE_MAX_CHARS
    return nlp


@lru_cache(maxsize=1)
def _lemma_lookups():
    """spacy-lookups-data's English lemma table, read once per process; pipelines only read it."""
    from spacy.lookups import load_lookups

    return load_lookups("en", ["lemma_lookup"])


@dataclass(frozen=True)
class _Block:
    start: int
    end: int
    speaker: str | None = None
    timestamp: str | None = None


def _paragraphs(text: str, block: _Block) -> Iterator[_Block]:
    cursor = block.start
    for brk in _PARAGRAPH_BREAK.finditer(text, block.start, block.end):
        start, end = strip_span(text, cursor, brk.start())
        if end > start:
            yield _Block(start, end, block.speaker, block.timestamp)
        cursor = brk.end()
    start, end = strip_span(text, cursor, block.end)
    if end > start:
        yield _Block(start, end, block.speaker, block.timestamp)


def _pieces(text: str, block: _Block, limit: int) -> Iterator[_Block]:
    """``block`` cut into pieces of at most ``limit`` characters: at the last sentence end before the
    limit, else the last whitespace, else at the limit itself."""
    start = block.start
    while block.end - start > limit:
        cut = start + limit
        for breaks in _PIECE_BREAKS:
            ends = [found.end() for found in breaks.finditer(text, start + limit // 2, cut)]
            if ends:
                cut = ends[-1]
                break
        piece_start, piece_end = strip_span(text, start, cut)
        if piece_end > piece_start:
            yield _Block(piece_start, piece_end, block.speaker, block.timestamp)
        start = cut
    piece_start, piece_end = strip_span(text, start, block.end)
    if piece_end > piece_start:
        yield _Block(piece_start, piece_end, block.speaker, block.timestamp)


def _within(document: Document, blocks: list[_Block], limit: int) -> list[_Block]:
    """The blocks, with any longer than ``limit`` characters cut into pieces (and a warning)."""
    if all(block.end - block.start <= limit for block in blocks):
        return blocks
    longest = max(block.end - block.start for block in blocks)
    logger.warning(
        "%s: a segment of %s characters is longer than the pipeline takes (%s); it is cut into pieces "
        "at sentence ends",
        document.source,
        f"{longest:,}",
        f"{limit:,}",
    )
    return [piece for block in blocks for piece in _pieces(document.text, block, limit)]


def _whole(text: str) -> list[_Block]:
    start, end = strip_span(text, 0, len(text))
    return [_Block(start, end)] if end > start else []


def _blocks(document: Document, unit: str) -> list[_Block]:
    """The spans a unit is cut from, before any sentence splitting."""
    text = document.text
    if unit == "document":
        return _whole(text)
    if document.kind == "transcript":
        turns = [
            _Block(turn.start, turn.end, turn.speaker, turn.timestamp) for turn in parse_turns(text)
        ]
        if unit == "turn":
            return turns
        return [paragraph for turn in turns for paragraph in _paragraphs(text, turn)]
    return list(_paragraphs(text, _Block(0, len(text))))


def resolve_unit(document: Document, unit: str | None) -> str:
    """The unit used for a document: the one asked for, or the default for its kind."""
    if unit is None:
        return DEFAULT_UNIT[document.kind]
    if unit not in UNITS:
        raise ConfigurationError(f"unknown unit '{unit}'; choose one of {', '.join(UNITS)}")
    return unit


def segment_id(doc_id: str, start: int, end: int) -> str:
    return f"{doc_id}:{start}-{end}"


def _make_segment(
    document: Document, index: int, block: _Block, interviewer_labels: frozenset[str]
) -> Segment:
    return Segment(
        segment_id=segment_id(document.doc_id, block.start, block.end),
        doc_id=document.doc_id,
        start_char=block.start,
        end_char=block.end,
        text=document.text[block.start : block.end],
        index=index,
        speaker=block.speaker,
        timestamp=block.timestamp,
        is_interviewer=is_interviewer(block.speaker, interviewer_labels),
    )


def segment_documents(
    documents: Iterable[Document],
    *,
    unit: str | None = None,
    nlp=None,
    interviewer_labels: Iterable[str] = (),
    progress: Callable[[int], None] | None = None,
) -> list[Segment]:
    """Cut every document into segments at ``unit`` (default: turn / paragraph / document by kind).

    ``nlp`` is needed only for sentences; it is built on demand. Extra ``interviewer_labels``
    add to the built-in ones (Interviewer, INT, I, Q, Researcher, Facilitator, Moderator). No
    segment is longer than ``nlp.max_length`` (the blank pipeline's when ``nlp`` is None): a longer
    one is cut into pieces, so that every later stage can take it.
    """
    labels = DEFAULT_INTERVIEWER_LABELS | {label.strip().lower() for label in interviewer_labels}
    segments: list[Segment] = []
    for document in documents:
        document_unit = resolve_unit(document, unit)
        limit = nlp.max_length if nlp is not None else BLANK_PIPELINE_MAX_CHARS
        blocks = _within(document, _blocks(document, document_unit), limit)
        if document_unit == "sentence":
            if nlp is None:
                nlp = build_pipeline()
            blocks = list(_sentences(document.text, blocks, nlp))
        segments.extend(
            _make_segment(document, index, block, labels) for index, block in enumerate(blocks)
        )
        if progress is not None:
            progress(1)
    return segments


def sentence_pipes(nlp):
    """``nlp`` with only what splits sentences enabled, as a context manager.

    Sentence splitting needs only the sentencizer (or a trained parser); lemmas are not used.
    """
    return nlp.select_pipes(
        enable=[
            name
            for name in nlp.pipe_names
            if name in ("sentencizer", "senter", "parser", "tok2vec", "transformer")
        ]
    )


def _sentences(text: str, paragraphs: list[_Block], nlp) -> Iterator[_Block]:
    with sentence_pipes(nlp):
        docs = nlp.pipe(text[block.start : block.end] for block in paragraphs)
        for block, doc in zip(paragraphs, docs):
            for sentence in doc.sents:
                start, end = strip_span(
                    text, block.start + sentence.start_char, block.start + sentence.end_char
                )
                if end > start:
                    yield _Block(start, end, block.speaker, block.timestamp)
