"""Speaker turns in plain-text interview transcripts.

A turn starts on a line with a speaker label and a colon (``Interviewer:``, ``P03:``, ``SW2:``,
``Young person:``), optionally preceded by a timestamp (``[00:12:31]``, ``00:12:31`` or
``(00:12:31)``). A line with only a timestamp before its text starts a turn with no speaker
(captions without names). Every other line, blank lines included, continues the current turn.
Offsets are character offsets into the text given, so ``text[turn.start:turn.end]`` is the
turn's words without label or timestamp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TIMESTAMP = r"(?:\d{1,2}:)?\d{1,2}:\d{2}(?:[.,]\d{1,3})?"
_LINE_START = re.compile(
    r"""^[ \t]*
    (?:(?P<ts>\["""
    + _TIMESTAMP
    + r"""\]|\("""
    + _TIMESTAMP
    + r"""\)|"""
    + _TIMESTAMP
    + r""")[ \t]+)?
    (?:(?P<label>[A-Z0-9][\w'’.\-]*(?:[ \t][\w'’.\-]+){0,3}(?:[ \t]*\([^()\n]{1,40}\))?)[ \t]*:(?=\s|$))?
    """,
    re.VERBOSE | re.MULTILINE,
)
# "She said: ..." at the start of a line is reported speech inside a turn, not a new speaker.
_SPEECH_VERBS = frozenset(
    {
        "said",
        "says",
        "say",
        "asked",
        "asks",
        "told",
        "tells",
        "thought",
        "replied",
        "goes",
        "went",
        "was",
        "is",
        "like",
    }
)

DEFAULT_INTERVIEWER_LABELS = frozenset(
    {"interviewer", "int", "i", "q", "researcher", "facilitator", "moderator", "interviewer (i)"}
)


@dataclass(frozen=True)
class Turn:
    start: int
    end: int
    speaker: str | None
    timestamp: str | None


@dataclass(frozen=True)
class _TurnStart:
    line_start: int
    text_start: int
    speaker: str | None
    timestamp: str | None


def normalise_timestamp(raw: str) -> str:
    """``[0:12:31.5]`` -> ``00:12:31``; ``12:31`` -> ``00:12:31``."""
    digits = raw.strip("[]()").replace(",", ".").split(".")[0]
    parts = [int(part) for part in digits.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}"


def is_interviewer(
    speaker: str | None, labels: frozenset[str] = DEFAULT_INTERVIEWER_LABELS
) -> bool:
    """True when the label names the interviewer; trailing numbers are ignored (``INT2``, ``Interviewer 1``)."""
    if not speaker:
        return False
    bare = re.sub(r"[\s\d]+$", "", speaker.strip()).lower()
    return bare in labels or speaker.strip().lower() in labels


def _is_reported_speech(label: str) -> bool:
    words = label.split()
    return len(words) > 1 and words[-1].lower() in _SPEECH_VERBS


def _turn_starts(text: str) -> list[_TurnStart]:
    starts: list[_TurnStart] = []
    for match in _LINE_START.finditer(text):
        label, stamp = match.group("label"), match.group("ts")
        if label is None and stamp is None:
            continue
        if label is not None and _is_reported_speech(label):
            if stamp is None:
                continue
            label = None
        text_start = match.end()
        # The label regex stops before whitespace; skip to the first character of speech.
        while text_start < len(text) and text[text_start] in " \t":
            text_start += 1
        starts.append(
            _TurnStart(
                line_start=match.start(),
                text_start=text_start,
                speaker=label.strip() if label else None,
                timestamp=normalise_timestamp(stamp) if stamp else None,
            )
        )
    return starts


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Narrow ``[start, end)`` past whitespace at both ends."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def parse_turns(text: str) -> list[Turn]:
    """Split a transcript into turns. Text before the first label becomes a turn with no speaker."""
    starts = _turn_starts(text)
    turns: list[Turn] = []
    first_line = starts[0].line_start if starts else len(text)
    preamble = strip_span(text, 0, first_line)
    if preamble[1] > preamble[0]:
        turns.append(Turn(preamble[0], preamble[1], None, None))
    for position, turn_start in enumerate(starts):
        end = starts[position + 1].line_start if position + 1 < len(starts) else len(text)
        start, end = strip_span(text, turn_start.text_start, end)
        if end > start:
            turns.append(Turn(start, end, turn_start.speaker, turn_start.timestamp))
    return turns


def looks_like_transcript(text: str) -> bool:
    """Whether most paragraphs open with a speaker label, from at least two different speakers."""
    labelled_lines = 0
    speakers: set[str] = set()
    paragraph_starts = 0
    previous_blank = True
    for line in text.split("\n"):
        if not line.strip():
            previous_blank = True
            continue
        match = _LINE_START.match(line)
        label = match.group("label") if match else None
        if label and _is_reported_speech(label):
            label = None
        if label:
            labelled_lines += 1
            speakers.add(label.strip().lower())
        if label or previous_blank:
            paragraph_starts += 1
        previous_blank = False
    return labelled_lines >= 3 and len(speakers) >= 2 and labelled_lines >= 0.5 * paragraph_starts
