"""A coding run from Python (``qualcode.run``) is the run ``qualcode code`` makes."""

from __future__ import annotations

import os
import re

import openpyxl
import pytest

from conftest import REPO, SAMPLE, ok
from qualcode import CodingOptions
from qualcode.run import code_paths, with_study_defaults
from qualcode.study import Study

_MODEL_STATUS = re.compile(r"^(?:trained \(cached as |loaded from the model cache \()(\w+)\)")


def _cells(path) -> dict[str, list[tuple]]:
    """Every sheet's cell values, row by row, except the Run sheet's time of writing.

    Two runs of the same command on the same input differ in that cell alone (the "created"
    row, the moment the workbook was written), and in whether the classifier was trained or
    loaded from the model cache; its cache key, which names its training data, must still be the
    same. Everything else, the Run sheet's options, input hashes and classifier record included,
    must be equal.
    """
    workbook = openpyxl.load_workbook(path, read_only=True)
    try:
        sheets = {
            name: [tuple(row) for row in workbook[name].iter_rows(values_only=True)]
            for name in workbook.sheetnames
        }
    finally:
        workbook.close()
    sheets["Run"] = [
        tuple(
            _MODEL_STATUS.sub(r"model \1", cell) if isinstance(cell, str) else cell for cell in row
        )
        for row in sheets["Run"]
        if row[0] != "created"
    ]
    return sheets


def test_the_library_call_writes_the_workbook_the_command_line_writes(tmp_path):
    by_command = tmp_path / "command.xlsx"
    said = ok("code", SAMPLE, "-o", by_command).stderr.splitlines()
    by_library = tmp_path / "library.xlsx"
    summary = code_paths([str(SAMPLE)], by_library, CodingOptions(jobs=0))

    expected = _cells(by_command)
    assert _cells(by_library) == expected
    # A real run, not two empty ones.
    assert len(expected["Segments"]) > 400 and len(expected["Codings"]) > 150
    assert summary.run_id is None and summary.output == by_library
    assert said[-1] == summary.describe().replace(str(by_library), str(by_command))
    assert said[-1].startswith("Coded 402 segments from 85 documents: ")


def test_the_library_call_in_a_study_takes_its_settings_and_records_the_run(tmp_path):
    root = tmp_path / "study"
    ok("init", root, "--coder", "Ana Ruiz")
    config = root / "qualcode.toml"
    config.write_text(
        re.sub(r"(?m)^suggest_at = .*$", "suggest_at = 0.7", config.read_text(encoding="utf-8")),
        encoding="utf-8",
    )
    by_command = root / "command.xlsx"
    ok("code", SAMPLE / "essays", "-o", by_command, "--study", root, "-q")

    by_library = root / "library.xlsx"
    with Study.open(root) as study:
        options = with_study_defaults(CodingOptions(jobs=0), study.config)
        summary = code_paths([str(SAMPLE / "essays")], by_library, options, study=study)
        runs = [detail for _, what, detail in study.history() if what.startswith("run ")]

    assert options.suggest_at == 0.7
    assert _cells(by_library) == _cells(by_command)
    assert summary.run_id == 2 and summary.study_root == root.resolve()
    assert len(runs) == 2 and str(by_library) in runs[-1]


def test_the_readme_runs_from_python_as_it_says(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)\n```", section, re.S)
    assert blocks
    os.symlink(REPO / "corpora", tmp_path / "corpora")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "coded.xlsx").is_file()
    with Study.open(tmp_path / "my-study") as study:
        assert [what for _, what, _ in study.history() if what.startswith("run ")] == ["run 1"]


def test_a_run_that_sets_no_threshold_suggests_at_its_representations_own(tmp_path):
    # Chosen on real writing (combine.SUGGEST_AT_BY_REPRESENTATION): the calibrated embedding
    # model agrees best with coders below 0.5, the n-gram model at 0.5.
    assert CodingOptions(representation="embeddings").threshold == 0.35
    assert CodingOptions(representation="ngrams").threshold == 0.5
    assert CodingOptions(representation="embeddings", suggest_at=0.6).threshold == 0.6
    assert CodingOptions(representation="embeddings").as_record()["suggest_at"] == 0.35

    # A new study writes the threshold down, so a later change of default never moves a study.
    for name, representation, threshold in (("e", "embeddings", 0.35), ("n", "ngrams", 0.5)):
        with Study.create(tmp_path / name, coder="Ana Ruiz", representation=representation):
            pass
        with Study.open(tmp_path / name) as study:
            assert study.config.suggest_at == threshold
    # A study file without the setting takes its representation's.
    config = tmp_path / "e" / "qualcode.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(re.sub(r"(?m)^suggest_at = .*\n", "", text), encoding="utf-8")
    with Study.open(tmp_path / "e") as study:
        assert study.config.suggest_at is None
        assert with_study_defaults(CodingOptions(), study.config).threshold == 0.35


def test_the_shipped_model_suggests_each_code_at_its_own_threshold(tmp_path, write):
    from qualcode.codebook import default_codebook_path, load_codebook
    from qualcode.errors import ConfigurationError
    from qualcode.semantic import CORPUS_SUGGEST_AT

    default = load_codebook()
    # Chosen by cross-validation on real writing: lower for the rare themes, 0.5 for the common one.
    assert CodingOptions().policy(default).per_code == CORPUS_SUGGEST_AT
    assert set(CORPUS_SUGGEST_AT) == set(default.code_ids)
    assert CORPUS_SUGGEST_AT["accessibility"] < 0.35 < CORPUS_SUGGEST_AT["structural_context"]
    # Only where that model is what reads the text, and only while no threshold is set.
    for options in (
        CodingOptions(suggest_at=0.4),
        CodingOptions(seed=False),
        CodingOptions(representation="ngrams"),
        CodingOptions(representation="both"),
    ):
        assert options.policy(default).per_code == {}, options
    other = load_codebook(
        write("mine.yaml", "name: Mine\ncodes:\n  - {id: trust, name: T, definition: d}\n")
    )
    assert CodingOptions().policy(other).per_code == {}
    # A code's own threshold in the codebook comes before the model's; --threshold CODE=P before both.
    text = default_codebook_path().read_text(encoding="utf-8")
    refined = re.sub(r"(?m)^(  - id: trust\n)", r"\1    threshold: 0.6\n", text, count=1)
    assert refined != text
    copy = load_codebook(write("refined.yaml", refined))
    policy = CodingOptions().policy(copy)
    assert policy.threshold("trust") == 0.6
    assert policy.threshold("empathy") == CORPUS_SUGGEST_AT["empathy"]
    assert CodingOptions(thresholds=(("trust", 0.3),)).policy(copy).threshold("trust") == 0.3

    # A new study pins them, as it pins the threshold; the study file can change them.
    with Study.create(tmp_path / "s", coder="Ana Ruiz", representation="embeddings"):
        pass
    with Study.open(tmp_path / "s") as study:
        assert study.config.code_thresholds == CORPUS_SUGGEST_AT
        pinned = with_study_defaults(CodingOptions(), study.config)
        assert pinned.policy(default).per_code == CORPUS_SUGGEST_AT
    config = tmp_path / "s" / "qualcode.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        re.sub(r"(?m)^code_thresholds = .*$", "code_thresholds = { trust = 0.45 }", text),
        encoding="utf-8",
    )
    with Study.open(tmp_path / "s") as study:
        policy = with_study_defaults(CodingOptions(), study.config).policy(default)
        assert policy.per_code == {"trust": 0.45} and policy.threshold("empathy") == 0.35
    # A study made before per-code thresholds keeps its one threshold for every code.
    config.write_text(re.sub(r"(?m)^code_thresholds = .*\n", "", text), encoding="utf-8")
    with Study.open(tmp_path / "s") as study:
        assert study.config.code_thresholds == {}
        assert with_study_defaults(CodingOptions(), study.config).policy(default).per_code == {}
    # An n-gram study pins none.
    with Study.create(tmp_path / "n", coder="Ana Ruiz", representation="ngrams"):
        pass
    with Study.open(tmp_path / "n") as study:
        assert study.config.code_thresholds == {}
    # A value that is no probability is named with its file and code.
    config.write_text(
        re.sub(r"(?m)^code_thresholds = .*$", "code_thresholds = { trust = 1.5 }", text),
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigurationError, match=r"qualcode.toml: \[coding\] code_thresholds: trust"
    ):
        Study.open(tmp_path / "s")
