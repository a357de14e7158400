"""Review round trips keep every human decision, visibly (issue 14): each test edits a real workbook as a
researcher would and runs the real commands."""

import openpyxl
import pandas as pd
import pytest

from conftest import ok, run
from qualcode.codebook import parse_codebook
from qualcode.coding import CodingOptions, code_corpus
from qualcode.errors import InputDataError, ReviewWorkProtectedError
from qualcode.export import streamed_workbook, write_result
from qualcode.ingest import read_documents
from qualcode.reviews import read_review_workbook
from qualcode.study import Study

BOOK = """\
name: Round trip
codes:
  - id: trust
    name: Trust
    definition: Trust in the worker.
    rules:
      phrases: [trust her, honest]
  - id: time
    name: Time
    definition: Having time.
    rules:
      phrases: [no time, rang back]
"""
TEXT = (
    "I trust her completely.\n\n"
    "She had no time for us.\n\n"
    "She was honest about the court.\n\n"
    "She rang back the same day.\n\n"
    "We went to the park.\n"
)
CODES = ("trust", "time")


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "p1.txt").write_text(TEXT, encoding="utf-8")
    book = tmp_path / "book.yaml"
    book.write_text(BOOK, encoding="utf-8")
    return folder, book


@pytest.fixture
def study(tmp_path, corpus):
    folder, book = corpus
    root = tmp_path / "study"
    ok("init", root, "--coder", "Ana", "--codebook", book)
    return root, folder


def _code(folder, output, *extra):
    return ok("code", folder, "-o", output, "--no-classifier", "-q", *extra)


def _sheet(book, name):
    sheet = book[name]
    return sheet, {cell.value: cell.column for cell in sheet[1]}


def _row_of(sheet, column, segment_text):
    text_column = column["text"]
    return next(
        row
        for row in range(2, sheet.max_row + 1)
        if str(sheet.cell(row, text_column).value) == segment_text
    )


# --- 1. renamed sheets --------------------------------------------------------------------------


def test_decisions_in_a_renamed_codings_sheet_are_read_and_protected(study, tmp_path):
    root, folder = study
    output = tmp_path / "round1.xlsx"
    _code(folder, output, "--study", root)
    book = openpyxl.load_workbook(output)
    codings, column = _sheet(book, "Codings")
    rows = list(range(2, codings.max_row + 1))
    assert len(rows) == 4  # trust twice, time twice: the rule hits of TEXT
    for row in rows:
        codings.cell(row, column["decision"]).value = "reject"
    codings.title = "Codings (reviewed)"
    book.save(output)

    refused = run("code", folder, "-o", output, "--no-classifier", "--study", root)
    assert refused.exit_code == 73, refused.output
    assert "not replaced, because 4 coding rows with a human decision" in refused.output

    imported = ok("review", "import", output, "--study", root)
    assert "4 rejected" in imported.output and "4 new decisions stored" in imported.output
    with Study.open(root) as opened:
        assert (
            sorted((d.code_id, d.applies) for d in opened.decisions())
            == [("time", False)] * 2 + [("trust", False)] * 2
        )


def test_sheets_that_cannot_be_told_apart_are_refused_and_protected(corpus, tmp_path):
    folder, book_path = corpus
    output = tmp_path / "round1.xlsx"
    _code(folder, output, "--codebook", book_path)
    book = openpyxl.load_workbook(output)
    book.copy_worksheet(book["Codings"]).title = "Codings (before)"
    book.save(output)
    with pytest.raises(
        InputDataError, match=r"sheets 'Codings', 'Codings \(before\)' all have the Codings columns"
    ):
        read_review_workbook(output, coder="ana", code_ids=CODES)
    refused = run("code", folder, "-o", output, "--codebook", book_path, "--no-classifier")
    assert refused.exit_code == 73 and "all look like its Codings sheet" in refused.output

    # A sheet of the researcher's own is theirs: not replaced without --force either.
    del book["Codings (before)"]
    book.create_sheet("My notes")["A1"] = "ask Ana about p1"
    book.save(output)
    refused = run("code", folder, "-o", output, "--codebook", book_path, "--no-classifier")
    assert (
        refused.exit_code == 73 and "sheets qualcode did not write ('My notes')" in refused.output
    )
    _code(folder, output, "--codebook", book_path, "--force")


# --- 2. work saved while a run is going -----------------------------------------------------------


def _mark_first_row_reviewed(path):
    book = openpyxl.load_workbook(path)
    segments, column = _sheet(book, "Segments")
    segments.cell(2, column["reviewed"]).value = "yes"
    book.save(path)


@pytest.mark.parametrize("force", [False, True])
def test_review_work_saved_during_a_run_is_not_overwritten(corpus, tmp_path, nlp, force):
    folder, book_path = corpus
    codebook, _ = parse_codebook(BOOK, str(book_path))
    corpus_read = read_documents([folder])
    options = CodingOptions(classifier=False)
    output = write_result(
        code_corpus(corpus_read, codebook, options, nlp=nlp), tmp_path / "coded.xlsx"
    )

    def save_review_meanwhile(add):
        def on_chunk(*args, **kwargs):
            _mark_first_row_reviewed(output)  # the researcher presses Save in Excel mid-run
            add(*args, **kwargs)

        return on_chunk

    with pytest.raises(
        ReviewWorkProtectedError,
        match="saved while this run was going \\(1 segment rows marked reviewed\\)",
    ):
        with streamed_workbook(
            output, corpus_read, codebook, code_interviewer=False, force=force
        ) as workbook:
            result = code_corpus(
                corpus_read,
                codebook,
                options,
                nlp=nlp,
                on_chunk=save_review_meanwhile(workbook.add),
            )
            workbook.finish(result)
    assert read_review_workbook(output, coder="ana", code_ids=CODES).reviewed_rows == 1
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []


# --- 3. what counts as reviewed -------------------------------------------------------------------


def test_reviewed_takes_yes_and_no_words_and_refuses_others(corpus, tmp_path):
    folder, book_path = corpus
    output = tmp_path / "round1.xlsx"
    _code(folder, output, "--codebook", book_path)
    book = openpyxl.load_workbook(output)
    segments, column = _sheet(book, "Segments")
    segments.cell(2, column["reviewed"]).value = "no"
    segments.cell(3, column["reviewed"]).value = False  # Excel's FALSE
    segments.cell(4, column["reviewed"]).value = "n"
    segments.cell(5, column["reviewed"]).value = True  # Excel's TRUE
    book.save(output)
    review = read_review_workbook(output, coder="ana", code_ids=CODES)
    assert review.reviewed_rows == 1
    assert {d.segment_id for d in review.decisions} == {
        segments.cell(5, column["segment_id"]).value
    }

    segments.cell(5, column["reviewed"]).value = "maybe"
    book.save(output)
    with pytest.raises(
        InputDataError,
        match=r"round1\.xlsx: sheet 'Segments', row 5, column 'reviewed': 'maybe' is "
        r"neither yes nor no",
    ):
        read_review_workbook(output, coder="ana", code_ids=CODES)
    refused = run("code", folder, "-o", output, "--codebook", book_path, "--no-classifier")
    assert refused.exit_code == 73 and "row 5, column 'reviewed' holds 'maybe'" in refused.output

    segments.cell(5, column["reviewed"]).value = None
    book.save(output)
    _code(folder, output, "--codebook", book_path)  # "no", FALSE and "n" are not review work


# --- 4. a segment that matches nothing ------------------------------------------------------------


def test_a_segments_row_matching_nothing_in_the_study_is_refused(study, tmp_path):
    root, folder = study
    output = tmp_path / "round1.xlsx"
    _code(folder, output, "--study", root)
    book = openpyxl.load_workbook(output)
    segments, column = _sheet(book, "Segments")
    row = segments.max_row + 1
    for name, value in (
        ("segment_id", "ghost.txt:0-20"),
        ("document", "ghost.txt"),
        ("start", 0),
        ("end", 20),
        ("text", "Nobody ever said this"),
        ("reviewed", "yes"),
    ):
        segments.cell(row, column[name]).value = value
    book.save(output)
    refused = run("review", "import", output, "--study", root)
    assert refused.exit_code == 65
    assert (
        f"sheet 'Segments', row {row}, column 'segment_id': 'ghost.txt:0-20' matches no segment and no document "
        "text in the study"
    ) in refused.output
    with Study.open(root) as opened:
        assert opened.decisions() == []


# --- 5. idempotent imports and conflicts ----------------------------------------------------------


def test_importing_a_workbook_twice_stores_each_decision_once(study, tmp_path):
    root, folder = study
    output = tmp_path / "round1.xlsx"
    _code(folder, output, "--study", root)
    book = openpyxl.load_workbook(output)
    segments, column = _sheet(book, "Segments")
    for row in (2, 3, 4):
        segments.cell(row, column["reviewed"]).value = "yes"
    book.save(output)
    first = ok("review", "import", output, "--study", root)
    assert "6 new decisions stored, 0 already in the study" in first.output
    again = ok("review", "import", output, "--study", root)
    assert "0 new decisions stored, 6 already in the study" in again.output
    assert "Reviewed by Ana: 3 segments, 6 decisions" in ok("status", "--study", root).output


def test_an_accept_and_a_reject_of_one_coding_in_one_workbook_are_refused(study, tmp_path):
    root, folder = study
    output = tmp_path / "round1.xlsx"
    _code(folder, output, "--study", root)
    book = openpyxl.load_workbook(output)
    codings, column = _sheet(book, "Codings")
    codings.cell(2, column["decision"]).value = "accept"
    codings.append(
        {
            column["segment_id"]: codings.cell(2, column["segment_id"]).value,
            column["code"]: codings.cell(2, column["code"]).value,
            column["decision"]: "reject",
        }
    )
    book.save(output)
    refused = run("review", "import", output, "--study", root)
    assert refused.exit_code == 65
    assert (
        "sheet 'Codings', row 6, column 'decision' says 'trust' does not apply to segment p1.txt:0-23, "
        "but sheet 'Codings', row 2, column 'decision' says it applies to"
    ) in refused.output
    with Study.open(root) as opened:
        assert opened.decisions() == []


# --- 6. round 2 shows every earlier decision --------------------------------------------------------


def test_round_two_shows_every_decision_already_made(study, tmp_path):
    root, folder = study
    round1 = tmp_path / "round1.xlsx"
    _code(folder, round1, "--study", root)
    book = openpyxl.load_workbook(round1)
    codings, column = _sheet(book, "Codings")
    honest = _row_of(codings, column, "She was honest about the court.")
    rang = _row_of(codings, column, "She rang back the same day.")
    codings.cell(honest, column["decision"]).value = "reject"
    codings.cell(rang, column["decision"]).value = "accept"
    segments, segment_column = _sheet(book, "Segments")
    for row in (2, 3):
        segments.cell(row, segment_column["reviewed"]).value = "yes"
    book.save(round1)
    ok("review", "import", round1, "--study", root)

    # The researcher refines the codebook: "honest" no longer suggests trust.
    codebook = root / "codebook.yaml"
    codebook.write_text(
        codebook.read_text(encoding="utf-8").replace("[trust her, honest]", "[trust her]"),
        encoding="utf-8",
    )
    round2 = tmp_path / "round2.xlsx"
    _code(folder, round2, "--study", root)
    codings = pd.read_excel(round2, sheet_name="Codings")
    human = codings[codings["source"] == "human"].set_index("text")
    assert human.loc["She was honest about the court.", "status"] == "rejected"
    assert human.loc["She rang back the same day.", "status"] == "accepted"
    assert human["decided by"].str.match(r"Ana, \d{4}-\d\d-\d\d \d\d:\d\d$").all()
    segments = pd.read_excel(round2, sheet_name="Segments").set_index("text")
    for text in ("I trust her completely.", "She had no time for us."):
        assert segments.loc[text, "reviewed"] == "yes"
        assert segments.loc[text, "decided by"].startswith("reviewed by Ana, ")
    assert segments.loc["She was honest about the court.", "decided by"].endswith("(trust)")
    assert pd.isna(segments.loc["We went to the park.", "decided by"])

    # Its copies are not new decisions: another coder reviewing round 2 inherits none of Ana's.
    ben = read_review_workbook(round2, coder="Ben", code_ids=CODES)
    assert ben.decisions == ()
    _code(folder, round2, "--study", root)  # nothing in it is unimported: replaced without --force


# --- blanking a suggested code cell rejects it --------------------------------------------------------


def _blank_time_cell(path):
    book = openpyxl.load_workbook(path)
    segments, column = _sheet(book, "Segments")
    row = _row_of(segments, column, "She had no time for us.")
    assert segments.cell(row, column["time"]).value == 1
    segments.cell(row, column["time"]).value = None
    book.save(path)


def _time_status(path):
    codings = pd.read_excel(path, sheet_name="Codings")
    row = codings[(codings["text"] == "She had no time for us.") & (codings["code"] == "time")]
    return list(zip(row["source"], row["status"]))


def test_blanking_a_suggested_code_cell_rejects_it(study, tmp_path):
    root, folder = study
    round1 = tmp_path / "round1.xlsx"
    _code(folder, round1, "--study", root)
    _blank_time_cell(round1)
    ok("review", "import", round1, "--study", root)
    round2 = tmp_path / "round2.xlsx"
    _code(folder, round2, "--study", root)
    assert _time_status(round2) == [("human", "rejected")]

    stateless = tmp_path / "stateless.xlsx"
    _code(folder, stateless, "--codebook", root / "codebook.yaml")
    _blank_time_cell(stateless)
    again = tmp_path / "again.xlsx"
    _code(folder, again, "--codebook", root / "codebook.yaml", "--reviews", stateless)
    assert _time_status(again) == [("human", "rejected")]


# --- 9. reviewing (and printing) the workbook ---------------------------------------------------------


def test_the_workbook_is_made_for_reviewing_and_printing(corpus, tmp_path):
    from openpyxl.cell.rich_text import CellRichText, TextBlock

    folder, book_path = corpus
    output = tmp_path / "coded.xlsx"
    (folder / "p2.txt").write_text(
        "She was honest with me. " * 40, encoding="utf-8"
    )  # one long paragraph
    _code(folder, output, "--codebook", book_path)
    book = openpyxl.load_workbook(output, rich_text=True)
    segments, column = _sheet(book, "Segments")
    trust_header = segments.cell(1, column["trust"])
    assert (
        trust_header.value == "trust" and trust_header.number_format == '"Trust ("@")"'
    )  # shows "Trust (trust)"
    assert "decided by" in column

    validations = {
        (str(v.sqref), v.formula1)
        for sheet in (segments, book["Codings"])
        for v in sheet.data_validations.dataValidation
    }
    assert (
        f"{openpyxl.utils.get_column_letter(column['reviewed'])}2:"
        f"{openpyxl.utils.get_column_letter(column['reviewed'])}{segments.max_row}",
        '"yes,no"',
    ) in validations
    assert any(formula == '"accept,reject"' for _, formula in validations)

    codings, coding_column = _sheet(book, "Codings")
    honest = _row_of(codings, coding_column, "She was honest about the court.")
    text = codings.cell(honest, coding_column["text"]).value
    assert isinstance(text, CellRichText)
    marked = [block.text for block in text if isinstance(block, TextBlock) and block.font.b]
    assert marked == ["honest"]

    for sheet in (segments, codings):
        assert sheet.page_setup.orientation == "landscape"
        assert sheet.sheet_properties.pageSetUpPr.fitToPage
        # fitToWidth is left out when it is 1, the file format's default: one page wide, as tall as needed.
        assert (sheet.page_setup.fitToWidth or 1, sheet.page_setup.fitToHeight) == (1, 0)
        assert sheet.print_title_rows == "$1:$1"
    long_row = next(
        row
        for row in range(2, segments.max_row + 1)
        if len(str(segments.cell(row, column["text"]).value)) > 900
    )
    assert (
        segments.row_dimensions[long_row].height >= 15 * 9
    )  # 959 characters wrapped at about 92 a line


def test_a_big_corpus_is_written_without_rich_text_and_says_so(tmp_path):
    from qualcode.codebook import load_codebook
    from qualcode.coding import code_corpus
    from qualcode.export.xlsx import CodedWorkbook
    from qualcode.ingest import read_documents

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("She was honest with me and I could trust her.\n")
    corpus = read_documents([tmp_path / "in"])
    result = code_corpus(corpus, load_codebook())
    for mark, expected in ((False, "no"), (True, "yes")):
        path = tmp_path / f"marked-{mark}.xlsx"
        workbook = CodedWorkbook(
            path, corpus, result.codebook, code_interviewer=False, mark_evidence=mark
        )
        workbook.add(result.segments, result.assignments)
        workbook.finish(result)
        book = openpyxl.load_workbook(path, rich_text=True)
        run = {row[0]: row[1] for row in book["Run"].iter_rows(min_row=2, values_only=True)}
        assert run["evidence marked in the text"] == expected
        codings, coding_column = _sheet(book, "Codings")
        texts = [
            codings.cell(row, coding_column["text"]).value for row in range(2, codings.max_row + 1)
        ]
        assert texts and all(isinstance(text, str) for text in texts) != mark
