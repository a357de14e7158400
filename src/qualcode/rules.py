"""Codebook rules compiled into spaCy matchers and applied to segments.

Phrases are lemma-aware without running a lemma lookup per token at match time: each phrase
word is expanded once, at compile time, into every word form the English lookup table maps to
the same lemma ("involve" -> involve, involves, involved, involving), and the variants go into a
``PhraseMatcher`` on the ``NORM`` attribute (lower case, with contractions and curly apostrophes
normalised: "can’t" and "can't" match alike). Token patterns run in a ``Matcher``; regular
expressions run on the segment text, case-insensitively. An exclusion phrase vetoes every match
of its code that it overlaps.

Token patterns and regexes are tried only on texts holding words that every match needs ("gates":
``regex_gates``, ``RuleMatcher._gates``), which most texts lack; the gates are checked in a way that
costs little per text (``LiteralGates``, ``_PatternGates``) and never skip a rule that could match.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache, reduce
from operator import or_

import numpy as np
import regex

from qualcode.arrays import concatenated_ranges
from qualcode.errors import ConfigurationError, RuleTimeoutError
from qualcode.models import Code, Codebook, CodeAssignment, Evidence, Segment
from qualcode.regexes import REGEX_TIME_LIMIT, compile_regex
from qualcode.segment import lemma_lookup_table

logger = logging.getLogger(__name__)

MAX_VARIANTS_PER_PHRASE = 5000
_REPEAT = re.compile(r"^\{(\d*),?(\d*)\}$")
# Token attributes a blank pipeline cannot supply; patterns using them need a trained --spacy-model.
_ANNOTATION_ATTRS = {"POS": "tagger", "TAG": "tagger", "MORPH": "morphologizer", "DEP": "parser", "ENT_TYPE": "ner",
                     "ENT_IOB": "ner", "ENT_ID": "ner", "ENT_KB_ID": "ner", "HEAD": "parser"}


@lru_cache(maxsize=1)
def _forms_by_lemma() -> dict[str, frozenset[str]]:
    forms: dict[str, set[str]] = defaultdict(set)
    for form, lemma in lemma_lookup_table().items():
        forms[lemma.lower()].add(form.lower())
    return {lemma: frozenset(words | {lemma}) for lemma, words in forms.items()}


def word_forms(word: str) -> frozenset[str]:
    """Every lower-case form sharing ``word``'s lookup lemma, ``word`` itself included."""
    lower = word.lower()
    table = lemma_lookup_table()
    lemma = table.get(lower, lower).lower()
    return _forms_by_lemma().get(lemma, frozenset()) | {lower, lemma}


def _structure(text: str) -> Iterator[tuple[int, str, int]]:
    """(index, character, bracket depth before it) for each character that is not escaped or in a [class]."""
    depth, index, in_class = 0, 0, False
    while index < len(text):
        character = text[index]
        if character == "\\":
            index += 2
            continue
        if in_class:
            in_class = character != "]"
        elif character == "[":
            in_class = True
        else:
            yield index, character, depth
            depth += {"(": 1, ")": -1}.get(character, 0)
        index += 1


def _top_level_alternatives(body: str) -> list[str] | None:
    """Split a regex (or a group's body) on its top-level ``|``; None if brackets do not balance."""
    cuts, after = [], 0
    for index, character, depth in _structure(body):
        if depth == 0 and character == ")":
            return None
        if depth == 0 and character == "|":
            cuts.append(index)
        after = depth + {"(": 1, ")": -1}.get(character, 0)
    if after != 0:
        return None
    bounds = [-1, *cuts, len(body)]
    return [body[bounds[i] + 1:bounds[i + 1]] for i in range(len(bounds) - 1)]


def _leading_group(text: str) -> tuple[str, str] | None:
    """(body, rest) of a ``(?:...)`` group at the start of ``text``; None if the brackets do not close."""
    for index, character, depth in _structure(text):
        if character == ")" and depth == 1:
            return text[3:index], text[index + 1:]
    return None


def _literal(text: str) -> str | None:
    run = _LITERAL_RUN.match(text)
    if run is None:
        return None
    literal = " ".join(word.lower() for word in re.split(r"\\s\+?| ", run.group()) if word)
    return literal if len(literal) >= 2 else None


# Plain words joined by whitespace (\s, \s+ or a space) that the regex spells out letter for letter;
# a word followed by ?, * or { may be cut short, so it is left out.
_LITERAL_RUN = re.compile(r"[A-Za-z]+(?:(?:\\s\+?| )[A-Za-z]+)*(?![A-Za-z?*{])")


def regex_literals(pattern: str) -> frozenset[str] | None:
    """Lower-case words one of which any match must contain, read off the start of each alternative.

    A regex is tried only on texts holding one of them: most texts hold none, and scanning every
    text with every case-insensitive regex was the slowest part of rule matching. None when an
    alternative does not start with plain words (a digit class, an optional group...): then the
    regex always runs.
    """
    alternatives = _top_level_alternatives(pattern)
    if not alternatives:
        return None
    literals = set()
    for alternative in alternatives:
        rest = alternative[2:] if alternative.startswith("\\b") else alternative
        starts = [rest]
        if rest.startswith("(?:"):
            group = _leading_group(rest)
            if group is None or group[1][:1] in ("?", "*", "{"):
                return None
            starts = _top_level_alternatives(group[0]) or []
        for start in starts:
            literal = _literal(start)
            if literal is None:
                return None
            literals.add(literal)
    return frozenset(literals) or None


_QUANTIFIER = re.compile(r"(\?|\*|\+|\{(\d*)(?:,(\d*))?\})\??")
def _pieces(pattern: str) -> list[tuple[str, str, bool]] | None:
    """The top-level sequence of a regex without top-level ``|``: (kind, text, required) per piece.

    Kinds: ``char`` (a literal character), ``space`` (\\s or a space), ``group`` (a group's body),
    ``other`` (anything else). Zero-width pieces (\\b, anchors, lookarounds) are left out.
    """
    pieces: list[tuple[str, str, bool]] = []
    index = 0
    while index < len(pattern):
        character = pattern[index]
        if character == "\\":
            escape = pattern[index:index + 2]
            index += 2
            if escape in ("\\b", "\\B", "\\A", "\\Z"):
                continue
            kind, text = ("space", " ") if escape == "\\s" else (
                ("char", escape[1]) if len(escape) == 2 and not escape[1].isalnum() else ("other", escape))
        elif character == "(":
            depth_end = None
            for position, symbol, depth in _structure(pattern[index:]):
                if symbol == ")" and depth == 1:
                    depth_end = index + position
                    break
            if depth_end is None:
                return None
            body = pattern[index + 1:depth_end]
            index = depth_end + 1
            if body.startswith(("?=", "?!", "?<=", "?<!")):
                continue
            if body.startswith("?:"):
                body = body[2:]
            elif body.startswith("?P<"):
                body = body[body.index(">") + 1:]
            elif body.startswith("?"):
                return None
            kind, text = "group", body
        elif character == "[":
            end = index + 1
            end += 1 if pattern[end:end + 1] in ("]", "^") else 0
            while end < len(pattern) and pattern[end] != "]":
                end += 2 if pattern[end] == "\\" else 1
            kind, text = "other", pattern[index:end + 1]
            index = end + 1
        elif character in "^$":
            index += 1
            continue
        elif character == "|":
            return None
        else:
            kind, text = ("space", " ") if character == " " else ("char" if character != "." else "other", character)
            index += 1
        quantifier = _QUANTIFIER.match(pattern, index)
        required = True
        if quantifier:
            index = quantifier.end()
            symbol, low = quantifier.group(1), quantifier.group(2)
            required = symbol == "+" or (symbol.startswith("{") and bool(low) and int(low) >= 1)
            if symbol == "+" or symbol.startswith("{"):
                kind = "other" if kind == "char" else kind  # a repeated letter is no longer a plain word
        pieces.append((kind, text, required))
    return pieces


def _selectivity(gate: frozenset[str]) -> tuple[int, int]:
    """Sort key: a gate whose shortest word is longer, then one with fewer words, is met by fewer texts."""
    return min(map(len, gate), default=0), -len(gate)


def _gate_for_any_of(alternatives: Sequence[str]) -> frozenset[str] | None:
    """A set of words one of which any match of any of the alternatives contains; None if there is none.

    The words each alternative starts with when they all start with plain words, else the most
    selective gate of each alternative pooled: "tears in (her|his) eyes|(she|he) (welled up|cried
    too)" gives {"tears in", "welled up", "cried too"}, where the words they start with would
    include "he", which occurs (inside "the") in nearly every text.
    """
    literals = [_literal(alternative) for alternative in alternatives]
    if literals and all(literals):
        return frozenset(literals)
    pooled: set[str] = set()
    for alternative in alternatives:
        own = regex_gates(alternative)
        if not own:
            return None
        pooled |= max(own, key=_selectivity)
    return frozenset(pooled) or None


def regex_gates(pattern: str) -> tuple[frozenset[str], ...]:
    """Sets of lower-case words; a match needs one word of every set in the text. Empty: always try.

    The first set comes from the start of each alternative (``regex_literals``). A regex with
    top-level alternatives adds the set ``_gate_for_any_of`` finds for them; one without adds a set
    for every required plain word and every required group, so "(had|seen) ... workers" is tried
    only where "workers" occurs too.
    """
    gates = []
    first = regex_literals(pattern)
    if first is not None:
        gates.append(first)
    alternatives = _top_level_alternatives(pattern)
    if alternatives is not None and len(alternatives) > 1:
        gate = _gate_for_any_of(alternatives)
        return tuple(dict.fromkeys([*gates, gate] if gate else gates))
    pieces = _pieces(pattern)
    if pieces is None:
        return tuple(gates)
    word: list[str] = []

    def close_word() -> None:
        literal = "".join(word).strip().lower()
        if len(literal) >= 3:
            gates.append(frozenset({" ".join(literal.split())}))
        word.clear()

    for kind, text, required in pieces:
        if kind == "char" and required and text.isalpha():
            word.append(text)
        elif kind == "space" and required and word:
            word.append(" ")
        else:
            close_word()
            if kind == "group" and required:
                gate = _gate_for_any_of(_top_level_alternatives(text) or [])
                if gate:
                    gates.append(gate)
    close_word()
    return tuple(dict.fromkeys(gates))


def phrase_label(text: str) -> str:
    return f'phrase "{text}"'


def pattern_label(name: str) -> str:
    return f"pattern {name}"


def regex_label(pattern: str) -> str:
    return f"regex /{pattern}/"


def rule_labels(code: Code) -> list[str]:
    """How each of a code's rules is named in evidence, in codebook order."""
    return ([phrase_label(rule.text) for rule in code.rules.phrases]
            + [pattern_label(rule.name) for rule in code.rules.patterns]
            + [regex_label(rule.pattern) for rule in code.rules.regex])


class _WordMasks(dict):
    """For each word of text looked up, the OR of the bits of the searched words inside it; remembered.

    Texts share most of their words, so each distinct word is taken apart only once per process.
    """

    MAX_REMEMBERED = 100_000

    def __init__(self, bits: dict[str, int]):
        super().__init__()
        self._bits = bits
        self._lengths = sorted({len(word) for word in bits})

    def __missing__(self, word: str) -> int:
        mask = 0
        for piece in {word[start:start + length] for length in self._lengths for start in range(len(word) - length + 1)}:
            mask |= self._bits.get(piece, 0)
        if len(self) >= self.MAX_REMEMBERED:
            self.clear()
        self[word] = mask
        return mask


# re.IGNORECASE matches "İ" and "ı" to "i" and "ſ" to "s"; lower() keeps them apart ("İ" becomes "i"
# and a combining dot), so a gate read off the lower-cased text would shut out "THİS" for /this/.
_IGNORECASE_TWINS = str.maketrans({"İ": "i", "ı": "i", "ſ": "s"})


class LiteralGates:
    """Which of a list of gated rules to try on a text, as ``regex_gates`` defines a gate.

    A rule is tried when each of its gates (a set of lower-case literals) has a literal that occurs
    in the text lower-cased with its whitespace collapsed (and "İ", "ı", "ſ" read as the letters
    IGNORECASE takes them for); a rule without gates is always tried.
    Testing every literal of every gate against every text took longer than the regexes themselves,
    so the test is turned around. Each literal is a bit. A literal without whitespace can only occur
    inside one whitespace-separated word of the text, and the bits of the literals inside a word are
    worked out once per distinct word; a literal of several words is looked for in the text only
    when its longest word is inside one of the text's words. A gate is then the OR of its literals'
    bits, met when it shares a bit with the text's.
    """

    _ALWAYS = 1  # set for every text: the gate of rules with no gates

    def __init__(self, gates_per_rule: Sequence[Sequence[frozenset[str]]]):
        literals = sorted({literal for gates in gates_per_rule for gate in gates for literal in gate})
        bits = {literal: 1 << position for position, literal in enumerate(literals, start=1)}
        # Words looked for inside the text's words: one-word literals, and the longest word of each
        # longer literal (a bit of its own when it is not a literal too), which announces it.
        word_bits = {literal: bit for literal, bit in bits.items() if literal.split() == [literal]}
        self._phrases_by_word_bit: dict[int, list[tuple[str, int]]] = defaultdict(list)
        self._always_looked_for = []  # blank literals, which no word announces
        next_bit = 1 << (len(literals) + 1)
        for literal in literals:
            words = literal.split()
            if words == [literal]:
                continue
            if not words:
                self._always_looked_for.append((literal, bits[literal]))
                continue
            longest = max(words, key=len)
            if longest not in word_bits:
                word_bits[longest], next_bit = next_bit, next_bit << 1
            self._phrases_by_word_bit[word_bits[longest]].append((literal, bits[literal]))
        self._phrase_words = sum(self._phrases_by_word_bit)
        self._masks_inside = _WordMasks(word_bits)

        def mask(gate: frozenset[str]) -> int:
            return sum(bits[literal] for literal in gate)

        # Per rule, its most selective gate first (checked for every text), then the others.
        self._rule_gates = []
        for gates in gates_per_rule:
            ordered = sorted(gates, key=_selectivity, reverse=True)
            self._rule_gates.append((mask(ordered[0]), tuple(map(mask, ordered[1:]))) if ordered
                                    else (self._ALWAYS, ()))

    def _present(self, text: str) -> int:
        """The OR of the bits of the literals occurring in ``text``, lower-cased with its whitespace collapsed."""
        if not text.isascii():
            text = text.translate(_IGNORECASE_TWINS)
        words = text.lower().split()
        found = reduce(or_, map(self._masks_inside.__getitem__, words), self._ALWAYS)
        announced = found & self._phrase_words
        if announced or self._always_looked_for:
            lowered = " ".join(words)
            while announced:
                word_bit = announced & -announced
                announced ^= word_bit
                for literal, bit in self._phrases_by_word_bit[word_bit]:
                    if literal in lowered:
                        found |= bit
            for literal, bit in self._always_looked_for:
                if literal in lowered:
                    found |= bit
        return found

    def open_rules(self, text: str) -> list[int]:
        """The indices, in order, of the rules to try on ``text``: those whose every gate has a literal in it."""
        present = self._present(text)
        return [index for index, (first, others) in enumerate(self._rule_gates)
                if present & first and all(present & gate for gate in others)]


# Keyed by the regexes' gates, so the words a LiteralGates has taken apart are remembered across
# match() calls (one per chunk of segments) and across matchers compiled from the same codebook.
_cached_literal_gates = lru_cache(maxsize=8)(LiteralGates)


def longest_match(pattern: Sequence[dict]) -> int | None:
    """The most tokens a match of a token pattern can span; None if there is no limit (``+``, ``*``, ``{n,}``)."""
    total = 0
    for token in pattern:
        operator = str({str(key).upper(): value for key, value in token.items()}.get("OP", ""))
        if operator in ("", "1", "?", "!"):  # "!" takes one token, one that does not match
            total += 1
            continue
        bounds = _REPEAT.match(operator)
        if bounds is None:
            return None
        most = bounds.group(2) if "," in operator else bounds.group(1)
        if not most:
            return None
        total += int(most)
    return total


class _PatternGates:
    """Which token patterns to run on a doc: those with a token meeting each of their gates in turn, close together.

    A gate is the string hashes one of which a required token of the pattern has (its NORM or
    LOWER); a pattern's gates are in pattern order, with the longest span a match can have. A
    match needs a token for each gate, each after the last, all within that span, so a pattern
    is run only on docs that have such tokens. This is worked out in numpy for a batch of docs at
    once, a few array operations per gate of each pattern: most docs hold some of the gates'
    common words, and testing them one by one in Python cost twice as much.
    """

    def __init__(self, patterns: Sequence[tuple[Sequence[tuple[int, frozenset[int]]], int | None]]):
        self._longest = [longest for _, longest in patterns]
        # Every gate of every pattern gets a column number; a pattern's columns are in pattern order.
        self._gate_columns: list[list[int]] = []
        flat: list[tuple[int, frozenset[int]]] = []
        for gates, _ in patterns:
            self._gate_columns.append(list(range(len(flat), len(flat) + len(gates))))
            flat.extend(gates)
        self._columns = len(flat)
        # Small column numbers sort by radix, in linear time (numpy's stable sort of 16-bit integers).
        self._column_type = np.int16 if len(flat) < 2 ** 15 else np.int64
        self.attrs = sorted({attr for attr, _ in flat})
        # Per attribute: the sorted hashes some gate looks for and, as compressed rows, the columns
        # each hash meets (those of hash i are columns[starts[i]:starts[i] + counts[i]]).
        self._hashes: dict[int, np.ndarray] = {}
        self._columns_of_hash: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for attr in self.attrs:
            hashes = sorted({value for gate_attr, values in flat if gate_attr == attr for value in values})
            met = [[column for column, (gate_attr, values) in enumerate(flat) if gate_attr == attr and value in values]
                   for value in hashes]
            self._hashes[attr] = np.array(hashes, dtype=np.uint64)
            self._columns_of_hash[attr] = (np.cumsum([0, *map(len, met)], dtype=np.int64)[:-1],
                                           np.array(list(map(len, met)), dtype=np.int64),
                                           np.array([column for columns in met for column in columns],
                                                    dtype=self._column_type))

    def _positions_by_column(self, values: np.ndarray) -> list[np.ndarray]:
        """For each gate column, the ascending positions (rows of ``values``) of the tokens meeting it."""
        positions, columns = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=self._column_type)]
        for number, attr in enumerate(self.attrs):
            hashes, tokens = self._hashes[attr], values[:, number]
            if not len(hashes):  # only gates that no hash meets
                continue
            nearest = np.minimum(np.searchsorted(hashes, tokens), len(hashes) - 1)  # a binary search per token
            rows = np.flatnonzero(hashes[nearest] == tokens)
            column_starts, column_counts, flat_columns = self._columns_of_hash[attr]
            found = nearest[rows]
            repeats = column_counts[found]
            # One entry per (token, column it meets): each token repeated once per column.
            positions.append(np.repeat(rows, repeats))
            columns.append(flat_columns[concatenated_ranges(column_starts[found], repeats)])
        positions, columns = np.concatenate(positions), np.concatenate(columns)
        # By column. A column belongs to one attribute, whose rows were found in ascending order,
        # and the sort is stable: each column's positions come out ascending, as searchsorted needs.
        order = np.argsort(columns, kind="stable")
        bounds = np.searchsorted(columns[order], np.arange(self._columns + 1))
        by_column = positions[order]
        return [by_column[bounds[column]:bounds[column + 1]] for column in range(self._columns)]

    def open_patterns(self, docs: Sequence) -> list[list[int]]:
        """For each doc, the indices, in order, of the patterns to run on it."""
        if not self.attrs or not docs:
            return [list(range(len(self._gate_columns))) for _ in docs]
        # to_array gives one value per token, not a row, when there is one attribute.
        values = np.concatenate([doc.to_array(self.attrs).reshape(len(doc), len(self.attrs)) for doc in docs])
        doc_starts = np.cumsum([0, *(len(doc) for doc in docs)])
        by_column = self._positions_by_column(values)
        opened: list[list[int]] = [[] for _ in docs]
        for pattern, (columns, longest) in enumerate(zip(self._gate_columns, self._longest)):
            if not columns:
                for doc_patterns in opened:
                    doc_patterns.append(pattern)
                continue
            # From each token meeting the first gate, the earliest token meeting each later gate in
            # turn: the shortest stretch starting there. One that stays inside its doc and its span opens it.
            starts = by_column[columns[0]]
            owners = np.searchsorted(doc_starts, starts, side="right") - 1
            doc_ends = doc_starts[owners + 1]
            last, ok = starts, np.ones(len(starts), dtype=bool)
            for column in columns[1:]:
                later = by_column[column]
                if not len(later):
                    ok[:] = False
                    break
                index = np.searchsorted(later, last, side="right")
                following = later[np.minimum(index, len(later) - 1)]
                ok &= (index < len(later)) & (following < doc_ends)
                last = np.where(ok, following, last)
            if longest is not None:
                ok &= last - starts < longest
            for doc in np.unique(owners[ok]).tolist():
                opened[doc].append(pattern)
        return opened


@dataclass(frozen=True)
class _RuleRef:
    code_id: str
    description: str


# Rule evidence kept per code and segment; more says nothing new and would not fit a cell.
MAX_EVIDENCE = 50


class _Spans:
    """Character spans that veto rule hits, asked about overlap in logarithmic time."""

    def __init__(self, spans: list[tuple[int, int]]):
        spans = sorted(spans)
        self.starts = [start for start, _ in spans]
        self.reach = list(itertools.accumulate((end for _, end in spans), max))  # furthest end so far

    def overlaps(self, start: int, end: int) -> bool:
        import bisect

        last = bisect.bisect_left(self.starts, end) - 1  # the spans that begin before ``end``
        return last >= 0 and self.reach[last] > start


class RuleMatcher:
    """A codebook's rules, compiled once per run for one spaCy pipeline."""

    def __init__(self, codebook: Codebook, nlp):
        from spacy.matcher import Matcher, PhraseMatcher

        self.codebook = codebook
        self.nlp = nlp
        self._phrases = PhraseMatcher(nlp.vocab, attr="NORM")
        self._exclusions = PhraseMatcher(nlp.vocab, attr="NORM")
        # One matcher per token pattern, run only on texts holding every word the pattern requires,
        # in order and close enough together (see _PatternGates): token patterns are the slowest
        # rules, and most texts hold none of their anchor words.
        self._gated_patterns: list[tuple[object, list[tuple[int, frozenset[int]]], int | None]] = []
        self._refs: dict[str, _RuleRef] = {}
        self._regexes: list[tuple[regex.Pattern[str], _RuleRef, tuple[frozenset[str], ...]]] = []
        self._needs_lemmas = False
        for code in codebook.codes:
            for index, phrase in enumerate(code.rules.phrases):
                key = self._ref(code.code_id, "phrase", index, phrase_label(phrase.text))
                self._phrases.add(key, self._variants(phrase.text))
            for index, phrase in enumerate(code.rules.exclude):
                key = self._ref(code.code_id, "exclude", index, f'exclude "{phrase.text}"')
                self._exclusions.add(key, self._variants(phrase.text))
            for index, rule in enumerate(code.rules.patterns):
                self._check_annotations(code.code_id, rule.name, rule.pattern)
                key = self._ref(code.code_id, "pattern", index, pattern_label(rule.name))
                rewritten = self._lemmas_as_norms(rule.pattern)
                self._needs_lemmas |= rewritten is None
                final = list(rewritten if rewritten is not None else rule.pattern)
                matcher = Matcher(nlp.vocab, validate=True)
                matcher.add(key, [final])
                self._gated_patterns.append((matcher, self._gates(final), longest_match(final)))
            for index, rule in enumerate(code.rules.regex):
                key = self._ref(code.code_id, "regex", index, regex_label(rule.pattern))
                self._regexes.append((compile_regex(rule.pattern), self._refs[key],
                                      regex_gates(rule.pattern)))
        self._regex_gate_key = tuple(gates for _, _, gates in self._regexes)
        self._pattern_gates = _PatternGates([(gates, longest) for _, gates, longest in self._gated_patterns])

    def _ref(self, code_id: str, kind: str, index: int, description: str) -> str:
        key = f"{code_id}\x1f{kind}\x1f{index}"
        self._refs[key] = _RuleRef(code_id, description)
        return key

    def _variants(self, phrase: str) -> list:
        from spacy.tokens import Doc

        vocab = self.nlp.vocab
        tokens = self.nlp.make_doc(phrase)
        choices = [sorted({vocab[form].norm_ for form in word_forms(token.norm_)}) for token in tokens]
        count = 1
        for options in choices:
            count *= len(options)
        if count > MAX_VARIANTS_PER_PHRASE:
            logger.warning("phrase %r has %d inflected variants; only the first %d are matched", phrase, count,
                           MAX_VARIANTS_PER_PHRASE)
        combos = itertools.islice(itertools.product(*choices), MAX_VARIANTS_PER_PHRASE)
        return [Doc(vocab, words=list(words)) for words in combos]

    def _norms_of(self, lemmas) -> list[str]:
        vocab = self.nlp.vocab
        return sorted({vocab[form].norm_ for lemma in lemmas for form in word_forms(str(lemma))})

    def _lemmas_as_norms(self, pattern: Sequence[dict]) -> list[dict] | None:
        """The pattern with each LEMMA test turned into a NORM test over the lemma's word forms.

        The lookup table decides lemmas either way, so the matches are the same, but no lemma has
        to be computed for each token at run time. None when a test cannot be rewritten (another
        LEMMA predicate, or NORM already tested on that token): then the lemmatizer runs.
        """
        rewritten = []
        for token in pattern:
            token = dict(token)
            value = token.pop("LEMMA", None)
            if value is not None:
                if "NORM" in token:
                    return None
                if isinstance(value, str):
                    token["NORM"] = {"IN": self._norms_of([value])}
                elif isinstance(value, dict) and set(value) <= {"IN", "NOT_IN"}:
                    token["NORM"] = {predicate: self._norms_of(values) for predicate, values in value.items()}
                else:
                    return None
            rewritten.append(token)
        return rewritten

    def _gates(self, pattern: Sequence[dict]) -> list[tuple[int, frozenset[int]]]:
        """For each token the pattern requires, in order, the attribute and the string hashes one of which it has."""
        from spacy.attrs import LOWER, NORM

        strings = self.nlp.vocab.strings
        gates = []
        for token in pattern:
            token = {str(key).upper(): value for key, value in token.items()}  # spaCy reads "op" as "OP"
            operator = str(token.get("OP", ""))
            bounds = _REPEAT.match(operator)
            required = operator in ("", "+") or (bounds is not None and int(bounds.group(1) or 0) >= 1)
            if not required:
                continue
            for name, attr in (("NORM", NORM), ("LOWER", LOWER)):
                value = token.get(name)
                values = [value] if isinstance(value, str) else (value.get("IN") if isinstance(value, dict) else None)
                if values and (not isinstance(value, dict) or set(value) == {"IN"}):
                    gates.append((attr, frozenset(strings.add(str(item)) for item in values)))
                    break
        return gates

    @property
    def pipes_needed(self) -> tuple[str, ...]:
        """The pipeline components matching uses: none but the tokenizer, unless a pattern needs lemmas or tags."""
        needed = [name for name in self.nlp.pipe_names if name in ("tok2vec", "tagger", "morphologizer", "parser",
                                                                     "attribute_ruler", "ner", "senter", "transformer")]
        if self._needs_lemmas:
            needed += [name for name in self.nlp.pipe_names if "lemma" in name]
        return tuple(needed)

    def _check_annotations(self, code_id: str, name: str, pattern: Iterable[dict]) -> None:
        for token in pattern:
            for attr in token:
                component = _ANNOTATION_ATTRS.get(str(attr).upper())
                if component and not any(component in pipe for pipe in self.nlp.pipe_names):
                    raise ConfigurationError(
                        f"codebook {self.codebook.source}: code '{code_id}', pattern '{name}' uses {attr}, "
                        f"which needs a trained spaCy pipeline with a {component}; pass --spacy-model NAME"
                    )

    def match(self, segments: Iterable[Segment], *, batch_size: int = 64) -> Iterator[CodeAssignment]:
        """Rule assignments for the segments, one per (segment, code) with all its evidence."""
        segments = list(segments)
        docs = self.docs(segments, batch_size=batch_size)
        for start in range(0, len(segments), 256):
            batch = segments[start:start + 256]
            yield from self.match_docs(batch, list(itertools.islice(docs, len(batch))))

    def docs(self, segments: Iterable[Segment], *, batch_size: int = 64) -> Iterator:
        """The segments' docs, made by only the pipeline components matching needs (``pipes_needed``)."""
        with self.nlp.select_pipes(enable=list(self.pipes_needed)):
            yield from self.nlp.pipe((segment.text for segment in segments), batch_size=batch_size)

    def match_docs(self, segments: Sequence[Segment], docs: Sequence) -> list[CodeAssignment]:
        """Rule assignments for the segments, given their docs from ``docs``."""
        literal_gates = self._literal_gates()
        return [assignment for segment, doc, opened in zip(segments, docs, self._pattern_gates.open_patterns(docs))
                for assignment in self._assign(segment, doc, literal_gates, opened)]

    def _literal_gates(self) -> LiteralGates:
        # Looked up rather than kept: the cache is per process, so a matcher unpickled on a worker
        # finds (or builds) its own.
        return _cached_literal_gates(self._regex_gate_key)

    def _token_matches(self, doc, opened: Sequence[int]) -> list[tuple[int, int, int]]:
        """(match id, start token, end token) of the phrases, then of the ``opened`` token patterns."""
        matches = list(self._phrases(doc)) if len(self._phrases) else []
        for index in opened:
            matches.extend(self._gated_patterns[index][0](doc))
        return matches

    def _regex_hits(self, segment: Segment, gates: LiteralGates) -> list[tuple[int, int, _RuleRef]]:
        """(start, end, rule) of every non-empty regex match in the segment, trying only the regexes its words let through."""
        hits = []
        text = segment.text
        for index in gates.open_rules(text):
            pattern, ref, _ = self._regexes[index]
            try:
                hits.extend((found.start(), found.end(), ref)
                            for found in pattern.finditer(text, timeout=REGEX_TIME_LIMIT) if found.end() > found.start())
            except TimeoutError:
                raise RuleTimeoutError(
                    f"code {ref.code_id}: {ref.description} ran for over {REGEX_TIME_LIMIT:g} s on segment "
                    f"{segment.segment_id} and was stopped; it backtracks without end (often a repeated group that "
                    "holds a repeat, such as (\\w+\\s?)*): rewrite it, and see qualcode codebook validate"
                ) from None
        return hits

    def _assign(self, segment: Segment, doc, literal_gates: LiteralGates,
                opened: Sequence[int]) -> Iterator[CodeAssignment]:
        strings = self.nlp.vocab.strings
        hits = [(doc[start].idx, doc[end - 1].idx + len(doc[end - 1]), self._refs[strings[match_id]])
                for match_id, start, end in self._token_matches(doc, opened)]
        hits.extend(self._regex_hits(segment, literal_gates))
        if not hits:  # most segments: no exclusions to look for, no evidence to gather
            return
        vetoes: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for match_id, start, end in (self._exclusions(doc) if len(self._exclusions) else ()):
            ref = self._refs[strings[match_id]]
            vetoes[ref.code_id].append((doc[start].idx, doc[end - 1].idx + len(doc[end - 1])))
        vetoed = {code_id: _Spans(spans) for code_id, spans in vetoes.items()}
        # Ordered sets, capped: a long segment can repeat a phrase thousands of times, and checking
        # each hit against a list of the earlier ones took minutes on a million characters.
        evidence: dict[str, dict[Evidence, None]] = defaultdict(dict)
        for start, end, ref in sorted(hits, key=lambda hit: (hit[0], -hit[1])):
            if ref.code_id in vetoed and vetoed[ref.code_id].overlaps(start, end):
                continue
            found = evidence[ref.code_id]
            if len(found) < MAX_EVIDENCE:
                found.setdefault(Evidence(ref.description, segment.text[start:end], segment.start_char + start,
                                          segment.start_char + end))
        for code_id in self.codebook.code_ids:
            if evidence.get(code_id):
                yield CodeAssignment(
                    segment_id=segment.segment_id,
                    code_id=code_id,
                    source="rule",
                    status="suggested",
                    confidence=None,
                    evidence=tuple(evidence[code_id]),
                )


def compile_rules(codebook: Codebook, nlp) -> RuleMatcher:
    """Compile the codebook's rules once for this pipeline; raises ``ConfigurationError`` if a rule needs annotation it lacks."""
    return RuleMatcher(codebook, nlp)
