import openpyxl
import pandas as pd
import pytest

from qualcode.codebook import parse_codebook
from qualcode.coding import CodingOptions, code_corpus
from qualcode.errors import InputDataError
from qualcode.export import write_result
from qualcode.ingest import read_documents
from qualcode.reviews import read_review_workbook

BOOK = """\
name: Review test
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
    "We went to the park.\n"
)
CODES = ("trust", "time")


@pytest.fixture
def study(tmp_path, nlp):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "p1.txt").write_text(TEXT, encoding="utf-8")
    codebook, problems = parse_codebook(BOOK, "review-test.yaml")
    assert not problems
    options = CodingOptions(classifier=False)

    def run(reviews=(), coder=None):
        return code_corpus(
            read_documents([folder]),
            codebook,
            options,
            reviews=reviews,
            review_coder=coder,
            nlp=nlp,
        )

    return folder, codebook, run


def _edit(path, *, reviewed=(), cells=(), decisions=(), added=()):
    """Edit a workbook as a researcher would: mark rows, change code cells, decide codings, add rows."""
    book = openpyxl.load_workbook(path)
    segments, codings = book["Segments"], book["Codings"]
    header = [cell.value for cell in segments[1]]
    for row in reviewed:
        segments.cell(row, header.index("reviewed") + 1).value = "yes"
    for row, code, value in cells:
        segments.cell(row, header.index(code) + 1).value = value
    coding_header = [cell.value for cell in codings[1]]
    for row, value in decisions:
        codings.cell(row, coding_header.index("decision") + 1).value = value
    for segment_id, code in added:
        codings.append(
            {
                coding_header.index("segment_id") + 1: segment_id,
                coding_header.index("code") + 1: code,
            }
        )
    book.save(path)


def _codes(result):
    coded = {}
    for assignment in result.assignments:
        coded.setdefault(assignment.segment_id, []).append(
            (assignment.code_id, assignment.source, assignment.status)
        )
    return [sorted(coded.get(segment.segment_id, [])) for segment in result.segments]


def test_every_kind_of_review_is_read(study, tmp_path):
    _, codebook, run = study
    first = run()
    assert _codes(first) == [
        [("trust", "rule", "suggested")],
        [("time", "rule", "suggested")],
        [("trust", "rule", "suggested")],
        [],
    ]
    path = write_result(first, tmp_path / "round1.xlsx")
    # Row 2 (trust) reviewed as right; row 3's time cell cleared; the coding on row 4 rejected; time added to row 5.
    _edit(
        path,
        reviewed=[2],
        cells=[(3, "time", None)],
        decisions=[(4, "reject")],
        added=[(first.segments[3].segment_id, "time")],
    )
    review = read_review_workbook(path, coder="ana", code_ids=CODES)
    assert (
        review.reviewed_rows,
        review.edited_cells,
        review.accepted,
        review.rejected,
        review.added,
    ) == (1, 1, 0, 1, 1)
    assert [(d.segment_id, d.code_id, d.applies, d.origin) for d in review.decisions] == [
        (first.segments[0].segment_id, "trust", True, "reviewed row"),
        (first.segments[0].segment_id, "time", False, "reviewed row"),
        (first.segments[1].segment_id, "time", False, "edited code cell"),
        (first.segments[2].segment_id, "trust", False, "rejected"),
        (first.segments[3].segment_id, "time", True, "added row"),
    ]


def test_decisions_are_final_in_the_next_round(study, tmp_path):
    _, _, run = study
    path = write_result(run(), tmp_path / "round1.xlsx")
    first = pd.read_excel(path, sheet_name="Segments")
    _edit(path, decisions=[(2, "accept"), (4, "reject")], added=[(first["segment_id"][3], "time")])
    review = read_review_workbook(path, coder="ana", code_ids=CODES)
    second = run(reviews=review.decisions)
    assert _codes(second) == [
        [("trust", "human", "accepted")],
        [("time", "rule", "suggested")],
        [("trust", "human", "rejected")],
        [("time", "human", "accepted")],
    ]
    output = write_result(second, tmp_path / "round2.xlsx")
    segments = pd.read_excel(output, sheet_name="Segments")
    assert list(segments["codes"].fillna("")) == ["trust", "time", "", "time"]
    assert segments["reviewed"].isna().all(), "a new round starts with a clean review column"
    write_result(second, output)  # copies of earlier decisions are not new review work


def test_decisions_follow_their_text_and_orphans_are_kept(study, tmp_path):
    folder, _, run = study
    path = write_result(run(), tmp_path / "round1.xlsx")
    _edit(path, reviewed=[3, 5])
    review = read_review_workbook(path, coder="ana", code_ids=CODES)
    (folder / "p1.txt").write_text(
        "A new first line.\n\n" + TEXT.replace("We went to the park.\n", ""), encoding="utf-8"
    )
    second = run(reviews=review.decisions)
    moved = next(s for s in second.segments if s.text == "She had no time for us.")
    assert ("time", "human", "accepted") in _codes(second)[second.segments.index(moved)]
    assert {(d.text, d.code_id) for d in second.orphaned_reviews} == {
        ("We went to the park.", "trust"),
        ("We went to the park.", "time"),
    }
    orphans = pd.read_excel(
        write_result(second, tmp_path / "round2.xlsx"), sheet_name="Orphaned reviews"
    )
    assert list(orphans["text"]) == ["We went to the park.", "We went to the park."]
    assert set(orphans["coder"]) == {"ana"}


def test_two_coders_kept_apart_and_one_chosen(study, tmp_path):
    _, _, run = study
    path = write_result(run(), tmp_path / "round1.xlsx")
    _edit(path, decisions=[(2, "accept")])
    ana = read_review_workbook(
        path, coder="ana", code_ids=CODES, decided_at="2026-01-01T00:00:00+00:00"
    )
    _edit(path, decisions=[(2, "reject")])
    ben = read_review_workbook(
        path, coder="ben", code_ids=CODES, decided_at="2026-01-02T00:00:00+00:00"
    )
    both = [*ana.decisions, *ben.decisions]
    assert _codes(run(reviews=both))[0] == [
        ("trust", "human", "rejected")
    ]  # the latest decision counts
    assert _codes(run(reviews=both, coder="ana"))[0] == [("trust", "human", "accepted")]


def test_bad_review_workbooks_name_sheet_row_and_column(study, tmp_path):
    _, _, run = study
    path = write_result(run(), tmp_path / "round1.xlsx")
    book = openpyxl.load_workbook(path)
    book["Codings"]["C2"] = "hope"
    book["Codings"]["I2"] = "accept"
    book.save(path)
    with pytest.raises(
        InputDataError, match=r"sheet 'Codings', row 2, column 'code': unknown code 'hope'"
    ):
        read_review_workbook(path, coder="ana", code_ids=CODES)
    book["Codings"]["C2"] = "trust"
    book["Codings"]["I2"] = "maybe"
    book.save(path)
    with pytest.raises(
        InputDataError, match=r"sheet 'Codings', row 2, column 'decision': 'maybe' is neither"
    ):
        read_review_workbook(path, coder="ana", code_ids=CODES)
    book["Codings"]["I2"] = None
    book["Codings"].append(["nowhere:0-1", "x", "trust"])
    book.save(path)
    with pytest.raises(
        InputDataError, match=r"sheet 'Codings', row \d+, column 'segment_id': 'nowhere:0-1' is not"
    ):
        read_review_workbook(path, coder="ana", code_ids=CODES)
    del book["Segments"]
    book.save(path)
    with pytest.raises(InputDataError, match=r"no sheet has the Segments columns"):
        read_review_workbook(path, coder="ana", code_ids=CODES)
