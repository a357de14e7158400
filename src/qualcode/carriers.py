"""The sentence that carries a classifier's suggestion: evidence that points into the passage.

A classifier over a passage's embedding says that the passage is about a theme, not where. A
reviewer reading an interview answer of six sentences wants the one to check, and quoted codebook
examples do not show it: on real writing the same two examples backed half of one code's
suggestions whatever the passage said. So each sentence of a suggested passage is read by the same
classifier on its own, and the sentence that says the code most is quoted and marked in the
passage, with its own probability. Where no sentence reaches the code's threshold alone, the
evidence says so and names the closest without marking it: either the theme lies across
sentences, or the suggestion is weak; a reviewer should know which claim is being made.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from qualcode.models import Evidence, Segment
from qualcode.segment import sentence_pipes
from qualcode.turns import strip_span

# Evidence quotes a text (a sentence, a coded example) up to this many characters, cut at a word.
EVIDENCE_CHARS = 80
# A "sentence" of fewer words is a fragment the sentencizer cut (". . .", "Yes.", a list number),
# too short to carry a theme and quoted as evidence it would say nothing.
MIN_WORDS = 3
_WORD = re.compile(r"[^\W\d_]+")
_TRAILING_OFF = re.compile(r"(?:\.\s*){2,}$|…$")


def sentence_spans(texts: Sequence[str], nlp) -> list[list[tuple[int, int]]]:
    """Each text's sentences of at least ``MIN_WORDS`` words as (start, end) spans, trimmed of space."""
    spans = []
    with sentence_pipes(nlp):
        for text, doc in zip(texts, nlp.pipe(texts)):
            found: list[tuple[int, int]] = []
            for sentence in doc.sents:
                start, end = strip_span(text, sentence.start_char, sentence.end_char)
                if end <= start:
                    continue
                # The sentencizer ends a sentence at ". . ."; a speaker trailing off goes on.
                if found and _TRAILING_OFF.search(text, found[-1][0], found[-1][1]):
                    found[-1] = (found[-1][0], end)
                else:
                    found.append((start, end))
            spans.append([(a, b) for a, b in found if len(_WORD.findall(text, a, b)) >= MIN_WORDS])
    return spans


def excerpt(text: str) -> str:
    """``text`` on one line, cut at a word with "…" when longer than ``EVIDENCE_CHARS``."""
    text = " ".join(text.split())
    if len(text) <= EVIDENCE_CHARS:
        return text
    return text[: EVIDENCE_CHARS - 1].rsplit(" ", 1)[0] + "…"


def carrying_sentences(
    suggestions: Sequence[tuple[Segment, str]],
    code_ids: Sequence[str],
    predict_proba: Callable[[list[str]], np.ndarray],
    threshold: Callable[[str], float],
    nlp,
) -> list[Evidence | None]:
    """For each (segment, code) suggestion, evidence naming the sentence that says the code most.

    ``predict_proba(texts)`` is the fitted classifier's (texts x ``code_ids``) probabilities;
    ``threshold(code_id)`` the probability at which the run suggests a code. A segment of one
    sentence gets ``None``: the passage is the sentence. Each distinct sentence is read once.
    """
    segments = list(dict.fromkeys(segment for segment, _ in suggestions))
    spans = dict(
        zip(
            (segment.segment_id for segment in segments),
            sentence_spans([segment.text for segment in segments], nlp),
        )
    )
    sentences: dict[str, int] = {}
    for segment in segments:
        if len(spans[segment.segment_id]) > 1:
            for start, end in spans[segment.segment_id]:
                sentences.setdefault(segment.text[start:end], len(sentences))
    if not sentences:
        return [None] * len(suggestions)
    probabilities = predict_proba(list(sentences))
    column = {code_id: index for index, code_id in enumerate(code_ids)}
    evidence: list[Evidence | None] = []
    for segment, code_id in suggestions:
        found = spans[segment.segment_id]
        if len(found) < 2 or code_id not in column:
            evidence.append(None)
            continue
        scores = [
            probabilities[sentences[segment.text[start:end]], column[code_id]]
            for start, end in found
        ]
        if np.all(np.isnan(scores)):
            evidence.append(None)
            continue
        best = int(np.nanargmax(scores))
        start, end = found[best]
        alone = float(scores[best])
        quoted = excerpt(segment.text[start:end])
        if alone >= threshold(code_id):
            evidence.append(
                Evidence(
                    f"classifier: the sentence that says it most ({alone:.2f} on its own)",
                    quoted,
                    segment.start_char + start,
                    segment.start_char + end,
                )
            )
        else:
            evidence.append(
                # No words to find and mark: the quote lives in the description.
                Evidence(
                    f'classifier: no sentence says it on its own (the closest, "{quoted}", '
                    f"{alone:.2f})",
                    "",
                )
            )
    return evidence
