"""A language model as a third coder (issue 19), against a real HTTP server on 127.0.0.1 (``llm_fake``)."""

from __future__ import annotations

import sqlite3
import sys

import openpyxl
import pandas as pd
import pytest
from click.testing import CliRunner

from llm_fake import FakeChatServer
from qualcode.cli import cli
from qualcode.errors import ConfigurationError, LlmUnavailableError
from qualcode.llm.cache import ResponseCache
from qualcode.llm.coder import LlmCoder
from qualcode.llm.parse import locate_quote, parse_answer
from qualcode.llm.policy import with_llm
from qualcode.llm.prompt import TEMPLATE_VERSION, with_context
from qualcode.llm.settings import LlmSettings, redact_url, settings_from_table
from qualcode.models import Code, CodeAssignment, Codebook, Evidence, Segment

KEY = "sk-test-do-not-leak-4242"

BOOK = """\
name: Tiny
version: "1"
codes:
  - id: trust
    name: Trust
    definition: Trusting a worker with what matters.
    include: [Says they trust a worker]
    exclude: [A trust fund or a hospital trust]
    examples:
      positive: [I trust her completely., She kept her word so I rely on her., I could tell her anything.]
      negative: [We had chips., The bus was late., It rained all week.]
    rules:
      phrases: [trust]
  - id: time
    name: Time
    definition: A worker having time for the person.
    examples:
      positive: [She always had time for me., She never rushed off., She stayed as long as it took.]
      negative: [We had chips., The bus was late., It rained all week.]
    rules:
      phrases: [rushed]
"""

ANN = """\
Interviewer: How was your social worker?

Ann: I trust her, she always made time for me.

Interviewer: Did she rush?

Ann: No. Never.

Ann: She never rushed off, and the NOTVERBATIM part is that time mattered.
"""

BOB = """\
Interviewer: Tell me about the last year.

Bob: The FENCED answer is that I did not trust the system at all.

Bob: GARBLED rushed trust, and more words so that this turn is long enough to stand alone.
"""

TINY = Codebook(
    "Tiny",
    "1",
    (
        Code(
            "trust",
            "Trust",
            "Trusting a worker.",
            include=("says they trust",),
            exclude=("a trust fund",),
            positive_examples=("I trust her",),
            negative_examples=("We had chips.",),
        ),
        Code("time", "Time", "Having time."),
    ),
)


@pytest.fixture
def server():
    with FakeChatServer() as fake:
        yield fake


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "QUALCODE_CACHE_DIR", str(tmp_path / "cache")
    )  # an answer cache of this test's own
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ann.txt").write_text(ANN, encoding="utf-8")
    (tmp_path / "in" / "bob.txt").write_text(BOB, encoding="utf-8")
    (tmp_path / "book.yaml").write_text(BOOK, encoding="utf-8")
    return tmp_path


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(arg) for arg in args], env=env)


def segments(*texts, speaker="Ann"):
    found, at = [], 0
    for index, text in enumerate(texts):
        found.append(
            Segment(f"d:{at}-{at + len(text)}", "d", at, at + len(text), text, index, speaker)
        )
        at += len(text) + 2
    return found


def coder(server, tmp_path, **settings):
    values = {"concurrency": 2, "timeout": 2.0, "retries": 2, "backoff": 0.01, **settings}
    return LlmCoder(
        LlmSettings("fake-model", server.url, **values),
        cache=ResponseCache(tmp_path / "answers.sqlite"),
    )


# --- reading answers ---------------------------------------------------------------------------


def test_a_schema_answer_is_read_as_it_is():
    answer = parse_answer(
        '{"trust": {"applies": true, "confidence": 0.7, "quote": "trust her"}, '
        '"time": {"applies": false, "confidence": 0.9, "quote": ""}}',
        ["trust", "time"],
        "I trust her.",
    )
    assert answer.usable and answer.repairs == ()
    assert answer.codes["trust"].applies and answer.codes["trust"].span == (2, 11)
    assert not answer.codes["time"].applies and answer.codes["time"].confidence == 0.9


def test_a_malformed_answer_is_repaired_and_each_repair_named():
    content = (
        "Sure!\n```json\n{'trust': {'applies': 'yes', 'confidence': '80%', 'quote': 'trust'},}\n```"
    )
    answer = parse_answer(content, ["trust", "time"], "I trust her.")
    assert (
        answer.usable
        and answer.codes["trust"].applies
        and answer.codes["trust"].confidence == pytest.approx(0.8)
    )
    assert {
        "code fence removed",
        "read as a Python literal (single quotes)",
        "'applies' given as a word",
        "'confidence' given as a percentage",
        "no answer on time",
    } <= set(answer.repairs)
    assert "time" not in answer.codes


def test_an_answer_without_json_is_unusable():
    answer = parse_answer("I think trust applies!", ["trust"], "I trust her.")
    assert not answer.usable and answer.problem == "not JSON, even after repairs"
    assert not parse_answer("", ["trust"], "x").usable


def test_a_quote_counts_only_where_it_is_verbatim():
    text = "She said:\n  I will   always\nbe there."
    start, end = locate_quote("I will always be there", text)
    assert text[start:end] == "I will   always\nbe there"
    start, end = locate_quote("\u201cbe there.\u201d", text)
    assert text[start:end] == "be there." and end == len(text)
    assert locate_quote("I will always be here", text) is None
    assert locate_quote("i will always", text) is None, "case matters: a verbatim quote"


# --- settings ------------------------------------------------------------------------------------


def test_credentials_never_show_in_the_endpoint():
    assert (
        redact_url("https://user:secret@api.example.org:8443/v1?key=abc#x")
        == "https://api.example.org:8443/v1"
    )
    settings = LlmSettings("m", "https://u:p@host.example/v1")
    assert (
        "p@" not in str(settings.as_record())
        and settings.as_record()["llm endpoint"] == "https://host.example/v1"
    )
    assert not settings.is_local and LlmSettings("m").is_local


def test_a_key_in_the_study_file_is_refused():
    with pytest.raises(ConfigurationError, match="QUALCODE_LLM_API_KEY"):
        settings_from_table({"model": "m", "api_key": "sk-x"}, "qualcode.toml")
    with pytest.raises(ConfigurationError, match="no setting 'modle'"):
        settings_from_table({"modle": "m"}, "qualcode.toml")
    assert settings_from_table({"model": "m", "concurrency": 2, "seed": 7}, "f") == {
        "model": "m",
        "concurrency": 2,
        "seed": 7,
    }


# --- asking --------------------------------------------------------------------------------------


def test_the_prompt_carries_the_codebook_and_the_segment(server, tmp_path):
    found = segments(
        "I trust her with my time, she was always there for me in the end.", "No. Never."
    )
    asking = coder(server, tmp_path)
    answers = asking.judge(with_context(found, found), TINY)
    assert len(server.requests) == 2
    by_text = {body["messages"][1]["content"]: body for body in server.requests}
    long_turn = next(
        body
        for user, body in by_text.items()
        if user.startswith("SEGMENT") and "always there" in user
    )
    short_turn = next(body for user, body in by_text.items() if "No. Never." in user)
    system = long_turn["messages"][0]["content"]
    for part in (
        "- id: trust",
        "Trusting a worker.",
        "include when:",
        "says they trust",
        "exclude when:",
        "a trust fund",
        "examples that apply:",
        "I trust her",
        "examples that do not apply:",
        "We had chips.",
        "- id: time",
        "Having time.",
    ):
        assert part in system
    assert long_turn["messages"][1]["content"] == (
        "SEGMENT (speaker: Ann):\nI trust her with my time, she was always there for me in the end."
    )
    assert "CONTEXT, the turn before" not in long_turn["messages"][1]["content"]
    assert short_turn["messages"][1]["content"].startswith(
        "CONTEXT, the turn before (speaker: Ann; do not code or quote "
        "it):\nI trust her with my time"
    )
    assert (
        long_turn["temperature"] == 0
        and long_turn["seed"] == 0
        and long_turn["model"] == "fake-model"
    )
    schema = long_turn["response_format"]["json_schema"]["schema"]
    assert long_turn["response_format"]["type"] == "json_schema" and schema["required"] == [
        "trust",
        "time",
    ]
    assert (
        answers[found[0].segment_id].codes["trust"].applies
        and answers[found[0].segment_id].codes["time"].applies
    )
    assert not answers[found[1].segment_id].codes["trust"].applies
    assert asking.as_record()["llm prompt template"].startswith(TEMPLATE_VERSION + " sha256:")


def test_the_cache_makes_a_second_run_send_nothing_and_answer_the_same(server, tmp_path):
    found = segments("I trust her.", "She had time.", "Nothing at all here.")
    first = coder(server, tmp_path).judge(with_context(found, found), TINY)
    assert len(server.requests) == 3
    again = coder(server, tmp_path)
    second = again.judge(with_context(found, found), TINY)
    assert len(server.requests) == 3, "nothing is sent twice"
    assert second == first
    assert again.as_record()["llm answers"].startswith(
        "3 segments: 0 asked in this run, 3 from the answer cache"
    )
    changed = Codebook(
        "Tiny", "1", (TINY.codes[0], Code("time", "Time", "Having time for someone."))
    )
    coder(server, tmp_path).judge(with_context(found, found), changed)
    assert len(server.requests) == 6, "another codebook text is another question"


def test_busy_and_slow_servers_are_retried(server, tmp_path):
    server.actions = ["429", "500", "slow"]
    server.slow_seconds = 1.0
    found = segments("I trust her.")
    asking = coder(server, tmp_path, timeout=0.4, concurrency=1, retries=3)
    answers = asking.judge(with_context(found, found), TINY)
    assert answers[found[0].segment_id].codes["trust"].applies
    assert len(server.requests) == 4 and asking.tally.retries == 3
    assert "3 retries" in asking.as_record()["llm tokens in this run"]


def test_a_server_that_keeps_failing_stops_the_run_with_one_line(server, tmp_path):
    server.actions = ["500"] * 3
    found = segments("I trust her.")
    with pytest.raises(LlmUnavailableError) as raised:
        coder(server, tmp_path, retries=2, concurrency=1).judge(with_context(found, found), TINY)
    message = str(raised.value)
    assert message.startswith(
        f"{server.url}: HTTP 500: the model crashed, 3 tries; 0 of 1 new answers are in the cache"
    )
    assert "\n" not in message and len(server.requests) == 3


def test_a_refused_schema_steps_down_to_a_json_object(server, tmp_path):
    server.reject_json_schema = True
    found = segments("I trust her.", "Time enough.")
    asking = coder(server, tmp_path, concurrency=1)
    answers = asking.judge(with_context(found, found), TINY)
    assert answers[found[0].segment_id].codes["trust"].applies
    assert [body.get("response_format", {}).get("type") for body in server.requests] == [
        "json_schema",
        "json_object",
        "json_object",
    ]
    assert asking.as_record()["llm structured output"].startswith(
        "json_object (JSON, schema not enforced); the server refused json_schema"
    )


def test_a_bad_request_in_plain_text_is_an_error(server, tmp_path):
    server.actions = ["400", "400", "400"]
    found = segments("I trust her.")
    with pytest.raises(LlmUnavailableError, match="HTTP 400: context length exceeded"):
        coder(server, tmp_path, concurrency=1).judge(with_context(found, found), TINY)


def test_a_server_killed_mid_run_loses_nothing_and_the_rerun_sends_only_the_rest(tmp_path):
    found = segments(
        *(
            f"Turn {n}: I trust her, and this turn is long enough to stand on its own."
            for n in range(8)
        )
    )
    first = FakeChatServer()
    first.die_after = 3
    try:
        with pytest.raises(
            LlmUnavailableError,
            match="cannot connect .*; 3 of 8 new answers are in the cache; run the same "
            "command again",
        ):
            coder(first, tmp_path, concurrency=1, retries=1).judge(with_context(found, found), TINY)
    finally:
        first.stop()
    assert first.answered == 3
    with ResponseCache(tmp_path / "answers.sqlite") as cache:
        assert len(cache) == 3
    with FakeChatServer(port=first.port) as restarted:
        answers = coder(restarted, tmp_path).judge(with_context(found, found), TINY)
        assert len(restarted.requests) == 5
        assert set(restarted.segments_asked()).isdisjoint(first.segments_asked())
    assert len(answers) == 8 and all(answer.codes["trust"].applies for answer in answers.values())


def test_an_interrupted_run_keeps_what_arrived(server, tmp_path):
    found = segments(
        *(
            f"Turn {n}: I trust her, and this turn is long enough to stand on its own."
            for n in range(6)
        )
    )

    def interrupt(done, total, used, left):
        if done == 2:
            raise KeyboardInterrupt

    asking = coder(server, tmp_path, concurrency=1)
    asking.progress = interrupt
    with pytest.raises(KeyboardInterrupt):
        asking.judge(with_context(found, found), TINY)
    asking.cache.close()
    rest = coder(server, tmp_path)
    rest.judge(with_context(found, found), TINY)
    assert (rest.tally.cached, rest.tally.sent) == (2, 4), (
        "the two answers that arrived are not asked for again"
    )
    assert len(server.requests) <= 7, (
        "the interrupted run sent at most the one in flight besides its two answers"
    )


def test_a_killed_run_keeps_its_answers_and_the_rerun_sends_only_the_rest(server, project):
    import os
    import subprocess
    import time

    server.delay = 0.3
    cache = project / "cache" / "llm-answers.sqlite"
    command = [
        sys.executable,
        "-m",
        "qualcode",
        "code",
        str(project / "in"),
        "--codebook",
        str(project / "book.yaml"),
        "-o",
        str(project / "coded.xlsx"),
        "--llm",
        "fake-model",
        "--llm-url",
        server.url,
        "--llm-concurrency",
        "1",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ)
    )
    try:
        deadline = time.monotonic() + 60
        kept = 0
        while kept < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
            try:
                with sqlite3.connect(cache) as db:
                    kept = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
            except sqlite3.Error:
                continue
    finally:
        process.kill()
        process.wait(timeout=30)
    assert 2 <= kept < 5, "killed half-way"
    with sqlite3.connect(cache) as db:
        kept = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    server.delay = 0
    result = run(
        "code",
        project / "in",
        "--codebook",
        project / "book.yaml",
        "-o",
        project / "coded.xlsx",
        "--llm",
        "fake-model",
        "--llm-url",
        server.url,
    )
    assert result.exit_code == 0, result.output
    # Only what was not answered before the kill is asked for.
    assert _run_sheet(project / "coded.xlsx")["option llm answers"].startswith(
        f"5 segments: {5 - kept} asked in this run, {kept} from the answer cache"
    )


def test_the_progress_reports_an_estimate_of_the_tokens_left(server, tmp_path):
    found = segments(*(f"Turn {n}: I trust her." for n in range(3)))
    reports = []
    asking = coder(server, tmp_path, concurrency=1)
    asking.progress = lambda *values: reports.append(values)
    plan = asking.plan(with_context(found, found), TINY)
    assert (plan.segments, plan.cached, plan.to_send) == (3, 0, 3) and plan.prompt_tokens > 100
    asking.judge(with_context(found, found), TINY)
    assert [report[:2] for report in reports] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert reports[0][3] > reports[1][3] > reports[2][3] > reports[3][3] == 0
    assert reports[-1][2] > 0


# --- combining -----------------------------------------------------------------------------------


def test_the_model_decides_where_it_answers_and_rules_decide_where_it_does_not():
    from qualcode.llm.parse import Answer, CodeAnswer

    found = segments("I trust her.", "Not rushed.", "GARBLED")
    rule = Evidence('phrase "trust"', "trust", 2, 7)
    machine = [
        CodeAssignment(found[0].segment_id, "trust", "rule", "suggested", 0.6, (rule,)),
        CodeAssignment(found[1].segment_id, "time", "rule", "suggested", 0.4, (rule,)),
        CodeAssignment(found[2].segment_id, "trust", "classifier", "suggested", 0.7, ()),
    ]
    answers = {
        found[0].segment_id: Answer(
            {
                "trust": CodeAnswer(True, 0.9, "trust her", (2, 11)),
                "time": CodeAnswer(True, 0.6, "all the time", None),
            }
        ),
        found[1].segment_id: Answer({"time": CodeAnswer(False, 0.8, "", None)}),
        found[2].segment_id: Answer({}, (), "not JSON"),
    }
    merged = {
        (a.segment_id, a.code_id): a
        for a in with_llm(found, machine, answers, ["trust", "time"], "m")
    }
    trust = merged[found[0].segment_id, "trust"]
    assert (trust.source, trust.status, trust.confidence) == ("llm", "suggested", 0.9)
    assert (
        trust.evidence[0] == Evidence("llm m, confidence 0.90", "trust her", 2, 11)
        and trust.evidence[1] == rule
    )
    time = merged[found[0].segment_id, "time"]
    assert (
        time.evidence_text
        == "llm m, confidence 0.60; its quote is not a verbatim span of the segment, so it is not shown"
    )
    vetoed = merged[found[1].segment_id, "time"]
    assert (vetoed.source, vetoed.status) == ("rule", "downgraded")
    assert vetoed.evidence_text.startswith("llm m: does not apply, confidence 0.80; ")
    assert merged[found[2].segment_id, "trust"] == machine[2], (
        "no usable answer: rules and classifier decide"
    )
    assert len(merged) == 4


# --- the command line ----------------------------------------------------------------------------


def _codings(path):
    return pd.read_excel(path, sheet_name="Codings")


def _run_sheet(path):
    sheet = pd.read_excel(path, sheet_name="Run")
    return dict(zip(sheet["field"], sheet["value"]))


def test_code_with_a_model_shows_its_judgement_and_records_the_run(server, project):
    output = project / "coded.xlsx"
    env = {"QUALCODE_LLM_API_KEY": KEY}
    result = run(
        "code",
        project / "in",
        "--codebook",
        project / "book.yaml",
        "-o",
        output,
        "--llm",
        "fake-model",
        "--llm-url",
        server.url,
        "--llm-concurrency",
        "3",
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "by llm" in result.output
    assert len(server.requests) == 5, "every participant turn, none of the interviewer's"
    assert all(
        headers.get("Authorization", headers.get("authorization")) == f"Bearer {KEY}"
        for headers in server.headers
    )
    codings = _codings(output)
    llm = codings[codings["source"] == "llm"]
    assert set(zip(llm["segment_id"].str.split(":").str[0], llm["code"])) == {
        ("ann.txt", "trust"),
        ("ann.txt", "time"),
        ("bob.txt", "trust"),
    }
    first = llm[llm["segment_id"].str.startswith("ann.txt:47")]
    assert first["evidence"].str.startswith('"trust" (llm fake-model, confidence 0.90)').any()
    not_verbatim = llm[llm["text"].str.contains("NOTVERBATIM")]
    assert (
        not_verbatim["evidence"]
        .str.contains("its quote is not a verbatim span of the segment")
        .all()
    )
    downgraded = codings[
        (codings["status"] == "downgraded")
        & codings["evidence"].str.contains("llm fake-model: does not", na=False)
    ]
    assert len(downgraded) >= 1
    garbled = codings[codings["text"].str.contains("GARBLED")]
    assert set(garbled["source"]) == {"rule"} and set(garbled["status"]) == {"suggested"}, (
        "no answer: the rules stand"
    )
    facts = _run_sheet(output)
    assert facts["option llm model"] == "fake-model" and facts["option llm endpoint"] == server.url
    assert facts["option llm temperature"] == 0 and facts["option llm seed"] == 0
    assert facts["option llm prompt template"].startswith("qualcode-coding-prompt.v1 sha256:")
    assert facts["option llm answers"].startswith(
        "5 segments: 5 asked in this run, 0 from the answer cache; 1 repaired, 1 unusable"
    )
    assert facts["option llm api key"] == "given (not recorded)"
    for path in [
        output,
        *(project.glob("**/*.sqlite*")),
        *(
            __import__("pathlib")
            .Path(__import__("os").environ["QUALCODE_CACHE_DIR"])
            .glob("*.sqlite*")
        ),
    ]:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in result.output

    again = project / "again.xlsx"
    result = run(
        "code",
        project / "in",
        "--codebook",
        project / "book.yaml",
        "-o",
        again,
        "--llm",
        "fake-model",
        "--llm-url",
        server.url,
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert len(server.requests) == 5, "the second run is answered from the cache"
    assert _codings(again).equals(codings)
    assert _run_sheet(again)["option llm answers"].startswith(
        "5 segments: 0 asked in this run, 5 from the answer cache"
    )


def test_dry_run_counts_and_sends_nothing(server, project):
    result = run(
        "code",
        project / "in",
        "--codebook",
        project / "book.yaml",
        "-o",
        project / "x.xlsx",
        "--llm",
        "m",
        "--llm-url",
        server.url,
        "--llm-dry-run",
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("--llm-dry-run: 5 segments to code; 0 answered already in ")
    assert (
        f"5 would be sent to m at {server.url} (this machine)" in result.output
        and "Nothing was sent." in result.output
    )
    assert server.requests == [] and not (project / "x.xlsx").exists()
    result = run("code", project / "in", "-o", project / "x.xlsx", "--llm-dry-run")
    assert result.exit_code == 2 and "--llm-dry-run needs a model" in result.output
    result = run("code", project / "in", "-o", project / "x.xlsx", "--llm-url", server.url)
    assert result.exit_code == 2 and "--llm-url needs a model: --llm MODEL" in result.output


def test_the_default_run_sends_nothing_and_needs_no_client(project, monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)  # any attempt to use the client would fail
    output = project / "coded.xlsx"
    result = run("code", project / "in", "--codebook", project / "book.yaml", "-o", output)
    assert result.exit_code == 0, result.output
    assert _run_sheet(output)["option llm"] == "none"
    assert set(_codings(output)["source"]) <= {"rule", "classifier"}
    assert not (project / "cache" / "llm-answers.sqlite").exists()


def test_dry_runs_of_evaluate_and_suggest_send_nothing(server, project):
    gold = project / "gold.csv"
    gold.write_text("segment_id,trust,time\nann.txt:47-88,1,1\n", encoding="utf-8")
    result = run(
        "evaluate",
        project / "in",
        "--codebook",
        project / "book.yaml",
        "--gold",
        gold,
        "--llm",
        "m",
        "--llm-url",
        server.url,
        "--llm-dry-run",
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("--llm-dry-run: 1 segment to code;"), (
        "only the gold's segments are asked about"
    )
    result = run(
        "suggest",
        project / "in",
        "--codebook",
        project / "book.yaml",
        "-o",
        project / "r.xlsx",
        "--llm",
        "m",
        "--llm-url",
        server.url,
        "--llm-dry-run",
    )
    assert result.exit_code == 0, result.output
    assert "5 would be sent to m" in result.output
    assert server.requests == []


def test_without_the_openai_package_it_is_one_line(project, monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)
    result = run(
        "code",
        project / "in",
        "--codebook",
        project / "book.yaml",
        "-o",
        project / "x.xlsx",
        "--llm",
        "m",
    )
    assert result.exit_code == 78
    assert result.output == (
        "Error: --llm needs the openai package, which is not installed; install it with: "
        "pip install 'qualcode[llm]'\n"
    )


def test_an_unreachable_server_is_one_line_with_exit_69(project):
    with FakeChatServer() as gone:
        url = gone.url
    study = project / "study"
    assert run("init", study, "--coder", "Ana", "--codebook", project / "book.yaml").exit_code == 0
    (study / "qualcode.toml").write_text(
        (study / "qualcode.toml").read_text().replace("timeout = 120", "retries = 1")
    )
    result = run(
        "code",
        project / "in",
        "-o",
        project / "x.xlsx",
        "--llm",
        "m",
        "--llm-url",
        url,
        "--llm-concurrency",
        "1",
        "-q",
        "--study",
        study,
    )
    assert result.exit_code == 69
    assert (
        result.output.startswith(f"Error: {url}: cannot connect") and result.output.count("\n") == 1
    )
    assert not (project / "x.xlsx").exists()


def test_a_study_names_its_model_in_qualcode_toml(server, project):
    from pathlib import Path

    study = project / "study"
    assert run("init", study, "--coder", "Ana", "--codebook", project / "book.yaml").exit_code == 0
    config = study / "qualcode.toml"
    assert 'model = ""' in config.read_text()
    config.write_text(
        config.read_text()
        .replace('model = ""', 'model = "fake-model"')
        .replace('url = "http://127.0.0.1:11434/v1"', f'url = "{server.url}"')
    )
    result = run(
        "code",
        project / "in",
        "-o",
        project / "round1.xlsx",
        "--study",
        study,
        "-v",
        env={"QUALCODE_LLM_API_KEY": KEY},
    )
    assert result.exit_code == 0, result.output
    assert len(server.requests) == 5 and (study / "llm-answers.sqlite").is_file()
    for path in [project / "round1.xlsx", *(p for p in Path(study).glob("**/*") if p.is_file())]:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in result.output
    result = run("code", project / "in", "-o", project / "round1.xlsx", "--study", study)
    assert result.exit_code == 0, "a workbook of an --llm run is replaced like any other"
    assert _run_sheet(project / "round1.xlsx")["option llm model"] == "fake-model"
    with sqlite3.connect(study / "qualcode.sqlite") as db:
        sources = {row[0] for row in db.execute("SELECT source FROM assignments")}
    assert "llm" in sources
    # A human decision stays final over the model's judgement.
    workbook = openpyxl.load_workbook(project / "round1.xlsx")
    sheet = workbook["Codings"]
    header = [cell.value for cell in sheet[1]]
    row = next(
        row for row in sheet.iter_rows(min_row=2) if row[header.index("source")].value == "llm"
    )
    rejected = (row[header.index("segment_id")].value, row[header.index("code")].value)
    row[header.index("decision")].value = "reject"
    workbook.save(project / "round1.xlsx")
    result = run("review", "import", project / "round1.xlsx", "--study", study)
    assert result.exit_code == 0, result.output
    result = run("code", project / "in", "-o", project / "round1b.xlsx", "--study", study)
    assert result.exit_code == 0, result.output
    codings = _codings(project / "round1b.xlsx")
    decided = codings[(codings["segment_id"] == rejected[0]) & (codings["code"] == rejected[1])]
    assert list(zip(decided["source"], decided["status"])) == [("human", "rejected")]
    assert len(server.requests) == 5, (
        "the segment's other code is still the model's: answered from the cache"
    )
    result = run(
        "code", project / "in", "-o", project / "round2.xlsx", "--study", study, "--no-llm"
    )
    assert result.exit_code == 0 and len(server.requests) == 5
    assert _run_sheet(project / "round2.xlsx")["option llm"] == "none"
    result = run("suggest", "-n", "5", "-o", project / "review.xlsx", "--study", study)
    assert result.exit_code == 0, result.output
    assert len(server.requests) == 5, (
        "suggest asks the same questions: answered from the study's cache"
    )
    assert "llm" in set(_codings(project / "review.xlsx")["source"])


def test_evaluate_scores_the_model_like_any_other_coder(server, project):
    gold = project / "gold.csv"
    coded = project / "coded.xlsx"
    assert (
        run("code", project / "in", "--codebook", project / "book.yaml", "-o", coded).exit_code == 0
    )
    segments_sheet = pd.read_excel(coded, sheet_name="Segments")
    participants = segments_sheet[segments_sheet["speaker"] != "Interviewer"]
    rows = participants[["segment_id", "document", "start", "end", "text"]].copy()
    # The gold agrees with the fake model's keyword: trust where "trust" is said, time where "time" is.
    rows["trust"] = rows["text"].str.contains("trust", case=False).astype(int)
    rows["time"] = rows["text"].str.contains("time", case=False).astype(int)
    rows.to_csv(gold, index=False)
    report = project / "evaluation.xlsx"
    result = run(
        "evaluate",
        project / "in",
        "--codebook",
        project / "book.yaml",
        "--gold",
        gold,
        "--folds",
        "2",
        "--no-learning-curve",
        "--llm",
        "fake-model",
        "--llm-url",
        server.url,
        "-o",
        report,
    )
    assert result.exit_code == 0, result.output
    assert len(server.requests) == 5
    for method in ("rules", "classifier", "llm", "rules + classifier", "combined"):
        assert f"\n{method}\n" in result.output
    metrics = pd.read_excel(report, sheet_name="Metrics")
    time = metrics[(metrics["method"] == "llm") & (metrics["code"] == "time")].iloc[0]
    assert time["precision"] == 1 and time["recall"] == 1
    trust = metrics[(metrics["method"] == "llm") & (metrics["code"] == "trust")].iloc[0]
    assert trust["precision"] == 1 and trust["recall"] == pytest.approx(2 / 3, abs=0.001), (
        "an unusable answer counts as not coded"
    )
    combined = metrics[(metrics["method"] == "combined") & (metrics["code"] == "(macro)")].iloc[0]
    assert combined["segments"] == 5
    assert "Language model fake-model at " in result.output


def test_suggest_puts_first_the_segments_where_the_model_disagrees():
    import numpy as np

    from qualcode.coding import CodingRun
    from qualcode.models import CodingResult, Corpus
    from qualcode.suggest import rank_for_review

    first, second = Segment("d:1", "d", 0, 5, "first", 0), Segment("d:9", "d", 9, 15, "second", 1)
    result = CodingResult(Corpus(()), (first, second), (), TINY)
    probabilities = np.array([[0.3, 0.1], [0.3, 0.1]])
    plain = rank_for_review(CodingRun(result, (first, second), probabilities, frozenset()))
    assert [s.segment_id for s in plain] == ["d:1", "d:9"], "a tie, broken by segment id"
    ranked = rank_for_review(
        CodingRun(
            result,
            (first, second),
            probabilities,
            frozenset(),
            {("d:9", "trust"): True, ("d:1", "trust"): False},
        )
    )
    assert [s.segment_id for s in ranked] == ["d:9", "d:1"]
    assert "the language model disagrees with the classifier" in ranked[0].reason


def test_only_the_given_key_is_sent_and_no_openai_variable_is_read(server, tmp_path, monkeypatch):
    for name, value in (
        ("OPENAI_API_KEY", "sk-other"),
        ("OPENAI_ORG_ID", "org-x"),
        ("OPENAI_PROJECT_ID", "proj-x"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
    ):
        monkeypatch.setenv(name, value)
    found = segments("I trust her.")
    coder(server, tmp_path).judge(with_context(found, found), TINY)
    LlmCoder(LlmSettings("m", server.url), api_key=KEY).judge(with_context(found, found), TINY)
    sent = [
        {k.lower(): v for k, v in headers.items() if "openai" in k.lower() or "auth" in k.lower()}
        for headers in server.headers
    ]
    assert sent == [{"authorization": "Bearer no-key"}, {"authorization": f"Bearer {KEY}"}]


def test_sending_to_another_machine_is_announced(tmp_path, caplog):
    from types import SimpleNamespace

    class Client:  # stands in for the openai client: this test sends nothing anywhere
        def __init__(self):
            self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))
            self.sent = 0

        def create(self, **request):
            self.sent += 1
            content = '{"trust": {"applies": true, "confidence": 1, "quote": "trust"}}'
            return SimpleNamespace(
                choices=[SimpleNamespace(message=SimpleNamespace(content=content))], usage=None
            )

    client = Client()
    found = segments("I trust her.", "She trusts me.")
    hosted = LlmCoder(LlmSettings("m", "https://llm.example.org/v1"), client=client)
    with caplog.at_level("WARNING", logger="qualcode"):
        answers = hosted.judge(with_context(found, found), TINY)
    assert client.sent == 2 and answers[found[0].segment_id].codes["trust"].span == (2, 7)
    assert (
        "sending 2 segments and the codebook to https://llm.example.org/v1, which is not this machine"
        in caplog.text
    )
