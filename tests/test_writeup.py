"""qualcode tables and qualcode report: the numbers match the workbook, in every format, and the report renders."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import zipfile
from collections import Counter

import openpyxl
import pytest

from conftest import SAMPLE, ok, run
from qualcode.writeup import analyse, load_coded
from qualcode.writeup.analysis import group_test, trim_quote

CODES = ("continuity", "accessibility", "participation", "empathy", "trust", "structural_context")


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    path = tmp_path_factory.mktemp("writeup") / "coded.xlsx"
    ok("code", SAMPLE, "-o", path, "-q")
    return path


def _rows(path, sheet):
    book = openpyxl.load_workbook(path, read_only=True)
    rows = list(book[sheet].iter_rows(values_only=True))
    book.close()
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def _expected(path):
    """What the workbook itself says, counted here without qualcode.writeup: per code, its segments, documents,
    participants by role (survey answers: one respondent each) and pairs."""
    segments = _rows(path, "Segments")
    per_code = {code: [s for s in segments if s[code] in (1, "1")] for code in CODES}
    role_of = {s["document"]: s["role"] for s in segments}
    by_role = {
        code: Counter(role_of[doc] for doc in {s["document"] for s in rows} if role_of[doc])
        for code, rows in per_code.items()
    }
    role_sizes = Counter(role for role in role_of.values() if role)
    return segments, per_code, by_role, role_sizes


def test_tables_in_word_and_excel_match_the_workbook(coded, tmp_path):
    docx_path, xlsx_path = tmp_path / "tables.docx", tmp_path / "tables.xlsx"
    result = ok("tables", coded, "-o", docx_path, "--by", "role")
    assert "4 tables" in result.output and "Codings counted" in result.output
    ok("tables", coded, "-o", xlsx_path, "--by", "role", "-q")
    segments, per_code, by_role, role_sizes = _expected(coded)
    summary = {row["code"]: row for row in _rows(coded, "Summary")}
    matrix = {row["code"]: row for row in _rows(coded, "Co-occurrence")}

    import docx

    document = docx.Document(str(docx_path))
    headings = [p.text for p in document.paragraphs if p.style.name.startswith("Heading")]
    assert [h.split(".")[0] for h in headings] == ["Table 1", "Table 2", "Table 3", "Table 4"]
    captions = [
        p.text
        for p in document.paragraphs
        if p.text.startswith(("Each", "Participants and", "Every"))
    ]
    assert len(captions) == 4 and all("Codings counted" in caption for caption in captions)
    word = [[[cell.text for cell in row.cells] for row in table.rows] for table in document.tables]
    book = openpyxl.load_workbook(xlsx_path, read_only=True)
    excel = {}
    for name in ("Codebook", "Theme by group", "Co-occurrence", "Quote bank"):
        rows = list(book[name].iter_rows(values_only=True))
        assert "Codings counted" in rows[1][0]  # the caption under the title
        excel[name] = [row for row in rows[3:] if any(value is not None for value in row)]
    book.close()

    # Table 1: passages and documents are the workbook's Summary; participants are documents here (one each).
    for rows, as_number in ((word[0], int), (excel["Codebook"], lambda v: v)):
        header, body = rows[0], rows[1 : 1 + len(CODES)]
        for code, row in zip(CODES, body):
            values = dict(zip(header, row))
            assert str(values["Code"]).endswith(f"({code})")
            assert as_number(values["Passages"]) == summary[code]["segments"] == len(per_code[code])
            assert as_number(values["Documents"]) == summary[code]["documents"]
            assert as_number(values["Participants"]) == summary[code]["documents"]
            assert "“" in values["Exemplar quote"]
    # Table 2: participants per role and code, counted from the Segments sheet.
    header = word[1][0]
    for role, size in role_sizes.items():
        assert f"{role} (n={size})" in header
    for code in CODES:
        row = next(r for r in word[1][1:] if r[0].endswith(f"({code})"))
        assert row[1] == "participants"
        for role, size in role_sizes.items():
            column = header.index(f"{role} (n={size})")
            assert int(row[column]) == by_role[code][role]
            assert float(row[column + 1]) == pytest.approx(
                100 * by_role[code][role] / size, abs=0.05
            )
    excel_groups = excel["Theme by group"]
    assert excel_groups[0][:2] == ("Code", "Counting")
    # Table 3: passages with both, as in the workbook's Co-occurrence sheet, and the Jaccard index.
    pairs = [(a, b) for i, a in enumerate(CODES) for b in CODES[i + 1 :]]
    assert len(word[2]) - 1 == len(pairs) == len(excel["Co-occurrence"]) - 1
    for (first, second), row, xrow in zip(pairs, word[2][1:], excel["Co-occurrence"][1:]):
        both = matrix[first][second]
        either = len(per_code[first]) + len(per_code[second]) - both
        assert int(row[2]) == xrow[2] == both and int(row[3]) == either
        assert xrow[4] == round(both / either, 3)  # the index as the table prints it
    # Table 4: every coded passage once per code, in document order.
    assert (
        len(word[3]) - 1
        == sum(len(rows) for rows in per_code.values())
        == len(excel["Quote bank"]) - 1
    )
    order = {s["segment_id"]: index for index, s in enumerate(segments)}
    trust_rows = [r for r in excel["Quote bank"][1:] if r[0] == "Trust (trust)"]
    expected = [
        " ".join(s["text"].split())
        for s in sorted(per_code["trust"], key=lambda s: order[s["segment_id"]])
    ]
    assert [r[-1] for r in trust_rows] == expected


def test_decisions_made_in_the_workbook_count_and_reviewed_only_keeps_them_alone(coded, tmp_path):
    reviewed = tmp_path / "reviewed.xlsx"
    shutil.copy(coded, reviewed)
    book = openpyxl.load_workbook(reviewed)
    sheet = book["Codings"]
    column = {cell.value: cell.column for cell in sheet[1]}
    trust = [
        row
        for row in range(2, sheet.max_row + 1)
        if sheet.cell(row, column["code"]).value == "trust"
        and sheet.cell(row, column["status"]).value == "suggested"
    ]
    sheet.cell(trust[0], column["decision"]).value = "reject"
    sheet.cell(trust[1], column["decision"]).value = "accept"
    segments = book["Segments"]
    columns = {cell.value: cell.column for cell in segments[1]}
    continuity = next(
        row
        for row in range(2, segments.max_row + 1)
        if segments.cell(row, columns["continuity"]).value in (1, "1")
        and "trust" not in str(segments.cell(row, columns["codes"]).value)
    )
    segments.cell(
        continuity, columns["continuity"]
    ).value = None  # an edited code cell: continuity does not apply
    book.save(reviewed)
    before = analyse(load_coded(coded))
    after = analyse(load_coded(reviewed))
    assert len(after.passages("trust")) == len(before.passages("trust")) - 1
    assert len(after.passages("continuity")) == len(before.passages("continuity")) - 1
    assert after.data.pending_decisions == 3
    only = analyse(load_coded(reviewed, reviewed_only=True))
    assert [len(only.passages(code)) for code in CODES] == [0, 0, 0, 0, 1, 0]
    assert "only those a human accepted or added (1)" in only.data.counting_rule()
    # The caption of every table says so, in every format.
    ok("tables", reviewed, "-o", tmp_path / "reviewed", "--reviewed-only", "-q")
    readme = (tmp_path / "reviewed" / "README.txt").read_text(encoding="utf-8")
    assert readme.count("Codings counted: only those a human accepted or added (1)") == 4
    with (tmp_path / "reviewed" / "codebook.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["Passages"]) for row in rows] == [0, 0, 0, 0, 1, 0]


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _headless(tmp_path, *args):
    """Run headless Chromium on a file (no network, a fresh profile); return its stdout and console messages."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


@pytest.mark.skipif(
    not _chromium(),
    reason="chromium is not installed (apt-get install chromium); .ci/run installs it",
)
def test_the_report_loads_in_chromium_without_errors_and_draws_its_charts(coded, tmp_path):
    report = tmp_path / "report.html"
    result = ok("report", coded, "-o", report, "--by", "role")
    assert "Report of 85 documents" in result.output
    html = report.read_text(encoding="utf-8")
    summary = {row["code"]: row for row in _rows(coded, "Summary")}
    table = html[
        html.index('<table class="codebook">') : html.index(
            "</table>", html.index('<table class="codebook">')
        )
    ]
    for code, row in zip(CODES, table.split("<tr>")[2:]):  # the header row, then one row per code
        cells = re.findall(r'<td class="n">([^<]*)</td>', row)
        documents = summary[code]["documents"]
        assert cells[0] == str(
            summary[code]["segments"]
        )  # passages, as the workbook's Summary counts them
        assert cells[1] == f"{documents} ({round(100 * documents / 85, 1)}%)"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(""", html), (
        "the report fetches nothing"
    )
    dom, console = _headless(tmp_path, "--dump-dom", report.as_uri())
    assert console == []
    assert dom.count('<rect class="bar"') == len(CODES)
    groups = 5  # care leaver, kinship carer, parent, young person, (not recorded)
    assert len(re.findall(r'<svg class="chart heatmap groups".*?</svg>', dom, re.S)) == 1
    assert dom.count('<rect class="cell"') == len(CODES) * groups + len(CODES) ** 2
    assert dom.count('<details class="document">') == 85
    widths = [
        float(w)
        for w in re.findall(r'<rect class="bar" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', dom)
    ]
    assert all(width > 0 for width in widths)
    shot = tmp_path / "report.png"
    _, console = _headless(
        tmp_path,
        "--window-size=1280,1600",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        report.as_uri(),
    )
    assert console == []
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"report screenshot: {shot}")


HOSTILE = (
    "Parent: I trust her <img src=x onerror=\"console.error('injected')\"> & 100% {sure}_now | "
    "<script>console.error('injected')</script> \\end{table} ~ $5 # one.\n"
)


def test_participant_text_is_escaped_in_the_report_latex_and_markdown(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "hostile.txt").write_text(
        "Interviewer: And your worker?\n" + HOSTILE, encoding="utf-8"
    )
    coded = tmp_path / "coded.xlsx"
    ok("code", folder, "-o", coded, "--no-classifier", "-q")
    report = tmp_path / "report.html"
    ok("report", coded, "-o", report, "-q")
    html = report.read_text(encoding="utf-8")
    assert "<img src=x" not in html and "<script>console" not in html
    assert "&lt;img src=x onerror=" in html
    if _chromium():
        dom, console = _headless(tmp_path, "--dump-dom", report.as_uri())
        assert console == []  # neither script ran
        assert "<img" not in dom
    ok("tables", coded, "-o", tmp_path / "tables.tex", "-q")
    tex = (tmp_path / "tables.tex").read_text(encoding="utf-8")
    assert r"{\&} 100{\%} {\{}sure{\}}{\_}now" in tex and r"{\textbackslash}end{\{}table{\}}" in tex
    assert r"\toprule" in tex and r"\begin{longtable}" in tex
    assert "& 100%" not in tex and r"\end{table}" not in tex
    ok("tables", coded, "-o", tmp_path / "tables.md", "-q")
    markdown = (tmp_path / "tables.md").read_text(encoding="utf-8")
    assert r"\| \<script\>" in markdown


def test_a_study_counts_every_decision_stored_in_it(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "p1.txt").write_text(
        "Interviewer: Tell me.\nP1: I trust her completely.\n\nP1: We went to the park.\n",
        encoding="utf-8",
    )
    study = tmp_path / "study"
    ok("init", study, "--coder", "Ana")
    round1 = tmp_path / "round1.xlsx"
    ok("code", folder, "-o", round1, "--no-classifier", "-q", "--study", study)
    book = openpyxl.load_workbook(round1)
    sheet = book["Segments"]
    column = {cell.value: cell.column for cell in sheet[1]}
    park = next(
        r for r in range(2, sheet.max_row + 1) if "park" in str(sheet.cell(r, column["text"]).value)
    )
    sheet.cell(park, column["continuity"]).value = 1  # a decision: continuity applies to the park
    book.save(round1)
    ok("review", "import", round1, "--study", study)
    out = tmp_path / "from-study"
    ok("tables", study, "-o", out, "--reviewed-only", "-q")
    with (out / "codebook.csv").open(encoding="utf-8") as handle:
        rows = {row["Code"]: row for row in csv.DictReader(handle)}
    assert rows["Continuity (continuity)"]["Passages"] == "1"
    assert rows["Trust (trust)"]["Passages"] == "0"  # suggested, not reviewed
    ok("tables", study, "-o", out, "-q")  # replaces its own folder
    ok(
        "report", study, "-o", study / "report.html", "-q"
    )  # a write-up may live in the study's folder
    assert "Continuity" in (study / "report.html").read_text(encoding="utf-8")
    with (out / "codebook.csv").open(encoding="utf-8") as handle:
        rows = {row["Code"]: row for row in csv.DictReader(handle)}
    assert (
        rows["Trust (trust)"]["Passages"] == "1"
        and rows["Continuity (continuity)"]["Passages"] == "1"
    )


def test_bad_input_is_one_line_naming_it(coded, tmp_path):
    cases = [
        (
            ("tables", tmp_path / "missing.xlsx", "-o", tmp_path / "t.docx"),
            66,
            "no such file or folder",
        ),
        (
            ("tables", coded, "-o", tmp_path / "t.docx", "--by", "rol"),
            2,
            "--by rol: no document has that attribute; choose one of respondent, role, age_group, site, "
            "years_known_to_services, speaker, folder",
        ),
        (("tables", coded, "-o", tmp_path / "t.csv"), 73, "a CSV file holds one table"),
        (
            ("tables", coded, "-o", tmp_path / "t.docx", "--format", "md"),
            73,
            "the name says docx but --format says md",
        ),
        (
            ("tables", SAMPLE / "survey" / "open_responses.csv", "-o", tmp_path / "t.md"),
            65,
            "not a coded workbook",
        ),
        (("report", coded, "-o", tmp_path / "report.pdf"), 73, "name the report's file with .html"),
    ]
    for args, code, message in cases:
        result = run(*args)
        assert result.exit_code == code, (args, result.output)
        assert (
            result.output.count("\n") == 1
            and result.output.startswith("Error: ")
            and message in result.output
        )
    survey = tmp_path / "survey.xlsx"
    book = openpyxl.Workbook()
    book.active.append(["id", "text"])
    book.active.append(["1", "hello"])
    book.save(survey)
    result = run("tables", survey, "-o", tmp_path / "t.md")
    assert result.exit_code == 65 and "no sheet has the Segments columns" in result.output
    foreign = tmp_path / "folder"
    foreign.mkdir()
    (foreign / "thesis.docx").write_bytes(b"mine")
    result = run("tables", coded, "-o", foreign)
    assert (
        result.exit_code == 73
        and "thesis.docx" in result.output
        and (foreign / "thesis.docx").read_bytes() == b"mine"
    )


def test_group_tests_say_which_test_and_why_not():
    from scipy import stats

    two = group_test([3, 12], [20, 20])
    assert two.name == "Fisher exact" and two.p == pytest.approx(
        stats.fisher_exact([[3, 17], [12, 8]]).pvalue
    )
    many = group_test([10, 20, 30], [40, 40, 40])
    assert many.name == "chi-square(2)" and many.p == pytest.approx(
        stats.chi2_contingency([[10, 30], [20, 20], [30, 10]], correction=False)[1]
    )
    small = group_test([1, 0, 2], [4, 3, 5])
    assert small.p is None and "expected counts below 5" in small.note
    assert group_test([0, 0], [5, 5]).note == "no participant has it"
    assert group_test([3], [5]).note == "one group only: nothing to compare"


def test_quotes_are_trimmed_at_sentence_ends_around_the_evidence():
    text = (
        ("We met in March. " * 12)
        + "I trust her because she never lied to me. She came back. "
        + ("Then tea. " * 20)
    )
    quote = trim_quote(text, '"trust her" (phrase "trust")', limit=80)
    assert quote.startswith("… I trust her because she never lied to me.") and quote.endswith(" …")
    assert len(quote) <= 84
    assert trim_quote("Short one.") == "Short one."


def test_the_coded_workbook_draws_a_prevalence_chart_and_shades_the_cooccurrence_matrix(coded):
    with zipfile.ZipFile(coded) as archive:
        names = archive.namelist()
        chart = archive.read("xl/charts/chart1.xml").decode()
        sheets = {n: archive.read(n).decode() for n in names if n.startswith("xl/worksheets/sheet")}
        workbook = archive.read("xl/workbook.xml").decode()
    assert "<c:barChart>" in chart and "Summary!$D$2:$D$7" in chart and "Summary!$B$2:$B$7" in chart
    assert chart.count("<c:dPt>") == len(CODES) and "0072B2" in chart  # continuity's colour
    order = re.findall(r'<sheet name="([^"]+)"', workbook)
    summary = sheets[f"xl/worksheets/sheet{order.index('Summary') + 1}.xml"]
    cooccurrence = sheets[f"xl/worksheets/sheet{order.index('Co-occurrence') + 1}.xml"]
    assert "<drawing " in summary
    assert "<colorScale>" in cooccurrence and 'sqref="C2:G2 B3 D3:G3' in cooccurrence


@pytest.mark.skipif(
    not shutil.which("pdflatex"), reason="pdflatex is not installed (texlive-latex-recommended)"
)
def test_the_latex_tables_compile(coded, tmp_path):
    ok("tables", coded, "-o", tmp_path / "tables.tex", "--by", "role", "-q")
    (tmp_path / "main.tex").write_text(
        "\\documentclass[a4paper]{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[margin=2cm]{geometry}\n"
        "\\usepackage{booktabs,longtable,array,pdflscape}\n\\begin{document}\n\\input{tables}\n\\end{document}\n",
        encoding="utf-8",
    )
    for _ in range(2):  # longtable settles its column widths on the second run
        done = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "main.pdf").stat().st_size > 10_000


def test_where_no_code_can_be_tested_the_reason_is_said_once_under_table_2(coded, tmp_path):
    out = tmp_path / "tables.md"
    ok("tables", coded, "-o", out, "--by", "role", "-q")
    table2 = out.read_text(encoding="utf-8").split("Table 2")[1].split("Table 3")[0]
    header = next(line for line in table2.splitlines() if line.startswith("| Code"))
    assert "Test" not in header and "Note" not in header
    assert table2.count("too few for chi-square") == 1  # one note, not one per code
    note = next(line for line in table2.splitlines() if "No code could be tested" in line)
    for code in ("Continuity", "Accessibility", "Participation", "Empathy", "Trust"):
        assert code in note
    assert note.endswith("too few for chi-square; merge groups or compare two.")
    report = tmp_path / "report.html"
    ok("report", coded, "-o", report, "--by", "role", "-q")
    html = report.read_text(encoding="utf-8")
    assert '<table class="groups">' in html  # no wide Test column to make room for
    assert html.count("too few for chi-square") == 1


def test_two_folders_are_compared_by_fisher_and_the_report_shows_the_test(tmp_path):
    corpus = tmp_path / "corpus"
    for folder, sentence in (
        ("clinic", "I trust my worker because she tells me the truth."),
        ("school", "We talked about the weather and the bus timetable."),
    ):
        (corpus / folder).mkdir(parents=True)
        for number in range(5):
            (corpus / folder / f"{folder}_{number}.txt").write_text(
                f"{sentence} It was a Tuesday, number {number}.\n", encoding="utf-8"
            )
    coded = tmp_path / "coded.xlsx"
    ok("code", corpus, "-o", coded, "--no-classifier", "-q")
    out = tmp_path / "tables.md"
    ok("tables", coded, "-o", out, "--by", "folder", "-q")
    table2 = out.read_text(encoding="utf-8").split("Table 2")[1].split("Table 3")[0]
    header = next(line for line in table2.splitlines() if line.startswith("| Code"))
    assert "| Test |" in header and "| p |" in header
    trust = next(line for line in table2.splitlines() if line.startswith("| Trust"))
    assert "Fisher exact" in trust and "0.008" in trust  # 5 of 5 against 0 of 5
    assert "No code could be tested" not in table2
    report = tmp_path / "report.html"
    ok("report", coded, "-o", report, "--by", "folder", "-q")
    html = report.read_text(encoding="utf-8")
    assert "Fisher exact, p = 0.008" in html and '<table class="groups tested">' in html
    # Plain text files carry no attributes: the quote bank prints no empty Attributes column, and
    # its narrow columns are wide enough for their bold headers and for a file name unbroken.
    word = tmp_path / "tables.docx"
    ok("tables", coded, "-o", word, "--by", "folder", "-q")
    import docx
    from docx.shared import Cm

    quote_bank = docx.Document(str(word)).tables[3]
    header = [cell.text for cell in quote_bank.rows[0].cells]
    assert header == ["Code", "Participant", "Document", "Position", "Source", "Passage"]
    widths = dict(zip(header, (column.width for column in quote_bank.columns)))
    assert widths["Position"] >= Cm(2.4)  # "Position" in bold, not "Positio" and "n"
    assert widths["Document"] >= Cm(0.2 * len("school_4.txt"))  # the name after "clinic/"
    # Table 3 has no long-text column: its code names get a whole line before numbers get room.
    pairs = docx.Document(str(word)).tables[2]
    longest = "Structural context (structural_context)"
    assert longest in [row.cells[1].text for row in pairs.rows]
    assert pairs.columns[1].width >= Cm(0.2 * len(longest))
    # In Excel too: a number's header at the right, over its numbers; a code's name on one line.
    excel = tmp_path / "tables.xlsx"
    ok("tables", coded, "-o", excel, "--by", "folder", "-q")
    sheet = openpyxl.load_workbook(excel)["Theme by group"]
    header = {cell.value: cell for cell in sheet[4]}
    assert header["All (n=10)"].alignment.horizontal == "right"
    assert header["Code"].alignment.horizontal != "right"
    assert sheet.column_dimensions["A"].width >= len("Accessibility (accessibility)")
