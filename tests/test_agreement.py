import math

import numpy as np
import openpyxl
import pytest
from sklearn.metrics import cohen_kappa_score

from qualcode.agreement import (binary_scores, cohen_kappa, compare_coders, krippendorff_alpha, mean_pairwise_kappa,
                                percent_agreement)
from qualcode.errors import InputDataError
from qualcode.labels import read_label_file

CODES = ("trust", "empathy")


def test_krippendorff_worked_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, nominal alpha = 0.743.
    n = math.nan
    data = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
                     [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
                     [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
                     [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]])
    assert round(krippendorff_alpha(data), 3) == 0.743


def test_cohen_kappa_matches_scikit_learn_and_a_hand_worked_case():
    first = [1, 1, 0, 0, 1, 0, 1, 0, 0, 0]
    second = [1, 0, 0, 0, 1, 0, 1, 1, 0, 0]
    # po = 0.8, pe = 0.4*0.4 + 0.6*0.6 = 0.52, kappa = (0.8 - 0.52) / 0.48
    assert cohen_kappa(first, second) == pytest.approx(0.28 / 0.48)
    assert cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second))


def test_edge_cases_are_reported_as_undefined_not_as_numbers():
    never = np.zeros((2, 8), dtype=int)
    assert percent_agreement(never) == 1.0
    assert cohen_kappa(never[0], never[1]) is None
    assert krippendorff_alpha(never) is None
    perfect = np.array([[1, 0, 1, 0], [1, 0, 1, 0]])
    assert cohen_kappa(*perfect) == 1.0 and krippendorff_alpha(perfect) == 1.0
    scores = binary_scores([0, 0, 0], [0, 0, 0])
    assert (scores.precision, scores.recall, scores.f1, scores.kappa) == (0.0, 0.0, 0.0, None)
    three = np.array([[1, 0, 1, 1], [1, 0, 0, 1], [1, 1, 1, 1]])
    pairs = [cohen_kappa(three[i], three[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert mean_pairwise_kappa(three) == pytest.approx(np.mean([p for p in pairs if p is not None]))


def _coder_csv(path, rows, header="segment_id,document,start,end,text,trust,empathy"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_two_coders_per_code_and_pooled(tmp_path):
    a = _coder_csv(tmp_path / "alice.csv", ["d:0-5,d,0,5,one,1,0", "d:6-9,d,6,9,two,1,1", "d:10-14,d,10,14,three,0,0",
                                            "d:15-20,d,15,20,four,0,1", "d:21-30,d,21,30,only alice,1,1"])
    b = _coder_csv(tmp_path / "bob.csv", ["d:0-5,d,0,5,one,1,0", "d:6-9,d,6,9,two,0,1", "d:10-14,d,10,14,three,0,0",
                                          "d:15-20,d,15,20,four,0,0"], header="segment_id,document,start,end,text,trust,empathy")
    report = compare_coders([read_label_file(a, CODES), read_label_file(b, CODES)])
    assert report.coders == ("alice", "bob") and report.units == 4
    assert report.unmatched == {"alice": 1, "bob": 0}
    trust, empathy = report.per_code
    assert trust.percent == 0.75
    assert trust.kappa == pytest.approx(cohen_kappa_score([1, 1, 0, 0], [1, 0, 0, 0]))
    assert trust.alpha == pytest.approx(krippendorff_alpha(np.array([[1, 1, 0, 0], [1, 0, 0, 0]])))
    assert report.overall.units == 8 and report.overall.percent == 0.75
    assert [(d.segment_id, d.code_id, d.values, d.text) for d in report.disagreements] == [
        ("d:6-9", "trust", (1, 0), "two"), ("d:15-20", "empathy", (1, 0), "four")]


def test_units_match_by_offsets_when_ids_are_missing(tmp_path):
    a = _coder_csv(tmp_path / "a.csv", ["d:0-5,1,0", "d:6-9,0,1"], header="segment_id,trust,empathy")
    b = _coder_csv(tmp_path / "b.csv", ["d,0,5,1,0", "d,6,9,0,0"], header="document,start,end,trust,empathy")
    report = compare_coders([read_label_file(a, CODES), read_label_file(b, CODES)])
    assert report.units == 2 and report.per_code[0].percent == 1.0 and report.per_code[1].percent == 0.5


def test_qualcode_workbook_counts_as_coder_qualcode(tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Segments"
    sheet.append(["segment_id", "document", "start", "end", "text", "trust", "empathy", "codes", "reviewed"])
    sheet.append(["d:0-5", "d", 0, 5, "one", 1, None, "trust", None])
    sheet.append(["d:6-9", "d", 6, 9, "two", None, None, None, None])
    book.create_sheet("Run").append(["field", "value"])
    book.save(tmp_path / "coded.xlsx")
    human = _coder_csv(tmp_path / "human.csv", ["d:0-5,1,1", "d:6-9,0,0"], header="segment_id,trust,empathy")
    report = compare_coders([read_label_file(tmp_path / "coded.xlsx", CODES), read_label_file(human, CODES)])
    assert report.coders == ("qualcode", "human")
    assert [row.percent for row in report.per_code] == [1.0, 0.5]


def test_bad_coder_files_are_named(tmp_path):
    a = _coder_csv(tmp_path / "a.csv", ["x:0-5,1,0"], header="segment_id,trust,empathy")
    other = _coder_csv(tmp_path / "other.csv", ["y:0-5,1,0"], header="segment_id,trust,empathy")
    with pytest.raises(InputDataError, match=r"other.csv: none of its 1 rows labels a segment that .*a.csv labels"):
        compare_coders([read_label_file(a, CODES), read_label_file(other, CODES)])
    bad = _coder_csv(tmp_path / "bad.csv", ["x:0-5,yes,0"], header="segment_id,trust,empathy")
    with pytest.raises(InputDataError, match=r"bad.csv: line 2: column 'trust' should be 0 or 1 \(or blank\), not 'yes'"):
        read_label_file(bad, CODES)
    extra = _coder_csv(tmp_path / "extra.csv", ["x:0-5,1,0,1"], header="segment_id,trust,empathy,hope")
    with pytest.raises(InputDataError, match=r"extra.csv: column 'hope' holds 0/1 codes but is not a code in the codebook"):
        read_label_file(extra, CODES)
    no_id = _coder_csv(tmp_path / "noid.csv", ["1,0"], header="trust,empathy")
    with pytest.raises(InputDataError, match=r"needs a 'segment_id' column, or 'document', 'start' and 'end'"):
        read_label_file(no_id, CODES)
