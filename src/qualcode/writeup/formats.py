"""Writing the write-up tables: xlsx (a sheet per table, set up for printing), Markdown, LaTeX, Word and CSV.

LaTeX cells and captions are escaped by pylatexenc, the tables laid out by pandas (booktabs,
longtable); Word tables are real tables (python-docx), each under its heading.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from pathlib import Path

from qualcode.errors import OutputError
from qualcode.export.atomic import atomic_file, atomic_folder
from qualcode.writeup.analysis import WriteupTable, format_p

TABLE_FORMATS = ("xlsx", "md", "tex", "docx", "csv")
_SUFFIXES = {
    ".xlsx": "xlsx",
    ".md": "md",
    ".markdown": "md",
    ".tex": "tex",
    ".docx": "docx",
    ".csv": "csv",
}
_FILE_SUFFIX = {"xlsx": ".xlsx", "md": ".md", "tex": ".tex", "docx": ".docx", "csv": ".csv"}
FOLDER_README = "README.txt"


def cell_text(value, kind: str) -> str:
    """How a cell reads in print."""
    if value is None:
        return ""
    if kind == "pct":
        return f"{value:.1f}"
    if kind == "p":
        return format_p(value)
    if kind == "num" and isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def output_format(output: Path, chosen: str | None) -> tuple[str, bool]:
    """(format, as a folder): from the name's suffix, else ``chosen`` (default csv) into a folder of one file per table."""
    suffix = output.suffix.lower()
    if suffix in _SUFFIXES and not output.is_dir():
        named = _SUFFIXES[suffix]
        if chosen and chosen != named:
            raise OutputError(
                f"{output}: the name says {named} but --format says {chosen}; make them agree"
            )
        if named == "csv":
            raise OutputError(
                f"{output}: a CSV file holds one table; name a folder (e.g. -o tables) to get one CSV "
                "per table"
            )
        return named, False
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output}: name a file ending in .xlsx, .md, .tex or .docx, or a folder")
    return chosen or "csv", True


def table_file_names(tables: Sequence[WriteupTable], fmt: str) -> list[str]:
    return [table.key + _FILE_SUFFIX[fmt] for table in tables]


def write_tables(
    tables: Sequence[WriteupTable], output: str | os.PathLike[str], fmt: str | None = None
) -> list[Path]:
    """Write ``tables`` to ``output`` atomically: one file in the named format, or a folder of one file per table."""
    output = Path(output)
    fmt, as_folder = output_format(output, fmt)
    if not as_folder:
        with atomic_file(output) as temporary:
            _WRITERS[fmt](tables, temporary)
        return [output]
    names = table_file_names(tables, fmt)
    if output.is_dir():
        ours = {*names, FOLDER_README}
        foreign = sorted(
            entry.name
            for entry in output.iterdir()
            if entry.name not in ours or not entry.is_file()
        )
        if foreign:
            shown = ", ".join(foreign[:3]) + (
                f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            )
            raise OutputError(
                f"{output}: not replaced, because it holds files qualcode did not write ({shown}); "
                "name a new or empty folder"
            )
    with atomic_folder(output) as folder:
        for table, name in zip(tables, names):
            _WRITERS[fmt]([table], folder / name)
        lines = []
        for table, name in zip(tables, names):
            lines += [f"{name}: {table.title}", "", table.caption, *table.notes, "", ""]
        (folder / FOLDER_README).write_text("\n".join(lines), encoding="utf-8")
    return [output / name for name in names]


# -- CSV ------------------------------------------------------------------------------------------


def write_csv(tables: Sequence[WriteupTable], path: Path) -> None:
    (table,) = tables
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(table.header)
        for row in table.rows:
            writer.writerow(["" if value is None else value for value in row])


# -- Markdown -------------------------------------------------------------------------------------

_MARKDOWN_PUNCTUATION = frozenset("\\`*_[]<>|")


def markdown_escape(text: str) -> str:
    """CommonMark: any ASCII punctuation may be escaped with a backslash; a line break in a cell becomes <br>."""
    lines = [" ".join(line.split()) for line in text.splitlines()] or [""]
    return "<br>".join(
        "".join("\\" + ch if ch in _MARKDOWN_PUNCTUATION else ch for ch in line) for line in lines
    )


def markdown_table(table: WriteupTable) -> str:
    def row(cells) -> str:
        return "| " + " | ".join(cells) + " |"

    numeric = {"int", "pct", "p", "num"}
    lines = [
        row(markdown_escape(h) for h in table.header),
        row("---:" if kind in numeric else "---" for kind in table.kinds),
    ]
    lines += [
        row(markdown_escape(cell_text(v, k)) for v, k in zip(values, table.kinds))
        for values in table.rows
    ]
    return "\n".join(lines)


def write_markdown(tables: Sequence[WriteupTable], path: Path) -> None:
    parts = []
    for table in tables:
        parts += [
            f"## {markdown_escape(table.title)}",
            "",
            f"*{markdown_escape(table.caption)}*",
            "",
            markdown_table(table),
            "",
        ]
        parts += [f"- {markdown_escape(note)}" for note in table.notes]
        parts.append("")
    path.write_text("\n".join(parts), encoding="utf-8")


# -- LaTeX ----------------------------------------------------------------------------------------


def latex_escape(text: str) -> str:
    from pylatexenc.latexencode import unicode_to_latex

    return unicode_to_latex(
        text,
        non_ascii_only=False,
        unknown_char_policy="keep",
        replacement_latex_protection="braces-almost-all",
    )


def latex_table(table: WriteupTable, label: str) -> str:
    import pandas as pd

    numeric = {"int", "pct", "p", "num"}
    columns = [latex_escape(h) for h in table.header]
    if len(set(columns)) != len(columns):  # pandas needs unique names: "%" repeats in Table 2
        columns = [c + "\u200b" * i for i, c in enumerate(columns)]
    frame = pd.DataFrame(
        [
            [
                latex_escape(cell_text(v, k)).replace("\n", r"\newline ")
                for v, k in zip(row, table.kinds)
            ]
            for row in table.rows
        ],
        columns=columns,
    )
    # Widths as shares of the line, every column a paragraph column (the array package) so headers wrap:
    # numbers narrow and right-aligned, short text a little wider, long text the rest.
    count = len(table.kinds)
    # Each column's padding (\tabcolsep on both sides) on a portrait line, or a landscape one past 10 columns.
    available = 1 - (0.02 if count <= 10 else 0.012) * count
    number, text = (0.07, 0.09) if count <= 8 else (0.045, 0.07) if count <= 10 else (0.038, 0.06)
    wide = [kind for kind in table.kinds if kind == "wide"]
    fixed = sum(text if kind == "text" else number for kind in table.kinds if kind != "wide")
    share = max(0.12, (available - fixed) / len(wide)) if wide else 0.0
    layout = "".join(
        rf">{{\raggedleft\arraybackslash}}p{{{number:.3f}\linewidth}}"
        if kind in numeric
        else rf">{{\raggedright\arraybackslash}}p{{{share if kind == 'wide' else text:.3f}\linewidth}}"
        for kind in table.kinds
    )
    body = frame.to_latex(
        index=False,
        escape=False,
        longtable=True,
        column_format=layout,
        caption=latex_escape(table.title.split(". ", 1)[-1] + ". " + table.caption),
        label=label,
    )
    body = body.replace("\u200b", "")
    notes = "".join(f"\\par\\footnotesize {latex_escape(note)}\n" for note in table.notes)
    size = r"\scriptsize" if len(table.header) > 8 else r"\small"
    block = f"\\begingroup{size}\n\\setlength{{\\tabcolsep}}{{4pt}}\n{body}{notes}\\endgroup\n"
    # A table of many columns (themes by a grouping with several values) gets a landscape page.
    return f"\\begin{{landscape}}\n{block}\\end{{landscape}}\n" if count > 10 else block


def write_latex(tables: Sequence[WriteupTable], path: Path) -> None:
    parts = [
        "% qualcode write-up tables. In the preamble: \\usepackage{booktabs,longtable,array,pdflscape}",
        "% then \\input this file where the tables go (a table of many columns gets a landscape page).",
        "",
    ]
    parts += [latex_table(table, f"tab:qualcode-{table.key}") for table in tables]
    path.write_text("\n".join(parts), encoding="utf-8")


# -- Word -----------------------------------------------------------------------------------------


def _row_property(row, name: str) -> None:
    """Set a row's on/off property: w:tblHeader (repeat on every page) or w:cantSplit (keep on one page)."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    properties = row._tr.get_or_add_trPr()
    marker = OxmlElement(name)
    marker.set(qn("w:val"), "true")
    properties.append(marker)


def _docx_row(values, kinds, numeric, half_points: str):
    """One <w:tr>: a paragraph per cell, line breaks kept, numbers right-aligned, in the table's font size."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    def element(name: str, parent=None, **attributes):
        made = OxmlElement(name)
        for key, value in attributes.items():
            made.set(qn(f"w:{key}"), value)
        if parent is not None:
            parent.append(made)
        return made

    row = element("w:tr")
    element("w:cantSplit", element("w:trPr", row), val="true")
    for value, kind in zip(values, kinds):
        cell = element("w:tc", row)
        paragraph = element("w:p", cell)
        if kind in numeric:
            element("w:jc", element("w:pPr", paragraph), val="right")
        run = element("w:r", paragraph)
        element("w:sz", element("w:rPr", run), val=half_points)
        for index, line in enumerate(cell_text(value, kind).split("\n")):
            if index:
                element("w:br", run)
            text = element("w:t", run)
            text.text = line
            text.set("{http://www.w3.org/XML/1998/namespace}space", "preserve")
    return row


def _repeat_header(row) -> None:
    _row_property(row, "w:tblHeader")


_BREAKS = re.compile(r"\s+|(?<=/)")


def _longest_value(table: WriteupTable, column: int) -> int:
    return max(
        (len(row[column]) for row in table.rows[:200] if isinstance(row[column], str)), default=1
    )


def _docx_widths(table: WriteupTable, usable: float) -> list[float]:
    """Column widths in cm: numbers as wide as their header's longest word, short text as its longest word (2 to
    4.5 cm), and what is left shared by the long-text columns, or, without one, given to short text up to its
    whole line; scaled together to the page's width."""

    def longest(column: int, title: str, with_values: bool) -> int:
        values = (
            [title, *(row[column] for row in table.rows[:200] if isinstance(row[column], str))]
            if with_values
            else [title]
        )
        # A line can break after a path's "/" as well as between words.
        return max((len(word) for value in values for word in _BREAKS.split(value)), default=1)

    widths = []
    for column, (kind, title) in enumerate(zip(table.kinds, table.header)):
        if kind == "wide":
            widths.append(0.0)
        elif kind == "text":
            widths.append(
                max(
                    0.25 * longest(column, title, False) + 0.45,  # the bold header's longest word
                    min(4.5, max(1.6, 0.2 * longest(column, title, True) + 0.4)),
                )
            )
        else:
            widths.append(
                max(1.35, 0.25 * longest(column, title, False) + 0.45)
            )  # bold header words
    wide = [column for column, kind in enumerate(table.kinds) if kind == "wide"]
    if wide:
        share = max(
            4.0,
            0.38 * usable / len(wide) if len(table.kinds) <= 8 else 0.0,
            (usable - sum(widths)) / len(wide),
        )
        for column in wide:
            widths[column] = share
    else:
        # Without a long-text column the page has room: short text (a code's name and id) gets
        # its whole line first, so a row wraps only where the page is too narrow for it.
        wants = {
            column: max(0.0, 0.2 * _longest_value(table, column) + 0.4 - widths[column])
            for column, kind in enumerate(table.kinds)
            if kind == "text"
        }
        room = usable - sum(widths)
        if room > 0 and sum(wants.values()) > 0:
            given = min(1.0, room / sum(wants.values()))
            for column, want in wants.items():
                widths[column] += want * given
    total = sum(widths)
    return [width * usable / total for width in widths] if total > usable or not wide else widths


def write_docx(tables: Sequence[WriteupTable], path: Path) -> None:
    import docx
    from docx.enum.section import WD_ORIENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Cm, Pt

    document = docx.Document()
    section = document.sections[0]
    section.orientation = WD_ORIENT.LANDSCAPE
    section.page_width, section.page_height = Cm(29.7), Cm(21.0)
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, side, Cm(1.5))
    usable = 29.7 - 3.0
    numeric = {"int", "pct", "p", "num"}
    for number, table in enumerate(tables):
        if number:
            document.add_page_break()
        document.add_heading(table.title, level=1)
        caption = document.add_paragraph(table.caption)
        caption.runs[0].italic = True
        caption.runs[0].font.size = Pt(9)
        grid = document.add_table(rows=1, cols=len(table.header))
        grid.style = "Table Grid"
        grid.autofit = False
        widths = [Cm(width) for width in _docx_widths(table, usable)]
        for column, width in zip(
            grid.columns, widths
        ):  # the grid, which LibreOffice reads; Word reads the cells
            column.width = width
        size = Pt(8) if len(table.header) > 8 else Pt(9)
        for cell, title, width, kind in zip(grid.rows[0].cells, table.header, widths, table.kinds):
            cell.width = width
            cell.text = ""
            run = cell.paragraphs[0].add_run(title)
            run.bold, run.font.size = True, size
            if kind in numeric:
                cell.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.RIGHT
        _repeat_header(grid.rows[0])
        # Body rows are built as XML: python-docx's add_row looks its table up afresh for every row, which took a
        # minute for a 27,000-row quote bank. Each row is kept whole on a page (cantSplit).
        tbl = grid._tbl
        half_points = str(int(size.pt * 2))
        for values in table.rows:
            tbl.append(_docx_row(values, table.kinds, numeric, half_points))
        for note in table.notes:
            paragraph = document.add_paragraph(note)
            paragraph.runs[0].font.size = Pt(8)
    document.save(str(path))


# -- xlsx -----------------------------------------------------------------------------------------

_SHEET_NAMES = {
    "codebook": "Codebook",
    "theme-by-group": "Theme by group",
    "co-occurrence": "Co-occurrence",
    "quote-bank": "Quote bank",
}
_XLSX_WIDTHS = {"wide": 60, "text": 18, "int": 9, "pct": 7, "p": 8, "num": 9}


def write_xlsx(tables: Sequence[WriteupTable], path: Path) -> None:
    import xlsxwriter

    from qualcode.export.xlsx import _LINE_HEIGHT, _MAX_ROW_HEIGHT, _lines

    workbook = xlsxwriter.Workbook(
        str(path),
        {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False},
    )
    title_format = workbook.add_format({"bold": True, "font_size": 14})
    caption_format = workbook.add_format(
        {"italic": True, "text_wrap": True, "valign": "top", "font_size": 9}
    )
    header_style = {"bold": True, "text_wrap": True, "valign": "bottom", "top": 2, "bottom": 1}
    header_format = workbook.add_format(header_style)
    # A number's header stands over it, at the right, as in the Word and LaTeX tables.
    number_header_format = workbook.add_format({**header_style, "align": "right"})
    note_format = workbook.add_format(
        {"text_wrap": True, "valign": "top", "font_size": 9, "top": 2}
    )
    plain_note = workbook.add_format({"text_wrap": True, "valign": "top", "font_size": 9})
    cell_formats = {
        "wide": workbook.add_format({"text_wrap": True, "valign": "top"}),
        "text": workbook.add_format({"text_wrap": True, "valign": "top"}),
        "int": workbook.add_format({"valign": "top", "num_format": "0"}),
        "pct": workbook.add_format({"valign": "top", "num_format": "0.0"}),
        "p": workbook.add_format({"valign": "top", "num_format": "0.000"}),
        "num": workbook.add_format({"valign": "top", "num_format": "0.000"}),
    }
    for table in tables:
        sheet = workbook.add_worksheet(_SHEET_NAMES.get(table.key, table.key[:31]))
        columns = len(table.header)
        # Numbers as wide as their header's longest word ("Participants"), so no word breaks.
        # Short text (a code's name and id) as wide as its longest value, within reason.
        widths = [
            _XLSX_WIDTHS["wide"]
            if kind == "wide"
            else min(32, max(_XLSX_WIDTHS["text"], _longest_value(table, column) + 1))
            if kind == "text"
            else max(_XLSX_WIDTHS.get(kind, 9), max(map(len, title.split()), default=1) + 2)
            for column, (kind, title) in enumerate(zip(table.kinds, table.header))
        ]
        if columns > 10:
            widths = [min(w, 40) for w in widths]
        for column, width in enumerate(widths):
            sheet.set_column(column, column, width)
        sheet.write_string(0, 0, table.title, title_format)
        total_width = sum(widths)
        sheet.merge_range(1, 0, 1, columns - 1, table.caption, caption_format)
        sheet.set_row(1, min(_MAX_ROW_HEIGHT, _lines(table.caption, total_width) * 12 + 4))
        header_row = 3
        for column, (title, kind) in enumerate(zip(table.header, table.kinds)):
            sheet.write_string(
                header_row,
                column,
                title,
                header_format if kind in ("wide", "text") else number_header_format,
            )
        tallest = max((_lines(title, widths[c]) for c, title in enumerate(table.header)), default=1)
        sheet.set_row(header_row, max(1, tallest) * _LINE_HEIGHT)
        row_number = header_row
        for values in table.rows:
            row_number += 1
            lines = 1
            for column, (value, kind) in enumerate(zip(values, table.kinds)):
                cell_format = cell_formats.get(kind)
                if value is None or value == "":
                    sheet.write_blank(row_number, column, None, cell_format)
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    sheet.write_number(row_number, column, value, cell_format)
                else:
                    sheet.write_string(row_number, column, str(value), cell_format)
                    if kind in ("wide", "text"):
                        lines = max(lines, _lines(str(value), widths[column]))
            if lines > 1:
                sheet.set_row(row_number, min(_MAX_ROW_HEIGHT, lines * _LINE_HEIGHT))
        note_row = row_number + 1
        for index, note in enumerate(table.notes):
            sheet.merge_range(
                note_row + index,
                0,
                note_row + index,
                columns - 1,
                note,
                note_format if index == 0 else plain_note,
            )
            sheet.set_row(
                note_row + index, min(_MAX_ROW_HEIGHT, _lines(note, total_width) * 12 + 4)
            )
        if not table.notes:
            for column in range(columns):
                sheet.write_blank(note_row, column, None, note_format)
        if table.key == "co-occurrence" and table.rows:
            column = table.header.index("Jaccard index")
            sheet.conditional_format(
                header_row + 1,
                column,
                row_number,
                column,
                {"type": "2_color_scale", "min_color": "#FFFFFF", "max_color": "#4A7FB5"},
            )
        sheet.freeze_panes(header_row + 1, 0)
        sheet.repeat_rows(header_row)
        sheet.set_landscape()
        sheet.set_paper(9)
        sheet.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.6)
        sheet.fit_to_pages(1, 0)
        sheet.set_footer(f"&L{table.title}&RPage &P of &N")
    workbook.close()


_WRITERS = {
    "csv": write_csv,
    "md": write_markdown,
    "tex": write_latex,
    "docx": write_docx,
    "xlsx": write_xlsx,
}
