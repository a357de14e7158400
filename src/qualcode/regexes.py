"""Researchers' regular expressions: compiled with a time limit, and checked for runaway backtracking.

Codebook regexes run through the ``regex`` package, whose matching takes a timeout, so one
pattern that backtracks without end (``^(\\w+\\s?)*$`` on an ordinary sentence) stops a run with
a message naming it instead of freezing it. ``runaway_repeats`` finds the usual cause before a run.
"""

from __future__ import annotations

import sys

import regex

# Seconds one regex may spend on one segment. A sound pattern takes microseconds on a paragraph;
# a pattern that needs more than a second is backtracking, and would need hours on a longer text.
REGEX_TIME_LIMIT = 1.0

if sys.version_info >= (3, 11):
    import re._constants as _constants
    import re._parser as _parser
else:  # pragma: no cover - Python 3.10
    import sre_constants as _constants
    import sre_parse as _parser

_REPEATS = {_constants.MAX_REPEAT, _constants.MIN_REPEAT} | (
    {_constants.POSSESSIVE_REPEAT} if hasattr(_constants, "POSSESSIVE_REPEAT") else set()
)


def compile_regex(pattern: str) -> regex.Pattern[str]:
    """A codebook regex as the rules run it: case-insensitive; raises ``regex.error`` if it is not valid."""
    return regex.compile(pattern, regex.IGNORECASE)


def _unbounded(item) -> bool:
    return item[1][1] == _constants.MAXREPEAT


def _holds_unbounded_repeat(items) -> bool:
    for op, argument in items:
        if op in _REPEATS and (_unbounded((op, argument)) or _holds_unbounded_repeat(argument[2])):
            return True
        if op == _constants.SUBPATTERN and _holds_unbounded_repeat(argument[-1]):
            return True
        if op == _constants.BRANCH and any(
            _holds_unbounded_repeat(branch) for branch in argument[1]
        ):
            return True
    return False


def _runaway(items) -> bool:
    for op, argument in items:
        if op in _REPEATS:
            if _unbounded((op, argument)) and _holds_unbounded_repeat(argument[2]):
                return True
            if _runaway(argument[2]):
                return True
        elif op == _constants.SUBPATTERN and _runaway(argument[-1]):
            return True
        elif op == _constants.BRANCH and any(_runaway(branch) for branch in argument[1]):
            return True
    return False


def runaway_repeats(pattern: str) -> bool:
    """True when an unbounded repeat holds another unbounded repeat, as in ``(a+)+`` or ``(\\w+\\s?)*``.

    Such a pattern can try exponentially many ways to match a text it does not match. Patterns the
    standard parser cannot read (``regex``-only syntax) are not judged.
    """
    try:
        parsed = _parser.parse(pattern)
    except Exception:  # noqa: BLE001 - the re parser's own error types differ by version
        return False
    return _runaway(list(parsed))
