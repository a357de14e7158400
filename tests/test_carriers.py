"""The sentence that carries a suggestion, found by the fitted classifier reading each sentence alone."""

import numpy as np
import pytest

from qualcode.carriers import carrying_sentences, sentence_spans
from qualcode.classify import CodeClassifier, TrainingExample
from qualcode.export.tables import MarkedText
from qualcode.models import Segment
from qualcode.segment import build_pipeline

WAITING = [
    "nobody rang us back for weeks",
    "you could never get hold of her on the phone",
    "the duty line just rang and rang",
    "we waited months for an assessment",
    "she never returned a single call",
    "the office was shut whenever we went",
]
OTHER = [
    "we had chips after school",
    "my brother plays football on Saturdays",
    "it rained all week in August",
    "the flat is on the third floor",
    "I like drawing and music",
    "the dog barked at the postman",
]


@pytest.fixture(scope="module")
def nlp():
    return build_pipeline()


@pytest.fixture(scope="module")
def classifier():
    examples = [
        TrainingExample(text, {"accessibility": label}, group=f"{label}{index % 3}")
        for label, texts in ((1, WAITING), (0, OTHER))
        for index, text in enumerate(texts)
    ]
    return CodeClassifier(["accessibility"]).fit(examples)


def _segment(text: str, start: int = 100) -> Segment:
    return Segment(
        f"doc.txt:{start}-{start + len(text)}", "doc.txt", start, start + len(text), text, 0
    )


def test_sentences_are_found_and_trimmed_and_fragments_left_out(nlp):
    text = "  We moved in May. Yes. 2. I waited . . . and waited. . . nobody came. Nobody rang us back. "
    (spans,) = sentence_spans([text], nlp)
    assert [text[a:b] for a, b in spans] == [
        "We moved in May.",
        "I waited . . . and waited. . . nobody came.",
        "Nobody rang us back.",
    ]


def test_the_sentence_that_says_the_code_is_quoted_and_placed_in_the_document(classifier, nlp):
    text = (
        "We moved to the flat on the third floor in May. "
        "After that nobody rang us back for weeks, and the duty line just rang and rang. "
        "My brother still plays football on Saturdays."
    )
    segment = _segment(text)
    asked = []

    def predict(texts):
        asked.extend(texts)
        return classifier.predict_proba(texts)

    (evidence,) = carrying_sentences(
        [(segment, "accessibility")], ["accessibility"], predict, lambda code: 0.5, nlp
    )
    carrier = "After that nobody rang us back for weeks, and the duty line just rang and rang."
    assert evidence.rule.startswith("classifier: the sentence that says it most (")
    assert evidence.matched.startswith("After that nobody rang us back")
    # Offsets are the document's, like a rule match's, so the workbook marks the sentence.
    assert text[evidence.start_char - 100 : evidence.end_char - 100] == carrier
    marked = MarkedText(text, (evidence,), segment.start_char)
    assert [text[a:b] for a, b in marked.marks()] == [carrier]
    alone = float(evidence.rule.split("(")[1].split(" on its own")[0])
    assert alone == pytest.approx(classifier.predict_proba([carrier])[0, 0], abs=0.005)
    assert sorted(asked) == sorted(s.strip() for s in text.replace(". ", ".|").split("|"))


def test_a_code_no_sentence_carries_alone_is_said_so_and_nothing_is_marked(classifier, nlp):
    text = "We moved in May. It rained all week."
    (evidence,) = carrying_sentences(
        [(_segment(text), "accessibility")],
        ["accessibility"],
        classifier.predict_proba,
        lambda code: 0.99,
        nlp,
    )
    assert evidence.rule.startswith("classifier: no sentence says it on its own (the closest, ")
    assert '"We moved in May."' in evidence.rule or '"It rained all week."' in evidence.rule
    # Nothing is marked: no sentence is claimed to carry it.
    assert evidence.matched == "" and evidence.start_char is None
    assert MarkedText(text, (evidence,), 100).marks() == []


def test_one_sentence_passages_and_unknown_codes_get_no_sentence_and_sentences_are_read_once(
    classifier, nlp
):
    shared = "Nobody rang us back for weeks."
    two = _segment(f"{shared} We moved in May.", 0)
    again = _segment(f"It rained all week. {shared}", 200)
    single = _segment("The duty line just rang and rang.", 400)
    asked = []

    def predict(texts):
        asked.extend(texts)
        return classifier.predict_proba(texts)

    found = carrying_sentences(
        [
            (two, "accessibility"),
            (single, "accessibility"),
            (again, "accessibility"),
            (two, "trust"),
        ],
        ["accessibility"],
        predict,
        lambda code: 0.5,
        nlp,
    )
    assert found[1] is None and found[3] is None
    assert found[0].matched == shared and found[2].matched == shared
    assert found[2].start_char == 200 + len("It rained all week. ")
    assert sorted(asked) == sorted({shared, "We moved in May.", "It rained all week."})


def test_an_untrained_code_gets_no_sentence(nlp):
    text = "We moved in May. It rained all week."
    (evidence,) = carrying_sentences(
        [(_segment(text), "trust")],
        ["trust"],
        lambda texts: np.full((len(texts), 1), np.nan),
        lambda code: 0.5,
        nlp,
    )
    assert evidence is None
