import pytest

from qualcode.codebook import parse_codebook
from qualcode.errors import ConfigurationError
from qualcode.models import Segment
from qualcode.rules import compile_rules, word_forms

BOOK = """\
name: Rules test
codes:
  - id: participation
    name: Participation
    definition: Involving people in decisions.
    rules:
      phrases: [involve me, "didn't ask me", family group conference]
      patterns:
        - name: decided-in-meeting
          pattern: [{LEMMA: decide}, {IS_ALPHA: true, OP: "{0,4}"}, {LOWER: meeting}]
      regex: ['\\bwithout (?:me|us)\\b']
      exclude: [involve me in the washing]
  - id: accessibility
    name: Accessibility
    definition: Having time and being reachable.
    rules:
      phrases: [time, ring back]
      exclude: [the time was, last time]
"""


@pytest.fixture(scope="module")
def matcher(nlp):
    codebook, problems = parse_codebook(BOOK, "rules-test.yaml")
    assert problems == []
    return compile_rules(codebook, nlp)


def _codes(matcher, *texts):
    segments = [Segment(f"s{i}", "d", 0, len(text), text, i) for i, text in enumerate(texts)]
    found = {}
    for assignment in matcher.match(segments):
        found.setdefault(assignment.segment_id, {})[assignment.code_id] = [
            e.matched for e in assignment.evidence
        ]
    return [found.get(f"s{i}", {}) for i in range(len(texts))]


def test_word_forms_follow_the_lookup_lemma():
    assert {"involve", "involves", "involved", "involving"} <= word_forms("involve")
    assert {"child", "children"} <= word_forms("children")


def test_phrases_match_every_inflection_and_capitals(matcher):
    assert _codes(
        matcher,
        "They Involved me in everything.",
        "she keeps involving me now",
        "He involves them.",
    ) == [
        {"participation": ["Involved me"]},
        {"participation": ["involving me"]},
        {},
    ]


def test_contractions_match_with_straight_or_curly_apostrophes(matcher):
    assert _codes(matcher, "They didn’t ask me once.", "They DIDN'T ASK ME.") == [
        {"participation": ["didn’t ask me"]},
        {"participation": ["DIDN'T ASK ME"]},
    ]


def test_token_patterns_and_regexes_give_their_own_evidence(matcher):
    (found,) = _codes(matcher, "They decided it all in a meeting, without me.")
    assert found == {"participation": ["decided it all in a meeting", "without me"]}


def test_an_exclusion_vetoes_only_matches_it_overlaps(matcher):
    assert _codes(matcher, "She likes to involve me in the washing up.") == [{}]
    assert _codes(
        matcher, "The time was 3pm.", "Last time she came late, but she made time for us."
    ) == [
        {},
        {"accessibility": ["time"]},
    ]


def test_a_segment_can_carry_several_codes_with_evidence_per_code(matcher):
    (found,) = _codes(matcher, "She always made time to involve me in the family group conference.")
    assert found == {
        "participation": ["involve me", "family group conference"],
        "accessibility": ["time"],
    }


def test_evidence_offsets_point_into_the_document(matcher):
    text = "Intro. They involved me."
    segment = Segment("s", "d", 100, 100 + len(text), text, 0)
    (assignment,) = list(matcher.match([segment]))
    (evidence,) = assignment.evidence
    assert (evidence.start_char, evidence.end_char, evidence.rule) == (
        112,
        123,
        'phrase "involve me"',
    )
    assert (
        assignment.source == "rule"
        and assignment.status == "suggested"
        and assignment.confidence is None
    )


def test_patterns_needing_a_tagger_are_refused_on_the_blank_pipeline(nlp):
    text = "name: x\ncodes:\n  - id: a\n    name: A\n    definition: d\n    rules:\n      patterns:\n        - name: verb\n          pattern: [{POS: VERB}]\n"
    codebook, problems = parse_codebook(text, "pos.yaml")
    assert problems == []
    with pytest.raises(
        ConfigurationError,
        match=r"pattern 'verb' uses POS, which needs a trained spaCy pipeline with a tagger",
    ):
        compile_rules(codebook, nlp)


@pytest.mark.parametrize(
    "pattern,literals",
    [
        (r"\bsocial\s+worker\b", {"social worker"}),
        (r"\b(?:never|not)\s+(?:rang)", {"never", "not"}),
        (r"abc|def", {"abc", "def"}),
        (r"\b(?:heat(?:ing)?|eat)", {"heat", "eat"}),
        (r"\bworkers?\b", None),  # the word may be cut short
        (r"\b(?:a\s+)?meeting", None),  # an optional start requires nothing
        (r"(?:ab|cd)e|x", None),  # one alternative starts with a single letter
        (r"\d+ kids", None),
    ],
)
def test_regexes_are_gated_only_by_words_every_match_contains(pattern, literals):
    from qualcode.rules import regex_literals

    assert regex_literals(pattern) == (frozenset(literals) if literals else None)


def test_gating_never_changes_what_a_regex_finds(matcher):
    import re

    from qualcode.rules import regex_literals

    texts = [
        "They never  rang back.",
        "NEVER\nRANG",
        "she said she'd never ring",
        "heating or eating",
        "no",
    ]
    for pattern in (
        r"\bnever\s+rang\b",
        r"\b(?:heat(?:ing)?|eat(?:ing)?)\s+or\s+(?:heat(?:ing)?|eat(?:ing)?)\b",
    ):
        literals = regex_literals(pattern)
        for text in texts:
            lowered = " ".join(text.lower().split())
            gated_open = any(literal in lowered for literal in literals)
            assert gated_open or not re.search(pattern, text, re.IGNORECASE)


@pytest.mark.parametrize(
    "pattern,gates",
    [
        (
            r"\bnever\s+(?:rang|called)\s+(?:me\s+)?back\b",
            [{"never"}, {"rang", "called"}, {"back"}],
        ),
        (r"\b(?:had|seen)\s+(?:\d+|two)\s+workers\b", [{"had", "seen"}, {"workers"}]),
        (r"\bworkers?\b", [{"worker"}]),
        (r"\b(?:a\s+)?meeting", [{"meeting"}]),
        (r"x{2}yz", []),  # a repeated letter is not a plain word
        (r"(?x) a b", []),  # inline flags: nothing is assumed
        (r"(?i:trust)", []),
    ],
)
def test_every_gate_holds_for_every_match(pattern, gates):
    from qualcode.rules import regex_gates

    assert [set(gate) for gate in regex_gates(pattern)] == gates


def test_gated_regexes_find_what_ungated_ones_find_on_the_sample(nlp):
    from conftest import SAMPLE
    from qualcode.codebook import load_codebook
    from qualcode.ingest import read_documents
    from qualcode.segment import segment_documents

    matcher = compile_rules(load_codebook(), nlp)
    segments = segment_documents(read_documents([SAMPLE]).documents)
    gated = list(matcher.match(segments))
    matcher._regexes = [(pattern, ref, ()) for pattern, ref, _ in matcher._regexes]
    ungated = list(matcher.match(segments))
    assert gated == ungated and any("regex" in e.rule for a in gated for e in a.evidence)


def _gates_open_brute_force(gates_per_rule, text):
    lowered = " ".join(text.lower().split())
    return [
        index
        for index, gates in enumerate(gates_per_rule)
        if all(any(literal in lowered for literal in gate) for gate in gates)
    ]


LITERAL_GATE_RULES = [
    (frozenset({"he"}),),  # inside "the", "she", "where"...
    (frozenset({"social worker"}), frozenset({"never"})),  # a phrase across any whitespace
    (frozenset({"been through", "gone through"}),),  # its longest word is in "throughout" too
    (frozenset({"café"}), frozenset({"wasn"})),  # not ASCII; inside "wasn't"
    (),  # no gates: always tried
    (frozenset(),),  # an empty gate: never tried
    (frozenset({"Upper"}),),  # the text is lower-cased, so never met
    (frozenset({" x"}),),  # a space before: a word must precede it
    (frozenset({"ab", "abc", "b"}), frozenset({"c"})),  # overlapping literals
]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "The social\n\tWorker never came",
        "social workers? NEVER",
        "socialworker never",
        "We have been throughout it",
        "been\nthrough",
        "gone thru",
        "CAFÉ but she wasn't there",
        "café",
        "upper",
        "a x",
        "x",
        "abc",
        "cab",
        "b c",
        "sh e",
    ],
)
def test_literal_gates_open_exactly_the_rules_a_plain_substring_test_opens(text):
    from qualcode.rules import LiteralGates

    gates = LiteralGates(LITERAL_GATE_RULES)
    assert gates.open_rules(text) == _gates_open_brute_force(LITERAL_GATE_RULES, text)
    assert gates.open_rules(text) == _gates_open_brute_force(
        LITERAL_GATE_RULES, text
    )  # from remembered words


def test_literal_gates_agree_with_a_plain_substring_test_on_random_texts():
    import random

    from qualcode.rules import LiteralGates

    rng = random.Random(7)
    pieces = ["a", "b", "ab", "ba", "c", " ", "  ", "\n", "A", "B", "é", "'"]
    for _ in range(50):
        literals = ["".join(rng.choice("abc") for _ in range(rng.randint(1, 3))) for _ in range(6)]
        literals += ["a b", "b a", "ab c", "é"]
        rules = [
            tuple(
                frozenset(rng.sample(literals, rng.randint(1, 3))) for _ in range(rng.randint(0, 3))
            )
            for _ in range(8)
        ]
        gates = LiteralGates(rules)
        for _ in range(40):
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
            assert gates.open_rules(text) == _gates_open_brute_force(rules, text), (rules, text)


@pytest.mark.parametrize(
    "pattern,gates",
    [
        # Alternatives that do not all start with plain words pool each one's most selective gate.
        (
            r"\b(?:tears in (?:her|his|their) eyes|(?:she|he) (?:welled up|teared up|cried too|cried with (?:me|us)))\b",
            [{"tears in", "welled up", "teared up", "cried too", "cried with"}],
        ),
        (r"(?:she|he) welled up|tears", [{"she", "he", "tears"}, {"welled up", "tears"}]),
        (r"\b(?:weeks?|months?|time)\b", [{"week", "month", "time"}]),
        (r"\b(?:weeks?|\d+)\b", []),  # a number has no word to look for
    ],
)
def test_alternatives_are_gated_by_a_word_of_each(pattern, gates):
    import re

    from qualcode.rules import regex_gates

    assert [set(gate) for gate in regex_gates(pattern)] == gates
    for text in ("She welled up.", "TEARS IN HIS EYES", "for weeks", "a long time", "he cried"):
        lowered = " ".join(text.lower().split())
        if re.search(pattern, text, re.IGNORECASE):
            assert all(any(literal in lowered for literal in gate) for gate in gates)


@pytest.mark.parametrize(
    "pattern,longest",
    [
        ([{"LOWER": "a"}, {"OP": "?"}, {"IS_ALPHA": True, "OP": "{0,4}"}, {"OP": "!"}], 7),
        ([{"LOWER": "a"}, {"OP": "{3}"}, {"OP": "{,2}"}], 6),
        ([{"LOWER": "a"}, {"OP": "+"}], None),
        ([{"LOWER": "a"}, {"OP": "{2,}"}], None),
        ([{"LOWER": "a"}, {"op": "*"}], None),  # spaCy reads keys in any case
    ],
)
def test_longest_match_bounds_every_match(pattern, longest):
    from qualcode.rules import longest_match

    assert longest_match(pattern) == longest


def _gated_docs(nlp, columns):
    """Docs of one-letter words: a token is "a" where it meets the first gate, "b" the second, "c" both."""
    from spacy.tokens import Doc

    words = {1: "a", 2: "b", 3: "c"}
    return [Doc(nlp.vocab, words=[words.get(value, "x") for value in column]) for column in columns]


def _two_gates(nlp, most):
    from spacy.attrs import LOWER

    from qualcode.rules import PatternGates

    strings = nlp.vocab.strings
    return PatternGates(
        [
            (
                [
                    (LOWER, frozenset({strings.add("a"), strings.add("c")})),
                    (LOWER, frozenset({strings.add("b"), strings.add("c")})),
                ],
                most,
            )
        ]
    )


@pytest.mark.parametrize(
    "first,second,most,expected",
    [
        ([1], [2], 2, True),
        ([2], [1], None, False),  # out of order
        ([0], [5], 3, False),  # too far apart
        ([0, 4], [5], 3, True),  # the later first token is close enough
        ([0], [0], None, False),  # one token cannot stand for two
        (
            [0, 3],
            [3, 6],
            4,
            True,
        ),  # a token meeting both gates serves as the second after an earlier first
    ],
)
def test_pattern_gates_open_a_pattern_for_ordered_tokens_close_together(
    nlp, first, second, most, expected
):
    column = [0] * 8
    for position in first:
        column[position] = 1
    for position in second:
        column[position] = 2 if column[position] == 0 else 3
    assert _two_gates(nlp, most).open_patterns(_gated_docs(nlp, [column])) == [
        [0] if expected else []
    ]


def test_pattern_gates_never_pair_tokens_of_different_docs_in_a_batch(nlp):
    columns = [[0, 0, 1], [2, 0, 0], [0, 1, 2], [], [1, 0, 0, 0, 2]]
    gates = _two_gates(nlp, None)
    assert gates.open_patterns(_gated_docs(nlp, columns)) == [[], [], [0], [], [0]]
    assert _two_gates(nlp, 4).open_patterns(_gated_docs(nlp, columns)) == [[], [], [0], [], []]


def test_pattern_gates_keep_closed_a_pattern_whose_gate_no_word_meets(nlp):
    from spacy.attrs import LOWER, NORM

    from qualcode.rules import PatternGates

    gates = PatternGates(
        [([(NORM, frozenset())], None), ([(LOWER, frozenset({nlp.vocab.strings.add("a")}))], None)]
    )
    assert gates.open_patterns(_gated_docs(nlp, [[1], [0]])) == [[1], []]


def test_pattern_gates_read_keys_in_any_case_as_spacy_does(nlp):
    text = (
        "name: x\ncodes:\n  - id: a\n    name: A\n    definition: d\n    rules:\n      patterns:\n"
        "        - name: held\n          pattern: [{LOWER: meeting, op: '?'}, {LOWER: held}]\n"
    )
    codebook, problems = parse_codebook(text, "case.yaml")
    assert problems == []
    assert _codes(compile_rules(codebook, nlp), "It was held.") == [{"a": ["held"]}]


def test_gated_patterns_find_what_ungated_ones_find_on_the_sample(nlp):
    from conftest import SAMPLE
    from qualcode.codebook import load_codebook
    from qualcode.ingest import read_documents
    from qualcode.rules import PatternGates
    from qualcode.segment import segment_documents

    matcher = compile_rules(load_codebook(), nlp)
    segments = segment_documents(read_documents([SAMPLE]).documents)
    gated = list(matcher.match(segments))
    matcher._pattern_gates = PatternGates([((), None)] * len(matcher._gated_patterns))
    ungated = list(matcher.match(segments))
    assert gated == ungated and any("pattern" in e.rule for a in gated for e in a.evidence)


def test_literal_gates_let_through_the_letters_ignorecase_takes_for_i_and_s():
    import re

    from qualcode.rules import LiteralGates

    gates = LiteralGates([(frozenset({"this"}),), (frozenset({"social"}),)])
    for text, pattern in (("THİS", "this"), ("thıs", "this"), ("ſocial", "social")):
        assert re.search(pattern, text, re.IGNORECASE)
        assert gates.open_rules(text) == [0 if pattern == "this" else 1]


@pytest.fixture(scope="module")
def default_matcher(nlp):
    from qualcode.codebook import load_codebook

    return compile_rules(load_codebook(), nlp)


# Invented sentences of the shapes that the 1.2 rules were changed for (issue 15): workforce talk
# belongs to structural context unless someone's worker changes; other senses of a theme's words
# stay uncoded.
@pytest.mark.parametrize(
    "text, codes",
    [
        (
            "We had a locum for three months, then she was gone.",
            {"continuity", "structural_context"},
        ),
        ("Spending on agency staff went up again this year.", {"structural_context"}),
        ("The council says high caseloads are down to recruitment.", {"structural_context"}),
        ("There were frequent changes of social worker, and nobody said why.", {"continuity"}),
        ("I got transferred to another caseworker after a month.", {"continuity"}),
        ("The first thing on the course was care planning and home visits.", set()),
        ("She is an advocate for young carers in the town.", set()),
        ("To be honest with you, the bus was late again.", set()),
        ("I was looked after like a child should be.", set()),
        ("She came to see me once a week without fail.", {"accessibility"}),
        ("I see my dad once a month at the contact centre.", set()),
        ("Nobody asked about my wishes and they were never recorded.", {"participation"}),
        ("Parents said they felt harshly judged by the team.", {"empathy"}),
        ("I was scared they would take the kids off me.", {"trust"}),
    ],
)
def test_default_rules_code_the_shapes_real_writing_takes(default_matcher, text, codes):
    assert set(_codes(default_matcher, text)[0]) == codes


def test_veto_spans_answer_overlap_as_a_scan_of_every_span_would():
    import random

    from qualcode.rules.matching import _Spans

    rng = random.Random(3)
    for _ in range(200):
        spans = [
            (start, start + rng.randint(1, 9))
            for start in (rng.randint(0, 60) for _ in range(rng.randint(0, 6)))
        ]
        checker = _Spans(spans)
        for _ in range(20):
            start = rng.randint(0, 70)
            end = start + rng.randint(1, 9)
            assert checker.overlaps(start, end) == any(start < e and s < end for s, e in spans)


def test_a_phrase_said_thousands_of_times_keeps_a_capped_evidence_list(nlp):
    from qualcode.codebook import load_codebook
    from qualcode.models import Segment
    from qualcode.rules import MAX_EVIDENCE, compile_rules

    text = "She listened to me. " * 3_000
    segment = Segment("d:0-1", "d", 0, len(text), text, 0)
    assignments = list(compile_rules(load_codebook(), nlp).match([segment]))
    assert assignments and all(
        len(assignment.evidence) <= MAX_EVIDENCE for assignment in assignments
    )
    assert any(len(assignment.evidence) == MAX_EVIDENCE for assignment in assignments)


def test_a_long_regex_is_named_by_its_codebook_line_and_a_short_one_whole(nlp):
    long_pattern = (
        r"\b(?:changes?|turnover)\s+(?:of|in)\s+(?:(?:their|my|our)\s+)?(?:social\s+)?workers?\b"
    )
    book = f"""\
name: Regex labels
codes:
  - id: continuity
    name: Continuity
    definition: The same worker over time.
    rules:
      regex:
        - '\\bsame worker\\b'
        - '{long_pattern}'
"""
    codebook, problems = parse_codebook(book, "labels.yaml")
    assert problems == []
    matcher = compile_rules(codebook, nlp)
    text = "Another change of social worker, and never the same worker twice."
    (assignment,) = matcher.match([Segment("s0", "d", 0, len(text), text, 0)])
    rules = {evidence.matched: evidence.rule for evidence in assignment.evidence}
    assert rules == {
        "change of social worker": "regex, codebook line 9",  # the line of the long pattern
        "same worker": r"regex /\bsame worker\b/",
    }
