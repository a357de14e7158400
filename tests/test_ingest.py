import logging

import docx
import openpyxl
import pytest

from qualcode.errors import InputDataError, InputMissingError
from qualcode.ingest import read_documents

TRANSCRIPT = "Interviewer: How did it go?\nP01: She came every week.\nInterviewer: And now?\nP01: A new worker.\n"


def test_essay_and_transcript_are_told_apart(write, tmp_path):
    write("notes/essay.md", "# Reflection\n\nI met the family.\n\nWe talked about school.\n")
    write("notes/interview.txt", TRANSCRIPT)
    corpus = read_documents([tmp_path / "notes"])
    kinds = {document.doc_id: document.kind for document in corpus.documents}
    assert kinds == {"essay.md": "essay", "interview.txt": "transcript"}
    assert [file.documents for file in corpus.files] == [1, 1]
    assert all(len(file.sha256) == 64 for file in corpus.files)


def test_kind_override_forces_essay(write):
    path = write("interview.txt", TRANSCRIPT)
    (document,) = read_documents([path], kind="essay").documents
    assert document.kind == "essay"


@pytest.mark.parametrize("encoding,prefix", [("utf-8", b""), ("utf-8-sig", b""), ("utf-16", b"")])
def test_unicode_encodings_and_crlf_are_normalised(write, encoding, prefix):
    path = write("a.txt", "Café’s worker\r\nsaid hello.\rBye\r\n", encoding=encoding)
    (document,) = read_documents([path]).documents
    assert document.text == "Café’s worker\nsaid hello.\nBye\n"


def test_cp1252_is_read_with_a_warning_naming_the_file(write, caplog):
    path = write("old.txt", b"Caf\xe9 \x93quoted\x94")
    with caplog.at_level(logging.WARNING, logger="qualcode"):
        (document,) = read_documents([path]).documents
    assert document.text == "Café “quoted”"
    assert "old.txt" in caplog.text and "cp1252" in caplog.text


def test_bad_bytes_after_utf16_bom_name_the_file(write):
    path = write("bad.txt", b"\xff\xfeA\x00\x00\xd8")
    with pytest.raises(InputDataError, match="bad.txt"):
        read_documents([path])


def test_vtt_cues_of_one_speaker_merge_into_turns(write):
    vtt = (
        "WEBVTT\n\n1\n00:00:01.000 --> 00:00:03.000\nInterviewer: How has it\n\n"
        "2\n00:00:03.100 --> 00:00:05.000\nInterviewer: been going?\n\n"
        "3\n00:00:05.500 --> 00:00:08.000\n<v Jay Smith>Better since</v>\n\n"
        "4\n00:00:08.100 --> 00:00:09.000\n<v Jay Smith>she started.</v>\n"
    )
    (document,) = read_documents([write("call.vtt", vtt)]).documents
    assert document.kind == "transcript"
    assert document.text == (
        "[00:00:01] Interviewer: How has it been going?\n\n"
        "[00:00:05] Jay Smith: Better since she started.\n"
    )


def test_srt_without_speakers_merges_until_a_sentence_ends(write):
    srt = "1\n00:00:01,000 --> 00:00:02,000\nwe were told\n\n2\n00:00:02,500 --> 00:00:04,000\nnothing. Then\n\n3\n00:00:05,000 --> 00:00:06,000\nit changed.\n"
    (document,) = read_documents([write("call.srt", srt)]).documents
    assert document.text == "[00:00:01] we were told nothing. Then it changed.\n"


def test_malformed_caption_names_the_line(write):
    path = write("bad.vtt", "WEBVTT\n\n1\nnot a timing\nhello\n")
    with pytest.raises(InputDataError, match=r"bad.vtt: line 4: expected a cue timing"):
        read_documents([path])


def test_docx_paragraphs_and_turns(tmp_path):
    word = docx.Document()
    for line in [
        "Interviewer: Who is your worker?",
        "Kai: Sam, since I was nine.",
        "",
        "Interviewer: Good?",
        "Kai: Yes.",
    ]:
        word.add_paragraph(line)
    path = tmp_path / "kai.docx"
    word.save(path)
    (document,) = read_documents([path]).documents
    assert document.kind == "transcript"
    assert (
        document.text
        == "Interviewer: Who is your worker?\n\nKai: Sam, since I was nine.\n\nInterviewer: Good?\n\nKai: Yes."
    )


def test_corrupt_docx_is_named(write):
    path = write("broken.docx", b"this is not a zip file")
    with pytest.raises(InputDataError, match=r"broken.docx: not a readable Word .docx document"):
        read_documents([path])


SURVEY = (
    "Respondent ID,Role,Site,Response\n"
    'R1,parent,North,"She listens, and she calls back."\n'
    "R2,young person,South,\n"
    'R3,care leaver,North,"=( she left\nand nobody told me"\n'
)


def test_csv_rows_become_documents_with_attributes(write):
    corpus = read_documents([write("survey.csv", SURVEY)])
    assert [document.doc_id for document in corpus.documents] == ["survey.csv#R1", "survey.csv#R3"]
    first, third = corpus.documents
    assert first.kind == "survey"
    assert first.attributes == {"respondent": "R1", "Role": "parent", "Site": "North"}
    assert third.text == "=( she left\nand nobody told me"


def test_semicolon_csv_is_sniffed(write):
    corpus = read_documents([write("s.csv", "id;answer\n1;Fine\n2;Good\n")])
    assert [document.text for document in corpus.documents] == ["Fine", "Good"]


def test_missing_text_column_lists_the_columns(write):
    path = write("s.csv", "id,age,site\n1,20,North\n")
    with pytest.raises(
        InputDataError,
        match=r"s.csv: no answer text column found; name it with --text-column\. "
        r"The columns are 'id', 'age', 'site'",
    ):
        read_documents([path])


def test_named_text_column_that_does_not_exist(write):
    path = write("s.csv", "id,response\n1,ok\n")
    with pytest.raises(
        InputDataError,
        match=r"no column named 'comment' for --text-column; the columns are 'id', 'response'",
    ):
        read_documents([path], text_column="comment")


def test_duplicate_ids_name_both_rows(write):
    path = write("s.csv", "id,response\nA,one\nB,two\nA,three\n")
    with pytest.raises(
        InputDataError, match=r"s.csv: line 4: duplicate id 'A' in column 'id' \(first at line 2\)"
    ):
        read_documents([path])


def test_xlsx_survey_with_chosen_columns(tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Answers"
    sheet.append(["Case", "Group", "Open comment", "Score"])
    sheet.append([101, "A", "She never rang back.", 3])
    sheet.append([102, "B", "Always on time.", 4.5])
    path = tmp_path / "answers.xlsx"
    book.save(path)
    corpus = read_documents([path], text_column="Open comment", id_column="case")
    assert [(d.doc_id, d.text, d.attributes["Score"]) for d in corpus.documents] == [
        ("answers.xlsx#101", "She never rang back.", "3"),
        ("answers.xlsx#102", "Always on time.", "4.5"),
    ]


def test_xlsx_duplicate_id_names_sheet_and_row(tmp_path):
    book = openpyxl.Workbook()
    book.active.title = "Data"
    for row in (["id", "text"], ["x", "a"], ["x", "b"]):
        book.active.append(row)
    book.save(tmp_path / "d.xlsx")
    with pytest.raises(InputDataError, match=r"d.xlsx: sheet 'Data', row 3: duplicate id 'x'"):
        read_documents([tmp_path / "d.xlsx"])


def test_corrupt_xlsx_is_named(write):
    with pytest.raises(InputDataError, match=r"bad.xlsx: not a readable .xlsx workbook"):
        read_documents([write("bad.xlsx", b"PK not really")])


def test_missing_path_and_empty_corpus(tmp_path, write):
    with pytest.raises(InputMissingError, match=r"nowhere: no such file or folder"):
        read_documents([tmp_path / "nowhere"])
    write("only/picture.png", b"\x89PNG")
    with pytest.raises(InputMissingError, match=r"no documents with text found"):
        read_documents([tmp_path / "only"])


def test_unsupported_files_are_skipped_not_fatal(write, tmp_path):
    write("c/a.txt", "Some words.")
    write("c/b.pdf", b"%PDF-1.4")
    write("c/~$a.docx", b"lock")
    write("c/.hidden.txt", "ignored")
    corpus = read_documents([tmp_path / "c"])
    assert [document.doc_id for document in corpus.documents] == ["a.txt"]
    assert [(skip.path.rsplit("/", 1)[-1], skip.reason) for skip in corpus.skipped] == [
        ("b.pdf", "unsupported file type '.pdf'"),
        ("~$a.docx", "an Office lock file"),
    ]


def test_same_document_id_from_two_paths_is_refused(write, tmp_path):
    first = write("one/a.txt", "First.")
    second = write("two/a.txt", "Second.")
    with pytest.raises(InputDataError, match=r"document id 'a.txt' is also given by"):
        read_documents([first, second])


def test_tsv_survey_uses_tabs(write):
    corpus = read_documents(
        [write("s.tsv", "respondent\tcomment\tsite\nA\tShe listens, always.\tNorth\n")]
    )
    (document,) = corpus.documents
    assert (document.doc_id, document.text, document.attributes["site"]) == (
        "s.tsv#A",
        "She listens, always.",
        "North",
    )
