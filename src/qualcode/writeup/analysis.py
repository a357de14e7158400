"""The four write-up tables, computed from a ``CodedData``: codebook, theme by group, co-occurrence, quote bank.

Who is a participant. A document's id attribute (``respondent``, which qualcode gives every
survey answer, or ``participant`` / ``participant_id`` / ``respondent_id``) names its
participant, so several documents of one person count once. Otherwise each speaker of a
transcript other than the interviewer is a participant (a focus group has several), and a
document without speakers (an essay, a note) is its author's. Unlabelled lines of a transcript
(a header) belong to its one participant when it has one, else to nobody: their codings count
as passages and for the document, not for a participant.

Percentages are of what is eligible for coding: interviewer turns are left out unless the run
coded them.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from qualcode.errors import OptionValueError
from qualcode.models import Code, Segment
from qualcode.writeup.source import CodedData, Coding

ID_ATTRIBUTES = ("respondent", "participant", "participant_id", "respondent_id")
NOT_RECORDED = "(not recorded)"
QUOTE_CHARACTERS = 240
DEFINITION_CHARACTERS = 160
# Cochran's rule for a chi-square test: every expected count at least 1, at most a fifth below 5.
_MIN_EXPECTED, _SMALL_EXPECTED, _SMALL_SHARE = 1.0, 5.0, 0.2
EXEMPLAR_RULE = (
    "Exemplar: a passage a human accepted or added first, then the suggestion qualcode was most confident "
    "of (earliest in document order among equals), one per participant; trimmed to whole sentences "
    f"of at most {QUOTE_CHARACTERS} characters around the words that triggered the code."
)


@dataclass(frozen=True)
class WriteupTable:
    """A table for print: a title, a caption (which always states what was counted), a header, rows and notes.

    ``kinds`` says per column how to show it: "text" (wraps), "wide" (long text), "int", "pct" (one
    decimal), "p" (a p-value) or "num".
    """

    key: str
    title: str
    caption: str
    header: tuple[str, ...]
    rows: list[tuple]
    kinds: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Participant:
    key: tuple
    label: str


@dataclass
class Analysis:
    """Everything the tables and the report count, worked out once."""

    data: CodedData
    by: str
    codes: tuple[Code, ...]
    eligible: list[Segment]
    participant_of: dict[str, Participant | None]  # segment id -> participant
    group_of_participant: dict[tuple, str]
    group_of_segment: dict[str, str]
    groups: list[str]
    coded: dict[str, list[str]]  # segment id -> code ids counted (codebook order)
    best: dict[tuple[str, str], Coding]  # (segment id, code id) -> the counted coding
    documents_total: int
    participants_total: int
    doc_position: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # segment id -> (k, n) in its document
    _passages: dict[str, list[Segment]] = field(default_factory=dict)

    # -- counts per code --------------------------------------------------------------------------
    def passages(self, code_id: str) -> list[Segment]:
        """The eligible segments counted as coded with ``code_id``, in document order."""
        if not self._passages:
            for segment in self.eligible:
                for coded in self.coded.get(segment.segment_id, ()):
                    self._passages.setdefault(coded, []).append(segment)
        return self._passages.get(code_id, [])

    def participants_with(self, code_id: str) -> set[tuple]:
        return {
            p.key for s in self.passages(code_id) if (p := self.participant_of.get(s.segment_id))
        }

    def documents_with(self, code_id: str) -> set[str]:
        return {s.doc_id for s in self.passages(code_id)}


def grouping_choices(data: CodedData) -> list[str]:
    names: dict[str, None] = {}
    for document in data.documents:
        names.update(dict.fromkeys(document.attributes))
    return [*names, "speaker", "folder"]


def folder_of(doc_id: str) -> str:
    return posixpath.dirname(doc_id.split("#", 1)[0]) or "(top folder)"


def analyse(data: CodedData, *, by: str = "folder") -> Analysis:
    choices = grouping_choices(data)
    if by not in choices:
        raise OptionValueError(
            f"--by {by}: no document has that attribute; choose one of {', '.join(choices)}"
        )
    documents = {document.doc_id: document for document in data.documents}
    codes = data.codebook.codes
    order = {code.code_id: index for index, code in enumerate(codes)}
    eligible = [s for s in data.segments if data.eligible(s)]
    # Participants.
    speakers_in: dict[str, set[str]] = defaultdict(set)
    for segment in eligible:
        if segment.speaker and not segment.is_interviewer:
            speakers_in[segment.doc_id].add(segment.speaker)
    docs_of_speaker: dict[str, set[str]] = defaultdict(set)
    for doc_id, speakers in speakers_in.items():
        for speaker in speakers:
            docs_of_speaker[speaker].add(doc_id)
    stems = Counter(_stem(doc_id) for doc_id in documents)

    def participant(segment: Segment) -> Participant | None:
        attributes = documents[segment.doc_id].attributes if segment.doc_id in documents else {}
        for name in ID_ATTRIBUTES:
            if attributes.get(name):
                return Participant(("id", attributes[name]), attributes[name])
        if segment.is_interviewer:
            return None
        speaker = segment.speaker
        if not speaker:
            speakers = speakers_in.get(segment.doc_id)
            if not speakers:
                stem = _stem(segment.doc_id)
                return Participant(
                    ("document", segment.doc_id), stem if stems[stem] == 1 else segment.doc_id
                )
            if len(speakers) != 1:
                return None
            speaker = next(iter(speakers))
        label = (
            speaker
            if len(docs_of_speaker[speaker]) == 1
            else f"{speaker} ({_stem(segment.doc_id)})"
        )
        return Participant(("speaker", segment.doc_id, speaker), label)

    participant_of = {s.segment_id: participant(s) for s in data.segments}

    def group(segment: Segment, who: Participant | None) -> str:
        if by == "folder":
            return folder_of(segment.doc_id)
        if by == "speaker":
            if who is not None and who.key[0] == "speaker":
                return who.key[2]
            return segment.speaker or "(no speaker)"
        document = documents.get(segment.doc_id)
        return (document.attributes.get(by) if document else None) or NOT_RECORDED

    group_of_segment: dict[str, str] = {}
    group_of_participant: dict[tuple, str] = {}
    for segment in eligible:
        who = participant_of[segment.segment_id]
        value = group(segment, who)
        group_of_segment[segment.segment_id] = value
        if who is not None:
            group_of_participant.setdefault(who.key, value)
    seen_groups = list(dict.fromkeys(group_of_segment[s.segment_id] for s in eligible))
    groups = sorted((g for g in seen_groups if g != NOT_RECORDED), key=_natural) + (
        [NOT_RECORDED] if NOT_RECORDED in seen_groups else []
    )

    eligible_ids = {s.segment_id for s in eligible}
    coded: dict[str, list[str]] = defaultdict(list)
    best: dict[tuple[str, str], Coding] = {}
    for coding in data.counted:
        if coding.code_id not in order or coding.segment_id not in eligible_ids:
            continue
        key = (coding.segment_id, coding.code_id)
        if key not in best:
            coded[coding.segment_id].append(coding.code_id)
            best[key] = coding
        elif coding.source == "human":
            best[key] = coding
    for code_ids in coded.values():
        code_ids.sort(key=order.__getitem__)
    doc_position: dict[str, tuple[int, int]] = {}
    per_document: dict[str, list[Segment]] = defaultdict(list)
    for segment in data.segments:
        per_document[segment.doc_id].append(segment)
    for segments in per_document.values():
        for index, segment in enumerate(segments, 1):
            doc_position[segment.segment_id] = (index, len(segments))
    participants_total = len({p.key for s in eligible if (p := participant_of[s.segment_id])})
    return Analysis(
        data,
        by,
        codes,
        eligible,
        participant_of,
        group_of_participant,
        group_of_segment,
        groups,
        dict(coded),
        best,
        len({s.doc_id for s in eligible}),
        participants_total,
        doc_position,
    )


def _stem(doc_id: str) -> str:
    name = posixpath.basename(doc_id.split("#", 1)[0])
    return name.rsplit(".", 1)[0] if "." in name else name


def _natural(text: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def code_label(code: Code) -> str:
    return code.name if code.name == code.code_id else f"{code.name} ({code.code_id})"


# -- quotes ---------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_EVIDENCE_WORDS = re.compile(r'"([^"]+)"')


def short_definition(definition: str) -> str:
    text = " ".join(definition.split())
    first = _SENTENCE_END.split(text, maxsplit=1)[0]
    if len(first) <= DEFINITION_CHARACTERS:
        return first
    return text[:DEFINITION_CHARACTERS].rsplit(" ", 1)[0] + " …"


def trim_quote(text: str, evidence: str = "", limit: int = QUOTE_CHARACTERS) -> str:
    """Whole sentences, at most ``limit`` characters, starting at the one holding the evidence words; … marks a cut."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(flat):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(flat)))
    lowered = flat.lower()
    first = 0
    for words in _EVIDENCE_WORDS.findall(evidence or ""):
        at = lowered.find(words.lower())
        if at >= 0:
            first = next(
                index for index, (a, b) in enumerate(spans) if at < b + 1 or index == len(spans) - 1
            )
            break
    chosen_start, chosen_end = spans[first]
    if chosen_end - chosen_start > limit:
        piece = flat[chosen_start : chosen_start + limit].rsplit(" ", 1)[0].rstrip(",;:") + " …"
    else:
        for _, b in spans[first + 1 :]:
            if b - chosen_start > limit:
                break
            chosen_end = b
        while first > 0 and chosen_end - spans[first - 1][0] <= limit:
            first -= 1
            chosen_start = spans[first][0]
        piece = flat[chosen_start:chosen_end] + (" …" if chosen_end < len(flat) else "")
    return ("… " if chosen_start > 0 else "") + piece


def exemplars(
    analysis: Analysis, code_id: str, count: int = 1
) -> list[tuple[Segment, Coding, Participant | None]]:
    """The stated rule (``EXEMPLAR_RULE``): human first, then most confident; one per participant."""
    candidates = []
    for segment in analysis.passages(code_id):
        coding = analysis.best[(segment.segment_id, code_id)]
        human = coding.source == "human" and coding.status == "accepted"
        candidates.append(
            (0 if human else 1, -(coding.confidence or 0.0), segment.index, segment, coding)
        )
    candidates.sort(key=lambda item: item[:3])
    chosen, who_seen = [], set()
    for *_, segment, coding in candidates:
        who = analysis.participant_of.get(segment.segment_id)
        key = who.key if who else ("document", segment.doc_id)
        if key in who_seen:
            continue
        who_seen.add(key)
        chosen.append((segment, coding, who))
        if len(chosen) >= count:
            break
    return chosen


def quote_text(segment: Segment, coding: Coding, who: Participant | None) -> str:
    return f"“{trim_quote(segment.text, coding.evidence)}” ({who.label if who else _stem(segment.doc_id)})"


# -- the tables -----------------------------------------------------------------------------------


def _base_caption(analysis: Analysis, what: str) -> str:
    data = analysis.data
    return (
        f"{what} {data.counting_rule()} Eligible for coding: {len(analysis.eligible)} passages from "
        f"{analysis.documents_total} documents and {analysis.participants_total} participants"
        f"{'' if data.code_interviewer else ' (interviewer turns left out)'}; source: {data.source}."
    )


def codebook_table(analysis: Analysis, quotes: int = 1) -> WriteupTable:
    rows = []
    for code in analysis.codes:
        passages = analysis.passages(code.code_id)
        documents = analysis.documents_with(code.code_id)
        participants = analysis.participants_with(code.code_id)
        chosen = exemplars(analysis, code.code_id, quotes)
        rows.append(
            (
                code_label(code),
                short_definition(code.definition),
                len(passages),
                len(documents),
                percent(len(documents), analysis.documents_total),
                len(participants),
                percent(len(participants), analysis.participants_total),
                "\n".join(quote_text(*item) for item in chosen) or "—",
            )
        )
    return WriteupTable(
        "codebook",
        "Table 1. Codebook: themes, prevalence and exemplars",
        _base_caption(
            analysis,
            "Each code with the first sentence of its definition, the passages coded with it, "
            "and the documents and participants with at least one such passage (n and % of "
            "those eligible).",
        )
        + " "
        + EXEMPLAR_RULE,
        (
            "Code",
            "Definition",
            "Passages",
            "Documents",
            "% of documents",
            "Participants",
            "% of participants",
            "Exemplar quote" if quotes == 1 else "Exemplar quotes",
        ),
        rows,
        ("text", "wide", "int", "int", "pct", "int", "pct", "wide"),
    )


@dataclass(frozen=True)
class GroupTest:
    name: str
    statistic: float | None
    p: float | None
    note: str


_TOO_FEW = ", too few for chi-square; merge groups or compare two"


def group_test(with_code: Sequence[int], sizes: Sequence[int]) -> GroupTest:
    """Participants with and without the code in each group: Fisher's exact test for two groups, chi-square for more
    when Cochran's rule holds (every expected count at least 1, at most a fifth below 5), else a note saying why not."""
    pairs = [(a, n - a) for a, n in zip(with_code, sizes) if n > 0]
    if len(pairs) < 2:
        return GroupTest("", None, None, "one group only: nothing to compare")
    total_with = sum(a for a, _ in pairs)
    total = sum(a + b for a, b in pairs)
    if total_with == 0 or total_with == total:
        return GroupTest(
            "",
            None,
            None,
            "no participant has it" if total_with == 0 else "every participant has it",
        )
    from scipy import stats

    if len(pairs) == 2:
        result = stats.fisher_exact([list(pairs[0]), list(pairs[1])])
        return GroupTest("Fisher exact", None, float(result.pvalue), "")
    expected = [
        n * t / total for n in (a + b for a, b in pairs) for t in (total_with, total - total_with)
    ]
    small = sum(1 for e in expected if e < _SMALL_EXPECTED)
    if min(expected) < _MIN_EXPECTED or small > _SMALL_SHARE * len(expected):
        return GroupTest(
            "",
            None,
            None,
            f"no test: {small} of {len(expected)} expected counts below 5{_TOO_FEW}",
        )
    chi2, p, dof, _ = stats.chi2_contingency([list(pair) for pair in pairs], correction=False)
    return GroupTest(f"chi-square({dof})", float(chi2), float(p), "")


def format_p(p: float | None) -> str:
    if p is None:
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _untested_note(codes, tests: dict[str, GroupTest]) -> str:
    """Why no code could be tested, said once: codes that share a reason named together."""
    reasons = {code.code_id: tests[code.code_id].note.removeprefix("no test: ") for code in codes}
    suffix = _TOO_FEW if all(reason.endswith(_TOO_FEW) for reason in reasons.values()) else ""
    names_by_reason: dict[str, list[str]] = {}
    for code in codes:
        names_by_reason.setdefault(reasons[code.code_id].removesuffix(suffix), []).append(code.name)
    if len(names_by_reason) == 1:
        return f"No code could be tested: {next(iter(names_by_reason))}{suffix}."
    said = "; ".join(
        f"{reason} for {' and '.join(filter(None, [', '.join(names[:-1]), names[-1]]))}"
        for reason, names in names_by_reason.items()
    )
    return f"No code could be tested: {said}{suffix}."


def theme_by_group_table(analysis: Analysis) -> WriteupTable:
    groups = analysis.groups
    participants_in = Counter(analysis.group_of_participant.values())
    passages_in = Counter(analysis.group_of_segment[s.segment_id] for s in analysis.eligible)
    tested = [g for g in groups if g != NOT_RECORDED]
    people_of = {code.code_id: analysis.participants_with(code.code_id) for code in analysis.codes}
    people_by_group = {
        code_id: Counter(analysis.group_of_participant[key] for key in people)
        for code_id, people in people_of.items()
    }
    tests = {
        code_id: group_test([counts[g] for g in tested], [participants_in[g] for g in tested])
        for code_id, counts in people_by_group.items()
    }
    # Where no code could be tested, three empty columns and one reason repeated on every row say
    # less than the reason said once under the table.
    with_tests = any(test.p is not None for test in tests.values())
    header = ["Code", "Counting"]
    kinds = ["text", "text"]
    for group in groups:
        header += [f"{group} (n={participants_in[group]})", "%"]
        kinds += ["int", "pct"]
    header += [f"All (n={analysis.participants_total})", "%"]
    kinds += ["int", "pct"]
    if with_tests:
        header += ["Test", "p", "Note"]
        kinds += ["text", "p", "wide"]
    rows = []
    for code in analysis.codes:
        people, counts = people_of[code.code_id], people_by_group[code.code_id]
        test = tests[code.code_id]
        test_name = (
            f"{test.name} = {test.statistic:.2f}" if test.statistic is not None else test.name
        )
        row = [code_label(code), "participants"]
        for group in groups:
            row += [counts[group], percent(counts[group], participants_in[group])]
        row += [len(people), percent(len(people), analysis.participants_total)]
        if with_tests:
            row += [test_name, test.p, test.note]
        rows.append(tuple(row))
        passages = analysis.passages(code.code_id)
        counts = Counter(analysis.group_of_segment[s.segment_id] for s in passages)
        row = ["", "passages"]
        for group in groups:
            row += [counts[group], percent(counts[group], passages_in[group])]
        row += [len(passages), percent(len(passages), len(analysis.eligible))]
        if with_tests:
            row += ["", None, ""]
        rows.append(tuple(row))
    by = {"folder": "source folder", "speaker": "speaker"}.get(analysis.by, analysis.by)
    notes = [
        "Column percentages: participants (or passages) of each group carrying the code, of that group's "
        "participants (passages) eligible for coding; a participant counts once however often the code recurs.",
        "Tests compare participants with and without the code across groups (passages of one person are not "
        "independent): Fisher's exact test for two groups, Pearson's chi-square for more where every expected "
        "count is at least 1 and at most a fifth are below 5. p-values are not adjusted for testing "
        f"{len(analysis.codes)} codes.",
    ]
    if not with_tests:
        notes.append(_untested_note(analysis.codes, tests))
    if NOT_RECORDED in groups:
        notes.append(
            f"{NOT_RECORDED}: documents without a value for {by}; shown, but left out of the tests."
        )
    sizes = ", ".join(f"{g} {participants_in[g]}" for g in groups)
    return WriteupTable(
        "theme-by-group",
        f"Table 2. Themes by {by}",
        _base_caption(
            analysis,
            f"Participants and passages carrying each code, by {by} (participants per group: "
            f"{sizes}).",
        ),
        tuple(header),
        rows,
        tuple(kinds),
        tuple(notes),
    )


def cooccurrence_pairs(analysis: Analysis) -> list[dict]:
    passages = {
        code.code_id: {s.segment_id for s in analysis.passages(code.code_id)}
        for code in analysis.codes
    }
    people = {code.code_id: analysis.participants_with(code.code_id) for code in analysis.codes}
    pairs = []
    for i, first in enumerate(analysis.codes):
        for second in analysis.codes[i + 1 :]:
            a, b = passages[first.code_id], passages[second.code_id]
            union = len(a | b)
            pairs.append(
                {
                    "first": first,
                    "second": second,
                    "both": len(a & b),
                    "either": union,
                    "jaccard": round(len(a & b) / union, 3) if union else 0.0,
                    "participants": len(people[first.code_id] & people[second.code_id]),
                }
            )
    return pairs


def cooccurrence_table(analysis: Analysis) -> WriteupTable:
    rows = [
        (
            code_label(p["first"]),
            code_label(p["second"]),
            p["both"],
            p["either"],
            p["jaccard"],
            p["participants"],
        )
        for p in cooccurrence_pairs(analysis)
    ]
    return WriteupTable(
        "co-occurrence",
        "Table 3. Co-occurring themes",
        _base_caption(
            analysis,
            "Each pair of codes: passages carrying both, passages carrying either, the Jaccard "
            "index (both / either: 0 never together, 1 always together) and participants with "
            "both codes anywhere in what they said.",
        ),
        (
            "Code",
            "With code",
            "Passages with both",
            "Passages with either",
            "Jaccard index",
            "Participants with both",
        ),
        rows,
        ("text", "text", "int", "int", "num", "int"),
    )


def position(analysis: Analysis, segment: Segment) -> str:
    index, total = analysis.doc_position.get(segment.segment_id, (segment.index + 1, 0))
    place = f"passage {index} of {total}"
    return f"{place}, {segment.timestamp}" if segment.timestamp else place


def attributes_text(analysis: Analysis, doc_id: str, documents: dict) -> str:
    document = documents.get(doc_id)
    if document is None:
        return ""
    return "; ".join(
        f"{name}: {value}"
        for name, value in document.attributes.items()
        if name not in ID_ATTRIBUTES
    )


def quote_bank_rows(analysis: Analysis, code: Code) -> list[tuple]:
    documents = {document.doc_id: document for document in analysis.data.documents}
    rows = []
    for segment in analysis.passages(code.code_id):
        coding = analysis.best[(segment.segment_id, code.code_id)]
        who = analysis.participant_of.get(segment.segment_id)
        rows.append(
            (
                code_label(code),
                who.label if who else "",
                segment.doc_id,
                position(analysis, segment),
                attributes_text(analysis, segment.doc_id, documents),
                coding.source,
                " ".join(segment.text.split()),
            )
        )
    return rows


def quote_bank_table(analysis: Analysis) -> WriteupTable:
    rows = [row for code in analysis.codes for row in quote_bank_rows(analysis, code)]
    header = ("Code", "Participant", "Document", "Position", "Attributes", "Source", "Passage")
    kinds = ("text", "text", "text", "text", "text", "text", "wide")
    attributes = header.index("Attributes")
    described = "document, position and the document's attributes"
    if not any(row[attributes] for row in rows):  # no document has any: no empty column in print
        keep = [column for column in range(len(header)) if column != attributes]
        header, kinds = tuple(header[c] for c in keep), tuple(kinds[c] for c in keep)
        rows = [tuple(row[c] for c in keep) for row in rows]
        described = "document and position"
    return WriteupTable(
        "quote-bank",
        "Table 4. Quote bank",
        _base_caption(
            analysis,
            f"Every coded passage, code by code, in document order, with its participant, "
            f"{described}; source says who coded it (human, rule or classifier).",
        ),
        header,
        rows,
        kinds,
    )


def writeup_tables(analysis: Analysis, *, quotes: int = 1) -> list[WriteupTable]:
    return [
        codebook_table(analysis, quotes),
        theme_by_group_table(analysis),
        cooccurrence_table(analysis),
        quote_bank_table(analysis),
    ]
