from qualcode.turns import is_interviewer, looks_like_transcript, normalise_timestamp, parse_turns

TRANSCRIPT = """Interview 3 - parent, North site

[00:00:05] Interviewer: Thanks for coming. Can you tell me
about your social worker?

[00:00:12] P03: She's been with us since the start.
She said: you won't be on your own.

That stuck with me.
00:01:02 Young person (Kai): I'm here too.
INT2: Thank you both.
"""


def _texts(text):
    return [
        (turn.speaker, turn.timestamp, text[turn.start : turn.end]) for turn in parse_turns(text)
    ]


def test_turns_keep_labels_timestamps_and_multiline_speech():
    assert _texts(TRANSCRIPT) == [
        (None, None, "Interview 3 - parent, North site"),
        (
            "Interviewer",
            "00:00:05",
            "Thanks for coming. Can you tell me\nabout your social worker?",
        ),
        (
            "P03",
            "00:00:12",
            "She's been with us since the start.\nShe said: you won't be on your own.\n\nThat stuck with me.",
        ),
        ("Young person (Kai)", "00:01:02", "I'm here too."),
        ("INT2", None, "Thank you both."),
    ]


def test_a_timestamp_without_a_label_starts_an_unnamed_turn():
    text = "[00:00:01] hello there\n[00:00:04] Mum: hi\n"
    assert _texts(text) == [(None, "00:00:01", "hello there"), ("Mum", "00:00:04", "hi")]


def test_interviewer_labels_ignore_case_and_numbers():
    assert is_interviewer("Interviewer")
    assert is_interviewer("INT2")
    assert is_interviewer("Interviewer 1")
    assert is_interviewer("q")
    assert not is_interviewer("P03")
    assert not is_interviewer("Interpreter")
    assert not is_interviewer(None)
    assert is_interviewer("SW", frozenset({"sw"}))


def test_timestamps_are_normalised_to_hours_minutes_seconds():
    assert normalise_timestamp("[0:12:31.500]") == "00:12:31"
    assert normalise_timestamp("12:31") == "00:12:31"
    assert normalise_timestamp("(01:02:03,250)") == "01:02:03"


def test_transcript_detection():
    assert looks_like_transcript(TRANSCRIPT)
    essay = "Note: this is a reflection.\n\nI met the family twice.\n\nSummary: it went well.\n\nNext steps are planned."
    assert not looks_like_transcript(essay)
    assert not looks_like_transcript("Just one paragraph of prose with a colon: here.")
