"""WebVTT and SubRip captions (Zoom, Teams, Otter exports) rendered as a speaker-turn transcript.

A cue's speaker is its voice tag (``<v Name>``) or, as Zoom writes it, a ``Name:`` before its
words. Consecutive cues of one speaker merge into one turn, stamped with the time of its first
cue. In captions that name speakers, a cue without a name continues the turn before it (Zoom
drops the name when a speaker goes on); in captions that name nobody, cues merge until a
sentence ends, so they still give readable turns. The result is plain transcript text
(``[00:00:03] Name: words``) that the ordinary turn parser segments, so captions and typed
transcripts share one segmentation path.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from qualcode.errors import InputDataError
from qualcode.turns import normalise_timestamp

_TIMING = re.compile(r"^\s*(?P<start>[\d:.,]+)\s+-->\s+(?P<end>[\d:.,]+)")
# hh:mm:ss.ttt or mm:ss.ttt (WebVTT), hh:mm:ss,ttt (SubRip): minutes and seconds below 60.
_CUE_TIME = re.compile(r"^(?:\d+:)?[0-5]\d:[0-5]\d[.,]\d{1,3}$")
_VOICE = re.compile(r"<v(?:\.[\w.-]+)?\s+(?P<name>[^>]+)>")
_TAG = re.compile(r"</?[^>]*>")
# Zoom writes "Ashlee Kupor (SL): words", "Dr. Amal Osei: words", "iPhone: words".
_NAMED = re.compile(
    r"^(?P<name>[^\W\d_][\w'’.\-()/&]*(?: [\w'’.\-()/&]+){0,5}):\s+(?P<words>.*)$", re.DOTALL
)
_BLOCK = re.compile(r"^[ \t]*\S[^\n]*(?:\n[ \t]*\S[^\n]*)*", re.MULTILINE)
_UNSAFE_IN_LABEL = re.compile(r"[^\w'’.\- ]+")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)]*$")


@dataclass
class _Cue:
    timestamp: str
    speaker: str | None
    words: str


def _timing_line(lines: list[str]) -> int | None:
    """Which line of a cue block holds its timing (0 or 1, after a cue id); None if neither does."""
    for index in (0, 1):
        if index < len(lines) and _TIMING.match(lines[index]):
            return index
    return None


def _read_blocks(text: str, path: str) -> list[_Cue]:
    """Every cue's time, voice-tag speaker (if any) and words, checked line by line."""
    cues: list[_Cue] = []
    for block in _BLOCK.finditer(text):
        block_line = text.count("\n", 0, block.start()) + 1
        lines = block.group().split("\n")
        if lines[0].strip().startswith(("WEBVTT", "NOTE", "STYLE", "REGION")):
            continue
        timing_at = _timing_line(lines)
        if timing_at is None:
            # The timing belongs on the line after a cue id, or first when the block has one line.
            expected = block_line + (1 if len(lines) > 1 and "-->" not in lines[0] else 0)
            raise InputDataError(
                f"{path}: line {expected}: expected a cue timing like '00:00:01.000 --> 00:00:04.000'"
            )
        timing = _TIMING.match(lines[timing_at])
        for edge in ("start", "end"):
            if not _CUE_TIME.match(timing.group(edge)):
                raise InputDataError(
                    f"{path}: line {block_line + timing_at}: impossible cue time "
                    f"'{timing.group(edge)}'; expected hh:mm:ss.ttt with minutes and seconds below 60"
                )
        payload = "\n".join(lines[timing_at + 1 :]).strip()
        voice = _VOICE.search(payload)
        words = " ".join(_TAG.sub("", payload).split())
        if words:
            cues.append(
                _Cue(
                    normalise_timestamp(timing.group("start")),
                    voice.group("name").strip() if voice else None,
                    words,
                )
            )
    return cues


def _parse_cues(text: str, path: str) -> list[_Cue]:
    """The cues with their speakers: voice tags, else a ``Name:`` prefix that names a speaker.

    A prefix counts as a speaker's name when it recurs (speakers speak more than once) or reads
    as a name (every word capitalised, as in ``Ashlee Kupor (SL)``); ``Note: ...`` said once in
    passing stays part of the words.
    """
    cues = _read_blocks(text, path)
    prefixes = {
        cue_index: _NAMED.match(cue.words)
        for cue_index, cue in enumerate(cues)
        if cue.speaker is None
    }
    recurring = Counter(match.group("name") for match in prefixes.values() if match)
    for cue_index, match in prefixes.items():
        if match and (recurring[match.group("name")] > 1 or _reads_as_name(match.group("name"))):
            cues[cue_index].speaker, cues[cue_index].words = (
                match.group("name"),
                match.group("words"),
            )
    return cues


def _reads_as_name(name: str) -> bool:
    words = name.split()
    return 1 < len(words) <= 4 and all(word[0].isupper() or word[0] == "(" for word in words)


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
    names_speakers = any(cue.speaker is not None for cue in cues)
    turns: list[_Cue] = []
    for cue in cues:
        previous = turns[-1] if turns else None
        if previous is None:
            continues = False
        elif cue.speaker is not None:
            continues = previous.speaker == cue.speaker
        elif names_speakers:
            continues = True  # the speaker goes on; Zoom names them only when the cue starts a turn
        else:
            continues = previous.speaker is None and not _SENTENCE_END.search(previous.words)
        if continues:
            previous.words = f"{previous.words} {cue.words}"
        else:
            turns.append(_Cue(cue.timestamp, cue.speaker, cue.words))
    rendered = []
    for turn in turns:
        label = f"{_as_label(turn.speaker)}: " if turn.speaker else ""
        rendered.append(f"[{turn.timestamp}] {label}{turn.words}")
    return "\n\n".join(rendered) + "\n"
