import re
import shutil

import openpyxl
import pandas as pd
from click.testing import CliRunner

from conftest import SAMPLE, run
from qualcode.cli import cli

CODE_IDS = [
    "continuity",
    "accessibility",
    "participation",
    "empathy",
    "trust",
    "structural_context",
]


def test_code_on_the_sample_corpus_writes_the_whole_contract(coded_sample):
    output, said = coded_sample
    assert said.startswith("Coded ") and str(output) in said
    sheets = pd.read_excel(output, sheet_name=None)
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
    assert list(segments.columns[:6]) == [
        "segment_id",
        "document",
        "speaker",
        "start",
        "end",
        "timestamp",
    ]
    assert list(segments.columns[-10:]) == ["text", *CODE_IDS, "codes", "reviewed", "decided by"]
    assert {"role", "age_group", "site", "years_known_to_services", "respondent"} <= set(
        segments.columns
    )
    documents = set(segments["document"])
    assert (
        "transcripts/young_person_03.docx" in documents
        and "transcripts/care_leaver_02.vtt" in documents
    )
    assert sum(document.startswith("survey/open_responses.csv#") for document in documents) >= 60
    assert segments["timestamp"].notna().any()
    codings = sheets["Codings"]
    assert set(codings["code"]) == set(CODE_IDS), "every theme is found somewhere in the sample"
    assert set(codings["source"]) == {"rule", "classifier"} and codings["evidence"].notna().all()
    run_sheet = dict(zip(sheets["Run"]["field"], sheets["Run"]["value"]))
    # No --threshold: the default representation's own (0.35 for embeddings, 0.5 for n-grams),
    # and with embeddings the shipped model's own per code, which the Run sheet lists.
    threshold = run_sheet["option suggest_at"]
    assert threshold == {"embeddings": 0.35, "ngrams": 0.5}[run_sheet["option representation"]]
    listed = run_sheet["option code_thresholds"]
    own = dict(pair.split("=") for pair in listed.split(", ")) if listed != "none" else {}
    if run_sheet["option representation"] == "embeddings":
        assert set(own) == set(CODE_IDS)
    machine = codings[codings["source"] == "classifier"]
    at_least = machine["code"].map(lambda code: float(own.get(code, threshold)))
    assert (machine["confidence"] >= at_least).all(), (
        "classifier suggestions are at or above their code's threshold"
    )
    assert set(codings["status"]) <= {"suggested", "downgraded"}
    assert list(sheets["Codebook"]["id"]) == CODE_IDS
    assert run_sheet["codebook name"] == "Relationship-based social work"


def test_interviewer_turns_are_exported_but_not_coded(coded_sample):
    output, _ = coded_sample
    segments = pd.read_excel(output, sheet_name="Segments")
    interviewer = segments[
        segments["speaker"].isin(
            ["Interviewer", "INT", "Int", "I", "Q", "Researcher", "Facilitator"]
        )
    ]
    assert len(interviewer) > 50
    assert interviewer["codes"].isna().all()


def test_same_input_gives_the_same_segments_and_codings(coded_sample, tmp_path):
    output, _ = coded_sample
    again = tmp_path / "again.xlsx"
    assert run("code", SAMPLE, "-o", again, "-q").exit_code == 0
    for sheet in ("Segments", "Codings", "Summary", "Documents", "Co-occurrence"):
        pd.testing.assert_frame_equal(
            pd.read_excel(output, sheet_name=sheet), pd.read_excel(again, sheet_name=sheet)
        )


def test_code_leaves_the_garbage_collector_as_it_found_it(tmp_path):
    import gc

    before = gc.get_threshold(), gc.get_freeze_count()
    for extra in ([], ["--format", "csv"]):
        output = tmp_path / ("coded.xlsx" if not extra else "tables")
        result = CliRunner().invoke(
            cli, ["code", str(SAMPLE / "survey"), "-o", str(output), "-q", *extra]
        )
        assert result.exit_code == 0, result.output
        assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_verbose_shows_what_the_training_process_logs(tmp_path):
    import subprocess
    import sys

    codebook = tmp_path / "book.yaml"
    codebook.write_text(
        "name: Book\ncodes:\n  - id: time\n    name: Time\n    definition: Time for us.\n"
        "    examples:\n      positive: [She never had time., Always rushing off., Weeks before a call.]\n"
        "      negative: [We had chips., The bus was late., It rained all week.]\n"
        "  - id: silent\n    name: Silent\n    definition: Nothing to learn from.\n",
        encoding="utf-8",
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "qualcode",
            "code",
            str(SAMPLE / "survey"),
            "--codebook",
            str(codebook),
            "-o",
            str(tmp_path / "coded.xlsx"),
            "-v",
            "--no-model-cache",
            # The n-gram model trains in its own process while the corpus is read (embeddings
            # train where they are coded): this is the run whose training process must log.
            "--representation",
            "ngrams",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "code silent: 0 positive and 0 negative examples; too few to train" in completed.stderr


def test_csv_format_and_sentence_unit(tmp_path):
    result = run(
        "code",
        SAMPLE / "essays",
        "-o",
        tmp_path / "out",
        "--format",
        "csv",
        "--unit",
        "sentence",
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert result.output == ""
    segments = pd.read_csv(tmp_path / "out" / "segments.csv")
    paragraphs = pd.read_excel(
        _code_to(tmp_path / "p.xlsx", SAMPLE / "essays"), sheet_name="Segments"
    )
    assert len(segments) > len(paragraphs)


def _code_to(output, *paths):
    assert run("code", *paths, "-o", output, "-q").exit_code == 0
    return output


def _fails(result, code, message):
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.output.strip().splitlines()
    assert lines[-1] == message, result.output
    assert "Traceback" not in result.output


def test_missing_path(tmp_path):
    _fails(
        run("code", tmp_path / "nope", "-o", tmp_path / "o.xlsx"),
        66,
        f"Error: {tmp_path / 'nope'}: no such file or folder",
    )


def test_empty_corpus(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("code", tmp_path / "empty", "-o", tmp_path / "o.xlsx")
    assert result.exit_code == 66 and "no documents with text found" in result.output


def test_bad_codebook_names_file_and_line(tmp_path):
    book = tmp_path / "book.yaml"
    book.write_text(
        "name: x\ncodes:\n  - id: a\n    name: A\n    definition: d\n    rules:\n      regex: ['(']\n"
    )
    result = run("code", SAMPLE / "essays", "-o", tmp_path / "o.xlsx", "--codebook", book)
    _fails(
        result,
        78,
        f"Error: {book}: line 7: codes[0] (a).rules.regex[0]: bad regular expression '(': "
        "missing ) at position 1",
    )
    assert not (tmp_path / "o.xlsx").exists()


def test_output_that_is_an_input_or_inside_one(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE / "essays", corpus)
    target = corpus / "practice_note_01.txt"
    before = target.read_bytes()
    _fails(
        run("code", corpus, target, "-o", target),
        73,
        f"Error: {target}: the output is also an input; choose another output path",
    )
    assert target.read_bytes() == before
    result = run("code", corpus, "-o", corpus / "coded.xlsx")
    assert result.exit_code == 73 and "is inside the input folder" in result.output


def test_output_folder_missing(tmp_path):
    _fails(
        run("code", SAMPLE / "essays", "-o", tmp_path / "no" / "o.xlsx"),
        73,
        f"Error: {tmp_path / 'no' / 'o.xlsx'}: folder {tmp_path / 'no'} does not exist",
    )


def test_survey_without_a_text_column_lists_columns(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "s.csv").write_text("id,age\n1,20\n")
    _fails(
        run("code", tmp_path / "in", "-o", tmp_path / "o.xlsx"),
        65,
        f"Error: {tmp_path / 'in' / 's.csv'}: no answer text column found; name it with --text-column. "
        "The columns are 'id', 'age'",
    )


def test_reviewed_workbook_is_kept_unless_forced(tmp_path):
    output = _code_to(tmp_path / "coded.xlsx", SAMPLE / "essays")
    book = openpyxl.load_workbook(output)
    sheet = book["Segments"]
    header = [cell.value for cell in sheet[1]]
    for row in (2, 3):
        sheet.cell(row, header.index("reviewed") + 1).value = "x"
    book.save(output)
    before = output.read_bytes()
    _fails(
        run("code", SAMPLE / "essays", "-o", output),
        73,
        f"Error: {output}: not replaced, because 2 segment rows marked reviewed; "
        "write to another file with -o, or pass --force to replace it",
    )
    assert output.read_bytes() == before
    assert run("code", SAMPLE / "essays", "-o", output, "--force", "-q").exit_code == 0
    assert output.read_bytes() != before


def test_uninstalled_spacy_model(tmp_path):
    result = run(
        "code", SAMPLE / "essays", "-o", tmp_path / "o.xlsx", "--spacy-model", "en_no_such_model"
    )
    assert result.exit_code == 78
    assert "spaCy pipeline 'en_no_such_model' is not installed" in result.output


def test_kind_override_and_extra_interviewer_label(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "t.txt").write_text(
        "SW: Did you feel listened to?\nMum: She never listened.\nSW: I see.\nMum: Yes.\n"
    )
    output = tmp_path / "o.xlsx"
    assert run("code", tmp_path / "in", "-o", output, "--interviewer", "SW", "-q").exit_code == 0
    segments = pd.read_excel(output, sheet_name="Segments")
    assert list(segments["speaker"]) == ["SW", "Mum", "SW", "Mum"]
    assert run("code", tmp_path / "in", "-o", output, "--kind", "essay", "-q").exit_code == 0
    assert pd.read_excel(output, sheet_name="Segments")["speaker"].isna().all()


def test_codebook_validate(tmp_path):
    good = run(
        "codebook", "validate", SAMPLE.parent.parent / "codebooks" / "relationship-themes.yaml"
    )
    assert good.exit_code == 0 and "valid; 6 codes" in good.output
    book = tmp_path / "b.yaml"
    book.write_text("name: x\ncodes:\n  - id: A\n    name: A\n    definition: d\n    extra: 1\n")
    result = run("codebook", "validate", book)
    assert result.exit_code == 78
    assert result.output.splitlines() == [
        f"{book}:3: codes[0] (A).id: id 'A' must be lowercase letters, digits and underscores, starting with a letter",
        f"{book}:6: codes[0] (A).extra: unknown key 'extra' (allowed: id, name, color, parent, definition, include, "
        "exclude, examples, rules, threshold, replaces)",
        f"Error: {book}: 2 problems",
    ]


GOLD = SAMPLE.parent / "sample-gold.csv"


def test_evaluate_rejects_a_gold_column_outside_the_codebook(tmp_path):
    gold = tmp_path / "gold.csv"
    gold.write_text("segment_id,trust,hope\nx:0-1,1,1\n")
    _fails(
        run("evaluate", SAMPLE, "--gold", gold),
        65,
        f"Error: {gold}: column 'hope' holds 0/1 codes but is not a code in the codebook "
        "(accessibility, continuity, empathy, participation, structural_context, trust)",
    )


def test_agree_between_a_human_and_the_machine(coded_sample, tmp_path):
    output, _ = coded_sample
    report = tmp_path / "agree.xlsx"
    result = run("agree", output, GOLD, "-o", report)
    assert result.exit_code == 0, result.output
    assert "Coders: qualcode" in result.output and "sample-gold" in result.output
    assert "262 segments labelled by every coder" in result.output
    sheets = pd.read_excel(report, sheet_name=None)
    agreement = sheets["Agreement"].set_index("code")
    assert set(CODE_IDS) <= set(agreement.index)
    assert agreement["kappa"].between(-1, 1).all()
    stated = int(re.search(r"(\d+) disagreements \(segment and code\)", result.output).group(1))
    assert len(sheets["Disagreements"]) == stated


def test_agree_needs_two_files(tmp_path):
    result = run("agree", GOLD)
    assert result.exit_code == 2 and "give at least two coders' files" in result.output


def test_train_no_classifier_and_thresholds(tmp_path):
    rules_only = tmp_path / "rules.xlsx"
    assert run("code", SAMPLE / "essays", "-o", rules_only, "--no-classifier", "-q").exit_code == 0
    assert set(pd.read_excel(rules_only, sheet_name="Codings")["source"]) == {"rule"}
    strict = tmp_path / "strict.xlsx"
    assert (
        run(
            "code",
            SAMPLE / "essays",
            "-o",
            strict,
            "--threshold",
            "0.99",
            "--no-seed",
            "--train",
            GOLD,
            "--representation",  # the options are what is checked; n-grams fit in a second
            "ngrams",
            "-q",
        ).exit_code
        == 0
    )
    codings = pd.read_excel(strict, sheet_name="Codings")
    assert (codings[codings["source"] == "classifier"]["confidence"] >= 0.99).all()
    run_sheet = pd.read_excel(strict, sheet_name="Run").set_index("field")["value"]
    assert run_sheet["option suggest_at"] == 0.99 and run_sheet["option seed"] == False  # noqa: E712
    assert str(GOLD) in run_sheet["option train"]
    bad = run("code", SAMPLE / "essays", "-o", strict, "--threshold", "hope=0.5")
    assert bad.exit_code == 78 and "--threshold names code 'hope'" in bad.output


def test_outputs_of_the_wrong_kind_are_refused_even_with_force(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    _fails(
        run("code", SAMPLE / "essays", "-o", folder, "--force"),
        73,
        f"Error: {folder}: is a folder; name the workbook, e.g. {folder / 'coded.xlsx'}",
    )
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    _fails(
        run("code", SAMPLE / "essays", "-o", file, "--format", "csv", "--force"),
        73,
        f"Error: {file}: is a file, but --format csv writes a folder of CSV files; name a folder",
    )
    assert file.read_text() == "mine"
    _fails(
        run("code", SAMPLE / "essays", "-o", tmp_path / "coded"),
        73,
        f"Error: {tmp_path / 'coded'}: a workbook's name should end in .xlsx (or use --format csv for a folder)",
    )
