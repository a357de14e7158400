"""The prompt a language model codes with: the codebook, one segment, and the answer's JSON schema.

The template is versioned (``TEMPLATE_VERSION``) and hashed (``template_sha256``); both go to the
Run sheet and into the response cache's key, so a changed prompt is never answered from the
cache. The codebook part is the same for every segment and comes first (in the system message),
so a server that reuses a prompt's prefix (Ollama, llama.cpp, vLLM) reads it once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from qualcode.models import Codebook, Segment

TEMPLATE_VERSION = "qualcode-coding-prompt.v1"
POSITIVE_EXAMPLES = 3
NEGATIVE_EXAMPLES = 2
# A turn shorter than this (in words) is shown with the turn before it, as context ("Yes, she did.").
SHORT_TURN_WORDS = 15

SYSTEM_TEMPLATE = """\
You are a careful qualitative researcher coding one segment of {kind} against a codebook.
For every code below, decide whether it applies to the segment, judged by the code's definition and its
include and exclude criteria. Code only the segment itself: the context, when given, is there to make a
short answer understandable and must not be coded or quoted.

Answer with one JSON object and nothing else. It has one key per code id, each holding:
- "applies": true or false;
- "confidence": a number from 0 to 1, how sure you are of that decision;
- "quote": when the code applies, the shortest words copied exactly, character for character, from the
  segment that show it; when it does not apply, "".

CODEBOOK: {codebook_name}
{codes}"""

USER_TEMPLATE = """\
{context}SEGMENT (speaker: {speaker}):
{text}"""

CONTEXT_TEMPLATE = """\
CONTEXT, the turn before (speaker: {speaker}; do not code or quote it):
{text}

"""


def template_sha256() -> str:
    """SHA-256 of everything in the prompt that is not the codebook or the segment."""
    parts = [
        TEMPLATE_VERSION,
        SYSTEM_TEMPLATE,
        USER_TEMPLATE,
        CONTEXT_TEMPLATE,
        str(POSITIVE_EXAMPLES),
        str(NEGATIVE_EXAMPLES),
        str(SHORT_TURN_WORDS),
        json.dumps(response_schema(("code",)), sort_keys=True),
    ]
    return hashlib.sha256("\x1e".join(parts).encode("utf-8")).hexdigest()


def _listed(label: str, items: Sequence[str]) -> list[str]:
    return [f"  {label}:"] + [f"    - {' '.join(item.split())}" for item in items] if items else []


def codebook_text(codebook: Codebook) -> str:
    """Each code: id, name, definition, include and exclude criteria, a few examples."""
    blocks = []
    for code in codebook.codes:
        lines = [
            f"- id: {code.code_id}",
            f"  name: {code.name}",
            f"  definition: {' '.join(code.definition.split())}",
        ]
        lines += _listed("include when", code.include)
        lines += _listed("exclude when", code.exclude)
        lines += _listed("examples that apply", code.positive_examples[:POSITIVE_EXAMPLES])
        lines += _listed("examples that do not apply", code.negative_examples[:NEGATIVE_EXAMPLES])
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


@dataclass(frozen=True)
class SegmentPrompt:
    """One segment to ask about, with the turn before it when the segment is short."""

    segment: Segment
    context: Segment | None = None


def with_context(segments: Sequence[Segment], codable: Sequence[Segment]) -> list[SegmentPrompt]:
    """A prompt for each of ``codable``: a short one carries the segment before it in its document (``segments`` in order)."""
    before: dict[str, Segment] = {}
    previous: Segment | None = None
    for segment in segments:
        if previous is not None and previous.doc_id == segment.doc_id:
            before[segment.segment_id] = previous
        previous = segment
    prompts = []
    for segment in codable:
        short = len(segment.text.split()) < SHORT_TURN_WORDS
        prompts.append(SegmentPrompt(segment, before.get(segment.segment_id) if short else None))
    return prompts


def messages(system: str, prompt: SegmentPrompt) -> list[dict[str, str]]:
    segment, context = prompt.segment, prompt.context
    context_text = (
        CONTEXT_TEMPLATE.format(speaker=context.speaker or "unknown", text=context.text.strip())
        if context is not None
        else ""
    )
    user = USER_TEMPLATE.format(
        context=context_text, speaker=segment.speaker or "none (written text)", text=segment.text
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def system_message(codebook: Codebook) -> str:
    kind = "an interview transcript, essay or survey answer"
    return SYSTEM_TEMPLATE.format(
        kind=kind, codebook_name=codebook.name, codes=codebook_text(codebook)
    )


def response_schema(code_ids: Sequence[str]) -> dict:
    """The JSON schema of an answer: for each code, applies, confidence and quote."""
    answer = {
        "type": "object",
        "properties": {
            "applies": {"type": "boolean"},
            "confidence": {"type": "number"},
            "quote": {"type": "string"},
        },
        "required": ["applies", "confidence", "quote"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {code_id: answer for code_id in code_ids},
        "required": list(code_ids),
        "additionalProperties": False,
    }
