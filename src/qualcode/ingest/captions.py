"""WebVTT and SubRip captions (Zoom, Teams, Otter exports) rendered as a speaker-turn transcript.

Consecutive cues of one speaker merge into one turn, stamped with the time of its first cue.
Cues without a speaker merge until a sentence ends, so unnamed captions still give readable
turns. The result is plain transcript text (``[00:00:03] Name: words``) that the ordinary turn
parser segments, so captions and typed transcripts share one segmentation path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qualcode.errors import InputDataError
from qualcode.turns import normalise_timestamp

_TIMING = re.compile(r"^\s*(?P<start>[\d:.,]+)\s+-->\s+(?P<end>[\d:.,]+)")
_VOICE = re.compile(r"<v(?:\.[\w.-]+)?\s+(?P<name>[^>]+)>")
_TAG = re.compile(r"</?[^>]*>")
_NAMED = re.compile(r"^(?P<name>[A-Z][\w'’.\-]*(?: [\w'’.\-]+){0,3}):\s+(?P<words>.*)$", re.DOTALL)
_BLOCK = re.compile(r"^[ \t]*\S[^\n]*(?:\n[ \t]*\S[^\n]*)*", re.MULTILINE)
_UNSAFE_IN_LABEL = re.compile(r"[^\w'’.\- ]+")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)]*$")


@dataclass
class _Cue:
    timestamp: str
    speaker: str | None
    words: str


def _parse_cues(text: str, path: str) -> list[_Cue]:
    cues: list[_Cue] = []
    for block in _BLOCK.finditer(text):
        block_line = text.count("\n", 0, block.start()) + 1
        lines = block.group().split("\n")
        head = lines[0].strip()
        if head.startswith(("WEBVTT", "NOTE", "STYLE", "REGION")):
            continue
        timing_at = 0 if _TIMING.match(lines[0]) else 1
        if timing_at >= len(lines) or not _TIMING.match(lines[timing_at]):
            raise InputDataError(f"{path}: line {block_line}: expected a cue timing like '00:00:01.000 --> 00:00:04.000'")
        timing = _TIMING.match(lines[timing_at])
        try:
            timestamp = normalise_timestamp(timing.group("start"))
        except ValueError as error:
            raise InputDataError(f"{path}: line {block_line + timing_at}: malformed cue time '{timing.group('start')}'") from error
        payload = "\n".join(lines[timing_at + 1:]).strip()
        voice = _VOICE.search(payload)
        speaker = voice.group("name").strip() if voice else None
        words = " ".join(_TAG.sub("", payload).split())
        if speaker is None:
            named = _NAMED.match(words)
            if named:
                speaker, words = named.group("name"), named.group("words")
        if words:
            cues.append(_Cue(timestamp, speaker, words))
    return cues


def _as_label(speaker: str) -> str:
    """A speaker name the turn parser reads back as a label: no colons or brackets, capitalised."""
    words = _UNSAFE_IN_LABEL.sub(" ", speaker).split()[:4] or ["Speaker"]
    label = " ".join(words)
    return label[0].upper() + label[1:]


def captions_to_transcript(text: str, path: str) -> str:
    """Render caption cues as transcript text; raises ``InputDataError`` when there are none."""
    cues = _parse_cues(text, path)
    if not cues:
        raise InputDataError(f"{path}: no caption cues found")
    turns: list[_Cue] = []
    for cue in cues:
        previous = turns[-1] if turns else None
        same_speaker = previous is not None and previous.speaker == cue.speaker
        unfinished_unnamed = same_speaker and cue.speaker is None and not _SENTENCE_END.search(previous.words)
        if previous is not None and ((same_speaker and cue.speaker is not None) or unfinished_unnamed):
            previous.words = f"{previous.words} {cue.words}"
        else:
            turns.append(_Cue(cue.timestamp, cue.speaker, cue.words))
    rendered = []
    for turn in turns:
        label = f"{_as_label(turn.speaker)}: " if turn.speaker else ""
        rendered.append(f"[{turn.timestamp}] {label}{turn.words}")
    return "\n\n".join(rendered) + "\n"
