import filecmp
from pathlib import Path

import pytest

from qualcode.codebook import (
    default_codebook_path,
    load_codebook,
    parse_codebook,
    validate_codebook,
)
from qualcode.errors import CodebookError, InputMissingError

REPO = Path(__file__).resolve().parent.parent
GOOD = """\
name: Test book
version: "2"
codes:
  - id: trust
    name: Trust
    color: "#59a14f"
    definition: Trust in the worker.
    include: [honesty]
    examples:
      positive: [She did what she said.]
      negative: [I trust the bus.]
    rules:
      phrases: [be honest with me]
      patterns:
        - name: kept-word
          pattern: [{LEMMA: keep}, {LOWER: her}, {LOWER: word}]
      regex: ['\\bstraight with me\\b']
      exclude: [trust fund]
  - id: distrust
    name: Distrust
    parent: trust
    definition: Suspicion of services.
"""


def test_a_valid_codebook_loads_with_every_field():
    codebook, problems = parse_codebook(GOOD, "test.yaml")
    assert problems == []
    trust = codebook.code("trust")
    assert (codebook.name, codebook.version, codebook.code_ids) == (
        "Test book",
        "2",
        ("trust", "distrust"),
    )
    assert trust.color == "#59A14F"
    assert trust.positive_examples == ("She did what she said.",)
    assert [p.text for p in trust.rules.phrases] == ["be honest with me"]
    assert trust.rules.patterns[0].name == "kept-word"
    assert trust.rules.regex[0].pattern == r"\bstraight with me\b"
    assert trust.rules.phrases[0].line == 13
    assert codebook.code("distrust").parent == "trust"
    assert len(codebook.sha256) == 64


BAD = """\
name: Broken
codes:
  - id: trust
    name: Trust
    definition: Trust.
    colour: red
    rules:
      regex: ['(unclosed']
      patterns:
        - name: bad
          pattern: [{LEMA: keep}]
  - id: trust
    name: Other
    definition: ""
    parent: nowhere
  - id: Bad-Id
    name: Third
    definition: x
    color: blue
"""


def test_every_problem_is_reported_with_its_line():
    codebook, problems = parse_codebook(BAD, "bad.yaml")
    assert codebook is None
    assert (
        problems[0]
        == "line 6: codes[0] (trust).colour: unknown key 'colour' (allowed: id, name, color, parent, definition, include, exclude, examples, rules, threshold, replaces)"
    )
    assert problems[1].startswith(
        "line 8: codes[0] (trust).rules.regex[0]: bad regular expression '(unclosed': missing )"
    )
    assert problems[2].startswith(
        "line 11: codes[0] (trust).rules.patterns[0].pattern: malformed token pattern 'bad':"
    )
    assert "LEMA" in problems[2]
    assert "line 12: codes[1] (trust).id: duplicate id 'trust' (first used on line 3)" in problems
    assert "line 14: codes[1] (trust).definition: must not be empty" in problems
    assert (
        "line 15: codes[1] (trust).parent: parent 'nowhere' is not a code id in this codebook"
        in problems
    )
    assert any(
        p.startswith("line 16: codes[2] (Bad-Id).id: id 'Bad-Id' must be lowercase")
        for p in problems
    )
    assert (
        "line 19: codes[2] (Bad-Id).color: colour 'blue' must be a hex colour like \"#4E79A7\""
        in problems
    )
    assert len(problems) == 8


def test_yaml_syntax_errors_and_structure():
    _, problems = parse_codebook("name: x\ncodes:\n  - id: a\n   name: b\n", "x.yaml")
    assert len(problems) == 1 and problems[0].startswith("line 4: not valid YAML")
    _, problems = parse_codebook("name: x\ncodes: []\n", "x.yaml")
    assert problems == ["line 2: codes: expected a non-empty list of codes"]
    _, problems = parse_codebook(
        "name: x\nname: y\ncodes:\n  - {id: a, name: A, definition: d}\n", "x.yaml"
    )
    assert problems == ["line 2: name: key given twice"]


def test_parent_cycles_are_found():
    text = "name: x\ncodes:\n  - {id: a, name: A, definition: d, parent: b}\n  - {id: b, name: B, definition: d, parent: a}\n"
    _, problems = parse_codebook(text, "x.yaml")
    assert "line 3: codes[0] (a).parent: parent chain of 'a' loops back on itself" in problems


def test_load_raises_one_error_that_counts_the_rest(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    with pytest.raises(CodebookError) as caught:
        load_codebook(path)
    assert str(caught.value).startswith(f"{path}: line 6: codes[0] (trust).colour: unknown key")
    assert str(caught.value).endswith("(and 7 more; run `qualcode codebook validate`)")
    assert validate_codebook(path) == caught.value.problems
    with pytest.raises(InputMissingError, match="no such codebook file"):
        load_codebook(tmp_path / "missing.yaml")


def test_default_codebook_is_valid_and_shipped_identically():
    shipped = default_codebook_path()
    mirror = REPO / "codebooks" / "relationship-themes.yaml"
    assert filecmp.cmp(shipped, mirror, shallow=False), (
        "src/qualcode/data copy differs from codebooks/"
    )
    assert validate_codebook(mirror) == []
    codebook = load_codebook()
    assert codebook.code_ids == (
        "continuity",
        "accessibility",
        "participation",
        "empathy",
        "trust",
        "structural_context",
    )
    for code in codebook.codes:
        assert code.definition and code.color and code.include and code.exclude
        assert len(code.positive_examples) >= 8 and len(code.negative_examples) >= 4
        assert len(code.rules.phrases) >= 15 and code.rules.patterns and code.rules.regex
