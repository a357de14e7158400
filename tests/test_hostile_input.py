"""Hostile and faulty input: nothing the user has is lost, nothing hangs, every failure is one line."""

import shutil

from conftest import REPO, SAMPLE, run
from qualcode.export.csvfiles import CSV_FILES


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
    assert (
        run("code", SAMPLE / "essays", "-o", output, "--format", "csv", "--force", "-q").exit_code
        == 0
    )
    (output / "notes.docx").write_text("my notes")
    result = run("code", SAMPLE / "essays", "-o", output, "--format", "csv", "--force")
    assert "holds files qualcode did not write (notes.docx)" in _one_line_error(result, 73)
    assert (output / "notes.docx").read_text() == "my notes"


def test_an_empty_folder_takes_a_csv_output(tmp_path):
    (tmp_path / "empty").mkdir()
    assert (
        run("code", SAMPLE / "essays", "-o", tmp_path / "empty", "--format", "csv", "-q").exit_code
        == 0
    )
    assert (tmp_path / "empty" / "segments.csv").is_file()


def test_every_sheet_has_a_known_csv_name(tmp_path):
    output = tmp_path / "out"
    assert run("code", SAMPLE / "essays", "-o", output, "--format", "csv", "-q").exit_code == 0
    assert {entry.name for entry in output.iterdir()} == CSV_FILES


def _codebook_with_regex(path, pattern):
    path.write_text(
        f"name: x\ncodes:\n  - id: a\n    name: A\n    definition: d\n    rules:\n      regex: ['{pattern}']\n"
    )
    return path


def test_a_backtracking_regex_stops_the_run_naming_the_rule(tmp_path):
    book = _codebook_with_regex(tmp_path / "book.yaml", "(?:a|aa)+$")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "one.txt").write_text("a" * 40 + "!\n")
    (tmp_path / "in" / "two.txt").write_text("She listens to me.\n")
    for jobs in ("1", "2"):
        result = run(
            "code", tmp_path / "in", "-o", tmp_path / "o.xlsx", "--codebook", book, "--jobs", jobs
        )
        message = _one_line_error(result, 78)
        assert "code a: regex /(?:a|aa)+$/ ran for over 1 s on segment one.txt:0-41" in message
        assert not (tmp_path / "o.xlsx").exists()


def test_classic_runaway_patterns_finish_and_are_warned_about(tmp_path):
    (tmp_path / "one.txt").write_text(
        "She listens to me every single time I call her.\n" + "a" * 34 + "!\n"
    )
    for pattern in (r"^(\w+\s?)*$", "(a+)+$"):
        book = _codebook_with_regex(tmp_path / "book.yaml", pattern)
        result = run("codebook", "validate", book)
        assert result.exit_code == 0
        assert (
            f"{book}:7: warning: codes (a).rules.regex[0]: /{pattern}/ repeats a group that itself repeats"
            in result.output
        )
        assert "1 warning" in result.output
        assert (
            run(
                "code",
                tmp_path / "one.txt",
                "-o",
                tmp_path / "o.xlsx",
                "--codebook",
                book,
                "--force",
                "-q",
            ).exit_code
            == 0
        )


def test_the_default_codebook_has_no_runaway_regex():
    result = run("codebook", "validate", REPO / "codebooks" / "relationship-themes.yaml")
    assert result.exit_code == 0 and "warning" not in result.output


def test_a_segment_over_a_million_characters_is_coded(tmp_path):
    (tmp_path / "long.txt").write_text("she listens. " * 80_000)
    result = run("code", tmp_path / "long.txt", "-o", tmp_path / "o.xlsx")
    assert result.exit_code == 0, result.output
    assert "Coded 1 segments from 1 documents" in result.output


def test_segments_longer_than_the_pipeline_takes_are_cut_at_sentence_ends(nlp):
    from qualcode.models import Document
    from qualcode.segment import segment_documents

    text = "She came every week and she listened to me. " * 100 + "word " * 300
    document = Document(doc_id="d", source="d.txt", kind="essay", text=text)
    saved = nlp.max_length
    nlp.max_length = 1_000
    try:
        for unit in ("paragraph", "sentence"):
            segments = segment_documents([document], unit=unit, nlp=nlp)
            assert all(len(segment.text) <= 1_000 for segment in segments)
            assert all(
                text[segment.start_char : segment.end_char] == segment.text for segment in segments
            )
            covered = "".join(segment.text for segment in segments)
            assert covered.replace(" ", "") == text.replace(" ", "")
        paragraph_pieces = segment_documents([document], unit="paragraph", nlp=nlp)
        assert all(piece.text.endswith(".") for piece in paragraph_pieces[:4])
    finally:
        nlp.max_length = saved


def _run_with_file_size_limit(args, limit_bytes):
    """The command in a process that may write no file larger than ``limit_bytes``: as a full disk, writes fail."""
    import resource
    import signal
    import subprocess
    import sys

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "qualcode", *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=120,
    )


def test_an_output_that_does_not_fit_gives_one_line_and_leaves_the_old_output(tmp_path):
    old = tmp_path / "coded.xlsx"
    old.write_bytes(b"the earlier workbook")
    folder = tmp_path / "csv"
    for output, extra in ((old, ["--force"]), (folder, ["--format", "csv"])):
        completed = _run_with_file_size_limit(
            ["code", SAMPLE, "-o", output, "--no-classifier", *extra], 20_000
        )
        assert completed.returncode == 73, completed.stderr
        assert "Traceback" not in completed.stderr and "Exception ignored" not in completed.stderr
        assert completed.stderr.strip().splitlines()[-1] == (
            f"Error: {output}: cannot be written (File too large); nothing was replaced, and no partial file is left"
        )
    assert old.read_bytes() == b"the earlier workbook"
    assert not folder.exists()
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["coded.xlsx"]


def test_a_full_disk_while_writing_is_an_output_error(tmp_path):
    import errno
    import os

    import pytest

    from qualcode.errors import OutputError
    from qualcode.export.atomic import atomic_file

    target = tmp_path / "out.xlsx"
    with pytest.raises(
        OutputError, match=r"out.xlsx: cannot be written \(No space left on device\)"
    ):
        with atomic_file(target) as temporary:
            temporary.write_bytes(b"part")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_missing_or_empty_study_database_is_refused_with_the_backup_to_restore(tmp_path):
    study = tmp_path / "study"
    assert run("init", study, "--coder", "ana").exit_code == 0
    assert (
        run(
            "code", SAMPLE / "essays", "-o", tmp_path / "one.xlsx", "--study", study, "-q"
        ).exit_code
        == 0
    )
    backups = sorted((study / "backups").glob("qualcode-*.sqlite"))
    assert len(backups) == 1
    database = study / "qualcode.sqlite"
    sound = database.read_bytes()
    restore = f"restore the latest backup by copying {backups[-1]} to {database}"

    with database.open("r+b") as handle:
        handle.truncate(len(sound) // 3)
    assert f"{database}: the study database is damaged" in _one_line_error(
        run("status", "--study", study), 65
    )
    assert restore in _one_line_error(run("status", "--study", study), 65)
    database.write_bytes(b"")
    assert f"{database}: the study database is empty; {restore}" in _one_line_error(
        run("status", "--study", study), 65
    )
    database.unlink()
    for leftover in study.glob("qualcode.sqlite-*"):
        leftover.unlink()
    assert f"{database}: the study database is missing" in _one_line_error(
        run("status", "--study", study), 65
    )

    # Restoring the backup gives back the study as it was before the run.
    database.write_bytes(backups[-1].read_bytes())
    result = run("status", "--study", study)
    assert result.exit_code == 0 and "Runs: 0" in result.output


def test_a_study_keeps_the_last_five_backups(tmp_path):
    from qualcode.study import BACKUPS_KEPT, Study

    with Study.create(tmp_path / "study", coder="ana") as study:
        made = [study.back_up() for _ in range(BACKUPS_KEPT + 2)]
        kept = sorted((tmp_path / "study" / "backups").iterdir())
    assert kept == made[-BACKUPS_KEPT:]
    import sqlite3

    with sqlite3.connect(kept[-1]) as copy:
        assert copy.execute("PRAGMA user_version").fetchone()[0] >= 1


def test_a_docx_zip_bomb_is_refused_before_it_is_unpacked(tmp_path):
    import zipfile

    from qualcode.ingest.word import MAX_DOCX_PART_BYTES

    bomb = tmp_path / "in" / "bomb.docx"
    bomb.parent.mkdir()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            chunk = b" " * (1 << 20)
            for _ in range(MAX_DOCX_PART_BYTES // len(chunk) + 1):
                part.write(chunk)
    assert bomb.stat().st_size < 1_000_000
    message = _one_line_error(run("code", bomb.parent, "-o", tmp_path / "o.xlsx"), 65)
    assert (
        f"{bomb}: entry 'word/document.xml' unpacks to" in message
        and "refused as too large" in message
    )


def test_a_file_that_is_not_a_docx_says_what_it_is_and_what_to_do(tmp_path):
    (tmp_path / "in").mkdir()
    old = tmp_path / "in" / "old.docx"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)
    message = _one_line_error(run("code", old, "-o", tmp_path / "o.xlsx"), 65)
    assert message == (
        f"Error: {old}: not a readable Word .docx document (it is an old Word .doc file); "
        "open it in Word or LibreOffice and save it again as .docx"
    )
    text = tmp_path / "in" / "notes.docx"
    text.write_text("just text")
    assert "(it is not the zip package a .docx is)" in _one_line_error(
        run("code", text, "-o", tmp_path / "o.xlsx"), 65
    )


def _without_root_powers():
    """A prefix that runs a command as root without its power to read any file, or [] when not root."""
    import os

    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        import pytest

        pytest.skip(
            "running as root without util-linux's setpriv: an unreadable folder cannot be made"
        )
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def test_an_unreadable_subfolder_is_an_error_naming_it(tmp_path):
    import subprocess
    import sys

    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE / "essays", corpus)
    locked = corpus / "locked"
    locked.mkdir()
    (locked / "more.txt").write_text("She listened to me.\n")
    locked.chmod(0)
    try:
        completed = subprocess.run(
            [
                *_without_root_powers(),
                sys.executable,
                "-m",
                "qualcode",
                "code",
                str(corpus),
                "-o",
                str(tmp_path / "o.xlsx"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        locked.chmod(0o755)
    assert completed.returncode == 65, completed.stderr
    assert (
        completed.stderr.strip().splitlines()[-1]
        == f"Error: {locked}: cannot be read (Permission denied)"
    )
    assert "Traceback" not in completed.stderr and not (tmp_path / "o.xlsx").exists()


def test_linked_folders_are_read_once_and_loops_are_listed(tmp_path):
    import openpyxl

    outside = tmp_path / "outside"
    shutil.copytree(SAMPLE / "essays", outside)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "note.txt").write_text("She rang back the same day.\n")
    (corpus / "essays").symlink_to(outside, target_is_directory=True)
    (corpus / "again").symlink_to(outside, target_is_directory=True)
    (outside / "loop").symlink_to(corpus, target_is_directory=True)
    result = run("code", corpus, "-o", tmp_path / "o.xlsx", "-v")
    assert result.exit_code == 0, result.output
    essays = len(list((SAMPLE / "essays").iterdir()))
    assert f"from {essays + 1} documents" in result.output
    assert f"skipped {corpus / 'essays'}: a link to a folder read already" in result.output
    assert f"skipped {corpus / 'again' / 'loop'}: a link to a folder read already" in result.output
    run_sheet = openpyxl.load_workbook(tmp_path / "o.xlsx", read_only=True)["Run"]
    listed = " ".join(
        str(cell) for row in run_sheet.iter_rows(values_only=True) for cell in row if cell
    )
    assert "a link to a folder read already" in listed


def _start_run(output, *extra):
    import subprocess
    import sys

    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qualcode",
            "code",
            str(SAMPLE),
            "-o",
            str(output),
            "--force",
            "--no-model-cache",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _temporaries(folder):
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".tmp"))


def _wait_for_temporary(process, folder):
    import time

    deadline = time.monotonic() + 60
    while not _temporaries(folder):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no temporary appeared"
        time.sleep(0.005)


def test_sigterm_unwinds_the_run_and_leaves_no_temporary(tmp_path):
    import signal

    output = tmp_path / "coded.xlsx"
    output.write_bytes(b"the earlier workbook")
    process = _start_run(output)
    _wait_for_temporary(process, tmp_path)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert _temporaries(tmp_path) == []
    assert output.read_bytes() == b"the earlier workbook"


def test_a_killed_runs_temporary_is_removed_by_the_next_run_of_that_output(tmp_path):
    import signal

    output = tmp_path / "coded.xlsx"
    process = _start_run(output)
    _wait_for_temporary(process, tmp_path)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    left = _temporaries(tmp_path)
    assert len(left) == 1 and left[0].startswith(".coded.xlsx.")
    (tmp_path / ".other.xlsx.0123456789ab.tmp").write_text("not this output's")
    assert run("code", SAMPLE / "essays", "-o", output, "-q").exit_code == 0
    assert _temporaries(tmp_path) == [".other.xlsx.0123456789ab.tmp"]


def test_a_running_runs_temporary_is_left_alone(tmp_path):
    from qualcode.export.atomic import atomic_file, atomic_folder, remove_stale_temporaries

    with atomic_file(tmp_path / "coded.xlsx") as temporary:
        temporary.write_bytes(b"being written")
        assert remove_stale_temporaries(tmp_path / "coded.xlsx") == []
        assert temporary.exists()
    with atomic_folder(tmp_path / "csv") as folder:
        assert remove_stale_temporaries(tmp_path / "csv") == [] and folder.is_dir()
    assert _temporaries(tmp_path) == []


# Written for this test in the shape of a Zoom export: "Name: words" cues, a name with brackets,
# a speaker going on over several cues, and cues without a name that continue the turn before.
ZOOM = """WEBVTT

1
00:00:01.020 --> 00:00:03.110
Ashlee Kupor (SL): So what did you do on a normal day

2
00:00:03.500 --> 00:00:05.000
Ashlee Kupor (SL): when you were on placement?

3
00:00:06.200 --> 00:00:08.900
Dr. Amal Osei: Do a lot of work

4
00:00:09.000 --> 00:00:10.400
to like, get to know the families.

5
00:00:11.000 --> 00:00:12.000
Ashlee Kupor (SL): But did they trust you?

6
00:00:12.300 --> 00:00:14.000
Dr. Amal Osei: Not at first.

7
00:00:14.100 --> 00:00:15.000
Note that it took months.
"""


def test_a_zoom_export_keeps_speakers_and_gives_label_less_cues_to_the_turn_before(write):
    from qualcode.ingest import read_documents
    from qualcode.segment import segment_documents

    (document,) = read_documents([write("call.vtt", ZOOM)]).documents
    assert document.text == (
        "[00:00:01] Ashlee Kupor SL: So what did you do on a normal day when you were on placement?\n\n"
        "[00:00:06] Dr. Amal Osei: Do a lot of work to like, get to know the families.\n\n"
        "[00:00:11] Ashlee Kupor SL: But did they trust you?\n\n"
        "[00:00:12] Dr. Amal Osei: Not at first. Note that it took months.\n"
    )
    turns = segment_documents([document], unit="turn")
    assert [(turn.speaker, turn.timestamp) for turn in turns] == [
        ("Ashlee Kupor SL", "00:00:01"),
        ("Dr. Amal Osei", "00:00:06"),
        ("Ashlee Kupor SL", "00:00:11"),
        ("Dr. Amal Osei", "00:00:12"),
    ]


def test_caption_errors_name_the_timing_line_and_refuse_impossible_times(write):
    import pytest

    from qualcode.errors import InputDataError
    from qualcode.ingest import read_documents

    srt = write(
        "bad.srt",
        "1\n00:00:01,000 --> 00:00:02,000\nfine\n\n2\n00:00:03,000 -> 00:00:04,000\nbroken\n",
    )
    with pytest.raises(InputDataError, match=r"bad.srt: line 6: expected a cue timing"):
        read_documents([srt])
    vtt = write(
        "late.vtt",
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nfine\n\n00:61:99.999 --> 00:62:00.000\nno\n",
    )
    with pytest.raises(
        InputDataError,
        match=r"late.vtt: line 6: impossible cue time '00:61:99.999'; "
        r"expected hh:mm:ss.ttt with minutes and seconds below 60",
    ):
        read_documents([vtt])


def test_utf16_without_a_byte_order_mark_and_binary_files_are_refused_with_a_hint(tmp_path):
    (tmp_path / "in").mkdir()
    utf16 = tmp_path / "in" / "interview.txt"
    utf16.write_bytes("Interviewer: How was it?\nJo: She listened to me.\n".encode("utf-16-le"))
    assert _one_line_error(run("code", utf16, "-o", tmp_path / "o.xlsx"), 65) == (
        f"Error: {utf16}: looks like UTF-16 (little-endian) text without a byte order mark; "
        "save it as UTF-8 (in Notepad or Word: Save As, Encoding UTF-8)"
    )
    big = tmp_path / "in" / "big.csv"
    big.write_bytes("id,response\n1,She came every week.\n".encode("utf-16-be"))
    assert "looks like UTF-16 (big-endian) text" in _one_line_error(
        run("code", big, "-o", tmp_path / "o.xlsx"), 65
    )
    binary = tmp_path / "in" / "photo.txt"
    binary.write_bytes(bytes(range(256)) * 40)
    assert "holds NUL bytes, so it is not a text file" in _one_line_error(
        run("code", binary, "-o", tmp_path / "o.xlsx"), 65
    )
    controls = tmp_path / "in" / "dump.md"
    controls.write_bytes(b"\x01\x02\x03\x04 text \x05\x06\x07\x08" * 100)
    assert "of its first bytes are control codes" in _one_line_error(
        run("code", controls, "-o", tmp_path / "o.xlsx"), 65
    )
    assert not (tmp_path / "o.xlsx").exists()
    # The byte order mark still says what UTF-16 is: such a file is read.
    marked = tmp_path / "marked.txt"
    marked.write_bytes("She listened to me, every time.\n".encode("utf-16"))
    assert run("code", marked, "-o", tmp_path / "o.xlsx", "-q").exit_code == 0


def test_a_survey_workbook_whose_first_sheet_is_empty_names_the_others_and_sheet_picks_one(
    tmp_path,
):
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.title = "Notes"
    answers = workbook.create_sheet("Answers")
    answers.append(["id", "response"])
    answers.append(["R1", "My worker rang back the same day, every time."])
    answers.append(["R2", "Nobody asked me what I wanted."])
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "survey.xlsx"
    workbook.save(path)
    assert _one_line_error(run("code", path, "-o", tmp_path / "o.xlsx"), 65) == (
        f"Error: {path}: sheet 'Notes' is empty; expected a header row; name the sheet to read with --sheet "
        "(the others: Answers)"
    )
    result = run("code", path, "-o", tmp_path / "o.xlsx", "--sheet", "Answers")
    assert result.exit_code == 0 and "Coded 2 segments from 2 documents" in result.output
    assert "no sheet named 'Answer' (sheets: Notes, Answers)" in _one_line_error(
        run("code", path, "-o", tmp_path / "o.xlsx", "--sheet", "Answer", "--force"), 65
    )
