"""Reading a language model's answer: strictly when it kept to the schema, leniently when not.

Every repair is named, so a run can say how many answers needed one. A quote counts as evidence
only where it is a verbatim span of the segment (line breaks and runs of spaces may differ, and
quotation marks around it are dropped); otherwise the answer stands but the quote is not shown.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_PYTHON_LITERALS = re.compile(r"\b(True|False|None)\b")
_YES = {"true", "yes", "y", "1", "applies"}
_NO = {"false", "no", "n", "0", "", "does not apply"}
_QUOTE_MARKS = "\"'“”‘’«»"


@dataclass(frozen=True)
class CodeAnswer:
    """The model's answer on one code: ``span`` is where its quote lies in the segment text, if it does."""

    applies: bool
    confidence: float | None
    quote: str
    span: tuple[int, int] | None


@dataclass(frozen=True)
class Answer:
    """An answer on one segment: per code, and what had to be repaired; ``problem`` if it is unusable."""

    codes: dict[str, CodeAnswer]
    repairs: tuple[str, ...] = ()
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None


def _load(content: str, repairs: list[str]) -> object:
    text = content.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
        repairs.append("code fence removed")
    start, end = text.find("{"), text.rfind("}")
    if start > 0 or (0 <= start and end < len(text) - 1):
        repairs.append("text around the JSON removed")
    if start >= 0 and end > start:
        text = text[start : end + 1]
    for name, fix in (
        ("trailing commas removed", lambda t: _TRAILING_COMMA.sub(r"\1", t)),
        (
            "Python literals read as JSON",
            lambda t: _PYTHON_LITERALS.sub(
                lambda m: {"True": "true", "False": "false", "None": "null"}[m.group(1)], t
            ),
        ),
    ):
        try:
            return json.loads(text)
        except ValueError:
            fixed = fix(text)
            if fixed != text:
                repairs.append(name)
                text = fixed
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        value = ast.literal_eval(
            _PYTHON_LITERALS.sub(
                lambda m: m.group(1),
                text.replace("true", "True").replace("false", "False").replace("null", "None"),
            )
        )
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError("not JSON, even after repairs") from None
    repairs.append("read as a Python literal (single quotes)")
    return value


def _by_code(value: object, code_ids: Sequence[str], repairs: list[str]) -> dict[str, object]:
    """The per-code part of an answer, from the schema's shape or the common variants of it."""
    if isinstance(value, dict) and not any(code_id in value for code_id in code_ids):
        for key in ("codes", "codings", "answers", "results"):
            if key in value:
                value = value[key]
                repairs.append(f"answers read from '{key}'")
                break
    if isinstance(value, list):
        items = {}
        for item in value:
            if isinstance(item, dict):
                key = item.get("code") or item.get("code_id") or item.get("id")
                if isinstance(key, str):
                    items[key] = item
        repairs.append("a list of answers read by code")
        value = items
    if not isinstance(value, dict):
        raise ValueError("the answer is not a JSON object")
    return value


def _applies(value: object, repairs: list[str]) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _YES or word in _NO:
        repairs.append("'applies' given as a word")
        return word in _YES
    raise ValueError(f"'applies' is {value!r}, not true or false")


def _confidence(value: object, repairs: list[str]) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        repairs.append("'confidence' given as text")
        value = value.strip().rstrip("%")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    if 1 < number <= 100:
        repairs.append("'confidence' given as a percentage")
        number /= 100
    return min(max(number, 0.0), 1.0)


def locate_quote(quote: str, text: str) -> tuple[int, int] | None:
    """Where ``quote`` lies verbatim in ``text`` (runs of whitespace may differ), or None."""
    quote = quote.strip()
    if len(quote) >= 2 and quote[0] in _QUOTE_MARKS and quote[-1] in _QUOTE_MARKS:
        quote = quote[1:-1].strip()
    if not quote:
        return None
    at = text.find(quote)
    if at >= 0:
        return at, at + len(quote)
    words = quote.split()
    match = re.search(r"\s+".join(re.escape(word) for word in words), text)
    return (match.start(), match.end()) if match else None


def parse_answer(content: str | None, code_ids: Sequence[str], text: str) -> Answer:
    """Read ``content`` (the model's message) as an answer on every code of ``code_ids`` about segment ``text``."""
    repairs: list[str] = []
    if not content or not content.strip():
        return Answer({}, (), "an empty answer")
    try:
        by_code = _by_code(_load(content, repairs), code_ids, repairs)
    except ValueError as error:
        return Answer({}, tuple(repairs), str(error))
    codes: dict[str, CodeAnswer] = {}
    for code_id in code_ids:
        item = by_code.get(code_id)
        if item is None:
            repairs.append(f"no answer on {code_id}")
            continue
        if isinstance(item, (bool, str)):
            item = {"applies": item}
            repairs.append(f"a bare decision on {code_id}")
        if not isinstance(item, dict):
            repairs.append(f"an unreadable answer on {code_id}")
            continue
        try:
            applies = _applies(item.get("applies"), repairs)
        except ValueError:
            repairs.append(f"an unreadable answer on {code_id}")
            continue
        quote = item.get("quote") if isinstance(item.get("quote"), str) else ""
        codes[code_id] = CodeAnswer(
            applies,
            _confidence(item.get("confidence"), repairs),
            quote,
            locate_quote(quote, text) if applies and quote else None,
        )
    unknown = [key for key in by_code if key not in code_ids]
    if unknown:
        repairs.append("answers on codes not in the codebook ignored")
    if not codes:
        return Answer({}, tuple(dict.fromkeys(repairs)), "no code was answered")
    return Answer(codes, tuple(dict.fromkeys(repairs)))
