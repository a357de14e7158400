import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SAMPLE, run
from qualcode.codebook import load_codebook
from qualcode.coding import CodingOptions
from qualcode.errors import InputDataError
from qualcode.evaluate import _group_folds, evaluate
from qualcode.ingest import read_documents
from qualcode.labels import read_label_file
from qualcode.semantic import corpus_thresholds

GOLD = REPO / "corpora" / "sample-gold.csv"


@pytest.fixture(scope="module")
def report(nlp):
    codebook = load_codebook()
    corpus = read_documents([SAMPLE])
    gold = read_label_file(GOLD, codebook.code_ids)
    # Three folds, not the default five: each fold learns the shipped corpus again, and what these
    # tests check holds at any number of folds. The command's test below asks for the same three.
    return evaluate(corpus, codebook, gold, nlp=nlp, learning_curve=False, folds=3)


def test_combined_beats_rules_alone_on_the_sample(report):
    assert report.segments == 262 and report.folds == 3
    assert report.macro["combined"].f1 > report.macro["rules"].f1 + 0.1
    assert report.macro["combined"].alpha > report.macro["rules"].alpha + 0.1
    assert report.macro["combined"].recall > report.macro["rules"].recall


# The command's report, at the same folds as ``report``: its models come from the run's model cache.
def test_evaluate_prints_per_code_and_macro_figures_and_writes_the_report(tmp_path):
    output = tmp_path / "report.xlsx"
    result = run(
        "evaluate",
        SAMPLE,
        "--gold",
        GOLD,
        "--no-learning-curve",
        "--folds",
        "3",
        "-o",
        output,
    )
    assert result.exit_code == 0, result.output
    for heading in (
        "rules",
        "classifier",
        "combined",
        "macro average",
        "Calibration",
        "Rules below the precision floor",
    ):
        assert heading in result.output
    assert "3-fold cross-validation grouped by document" in result.output
    sheets = pd.read_excel(output, sheet_name=None)
    assert list(sheets) == ["Metrics", "Calibration", "Learning curve", "Rules", "Disagreements"]
    macro = sheets["Metrics"][sheets["Metrics"]["code"] == "(macro)"].set_index("method")
    assert macro.loc["combined", "f1"] > macro.loc["rules", "f1"]
    assert len(sheets["Disagreements"]) > 0


def test_no_seed_example_of_an_evaluated_segment_is_trained_on(report):
    assert report.seed_left_out == 262


def test_calibration_bins_cover_every_prediction(report):
    assert sum(bin_.count for bin_ in report.calibration) == report.segments * len(report.code_ids)
    top = report.calibration[-1]
    assert top.observed > report.calibration[0].observed


def test_rule_diagnostics_count_hits_against_the_gold(report):
    fired = [rule for rule in report.rules if rule.hits]
    assert fired and all(0 <= rule.correct <= rule.hits for rule in fired)
    assert all(rule.flagged == (rule.correct / rule.hits < 0.5) for rule in fired)
    assert all(len(rule.wrong_segments) == rule.hits - rule.correct for rule in fired)


def test_disagreements_are_segments_where_gold_and_machine_differ(report):
    assert report.disagreements
    assert all(set(item.gold) != set(item.machine) for item in report.disagreements)


def test_folds_never_split_a_document():
    groups = np.array(["a", "a", "b", "b", "c", "d", "d", "e"])
    for train, test in _group_folds(groups, 3):
        assert not set(groups[train]) & set(groups[test])


def test_learning_curve_on_a_small_written_corpus(tmp_path, nlp):
    folder = tmp_path / "essays"
    folder.mkdir()
    rows = ["segment_id,trust,empathy"]
    for number in range(6):
        text = (
            "She was honest with me and kept her word.\n\nWe had chips after school.\n\n"
            "She understood how scared I felt.\n"
        )
        (folder / f"e{number}.txt").write_text(text, encoding="utf-8")
        rows += [f"e{number}.txt:0-41,1,0", f"e{number}.txt:43-69,0,0", f"e{number}.txt:71-104,0,1"]
    (tmp_path / "gold.csv").write_text("\n".join(rows) + "\n")
    codebook = load_codebook()
    gold = read_label_file(tmp_path / "gold.csv", codebook.code_ids)
    report = evaluate(
        read_documents([folder]),
        codebook,
        gold,
        options=CodingOptions(seed=False),
        folds=3,
        nlp=nlp,
    )
    assert report.code_ids == ("empathy", "trust")
    assert [round(fraction, 2) for fraction, _, _ in report.learning_curve] == [
        0.1,
        0.25,
        0.5,
        0.75,
        1.0,
    ]
    assert report.macro["combined"].f1 == pytest.approx(report.learning_curve[-1][2])


def test_gold_that_matches_no_segment_is_an_error(tmp_path, nlp):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("Some words.\n")
    (tmp_path / "gold.csv").write_text("segment_id,trust\nzzz:0-4,1\n")
    codebook = load_codebook()
    with pytest.raises(
        InputDataError, match=r"gold.csv: none of its 1 rows matches a segment of the inputs"
    ):
        evaluate(
            read_documents([tmp_path / "in"]),
            codebook,
            read_label_file(tmp_path / "gold.csv", codebook.code_ids),
            nlp=nlp,
        )


def test_folds_can_keep_a_folder_or_an_attribute_together(tmp_path, nlp):
    from qualcode.evaluate import fold_groups
    from qualcode.export.reports import format_evaluation
    from qualcode.segment import segment_documents

    sentences = [
        "She listened to me and never judged me.",
        "Nobody asked what I wanted at the meeting.",
        "I had five social workers in two years.",
        "I could never get hold of her on the phone.",
    ]
    rows = ["segment_id,empathy,participation,continuity,accessibility"]
    for source in ("s1", "s2", "s3"):
        (tmp_path / "units" / source).mkdir(parents=True)
        for number, sentence in enumerate(sentences):
            (tmp_path / "units" / source / f"u{number}.txt").write_text(sentence + "\n")
            labels = ["1" if index == number else "0" for index in range(4)]
            rows.append(f"{source}/u{number}.txt:0-{len(sentence)},{','.join(labels)}")
    (tmp_path / "gold.csv").write_text("\n".join(rows) + "\n")
    codebook = load_codebook()
    corpus = read_documents([tmp_path / "units"])
    gold = read_label_file(tmp_path / "gold.csv", codebook.code_ids)
    segments = segment_documents(corpus.documents, unit="document")
    assert sorted(set(fold_groups(corpus, segments, "folder"))) == ["s1", "s2", "s3"]
    report = evaluate(
        corpus,
        codebook,
        gold,
        # What is checked is how folds are cut, which no model changes: n-grams over these twelve
        # texts, not three fits over the shipped corpus (12 of this test's 20 s).
        options=CodingOptions(unit="document", seed=False, representation="ngrams"),
        nlp=nlp,
        learning_curve=False,
        group_by="folder",
    )
    assert (report.documents, report.groups, report.folds) == (12, 3, 3)
    assert "3-fold cross-validation grouped by folder (3 groups)" in format_evaluation(report)

    survey = tmp_path / "survey.csv"
    survey.write_text(
        "id,site,response\nA,north,She listened.\nB,south,Nobody asked me.\nC,north,She rang back.\n"
    )
    answers = read_documents([survey])
    answer_segments = segment_documents(answers.documents)
    assert fold_groups(answers, answer_segments, "site") == ["north", "south", "north"]
    with pytest.raises(
        InputDataError, match=r"--group-by ward: document survey.csv#A has no attribute 'ward'"
    ):
        fold_groups(answers, answer_segments, "ward")


def test_suggested_thresholds_never_score_below_the_run_threshold(report):
    from qualcode.evaluate import THRESHOLD_GRID
    from qualcode.export.reports import format_evaluation

    assert set(report.suggested_thresholds) == set(report.code_ids)
    for threshold, best, now in report.suggested_thresholds.values():
        assert threshold in THRESHOLD_GRID and best >= now
    assert any(best > now for _, best, now in report.suggested_thresholds.values())
    assert "Set one in the codebook (threshold: 0.25 under the code)" in format_evaluation(report)


def test_each_representation_is_scored_at_its_own_default_threshold(report, nlp):
    from qualcode.export.reports import format_evaluation

    # The module's report reads embeddings with the default codebook and its seed data: the
    # shipped model, scored at its own threshold for each code.
    assert report.representation == "embeddings" and report.threshold == 0.35
    assert report.code_thresholds == corpus_thresholds(load_codebook())
    assert report.code_thresholds["structural_context"] == 0.5
    assert report.code_thresholds["accessibility"] < 0.35
    listed = ", ".join(f"{code} {value:g}" for code, value in report.code_thresholds.items())
    assert f"suggests a code at each code's own probability ({listed})." in format_evaluation(
        report
    )
    codebook = load_codebook()
    gold = read_label_file(GOLD, codebook.code_ids)
    corpus = read_documents([SAMPLE])
    ngrams = evaluate(
        corpus, codebook, gold, nlp=nlp, learning_curve=False, representation="ngrams"
    )
    assert ngrams.threshold == 0.5
    # A threshold the researcher sets is used whatever the representation.
    chosen = evaluate(
        corpus,
        codebook,
        gold,
        nlp=nlp,
        learning_curve=False,
        representation="ngrams",
        options=CodingOptions(suggest_at=0.7),
    )
    assert chosen.threshold == 0.7
    assert ngrams.code_thresholds == chosen.code_thresholds == {}
