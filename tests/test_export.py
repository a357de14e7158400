import csv

import openpyxl
import pandas as pd
import pytest

from qualcode.codebook import parse_codebook
from qualcode.coding import CodingOptions, code_corpus
from qualcode.errors import ReviewWorkProtectedError
from qualcode.export import write_result
from qualcode.ingest import read_documents

BOOK = """\
name: Export test
version: "3"
codes:
  - id: trust
    name: Trust
    color: "#E15759"
    definition: Trust in the worker.
    rules:
      phrases: [trust her, honest with me]
  - id: accessibility
    name: Accessibility
    color: "#F1CE63"
    definition: Time and availability.
    rules:
      phrases: [never ring back, make time]
"""
TRANSCRIPT = (
    "Interviewer: Do you trust her?\n"
    "P1: I trust her. She was honest with me and she'd make time.\n"
    "Interviewer: And the office?\n"
    "P1: They never rang back.\n"
)
SURVEY = "id,site,response\nA,North,=SUM(1+1) I trust her\nB,South,@worker never rings back\nC,North,Nothing to add.\n"


@pytest.fixture
def result(tmp_path, nlp):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "p1.txt").write_text(TRANSCRIPT, encoding="utf-8")
    (folder / "survey.csv").write_text(SURVEY, encoding="utf-8")
    codebook, problems = parse_codebook(BOOK, "export-test.yaml")
    assert not problems
    return code_corpus(read_documents([folder]), codebook, CodingOptions(), nlp=nlp)


def test_workbook_has_every_sheet_and_column(result, tmp_path):
    path = write_result(result, tmp_path / "coded.xlsx")
    sheets = pd.read_excel(path, sheet_name=None)
    assert list(sheets) == [
        "Segments",
        "Codings",
        "Summary",
        "Documents",
        "Co-occurrence",
        "Codebook",
        "Run",
        "Orphaned reviews",
    ]
    segments = sheets["Segments"]
    assert list(segments.columns) == [
        "segment_id",
        "document",
        "speaker",
        "start",
        "end",
        "timestamp",
        "respondent",
        "site",
        "text",
        "trust",
        "accessibility",
        "codes",
        "reviewed",
        "decided by",
    ]
    p1 = segments[segments["document"] == "p1.txt"]
    assert list(p1["speaker"]) == ["Interviewer", "P1", "Interviewer", "P1"]
    assert list(p1["codes"].fillna("")) == ["", "trust; accessibility", "", "accessibility"]
    assert list(p1["trust"].fillna(0)) == [0, 1, 0, 0]
    codings = sheets["Codings"]
    assert list(codings.columns) == [
        "segment_id",
        "document",
        "code",
        "source",
        "confidence",
        "evidence",
        "status",
        "text",
        "decision",
        "decided by",
    ]
    first = codings.iloc[0]
    assert (first["document"], first["code"], first["source"], first["status"]) == (
        "p1.txt",
        "trust",
        "rule",
        "suggested",
    )
    assert (
        first["evidence"]
        == '"trust her" (phrase "trust her"); "honest with me" (phrase "honest with me")'
    )
    summary = sheets["Summary"].set_index("code")
    assert list(summary.columns) == ["name", "segments", "% of segments", "documents"]
    assert summary.loc["trust", "segments"] == 2 and summary.loc["trust", "documents"] == 2
    assert summary.loc["accessibility", "segments"] == 3
    assert summary.loc["(any code)", "segments"] == 4
    assert summary.loc["(segments)", "segments"] == 5  # interviewer turns are not coded
    documents = sheets["Documents"].set_index("document")
    assert list(documents.columns) == [
        "kind",
        "segments",
        "segments with a code",
        "trust",
        "accessibility",
    ]
    assert documents.loc["p1.txt"].tolist() == ["transcript", 2, 2, 1, 2]
    assert (
        documents.loc["survey.csv#A", "trust"] == 1
        and documents.loc["survey.csv#C", "segments with a code"] == 0
    )
    cooccurrence = sheets["Co-occurrence"].set_index("code")
    assert (
        cooccurrence.loc["trust", "accessibility"] == 1 and cooccurrence.loc["trust", "trust"] == 2
    )
    run = dict(zip(sheets["Run"]["field"], sheets["Run"]["value"]))
    assert run["codebook name"] == "Export test" and run["codebook version"] == "3"
    assert len(run["codebook sha256"]) == 64
    assert run["option code_interviewer"] == False  # noqa: E712
    inputs = sheets["Run"][sheets["Run"]["field"] == "input"]
    assert len(inputs) == 2 and all(len(sha) == 64 for sha in inputs["detail"])


def test_workbook_is_styled_for_review_and_never_writes_formulas(result, tmp_path):
    path = write_result(result, tmp_path / "coded.xlsx")
    book = openpyxl.load_workbook(path)
    segments = book["Segments"]
    assert segments.freeze_panes == "A2"
    assert segments.auto_filter.ref.startswith("A1:")
    assert segments["A1"].font.b
    header = [cell.value for cell in segments[1]]
    text_column = header.index("text") + 1
    assert segments.cell(2, text_column).alignment.wrap_text
    assert {
        cell.alignment.vertical
        for sheet in (segments, book["Codings"])
        for cell in sheet[2]
        if cell.value is not None
    } == {"top"}
    assert not segments.cell(2, 1).alignment.wrap_text and segments.cell(2, 1).font.sz == 11
    assert segments.cell(1, header.index("trust") + 1).fill.fgColor.rgb.endswith("E15759")
    injected = [
        cell
        for row in segments.iter_rows()
        for cell in row
        if str(cell.value).startswith(("=", "@"))
    ]
    assert {cell.value for cell in injected} == {
        "=SUM(1+1) I trust her",
        "@worker never rings back",
    }
    assert all(cell.data_type == "s" for cell in injected)


def test_the_workbook_is_deflated_quickly_and_xlsxwriter_is_left_as_it_was(result, tmp_path):
    import zipfile
    import zlib

    import xlsxwriter.workbook

    path = write_result(result, tmp_path / "coded.xlsx")
    with zipfile.ZipFile(path) as archive:
        sheet = archive.getinfo("xl/worksheets/sheet1.xml")
        data = archive.read(sheet)
    assert sheet.compress_type == zipfile.ZIP_DEFLATED

    def deflated(level):
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        return len(compressor.compress(data) + compressor.flush())

    assert sheet.compress_size == deflated(1)
    assert xlsxwriter.workbook.ZipFile is zipfile.ZipFile


def test_csv_format_writes_the_same_tables(result, tmp_path):
    folder = write_result(result, tmp_path / "coded", format="csv")
    assert sorted(p.name for p in folder.iterdir()) == [
        "co-occurrence.csv",
        "codebook.csv",
        "codings.csv",
        "documents.csv",
        "orphaned-reviews.csv",
        "run.csv",
        "segments.csv",
        "summary.csv",
    ]
    with (folder / "segments.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["codes"] for row in rows if row["document"] == "p1.txt"] == [
        "",
        "trust; accessibility",
        "",
        "accessibility",
    ]
    assert rows[-1]["text"] == "Nothing to add."


def _mark_reviewed(path):
    book = openpyxl.load_workbook(path)
    sheet = book["Segments"]
    header = [cell.value for cell in sheet[1]]
    sheet.cell(3, header.index("reviewed") + 1).value = "yes"
    book.save(path)


def test_review_work_is_never_replaced_without_force(result, tmp_path):
    path = write_result(result, tmp_path / "coded.xlsx")
    write_result(result, path)  # no review work yet: replaced quietly
    _mark_reviewed(path)
    before = path.read_bytes()
    with pytest.raises(
        ReviewWorkProtectedError,
        match=r"coded.xlsx: not replaced, because 1 segment rows marked reviewed",
    ):
        write_result(result, path)
    assert path.read_bytes() == before
    write_result(result, path, force=True)
    assert pd.read_excel(path, sheet_name="Segments")["reviewed"].isna().all()


def test_edited_code_cells_and_decisions_count_as_review_work(result, tmp_path):
    path = write_result(result, tmp_path / "coded.xlsx")
    book = openpyxl.load_workbook(path)
    sheet = book["Segments"]
    header = [cell.value for cell in sheet[1]]
    sheet.cell(2, header.index("trust") + 1).value = 1
    codings = book["Codings"]
    codings.cell(2, 9).value = "reject"
    book.save(path)
    with pytest.raises(
        ReviewWorkProtectedError,
        match=r"1 segment rows with edited codes, 1 coding rows with a human decision",
    ):
        write_result(result, path)


def test_a_file_that_is_not_a_qualcode_workbook_is_protected(result, tmp_path):
    other = tmp_path / "thesis.xlsx"
    book = openpyxl.Workbook()
    book.active["A1"] = "my notes"
    book.save(other)
    with pytest.raises(ReviewWorkProtectedError, match=r"not a qualcode workbook"):
        write_result(result, other)


def test_a_failed_write_leaves_the_previous_output_and_no_temporary_file(
    result, tmp_path, monkeypatch
):
    path = write_result(result, tmp_path / "coded.xlsx")
    before = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("qualcode.export.xlsx._Sheet.write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_result(result, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coded.xlsx", "corpus"]


def test_a_sheet_longer_than_excel_allows_is_refused_before_writing(result, tmp_path):
    from qualcode.errors import OutputError
    from qualcode.export.tables import Table
    from qualcode.export.xlsx import EXCEL_MAX_ROWS, check_sheet_sizes

    huge = Table("Segments", ("segment_id",), iter(()), count=EXCEL_MAX_ROWS)
    with pytest.raises(
        OutputError,
        match=r"sheet Segments would need 1,048,577 rows, more than Excel's limit of "
        r"1,048,576; write the tables as CSV with --format csv",
    ):
        check_sheet_sizes([huge])
    check_sheet_sizes([Table("Segments", ("segment_id",), iter(()), count=EXCEL_MAX_ROWS - 1)])


def _sheets(path):
    book = openpyxl.load_workbook(path)
    return {
        name: [[cell.value for cell in row] for row in book[name].iter_rows()]
        for name in book.sheetnames
    }


def _without_creation_time(sheets):
    sheets["Run"] = [row for row in sheets["Run"] if row[0] != "created"]
    return sheets


@pytest.mark.parametrize("code_interviewer", [False, True])
def test_a_streamed_workbook_equals_one_written_from_the_whole_result(
    tmp_path, nlp, monkeypatch, code_interviewer
):
    from qualcode import parallel
    from qualcode.export import streamed_workbook

    folder = tmp_path / "corpus"
    folder.mkdir()
    for index in range(3):
        (folder / f"p{index}.txt").write_text(TRANSCRIPT, encoding="utf-8")
    (folder / "survey.csv").write_text(SURVEY, encoding="utf-8")
    codebook, _ = parse_codebook(BOOK, "export-test.yaml")
    corpus = read_documents([folder])
    monkeypatch.setattr(parallel, "WORDS_PER_CHUNK", 10)  # about a document per chunk
    chunks = []
    with streamed_workbook(
        tmp_path / "streamed.xlsx", corpus, codebook, code_interviewer=code_interviewer
    ) as workbook:

        def add(segments, assignments):
            chunks.append(len(segments))
            workbook.add(segments, assignments)

        # Streaming is the n-gram path: embeddings are computed for the whole corpus at once.
        options = CodingOptions(code_interviewer=code_interviewer, representation="ngrams")
        result = code_corpus(corpus, codebook, options, nlp=nlp, on_chunk=add)
        workbook.finish(result)
    write_result(result, tmp_path / "whole.xlsx")
    assert len(chunks) > 2 and sum(chunks) == len(result.segments)
    streamed, whole = _sheets(tmp_path / "streamed.xlsx"), _sheets(tmp_path / "whole.xlsx")
    assert len(streamed["Codings"]) > 3
    assert _without_creation_time(streamed) == _without_creation_time(whole)
    documents = streamed["Documents"]
    assert [row[0] for row in documents[1:]] == [document.doc_id for document in corpus.documents]
    interviewer_turns = sum(segment.is_interviewer for segment in result.segments)
    assert interviewer_turns and sum(row[2] for row in documents[1:]) == (
        len(result.segments) - (0 if code_interviewer else interviewer_turns)
    )
    any_code = next(row for row in streamed["Summary"] if row[0] == "(any code)")
    assert any_code[2] > 0 and sum(row[3] for row in documents[1:]) == any_code[2]


def test_a_streamed_workbook_refuses_stretches_out_of_document_order(result, tmp_path):
    from qualcode.export import streamed_workbook

    documents = [document.doc_id for document in result.corpus.documents]
    later = [segment for segment in result.segments if segment.doc_id == documents[2]]
    earlier = [segment for segment in result.segments if segment.doc_id == documents[0]]
    with pytest.raises(
        ValueError, match=f"segments of {documents[0]} came after its row in the Documents sheet"
    ):
        with streamed_workbook(
            tmp_path / "coded.xlsx", result.corpus, result.codebook, code_interviewer=False
        ) as workbook:
            workbook.add(later, [])
            workbook.add(earlier, [])
    assert not (tmp_path / "coded.xlsx").exists()


def test_a_streamed_workbook_refuses_a_run_other_than_the_one_it_was_given(result, tmp_path):
    from qualcode.export import streamed_workbook

    with pytest.raises(
        ValueError,
        match=rf"given {len(result.segments) - 1} segments and 0 assignments, the run has "
        rf"{len(result.segments)} and {len(result.assignments)}",
    ):
        with streamed_workbook(
            tmp_path / "coded.xlsx", result.corpus, result.codebook, code_interviewer=False
        ) as workbook:
            workbook.add(result.segments[:-1], [])
            workbook.finish(result)
    assert not (tmp_path / "coded.xlsx").exists()


def test_a_streamed_workbook_refuses_a_run_with_another_interviewer_option(result, tmp_path):
    import dataclasses

    from qualcode.export import streamed_workbook

    other = dataclasses.replace(result, options={**result.options, "code_interviewer": True})
    with pytest.raises(ValueError, match="code_interviewer option differs"):
        with streamed_workbook(
            tmp_path / "coded.xlsx", result.corpus, result.codebook, code_interviewer=False
        ) as workbook:
            workbook.add(result.segments, result.assignments)
            workbook.finish(other)
    assert not (tmp_path / "coded.xlsx").exists()


def test_a_streamed_run_that_fails_or_never_finishes_leaves_the_previous_output(result, tmp_path):
    from qualcode.errors import OutputError
    from qualcode.export import streamed_workbook

    path = write_result(result, tmp_path / "coded.xlsx")
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with streamed_workbook(
            path, result.corpus, result.codebook, code_interviewer=False
        ) as workbook:
            workbook.add(result.segments[:2], [])
            raise KeyboardInterrupt
    with pytest.raises(
        OutputError, match=r"coded.xlsx: the coding run ended before its workbook was finished"
    ):
        with streamed_workbook(
            path, result.corpus, result.codebook, code_interviewer=False
        ) as workbook:
            workbook.add(result.segments, result.assignments)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coded.xlsx", "corpus"]
