"""The refinement loop: a study keeps every human decision across rounds and codebook changes."""

import csv
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from conftest import REPO, SAMPLE, ok, run, run_sheet
from qualcode.study import Study

CODE_IDS = [
    "continuity",
    "accessibility",
    "participation",
    "empathy",
    "trust",
    "structural_context",
]


def _gold():
    with (REPO / "corpora" / "sample-gold.csv").open(newline="", encoding="utf-8") as handle:
        return {
            row["segment_id"]: {code: int(row[code]) for code in CODE_IDS}
            for row in csv.DictReader(handle)
        }


def _new_study(tmp_path, seed=True, representation=None):
    folder = tmp_path / "study"
    chosen = ["--representation", representation] if representation else []
    ok("init", folder, "--coder", "Ana", *chosen)
    if not seed:
        config = folder / "qualcode.toml"
        config.write_text(config.read_text().replace("seed = true", "seed = false"))
    return folder


def _review_as_researcher(path, gold, documents):
    """Mark every segment of ``documents`` reviewed, with the gold's codes, in the workbook; return the decisions."""
    book = openpyxl.load_workbook(path)
    sheet = book["Segments"]
    header = [cell.value for cell in sheet[1]]
    column = {name: header.index(name) + 1 for name in header}
    reviewed = {}
    for row in range(2, sheet.max_row + 1):
        segment_id = sheet.cell(row, column["segment_id"]).value
        document = sheet.cell(row, column["document"]).value
        if segment_id in gold and document in documents:
            for code in CODE_IDS:
                sheet.cell(row, column[code]).value = gold[segment_id][code] or None
            sheet.cell(row, column["reviewed"]).value = "yes"
            reviewed[segment_id] = gold[segment_id]
    book.save(path)
    return reviewed


def _mark_reviewed(path, rows, codes=None):
    """Mark Segments rows (1-based sheet rows) reviewed; ``codes(row)`` gives that row's code cells, if set."""
    book = openpyxl.load_workbook(path)
    sheet = book["Segments"]
    header = [cell.value for cell in sheet[1]]
    for row in rows:
        sheet.cell(row, header.index("reviewed") + 1).value = "x"
        for code, value in (codes(row) if codes else {}).items():
            sheet.cell(row, header.index(code) + 1).value = value
    segment_ids = [sheet.cell(row, header.index("segment_id") + 1).value for row in rows]
    book.save(path)
    return segment_ids


def _macro_f1(path, gold, segment_ids):
    from sklearn.metrics import f1_score

    segments = pd.read_excel(path, sheet_name="Segments").set_index("segment_id")
    truth = np.array([[gold[s][c] for c in CODE_IDS] for s in segment_ids])
    machine = np.array([[int(segments.loc[s, c] == 1) for c in CODE_IDS] for s in segment_ids])
    return f1_score(truth, machine, average="macro", zero_division=0)


def test_the_whole_loop_keeps_every_human_decision(tmp_path):
    gold = _gold()
    # Without the seed (the sample's own gold) so that what the model learns on unreviewed segments
    # comes from the reviews; on n-grams, since embedding the sample in the upstream model, which
    # no other test reads it with, took 38 of this test's 60 s. Learning from reviews on embeddings
    # is test_embeddings' test_a_researchers_own_labels_outweigh_the_shipped_corpus.
    study = _new_study(tmp_path, seed=False, representation="ngrams")
    config = (study / "qualcode.toml").read_text()
    assert 'representation = "ngrams"' in config and "code_thresholds = {}" in config
    round1 = tmp_path / "round1.xlsx"
    ok("code", SAMPLE, "-o", round1, "--study", study, "-q", "--no-sentence-evidence")

    documents = sorted({segment_id.rsplit(":", 1)[0] for segment_id in gold})
    train_documents = {d for i, d in enumerate(documents) if i % 2 == 0}
    held_out = [s for s in gold if s.rsplit(":", 1)[0] not in train_documents]
    reviewed = _review_as_researcher(round1, gold, train_documents)
    # The researcher also rejects two machine suggestions outside the reviewed rows, and adds one code.
    book = openpyxl.load_workbook(round1)
    codings = book["Codings"]
    header = [cell.value for cell in codings[1]]
    rejected = []
    for row in range(2, codings.max_row + 1):
        segment_id = codings.cell(row, header.index("segment_id") + 1).value
        if segment_id not in reviewed and len(rejected) < 2:
            codings.cell(row, header.index("decision") + 1).value = "reject"
            rejected.append((segment_id, codings.cell(row, header.index("code") + 1).value))
    added = (held_out[0], "structural_context")
    codings.append({1: added[0], 3: added[1]})
    book.save(round1)

    imported = ok("review", "import", round1, "--study", study)
    assert (
        f"{len(reviewed)} rows reviewed" in imported.output
        and "2 rejected, 1 added" in imported.output
    )

    # Change the codebook: rename a code, add a rule.
    codebook = study / "codebook.yaml"
    text = codebook.read_text(encoding="utf-8")
    text = text.replace("name: Trust\n", "name: Trust and honesty\n", 1)
    text = text.replace(
        "    rules:\n      phrases:\n", "    rules:\n      phrases:\n        - kept changing\n", 1
    )
    codebook.write_text(text, encoding="utf-8")
    diff = ok("codebook", "diff", REPO / "codebooks" / "relationship-themes.yaml", codebook)
    assert "trust: renamed: 'Trust' -> 'Trust and honesty'" in diff.output
    assert "continuity: phrases changed: added: kept changing" in diff.output

    round2 = tmp_path / "round2.xlsx"
    ok("code", SAMPLE, "-o", round2, "--study", study, "-q", "--no-sentence-evidence")
    codings = pd.read_excel(round2, sheet_name="Codings")
    segments = pd.read_excel(round2, sheet_name="Segments").set_index("segment_id")
    human = codings[codings["source"] == "human"].set_index(["segment_id", "code"])["status"]
    for segment_id, codes in reviewed.items():
        for code, value in codes.items():
            assert (segments.loc[segment_id, code] == 1) == bool(value), (segment_id, code)
            if value:
                assert human[(segment_id, code)] == "accepted"
    for segment_id, code in rejected:
        assert segments.loc[segment_id, code] != 1
        # Listed as rejected wherever the machine suggests it again; never coded either way.
        assert human.get((segment_id, code), "rejected") == "rejected"
    assert human[added] == "accepted" and segments.loc[added[0], "structural_context"] == 1
    assert (
        pd.read_excel(round2, sheet_name="Codebook").set_index("id").loc["trust", "name"]
        == "Trust and honesty"
    )

    # The classifier learned from the reviews: agreement on segments nobody reviewed rises.
    unseen = [s for s in held_out if s != added[0] and s not in {r for r, _ in rejected}]
    assert _macro_f1(round2, gold, unseen) > _macro_f1(round1, gold, unseen) + 0.03

    state = ok("status", "--study", study).output
    assert (
        f"Reviewed by Ana: {len({*reviewed, *(s for s, _ in rejected), added[0]})} segments"
        in state
    )
    history = ok("history", "--study", study).output
    assert "  run 1 " in history and "  run 2 " in history and "  import 1 " in history
    assert history.count("first applied") == 2, "both codebook versions are kept"


def test_a_bad_workbook_changes_nothing(tmp_path):
    study = _new_study(tmp_path)
    output = tmp_path / "coded.xlsx"
    ok("code", SAMPLE / "essays", "-o", output, "--study", study, "-q")
    _mark_reviewed(output, [2])
    book = openpyxl.load_workbook(output)
    book["Codings"]["C2"] = "not_a_code"
    book["Codings"]["I2"] = "accept"
    book.save(output)
    result = run("review", "import", output, "--study", study)
    assert result.exit_code == 65
    assert "sheet 'Codings', row 2, column 'code': unknown code 'not_a_code'" in result.output
    with Study.open(study) as opened:
        assert opened.decisions() == []


def test_an_output_with_unimported_reviews_is_protected_in_a_study(tmp_path):
    study = _new_study(tmp_path)
    output = tmp_path / "coded.xlsx"
    ok("code", SAMPLE / "essays", "-o", output, "--study", study, "-q")
    _mark_reviewed(output, [2])
    assert run("code", SAMPLE / "essays", "-o", output, "--study", study).exit_code == 73
    ok("review", "import", output, "--study", study)
    ok(
        "code", SAMPLE / "essays", "-o", output, "--study", study, "-q"
    )  # imported: nothing would be lost


def _counts(study):
    with sqlite3.connect(study / "qualcode.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [
            db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("runs", "segments", "assignments", "decisions", "documents")
        ]


def test_two_processes_write_one_study(tmp_path):
    study = _new_study(tmp_path)
    first, second = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    ok("code", SAMPLE / "essays", "-o", first, "--study", study, "-q")
    shutil.copy(first, second)
    _mark_reviewed(first, (2, 3))
    _mark_reviewed(second, (4, 5, 6))
    command = [sys.executable, "-m", "qualcode", "review", "import", "--study", str(study)]
    processes = [
        subprocess.Popen(
            [*command, str(path), "--coder", coder], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for path, coder in ((first, "ana"), (second, "ben"))
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    with Study.open(study) as opened:
        decisions = opened.decisions()
    assert len(decisions) == (2 + 3) * len(CODE_IDS)
    assert {d.coder for d in decisions} == {"ana", "ben"}


def _children(pid):
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _wait_for_workers(pid, limit=60.0):
    """The run's worker processes, once it has started them, so the kill lands mid-run."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not _children(pid):
        time.sleep(0.1)
    time.sleep(0.5)
    return _children(pid)


def _running(pid):
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _assert_gone(pids):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.2)
    assert not [pid for pid in pids if _running(pid)], "worker processes outlived the killed run"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to watch the worker processes")
def test_a_killed_run_leaves_the_study_as_it_was(tmp_path):
    study = _new_study(tmp_path)
    big = tmp_path / "big"
    for copy in range(12):
        shutil.copytree(SAMPLE, big / f"copy{copy}")
    ok("code", SAMPLE / "essays", "-o", tmp_path / "first.xlsx", "--study", study, "-q")
    before = _counts(study)
    output = tmp_path / "killed.xlsx"
    # N-grams: the run's worker processes last until it writes, so the kill lands while they work.
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qualcode",
            "code",
            str(big),
            "-o",
            str(output),
            "--study",
            str(study),
            "-q",
            "--jobs",
            "2",
            "--representation",
            "ngrams",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers = _wait_for_workers(process.pid)
    assert workers, "the run started no worker processes"
    process.kill()
    process.wait(timeout=60)
    assert process.returncode == -9, (
        "the run finished before it could be killed; make the corpus bigger"
    )
    _assert_gone(workers)
    assert _counts(study) == before
    assert not output.exists(), "the workbook is renamed into place only when complete"


def test_init_refuses_an_existing_study_and_commands_need_one(tmp_path):
    study = _new_study(tmp_path)
    again = run("init", study, "--coder", "Ben")
    assert again.exit_code == 73 and "already a qualcode study" in again.output
    missing = run("status", "--study", tmp_path / "nowhere")
    assert missing.exit_code == 66 and "not a qualcode study" in missing.output


def test_suggest_writes_a_review_workbook_of_uncertain_segments(tmp_path):
    study = _new_study(tmp_path)
    ok(
        "code",
        SAMPLE / "essays",
        SAMPLE / "survey",
        "-o",
        tmp_path / "r1.xlsx",
        "--study",
        study,
        "-q",
    )
    output = tmp_path / "review.xlsx"
    ok("suggest", "-n", "12", "-o", output, "--study", study, "-q")
    sheets = pd.read_excel(output, sheet_name=None)
    why = sheets["Why these segments"]
    assert len(why) == 12 and list(why["score"]) == sorted(why["score"], reverse=True)
    assert list(sheets["Segments"]["segment_id"]) == list(why["segment_id"])
    ok("review", "import", output, "--study", study)  # ready to review and import as it is


def test_retired_and_replaced_codes_keep_their_reviews(tmp_path):
    study = _new_study(tmp_path)
    output = tmp_path / "coded.xlsx"
    ok("code", SAMPLE / "essays", "-o", output, "--study", study, "-q", "--no-classifier")
    (first_segment,) = _mark_reviewed(output, [2], lambda row: {"trust": 1, "empathy": 1})
    ok("review", "import", output, "--study", study)
    # Retire empathy; merge trust into a new code that replaces it.
    codebook = study / "codebook.yaml"
    import yaml

    data = yaml.safe_load(codebook.read_text(encoding="utf-8"))
    data["codes"] = [code for code in data["codes"] if code["id"] not in ("empathy", "trust")]
    data["codes"].append(
        {
            "id": "safety",
            "name": "Safety",
            "definition": "Trust and feeling safe.",
            "replaces": ["trust"],
        }
    )
    codebook.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    state = ok("status", "--study", study).output
    assert "Retired code empathy: 1 decisions kept" in state
    assert (
        "Retired code trust: 1 decisions kept" in state
        and "Replaced code trust: 1 decisions flagged" in state
    )
    round2 = tmp_path / "round2.xlsx"
    ok("code", SAMPLE / "essays", "-o", round2, "--study", study, "-q", "--no-classifier")
    codings = pd.read_excel(round2, sheet_name="Codings")
    flagged = codings[(codings["segment_id"] == first_segment) & (codings["code"] == "safety")]
    assert list(flagged["source"]) == ["human"] and list(flagged["status"]) == ["suggested"]
    assert "re-review: Ana coded 'trust', which 'safety' replaces" in flagged["evidence"].iloc[0]
    with Study.open(study) as opened:
        assert {d.code_id for d in opened.decisions() if d.applies} >= {"trust", "empathy"}


def test_codebook_diff_shows_gains_and_losses_on_a_corpus(tmp_path):
    import yaml

    old = REPO / "codebooks" / "relationship-themes.yaml"
    data = yaml.safe_load(old.read_text(encoding="utf-8"))
    data["codes"][1]["rules"]["phrases"].append("family")
    data["codes"] = [code for code in data["codes"] if code["id"] != "structural_context"]
    new = tmp_path / "v2.yaml"
    new.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    output = tmp_path / "diff.xlsx"
    result = ok(
        "codebook", "diff", old, new, SAMPLE / "essays", "-o", output, "-q", "--no-classifier"
    )
    assert "accessibility: phrases changed: added: family" in result.output
    assert "structural_context: removed: retired: its reviews stay in the study" in result.output
    sheets = pd.read_excel(output, sheet_name=None)
    impact = sheets["Impact"].set_index("code")
    assert impact.loc["structural_context", "segments after"] == 0
    assert (
        impact.loc["structural_context", "lost"]
        == impact.loc["structural_context", "segments before"]
        > 0
    )
    gained = sheets["Gained"]
    assert (
        gained[gained["code"] == "accessibility"]["text"].str.contains("famil", case=False)
    ).all()


def test_two_coders_in_a_study_are_compared_and_the_study_is_found_from_below(
    tmp_path, monkeypatch
):
    study = _new_study(tmp_path)
    first = tmp_path / "r1.xlsx"
    ok("code", SAMPLE / "essays", "-o", first, "--study", study, "-q", "--no-classifier")
    second = tmp_path / "r1-ben.xlsx"
    shutil.copy(first, second)
    for path, trust in ((first, {2, 3, 4}), (second, {2, 3, 5})):
        _mark_reviewed(
            path,
            range(2, 12),
            lambda row, trust=trust: {
                code: 1 if code == "trust" and row in trust else None for code in CODE_IDS
            },
        )
    below = study / "rounds" / "two"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    ok("review", "import", first, "--coder", "ana")
    ok("review", "import", second, "--coder", "ben")
    result = ok("agree", "--coders")
    assert "Coders: ana" in result.output and "ben" in result.output
    assert "10 segments labelled by every coder" in result.output
    trust_line = next(line for line in result.output.splitlines() if line.startswith("trust "))
    assert "80.0%" in trust_line  # 8 of the 10 segments agree on trust


def test_a_study_keeps_the_representation_it_was_made_with(tmp_path):
    study = _new_study(tmp_path)
    config = study / "qualcode.toml"
    assert 'representation = "embeddings"' in config.read_text()
    ok("code", SAMPLE / "essays", "-o", tmp_path / "r1.xlsx", "--study", study, "-q")
    assert run_sheet(tmp_path / "r1.xlsx")["option representation"] == "embeddings"
    # A study made before the setting existed was made when n-grams were the default: it keeps them.
    config.write_text(config.read_text().replace('representation = "embeddings"\n', ""))
    ok("code", SAMPLE / "essays", "-o", tmp_path / "r2.xlsx", "--study", study, "-q")
    assert run_sheet(tmp_path / "r2.xlsx")["option representation"] == "ngrams"
    # The command line still chooses for one run.
    ok(
        "code",
        SAMPLE / "essays",
        "-o",
        tmp_path / "r3.xlsx",
        "--study",
        study,
        "-q",
        "--representation",
        "both",
    )
    assert run_sheet(tmp_path / "r3.xlsx")["option representation"] == "both"


def test_a_study_with_an_unknown_representation_is_refused_naming_the_setting(tmp_path):
    study = _new_study(tmp_path)
    config = study / "qualcode.toml"
    config.write_text(
        config.read_text().replace('representation = "embeddings"', 'representation = "bert"')
    )
    result = run("code", SAMPLE / "essays", "-o", tmp_path / "r1.xlsx", "--study", study, "-q")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert (
        f"{config}: [coding] representation = 'bert' is not one of ngrams, embeddings, both"
        in result.output
    )
    assert not (tmp_path / "r1.xlsx").exists()
