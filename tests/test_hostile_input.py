"""Hostile and faulty input: nothing the user has is lost, nothing hangs, every failure is one line."""

import shutil

from click.testing import CliRunner

from conftest import REPO, SAMPLE
from qualcode.cli import cli
from qualcode.export.csvfiles import CSV_FILES


def run(*args):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def _one_line_error(result, code):
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: "), result.output
    return last


def test_a_csv_output_folder_that_holds_the_inputs_is_refused_even_with_force(tmp_path):
    project = tmp_path / "p"
    shutil.copytree(SAMPLE / "essays", project / "child")
    (project / "thesis.doc").write_text("keep")
    result = run("code", project / "child", "-o", project, "--format", "csv", "--force")
    assert "holds the input" in _one_line_error(result, 73)
    assert (project / "thesis.doc").read_text() == "keep"
    assert len(list((project / "child").iterdir())) == len(list((SAMPLE / "essays").iterdir()))


def test_a_csv_output_folder_with_files_qualcode_did_not_write_is_never_replaced(tmp_path):
    output = tmp_path / "out"
    assert run("code", SAMPLE / "essays", "-o", output, "--format", "csv", "-q").exit_code == 0
    assert {entry.name for entry in output.iterdir()} <= CSV_FILES
    # A folder of qualcode's own CSV files is replaced with --force; one extra file stops it.
    assert run("code", SAMPLE / "essays", "-o", output, "--format", "csv", "--force", "-q").exit_code == 0
    (output / "notes.docx").write_text("my notes")
    result = run("code", SAMPLE / "essays", "-o", output, "--format", "csv", "--force")
    assert "holds files qualcode did not write (notes.docx)" in _one_line_error(result, 73)
    assert (output / "notes.docx").read_text() == "my notes"


def test_an_empty_folder_takes_a_csv_output(tmp_path):
    (tmp_path / "empty").mkdir()
    assert run("code", SAMPLE / "essays", "-o", tmp_path / "empty", "--format", "csv", "-q").exit_code == 0
    assert (tmp_path / "empty" / "segments.csv").is_file()


def test_every_sheet_has_a_known_csv_name(tmp_path):
    output = tmp_path / "out"
    assert run("code", SAMPLE / "essays", "-o", output, "--format", "csv", "-q").exit_code == 0
    assert {entry.name for entry in output.iterdir()} == CSV_FILES


def _codebook_with_regex(path, pattern):
    path.write_text(f"name: x\ncodes:\n  - id: a\n    name: A\n    definition: d\n    rules:\n      regex: ['{pattern}']\n")
    return path


def test_a_backtracking_regex_stops_the_run_naming_the_rule(tmp_path):
    book = _codebook_with_regex(tmp_path / "book.yaml", "(?:a|aa)+$")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "one.txt").write_text("a" * 40 + "!\n")
    (tmp_path / "in" / "two.txt").write_text("She listens to me.\n")
    for jobs in ("1", "2"):
        result = run("code", tmp_path / "in", "-o", tmp_path / "o.xlsx", "--codebook", book, "--jobs", jobs)
        message = _one_line_error(result, 78)
        assert "code a: regex /(?:a|aa)+$/ ran for over 1 s on segment one.txt:0-41" in message
        assert not (tmp_path / "o.xlsx").exists()


def test_classic_runaway_patterns_finish_and_are_warned_about(tmp_path):
    (tmp_path / "one.txt").write_text("She listens to me every single time I call her.\n" + "a" * 34 + "!\n")
    for pattern in (r"^(\w+\s?)*$", "(a+)+$"):
        book = _codebook_with_regex(tmp_path / "book.yaml", pattern)
        result = run("codebook", "validate", book)
        assert result.exit_code == 0
        assert f"{book}:7: warning: codes (a).rules.regex[0]: /{pattern}/ repeats a group that itself repeats" in result.output
        assert "1 warning" in result.output
        assert run("code", tmp_path / "one.txt", "-o", tmp_path / "o.xlsx", "--codebook", book, "--force", "-q").exit_code == 0


def test_the_default_codebook_has_no_runaway_regex():
    result = run("codebook", "validate", REPO / "codebooks" / "relationship-themes.yaml")
    assert result.exit_code == 0 and "warning" not in result.output
