"""The coded workbook, streamed with xlsxwriter (constant memory) and styled for review."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from qualcode.errors import OutputError
from qualcode.export.tables import (
    CODING_COLUMNS,
    CODING_TEXT_COLUMNS,
    SUMMARY_COLUMNS,
    CodeCounts,
    MarkedText,
    SegmentRows,
    Table,
    closing_tables,
    coding_rows,
    codings_table,
    document_rows,
    documents_header,
    segments_table,
    summary_table,
)
from qualcode.models import CodeAssignment, Codebook, CodingResult, Corpus, HumanDecision, Segment

logger = logging.getLogger(__name__)

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_CELL = 32_767
_TRUNCATION_NOTE = " […truncated: Excel cells hold 32,767 characters; see --format csv]"
_WIDTHS = {
    "segment_id": 24,
    "document": 24,
    "speaker": 14,
    "start": 8,
    "end": 8,
    "timestamp": 10,
    "text": 80,
    "evidence": 50,
    "codes": 28,
    "reviewed": 10,
    "decision": 10,
    "code": 20,
    "source": 11,
    "confidence": 11,
    "status": 11,
    "decided by": 22,
    "definition": 60,
    "include": 45,
    "exclude": 45,
    "positive examples": 60,
    "negative examples": 60,
    "field": 22,
    "value": 60,
    "detail": 66,
    "name": 32,  # the Summary sheet's "segments with at least one code" in full
}


def _text_color_for(fill: str) -> str:
    red, green, blue = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else "#FFFFFF"


class _Formats:
    """The cell styles; every one is aligned to the top, as unstyled cells are (``_open_workbook``)."""

    def __init__(self, workbook, codebook: Codebook | None):
        self.header = workbook.add_format(
            {"bold": True, "bottom": 1, "text_wrap": True, "valign": "top"}
        )
        self.wrap = workbook.add_format({"text_wrap": True, "valign": "top"})
        self.plain = None  # the workbook's default style
        self.marked = workbook.add_format({"bold": True, "font_color": "#9C0006"})
        self.code_header: dict[str, object] = {}
        self.code_cell: dict[str, object] = {}
        for code in codebook.codes if codebook else ():
            style = (
                {"bg_color": code.color, "font_color": _text_color_for(code.color)}
                if code.color
                else {}
            )
            # The cell holds the code id (the column contract readers rely on); its display format
            # adds the code's name, so a researcher reads "Trust (trust)".
            shown = (
                {"num_format": f'"{_format_literal(code.name)} ("@")"'}
                if code.name and code.name != code.code_id
                else {}
            )
            self.code_header[code.code_id] = workbook.add_format(
                {**style, **shown, "bold": True, "bottom": 1, "valign": "top", "text_wrap": True}
            )
            if code.color:
                self.code_cell[code.code_id] = workbook.add_format(
                    {**style, "align": "center", "valign": "top"}
                )


def _format_literal(text: str) -> str:
    """``text`` inside a quoted literal of an Excel number format, which cannot hold a double quote."""
    return text.replace('"', "'")


def _write_value(sheet, row: int, column: int, value: object, cell_format) -> bool:
    """Write one typed cell; text is always a string cell, never a formula or a link. True if truncated."""
    if value is None:
        return False
    if isinstance(value, MarkedText):
        return _write_marked(sheet, row, column, value, cell_format)
    if isinstance(value, bool):
        sheet.write_boolean(row, column, value, cell_format)
    elif isinstance(value, (int, float)):
        sheet.write_number(row, column, value, cell_format)
    else:
        text = str(value)
        truncated = len(text) > EXCEL_MAX_CELL
        if truncated:
            text = text[: EXCEL_MAX_CELL - len(_TRUNCATION_NOTE)] + _TRUNCATION_NOTE
        sheet.write_string(row, column, text, cell_format)
        return truncated
    return False


def _write_marked(sheet, row: int, column: int, text: MarkedText, cell_format) -> bool:
    """The text with its evidence words in bold red (rich text); plain when nothing can be marked."""
    marks = text.marks() if len(text) <= EXCEL_MAX_CELL else []
    if not marks:
        return _write_value(sheet, row, column, str(text), cell_format)
    fragments: list = []
    position = 0
    for start, end in marks:
        if start > position:
            fragments.append(text[position:start])
        fragments += [sheet.marked_format, text[start:end]]
        position = end
    if position < len(text):
        fragments.append(text[position:])
    if len(fragments) <= 2:  # xlsxwriter needs more than one fragment: the whole text is evidence
        sheet.write_string(row, column, str(text), cell_format)
    else:
        sheet.write_rich_string(row, column, *fragments, cell_format)
    return False


# Marking evidence words as rich text costs about a quarter of a run's time (xlsxwriter writes a
# font run per fragment): corpora up to this size, which a researcher reviews row by row, get it;
# a bigger run is written plain so it stays within 1.5 times the floor (benchmarks/bench.py).
MARK_EVIDENCE_UP_TO_CHARACTERS = 1_500_000  # about 250,000 words

# Excel's default row holds one line of 11-point Calibri in 15 points; its tallest row is 409 points.
_LINE_HEIGHT = 15
_MAX_ROW_HEIGHT = 409
# Characters of running text on one line of a column one unit wide (a unit is the width of a digit;
# LibreOffice fits about 1.25 of English prose), erring on the short side: a row a line too tall
# wastes a little paper, a row too short prints its lines over the next.
_CHARACTERS_PER_WIDTH = 1.15


def _lines(text: str, width: float) -> int:
    # Never fewer than the lines of each paragraph wrapped alone, and cheap: this runs for every row.
    return len(text) // max(1, int(width * _CHARACTERS_PER_WIDTH)) + text.count("\n") + 1


class _Sheet:
    """One worksheet being filled row by row: header styling, column widths, typed cells, then filter and freeze."""

    def __init__(
        self,
        workbook,
        name: str,
        header: Sequence[str],
        text_columns: Sequence[str],
        formats: _Formats,
        codebook: Codebook | None,
    ):
        self.name = name
        self.header = tuple(header)
        self.sheet = workbook.add_worksheet(name)
        self.rows = 0
        self.truncated = 0
        code_ids = set(codebook.code_ids) if codebook else set()
        self.formats = []
        for column, column_name in enumerate(self.header):
            width = _WIDTHS.get(column_name, 12 if column_name in code_ids else 16)
            self.sheet.set_column(column, column, width)
            if name == "Segments" and column_name in formats.code_cell:
                self.formats.append(formats.code_cell[column_name])
            else:
                self.formats.append(formats.wrap if column_name in text_columns else formats.plain)
        coloured_headers = name in ("Segments", "Documents", "Co-occurrence")
        for column, column_name in enumerate(self.header):
            style = (
                formats.code_header.get(column_name, formats.header)
                if coloured_headers
                else formats.header
            )
            self.sheet.write_string(0, column, column_name, style)
        self.code_column = self.header.index("code") if name == "Codings" else None
        self.mark_evidence = True
        self.code_formats = formats.code_cell
        self.sheet.marked_format = formats.marked
        if coloured_headers and any(
            column_name in formats.code_header for column_name in self.header
        ):
            self.sheet.set_row(
                0, 2 * _LINE_HEIGHT
            )  # "Structural context (structural_context)" takes two lines
        # Rows as tall as their wrapped text, so printed lines never overlap the next row.
        self.wrapped = [
            (column, _WIDTHS.get(column_name, 16))
            for column, column_name in enumerate(self.header)
            if column_name in text_columns
        ]
        self._print_setup(code_ids)

    def _print_setup(self, code_ids) -> None:
        """Landscape, every column on one page's width, the header on every page."""
        sheet = self.sheet
        sheet.set_landscape()
        sheet.set_paper(9)  # A4; Letter prints it with slightly wider margins
        sheet.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.5)
        sheet.fit_to_pages(1, 0)
        sheet.repeat_rows(0)
        sheet.set_footer(f"&L{self.name}&RPage &P of &N")

    def write(self, rows: Iterable[tuple]) -> None:
        # The innermost loop of every export: plain strings and numbers skip the general type dispatch.
        sheet, formats, code_column, code_formats = (
            self.sheet,
            self.formats,
            self.code_column,
            self.code_formats,
        )
        write_string, write_number = sheet.write_string, sheet.write_number
        text_kinds = (str,) if self.mark_evidence else (str, MarkedText)
        number = self.rows
        wrapped, set_row = self.wrapped, sheet.set_row
        for values in rows:
            number += 1
            if wrapped:
                lines = max(
                    (
                        _lines(values[column], width)
                        for column, width in wrapped
                        if isinstance(values[column], str)
                    ),
                    default=1,
                )
                if lines > 1:
                    set_row(number, min(_MAX_ROW_HEIGHT, lines * _LINE_HEIGHT))
            for column, value in enumerate(values):
                if value is None:
                    continue
                cell_format = formats[column]
                if column == code_column:
                    cell_format = code_formats.get(value, cell_format)
                kind = type(value)
                if kind in text_kinds and len(value) <= EXCEL_MAX_CELL:
                    write_string(number, column, value, cell_format)
                elif kind is int or kind is float:
                    write_number(number, column, value, cell_format)
                else:
                    self.truncated += _write_value(sheet, number, column, value, cell_format)
        self.rows = number

    def close(self) -> None:
        self.sheet.freeze_panes(1, 0)
        self.sheet.autofilter(0, 0, max(self.rows, 1), len(self.header) - 1)
        for column_name, choices in _CHOICES.get(self.name, {}).items():
            if column_name in self.header and self.rows:
                column = self.header.index(column_name)
                # A warning, not a stop: the other words the reader takes (x, 1, ✓) stay allowed.
                self.sheet.data_validation(
                    1,
                    column,
                    self.rows,
                    column,
                    {
                        "validate": "list",
                        "source": list(choices),
                        "error_type": "warning",
                        "input_title": column_name,
                        "input_message": _CHOICE_HELP[column_name],
                        "error_title": f"Not a {column_name} qualcode knows",
                        "error_message": _CHOICE_HELP[column_name],
                    },
                )
        if self.truncated:
            logger.warning(
                "sheet %s: %d cells longer than Excel allows were truncated; the CSV output keeps them whole",
                self.name,
                self.truncated,
            )


# Drop-down lists for the cells a researcher fills in (the review reader takes exactly these words and a few more).
_CHOICES = {"Segments": {"reviewed": ("yes", "no")}, "Codings": {"decision": ("accept", "reject")}}
_CHOICE_HELP = {
    "reviewed": "yes: every code cell of this row is your decision (1 applies, blank does not). "
    "Also taken: y, x, 1, true, done, ok; for no: n, 0, false, blank.",
    "decision": "accept: the code applies to this segment; reject: it does not. "
    "Also taken: accepted, yes, 1 / rejected, no, 0.",
}


def _too_many_rows(name: str, rows: int) -> OutputError:
    return OutputError(
        f"sheet {name} would need {rows:,} rows, more than Excel's limit of {EXCEL_MAX_ROWS:,}; "
        "write the tables as CSV with --format csv"
    )


def check_sheet_sizes(tables: Iterable[Table]) -> None:
    """Refuse, before writing anything, a sheet longer than Excel allows: never a silent cut."""
    for table in tables:
        if table.size + 1 > EXCEL_MAX_ROWS:
            raise _too_many_rows(table.name, table.size + 1)


def _open_workbook(path: Path):
    import xlsxwriter

    return xlsxwriter.Workbook(
        str(path),
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            # Ids, numbers and codes sit at the top of their row, beside the start of its wrapped text.
            # Set on the default style, this costs nothing per cell; a style of their own cost each
            # of those cells about a microsecond, about 0.4 s on a million words.
            "default_format_properties": {"font_name": "Calibri", "font_size": 11, "valign": "top"},
        },
    )


# zlib level 1 deflates sheet XML about three times as fast as xlsxwriter's default (level 6), for
# a file about a quarter larger; closing the workbook is the one step of a run that nothing
# else overlaps, so it is worth it.
DEFLATE_LEVEL = 1


def _close(workbook) -> None:
    """Close (package) an xlsxwriter workbook, deflating at ``DEFLATE_LEVEL``.

    xlsxwriter takes no compression level, so its ``ZipFile`` is swapped for the call; should a
    release stop importing it by that name, the workbook closes at the default level.
    """
    import functools
    import zipfile

    from xlsxwriter import workbook as module

    if getattr(module, "ZipFile", None) is not zipfile.ZipFile:
        workbook.close()
        return
    module.ZipFile = functools.partial(zipfile.ZipFile, compresslevel=DEFLATE_LEVEL)
    try:
        workbook.close()
    finally:
        module.ZipFile = zipfile.ZipFile


class CodedWorkbook:
    """The coded workbook, written while the coding runs.

    ``add`` appends a stretch of coded segments, with every assignment of those segments, to the
    Segments and Codings sheets (each streams its rows to disk, so memory stays flat), and the
    rows of the documents it has finished to the Documents sheet; ``finish`` writes the rest of
    the summary sheets from what the stretches counted and closes the file. Stretches come in
    document order. ``code_interviewer`` is the run's option: coded interviewer turns count as
    segments eligible for coding. Callers write to a temporary path and rename it (``export``).
    """

    def __init__(
        self,
        path: Path,
        corpus: Corpus,
        codebook: Codebook,
        *,
        code_interviewer: bool,
        mark_evidence: bool | None = None,
    ):
        if len(corpus.documents) + 1 > EXCEL_MAX_ROWS:
            raise _too_many_rows("Documents", len(corpus.documents) + 1)
        self._workbook = _open_workbook(path)
        self._formats = _Formats(self._workbook, codebook)
        self._codebook = codebook
        self._documents = corpus.documents
        self._position = {
            document.doc_id: position for position, document in enumerate(corpus.documents)
        }
        self._segment_rows = SegmentRows(corpus, codebook)
        self._counts = CodeCounts(codebook, code_interviewer=code_interviewer)
        self._segments = self._sheet("Segments", self._segment_rows.header, ("text",))
        self._codings = self._sheet("Codings", CODING_COLUMNS, CODING_TEXT_COLUMNS)
        self.marks_evidence = (
            sum(len(document.text) for document in corpus.documents)
            <= MARK_EVIDENCE_UP_TO_CHARACTERS
            if mark_evidence is None
            else mark_evidence
        )
        self._codings.mark_evidence = self.marks_evidence
        # Summary is filled last but comes first; a document's row is written once a later one has begun.
        self._summary = self._sheet("Summary", SUMMARY_COLUMNS, ())
        self._documents_sheet = self._sheet("Documents", documents_header(codebook), ())
        self._documents_written = 0
        self.finished = False

    def _sheet(self, name: str, header: Sequence[str], text_columns: Sequence[str]) -> _Sheet:
        return _Sheet(self._workbook, name, header, text_columns, self._formats, self._codebook)

    def add(
        self,
        segments: Sequence[Segment],
        assignments: Sequence[CodeAssignment],
        *,
        decisions: Mapping[tuple[str, str], HumanDecision] | None = None,
    ) -> None:
        for sheet, count in ((self._segments, len(segments)), (self._codings, len(assignments))):
            if sheet.rows + count + 1 > EXCEL_MAX_ROWS:
                raise _too_many_rows(sheet.name, sheet.rows + count + 1)
        positions = [self._position[segment.doc_id] for segment in segments]
        if positions and min(positions) < self._documents_written:
            raise ValueError(
                f"segments of {self._documents[min(positions)].doc_id} came after its row in the "
                "Documents sheet was written: stretches must come in document order"
            )
        self._segments.write(self._segment_rows.rows(segments, assignments, decisions))
        self._codings.write(coding_rows(segments, assignments, self._codebook.code_ids, decisions))
        self._counts.add(segments, assignments)
        if positions:
            # The last document here may go on in the next stretch; the ones before it are done.
            self._write_documents_before(positions[-1])

    def _write_documents_before(self, position: int) -> None:
        if position > self._documents_written:
            self._documents_sheet.write(
                document_rows(self._documents[self._documents_written : position], self._counts)
            )
            self._documents_written = position

    def finish(self, result: CodingResult) -> None:
        """Write the summary sheets for ``result``, the run whose segments and assignments were added, and close."""
        counts = self._counts
        # The summary sheets count what was added; the Run sheet also states the result's totals.
        if (counts.segments, counts.rows) != (len(result.segments), len(result.assignments)):
            raise ValueError(
                f"the workbook was given {counts.segments} segments and {counts.rows} assignments, "
                f"the run has {len(result.segments)} and {len(result.assignments)}"
            )
        if bool(result.options.get("code_interviewer")) != counts.code_interviewer:
            raise ValueError("the run's code_interviewer option differs from the workbook's")
        self._write_documents_before(len(self._documents))
        self._summary.write(summary_table(result, counts).rows)
        for sheet in (self._segments, self._codings, self._summary, self._documents_sheet):
            sheet.close()
        add_prevalence_chart(self._workbook, self._summary.sheet, self._codebook)
        for table in closing_tables(result, counts):
            if table.name == "Run":
                table.rows.append(
                    (
                        "evidence marked in the text",
                        "yes" if self.marks_evidence else "no",
                        None
                        if self.marks_evidence
                        else f"a corpus of over {MARK_EVIDENCE_UP_TO_CHARACTERS:,} characters is written without "
                        "rich text, to stay fast; the evidence column names the words",
                    )
                )
            sheet = self._sheet(table.name, table.header, table.text_columns)
            sheet.write(table.rows)
            if table.name == "Co-occurrence":
                shade_cooccurrence(sheet.sheet, len(self._codebook.codes))
            sheet.close()
        _close(self._workbook)
        self.finished = True

    def abandon(self) -> None:
        """Release the workbook's temporary files after a failed run (the caller deletes the output)."""
        with contextlib.suppress(Exception):
            self._workbook.close()


def add_prevalence_chart(workbook, sheet, codebook: Codebook) -> None:
    """A native bar chart beside the Summary table: the share of segments coded with each code, in its colour.

    The chart reads the sheet's cells (name in column B, % of segments in column D, one row per
    code from row 2), so it follows any edit made to them.
    """
    codes = codebook.codes
    if not codes:
        return
    chart = workbook.add_chart({"type": "bar"})
    last = len(codes)  # rows 2 .. last + 1 hold the codes
    chart.add_series(
        {
            "name": "% of segments",
            "categories": ["Summary", 1, 1, last, 1],
            "values": ["Summary", 1, 3, last, 3],
            "points": [
                {"fill": {"color": code.color}, "border": {"none": True}} if code.color else None
                for code in codes
            ],
            "data_labels": {"value": True, "num_format": "0.0"},
            "gap": 60,
        }
    )
    chart.set_title(
        {
            "name": "Prevalence: % of segments eligible for coding",
            "name_font": {"size": 11, "bold": True},
        }
    )
    chart.set_legend({"none": True})
    chart.set_y_axis(
        {"reverse": True, "major_gridlines": {"visible": False}}
    )  # the codebook's order, top down
    chart.set_x_axis(
        {
            "min": 0,
            "num_format": "0",
            "major_gridlines": {"visible": True, "line": {"color": "#D9D9D9"}},
        }
    )
    chart.set_size({"width": 560, "height": 60 + 34 * len(codes)})
    sheet.insert_chart(1, 6, chart, {"object_position": 3})


def shade_cooccurrence(sheet, codes: int) -> None:
    """A colour scale (white to blue) over the Co-occurrence matrix's cells off the diagonal; the diagonal (a code
    alone, always the largest) is left out so it does not flatten the scale."""
    from xlsxwriter.utility import xl_range

    ranges = []
    for index in range(codes):
        row = index + 1  # header in row 0, codes from row 1; column 0 names the code
        diagonal = index + 1
        if diagonal > 1:
            ranges.append(xl_range(row, 1, row, diagonal - 1))
        if diagonal < codes:
            ranges.append(xl_range(row, diagonal + 1, row, codes))
    if ranges:
        sheet.conditional_format(
            ranges[0],
            {
                "type": "2_color_scale",
                "min_color": "#FFFFFF",
                "max_color": "#5B8FC7",
                "multi_range": " ".join(ranges),
            },
        )


def write_xlsx(result: CodingResult, path: Path) -> None:
    """Write the coded workbook to ``path`` (callers handle atomic replacement)."""
    check_sheet_sizes([segments_table(result), codings_table(result)])
    workbook = CodedWorkbook(
        path,
        result.corpus,
        result.codebook,
        code_interviewer=bool(result.options.get("code_interviewer")),
    )
    try:
        workbook.add(result.segments, result.assignments, decisions=result.decisions)
        workbook.finish(result)
    except BaseException:
        workbook.abandon()
        raise


def write_tables(tables: Iterable[Table], path: Path, codebook: Codebook | None = None) -> None:
    """Write tables as sheets of one workbook, styled alike; code columns take the codebook's colours."""
    workbook = _open_workbook(path)
    try:
        formats = _Formats(workbook, codebook)
        for table in tables:
            sheet = _Sheet(
                workbook, table.name, table.header, table.text_columns, formats, codebook
            )
            sheet.write(table.rows)
            sheet.close()
    finally:
        _close(workbook)
