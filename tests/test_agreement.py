import math

import numpy as np
import openpyxl
import pytest
from sklearn.metrics import cohen_kappa_score

from qualcode.agreement import (
    binary_scores,
    cohen_kappa,
    compare_coders,
    krippendorff_alpha,
    mean_pairwise_kappa,
    percent_agreement,
)
from qualcode.errors import InputDataError
from qualcode.labels import read_label_file

CODES = ("trust", "empathy")


def test_krippendorff_worked_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, nominal alpha = 0.743.
    n = math.nan
    data = np.array(
        [
            [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
            [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
        ]
    )
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
    a = _coder_csv(
        tmp_path / "alice.csv",
        [
            "d:0-5,d,0,5,one,1,0",
            "d:6-9,d,6,9,two,1,1",
            "d:10-14,d,10,14,three,0,0",
            "d:15-20,d,15,20,four,0,1",
            "d:21-30,d,21,30,only alice,1,1",
        ],
    )
    b = _coder_csv(
        tmp_path / "bob.csv",
        [
            "d:0-5,d,0,5,one,1,0",
            "d:6-9,d,6,9,two,0,1",
            "d:10-14,d,10,14,three,0,0",
            "d:15-20,d,15,20,four,0,0",
        ],
        header="segment_id,document,start,end,text,trust,empathy",
    )
    report = compare_coders([read_label_file(a, CODES), read_label_file(b, CODES)])
    assert report.coders == ("alice", "bob") and report.units == 4
    assert report.unmatched == {"alice": 1, "bob": 0}
    trust, empathy = report.per_code
    assert trust.percent == 0.75
    assert trust.kappa == pytest.approx(cohen_kappa_score([1, 1, 0, 0], [1, 0, 0, 0]))
    assert trust.alpha == pytest.approx(krippendorff_alpha(np.array([[1, 1, 0, 0], [1, 0, 0, 0]])))
    assert report.overall.units == 8 and report.overall.percent == 0.75
    assert [(d.segment_id, d.code_id, d.values, d.text) for d in report.disagreements] == [
        ("d:6-9", "trust", (1, 0), "two"),
        ("d:15-20", "empathy", (1, 0), "four"),
    ]


def test_units_match_by_offsets_when_ids_are_missing(tmp_path):
    a = _coder_csv(
        tmp_path / "a.csv", ["d:0-5,1,0", "d:6-9,0,1"], header="segment_id,trust,empathy"
    )
    b = _coder_csv(
        tmp_path / "b.csv", ["d,0,5,1,0", "d,6,9,0,0"], header="document,start,end,trust,empathy"
    )
    report = compare_coders([read_label_file(a, CODES), read_label_file(b, CODES)])
    assert (
        report.units == 2
        and report.per_code[0].percent == 1.0
        and report.per_code[1].percent == 0.5
    )


def test_qualcode_workbook_counts_as_coder_qualcode(tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Segments"
    sheet.append(
        ["segment_id", "document", "start", "end", "text", "trust", "empathy", "codes", "reviewed"]
    )
    sheet.append(["d:0-5", "d", 0, 5, "one", 1, None, "trust", None])
    sheet.append(["d:6-9", "d", 6, 9, "two", None, None, None, None])
    book.create_sheet("Run").append(["field", "value"])
    book.save(tmp_path / "coded.xlsx")
    human = _coder_csv(
        tmp_path / "human.csv", ["d:0-5,1,1", "d:6-9,0,0"], header="segment_id,trust,empathy"
    )
    report = compare_coders(
        [read_label_file(tmp_path / "coded.xlsx", CODES), read_label_file(human, CODES)]
    )
    assert report.coders == ("qualcode", "human")
    assert [row.percent for row in report.per_code] == [1.0, 0.5]


def test_bad_coder_files_are_named(tmp_path):
    a = _coder_csv(tmp_path / "a.csv", ["x:0-5,1,0"], header="segment_id,trust,empathy")
    other = _coder_csv(tmp_path / "other.csv", ["y:0-5,1,0"], header="segment_id,trust,empathy")
    with pytest.raises(
        InputDataError, match=r"other.csv: none of its 1 rows labels a segment that .*a.csv labels"
    ):
        compare_coders([read_label_file(a, CODES), read_label_file(other, CODES)])
    bad = _coder_csv(tmp_path / "bad.csv", ["x:0-5,yes,0"], header="segment_id,trust,empathy")
    with pytest.raises(
        InputDataError,
        match=r"bad.csv: line 2: column 'trust' should be 0 or 1 \(or blank\), not 'yes'",
    ):
        read_label_file(bad, CODES)
    extra = _coder_csv(
        tmp_path / "extra.csv", ["x:0-5,1,0,1"], header="segment_id,trust,empathy,hope"
    )
    with pytest.raises(
        InputDataError,
        match=r"extra.csv: column 'hope' holds 0/1 codes but is not a code in the codebook",
    ):
        read_label_file(extra, CODES)
    no_id = _coder_csv(tmp_path / "noid.csv", ["1,0"], header="trust,empathy")
    with pytest.raises(
        InputDataError, match=r"needs a 'segment_id' column, or 'document', 'start' and 'end'"
    ):
        read_label_file(no_id, CODES)


def test_readings_in_plain_words():
    from qualcode.agreement import alpha_reading, kappa_reading

    assert [kappa_reading(k) for k in (-0.1, 0.0, 0.2, 0.21, 0.45, 0.61, 0.8, 0.81, None)] == [
        "poor",
        "slight",
        "slight",
        "fair",
        "moderate",
        "substantial",
        "substantial",
        "almost perfect",
        "n/a",
    ]
    assert [alpha_reading(a) for a in (0.5, 0.667, 0.799, 0.8, None)] == [
        "unreliable",
        "tentative only",
        "tentative only",
        "reliable",
        "n/a",
    ]


def test_three_coders_get_a_table_pair_by_pair(tmp_path):
    from click.testing import CliRunner

    from qualcode.cli import cli

    rows = {
        "ann": ["d:0-5,1,0", "d:6-9,1,1", "d:10-14,0,0", "d:15-20,0,1"],
        "ben": ["d:0-5,1,0", "d:6-9,1,1", "d:10-14,0,0", "d:15-20,0,1"],
        "cal": ["d:0-5,0,1", "d:6-9,1,0", "d:10-14,1,0", "d:15-20,0,1"],
    }
    paths = [
        _coder_csv(tmp_path / f"{name}.csv", lines, header="segment_id,trust,empathy")
        for name, lines in rows.items()
    ]
    report = compare_coders([read_label_file(path, CODES) for path in paths])
    assert [(p.first, p.second, p.units, p.percent) for p in report.pairs] == [
        ("ann", "ben", 8, 1.0),
        ("ann", "cal", 8, 0.5),
        ("ben", "cal", 8, 0.5),
    ]
    output = tmp_path / "agreement.xlsx"
    result = CliRunner().invoke(
        cli,
        ["agree", *map(str, paths), "--codebook", str(_two_code_book(tmp_path)), "-o", str(output)],
    )
    assert result.exit_code == 0, result.output
    assert (
        "ann / ben                             8  100.0%    1.00    1.00  kappa 1.00 is almost perfect, alpha 1.00 "
        "is reliable" in result.output
    )
    assert (
        "ann / cal                             8   50.0%    0.00    0.06  kappa 0.00 is slight, alpha 0.06 is unreliable"
        in result.output
    )
    pairs = openpyxl.load_workbook(output)["Pairs"]
    assert [cell.value for cell in pairs[3]][:3] == ["ann", "cal", 8]


def _two_code_book(tmp_path):
    path = tmp_path / "book.yaml"
    path.write_text(
        "name: Two\ncodes:\n  - id: trust\n    name: Trust\n    definition: t.\n"
        "  - id: empathy\n    name: Empathy\n    definition: e.\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("seed", [True, False])
def test_a_workbook_whose_model_saw_the_compared_labels_is_flagged(tmp_path, seed):
    import shutil

    from click.testing import CliRunner

    from conftest import REPO, SAMPLE
    from qualcode.cli import cli

    corpus = tmp_path / "sample"
    shutil.copytree(SAMPLE / "essays", corpus / "essays")  # segment ids as in the gold: essays/...
    coded = tmp_path / "coded.xlsx"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        # Without the seed set no model saw the sample; n-grams show that as well as embeddings.
        ["code", str(corpus), "-o", str(coded), "-q"]
        + ([] if seed else ["--no-seed", "--representation", "ngrams"]),
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["agree", str(coded), str(REPO / "corpora" / "sample-gold.csv")])
    assert result.exit_code == 0, result.output
    warned = (
        "Warning: qualcode (" in result.output
        and "its classifier was trained on 56 of the 56 compared segments, from the seed set shipped with the "
        "default codebook"
        in result.output
    )
    assert warned == seed, result.output
