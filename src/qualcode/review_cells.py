"""How qualcode reads what a researcher typed in a workbook it wrote: shared by the review reader and the guard.

Both must agree on every cell, or a workbook the guard calls safe to replace could hold decisions
the reader would have imported. Sheets are found by their header, not their name, since
researchers rename sheets; a cell is a yes or a no only in words listed here, never by guessing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

# What marks a row reviewed, or a code cell as applying; Excel's TRUE and FALSE arrive as "True" / "False".
TRUE_WORDS = frozenset({"1", "1.0", "yes", "y", "x", "true", "reviewed", "done", "ok", "✓", "✔"})
FALSE_WORDS = frozenset({"", "0", "0.0", "no", "n", "false", "-"})
TRUE_SHOWN = "yes, y, x, 1, true, reviewed, done, ok, ✓"
FALSE_SHOWN = "no, n, 0, false, - or blank"

SEGMENTS_HEADER = frozenset({"segment_id", "document", "start", "end", "text", "codes", "reviewed"})
CODINGS_HEADER = frozenset({"segment_id", "code", "status", "decision"})
# The sheets qualcode writes into a coded workbook, in order (also its CSV folder's files).
CODED_WORKBOOK_SHEETS = (
    "Segments",
    "Codings",
    "Summary",
    "Documents",
    "Co-occurrence",
    "Codebook",
    "Run",
    "Orphaned reviews",
)
# Those and the sheet ``suggest`` adds to its review workbook.
QUALCODE_SHEETS = frozenset({*CODED_WORKBOOK_SHEETS, "Why these segments"})

# What qualcode writes in the Segments sheet's ``decided by`` column for a segment a coder reviewed
# in full in an earlier round (its ``reviewed`` cell then says yes): such a mark is a copy of those
# decisions, not a new review. The same mark typed on any other row is a new review.
EARLIER_REVIEW = "reviewed by "


def read_mark(value: str) -> bool | None:
    """True or False for a word listed above, None for anything else (which callers refuse)."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def marks_earlier_review(decided_by: str) -> bool:
    return decided_by.strip().startswith(EARLIER_REVIEW)


def find_sheet(
    headers: Mapping[str, Iterable[str]], preferred: str, required: frozenset[str]
) -> tuple[str | None, list[str]]:
    """The sheet whose header holds ``required`` columns: (its name or None, every sheet that qualifies).

    More than one qualifying sheet is ambiguous (a copy kept aside, say); callers refuse it rather
    than guess which one holds the review.
    """
    candidates = [name for name, header in headers.items() if required <= set(header)]
    if len(candidates) == 1:
        return candidates[0], candidates
    return None, candidates


def sheet_headers(workbook) -> dict[str, list[str]]:
    """The first row of every sheet of an openpyxl workbook (read-only mode reads nothing else)."""
    headers = {}
    for sheet in workbook.worksheets:
        first = next(sheet.iter_rows(max_row=1, values_only=True), ())
        headers[sheet.title] = [str(cell).strip() if cell is not None else "" for cell in first]
    return headers


def when(decided_at: str) -> str:
    """A decision's time to the minute, as a researcher reads it: 2026-12-02 12:59 (UTC)."""
    try:
        moment = dt.datetime.fromisoformat(decided_at)
    except ValueError:
        return decided_at
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M")
