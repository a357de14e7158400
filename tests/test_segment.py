import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qualcode.ingest import read_documents
from qualcode.models import Document
from qualcode.segment import segment_documents

TRANSCRIPT = Document(
    doc_id="t.txt",
    source="t.txt",
    kind="transcript",
    text="Interviewer: Who do you see?\n\nP1: Sam. She visits weekly. She listens.\n\nShe is kind.\nInterviewer: Thanks.\n",
)
ESSAY = Document(
    doc_id="e.md",
    source="e.md",
    kind="essay",
    text="# Notes\n\nFirst point. Second point.\n\n\n  Third para.  \n",
)
ANSWER = Document(
    doc_id="s.csv#1", source="s.csv", kind="survey", text="Good worker.\n\nBut always late."
)


def _cut(document, unit, nlp=None):
    return [(s.speaker, s.text) for s in segment_documents([document], unit=unit, nlp=nlp)]


def test_default_units_follow_the_document_kind():
    segments = segment_documents([TRANSCRIPT, ESSAY, ANSWER])
    assert [(s.doc_id, s.speaker, s.text, s.is_interviewer) for s in segments] == [
        ("t.txt", "Interviewer", "Who do you see?", True),
        ("t.txt", "P1", "Sam. She visits weekly. She listens.\n\nShe is kind.", False),
        ("t.txt", "Interviewer", "Thanks.", True),
        ("e.md", None, "# Notes", False),
        ("e.md", None, "First point. Second point.", False),
        ("e.md", None, "Third para.", False),
        ("s.csv#1", None, "Good worker.\n\nBut always late.", False),
    ]


def test_paragraphs_inside_turns_keep_the_speaker():
    assert _cut(TRANSCRIPT, "paragraph") == [
        ("Interviewer", "Who do you see?"),
        ("P1", "Sam. She visits weekly. She listens."),
        ("P1", "She is kind."),
        ("Interviewer", "Thanks."),
    ]


def test_sentences_inside_turns(nlp):
    assert _cut(TRANSCRIPT, "sentence", nlp)[1:4] == [
        ("P1", "Sam."),
        ("P1", "She visits weekly."),
        ("P1", "She listens."),
    ]
    assert _cut(ESSAY, "sentence", nlp) == [
        (None, "# Notes"),
        (None, "First point."),
        (None, "Second point."),
        (None, "Third para."),
    ]


def test_document_unit_and_turn_fallback_for_essays():
    assert _cut(ESSAY, "document") == [(None, ESSAY.text.strip())]
    assert _cut(ESSAY, "turn") == _cut(ESSAY, "paragraph")


def test_segment_ids_are_stable_and_derived_from_offsets():
    first = segment_documents([TRANSCRIPT])
    second = segment_documents([TRANSCRIPT])
    assert [s.segment_id for s in first] == [s.segment_id for s in second]
    assert first[1].segment_id == f"t.txt:{first[1].start_char}-{first[1].end_char}"
    assert [s.index for s in first] == [0, 1, 2]


def test_extra_interviewer_labels():
    document = Document("x", "x", "transcript", "SW: Hello.\nMum: Hi.\nSW: Bye.\n")
    segments = segment_documents([document], interviewer_labels=["SW"])
    assert [s.is_interviewer for s in segments] == [True, False, True]


# --- the offsets invariant, over generated inputs in every supported encoding and line ending ---

_WORDS = st.sampled_from(
    [
        "she",
        "came",
        "every",
        "week",
        "café",
        "don’t",
        "I",
        "we're",
        "OK.",
        "Yes!",
        "so",
        "😊",
        "x:y",
        "10:30",
        "(laughs)",
        "Nobody",
        "asked.",
        "—",
        "  ",
        "\t",
    ]
)
_LABELS = st.sampled_from(["Interviewer", "P03", "SW2", "Mum", "Young person", "INT", "Jo (aunt)"])
_STAMPS = st.sampled_from(["", "[00:12:31] ", "00:01:02 ", "(1:02:03) "])


@st.composite
def _transcripts(draw):
    turns = []
    for _ in range(draw(st.integers(1, 6))):
        lines = [
            " ".join(draw(st.lists(_WORDS, min_size=1, max_size=8)))
            for _ in range(draw(st.integers(1, 3)))
        ]
        gap = draw(st.sampled_from(["\n", "\n\n", "\n \n"]))
        turns.append(f"{draw(_STAMPS)}{draw(_LABELS)}: " + gap.join(lines))
    return draw(st.sampled_from(["\n", "\n\n"])).join(turns) + draw(
        st.sampled_from(["", "\n", "\n\n  "])
    )


_FREE_TEXT = st.lists(
    st.sampled_from(list("ab .:\n\r\t’é😊P1[]0") + ["\r\n", "Interviewer: ", "P2: "]), max_size=80
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(_transcripts(), _FREE_TEXT),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
    kind=st.sampled_from([None, "essay", "transcript"]),
)
def test_every_segment_is_an_exact_slice_of_its_document(nlp, text, newline, encoding, kind):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "doc.txt"
        path.write_bytes(text.replace("\n", newline).encode(encoding))
        try:
            corpus = read_documents([path], kind=kind)
        except Exception as error:  # an input with no text at all is refused, never mis-segmented
            assert not text.strip(), error
            return
    (document,) = corpus.documents
    for unit in ("turn", "paragraph", "sentence", "document"):
        segments = segment_documents([document], unit=unit, nlp=nlp)
        assert segments or unit != "document", unit
        previous_end = 0
        for segment in segments:
            assert document.text[segment.start_char : segment.end_char] == segment.text
            assert segment.text == segment.text.strip() and segment.text
            assert segment.start_char >= previous_end
            previous_end = segment.end_char
        assert len({s.segment_id for s in segments}) == len(segments)
        again = segment_documents([document], unit=unit, nlp=nlp)
        assert [s.segment_id for s in again] == [s.segment_id for s in segments]


def test_invariant_holds_on_the_sample_corpus(nlp):
    sample = Path(__file__).resolve().parent.parent / "corpora" / "sample"
    if not sample.is_dir():
        pytest.skip("corpora/sample is not present")
    corpus = read_documents([sample])
    for unit in (None, "sentence"):
        for segment in segment_documents(corpus.documents, unit=unit, nlp=nlp):
            document = next(d for d in corpus.documents if d.doc_id == segment.doc_id)
            assert document.text[segment.start_char : segment.end_char] == segment.text
