"""Gates: the words a rule needs, so that it is tried only on texts that hold them.

Token patterns and regexes are tried only on texts holding words that every match needs:
``regex_gates`` reads them off a regex, ``compile.CompiledRules`` off a token pattern. The gates
are checked in a way that costs little per text (``LiteralGates`` for regexes, ``PatternGates``
for token patterns) and never skip a rule that could match.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from functools import lru_cache, reduce
from operator import or_

import numpy as np

from qualcode.arrays import concatenated_ranges

# A token's repeat operator, {n}, {n,m}, {n,} or {,m}.
REPEAT_OPERATOR = re.compile(r"^\{(\d*),?(\d*)\}$")


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
    return [body[bounds[i] + 1 : bounds[i + 1]] for i in range(len(bounds) - 1)]


def _leading_group(text: str) -> tuple[str, str] | None:
    """(body, rest) of a ``(?:...)`` group at the start of ``text``; None if the brackets do not close."""
    for index, character, depth in _structure(text):
        if character == ")" and depth == 1:
            return text[3:index], text[index + 1 :]
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
            escape = pattern[index : index + 2]
            index += 2
            if escape in ("\\b", "\\B", "\\A", "\\Z"):
                continue
            kind, text = (
                ("space", " ")
                if escape == "\\s"
                else (
                    ("char", escape[1])
                    if len(escape) == 2 and not escape[1].isalnum()
                    else ("other", escape)
                )
            )
        elif character == "(":
            depth_end = None
            for position, symbol, depth in _structure(pattern[index:]):
                if symbol == ")" and depth == 1:
                    depth_end = index + position
                    break
            if depth_end is None:
                return None
            body = pattern[index + 1 : depth_end]
            index = depth_end + 1
            if body.startswith(("?=", "?!", "?<=", "?<!")):
                continue
            if body.startswith("?:"):
                body = body[2:]
            elif body.startswith("?P<"):
                body = body[body.index(">") + 1 :]
            elif body.startswith("?"):
                return None
            kind, text = "group", body
        elif character == "[":
            end = index + 1
            end += 1 if pattern[end : end + 1] in ("]", "^") else 0
            while end < len(pattern) and pattern[end] != "]":
                end += 2 if pattern[end] == "\\" else 1
            kind, text = "other", pattern[index : end + 1]
            index = end + 1
        elif character in "^$":
            index += 1
            continue
        elif character == "|":
            return None
        else:
            kind, text = (
                ("space", " ")
                if character == " "
                else ("char" if character != "." else "other", character)
            )
            index += 1
        quantifier = _QUANTIFIER.match(pattern, index)
        required = True
        if quantifier:
            index = quantifier.end()
            symbol, low = quantifier.group(1), quantifier.group(2)
            required = symbol == "+" or (symbol.startswith("{") and bool(low) and int(low) >= 1)
            if symbol == "+" or symbol.startswith("{"):
                kind = (
                    "other" if kind == "char" else kind
                )  # a repeated letter is no longer a plain word
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
        for piece in {
            word[start : start + length]
            for length in self._lengths
            for start in range(len(word) - length + 1)
        }:
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
        literals = sorted(
            {literal for gates in gates_per_rule for gate in gates for literal in gate}
        )
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
            self._rule_gates.append(
                (mask(ordered[0]), tuple(map(mask, ordered[1:]))) if ordered else (self._ALWAYS, ())
            )

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
        return [
            index
            for index, (first, others) in enumerate(self._rule_gates)
            if present & first and all(present & gate for gate in others)
        ]


# Keyed by the regexes' gates, so the words a LiteralGates has taken apart are remembered across
# match() calls (one per chunk of segments) and across matchers compiled from the same codebook.
cached_literal_gates = lru_cache(maxsize=8)(LiteralGates)


def longest_match(pattern: Sequence[dict]) -> int | None:
    """The most tokens a match of a token pattern can span; None if there is no limit (``+``, ``*``, ``{n,}``)."""
    total = 0
    for token in pattern:
        operator = str({str(key).upper(): value for key, value in token.items()}.get("OP", ""))
        if operator in ("", "1", "?", "!"):  # "!" takes one token, one that does not match
            total += 1
            continue
        bounds = REPEAT_OPERATOR.match(operator)
        if bounds is None:
            return None
        most = bounds.group(2) if "," in operator else bounds.group(1)
        if not most:
            return None
        total += int(most)
    return total


class PatternGates:
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
        self._column_type = np.int16 if len(flat) < 2**15 else np.int64
        self.attrs = sorted({attr for attr, _ in flat})
        # Per attribute: the sorted hashes some gate looks for and, as compressed rows, the columns
        # each hash meets (those of hash i are columns[starts[i]:starts[i] + counts[i]]).
        self._hashes: dict[int, np.ndarray] = {}
        self._columns_of_hash: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for attr in self.attrs:
            hashes = sorted(
                {value for gate_attr, values in flat if gate_attr == attr for value in values}
            )
            met = [
                [
                    column
                    for column, (gate_attr, values) in enumerate(flat)
                    if gate_attr == attr and value in values
                ]
                for value in hashes
            ]
            self._hashes[attr] = np.array(hashes, dtype=np.uint64)
            self._columns_of_hash[attr] = (
                np.cumsum([0, *map(len, met)], dtype=np.int64)[:-1],
                np.array(list(map(len, met)), dtype=np.int64),
                np.array(
                    [column for columns in met for column in columns], dtype=self._column_type
                ),
            )

    def _positions_by_column(self, values: np.ndarray) -> list[np.ndarray]:
        """For each gate column, the ascending positions (rows of ``values``) of the tokens meeting it."""
        positions, columns = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=self._column_type)]
        for number, attr in enumerate(self.attrs):
            hashes, tokens = self._hashes[attr], values[:, number]
            if not len(hashes):  # only gates that no hash meets
                continue
            nearest = np.minimum(
                np.searchsorted(hashes, tokens), len(hashes) - 1
            )  # a binary search per token
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
        return [by_column[bounds[column] : bounds[column + 1]] for column in range(self._columns)]

    def open_patterns(self, docs: Sequence) -> list[list[int]]:
        """For each doc, the indices, in order, of the patterns to run on it."""
        if not self.attrs or not docs:
            return [list(range(len(self._gate_columns))) for _ in docs]
        # to_array gives one value per token, not a row, when there is one attribute.
        values = np.concatenate(
            [doc.to_array(self.attrs).reshape(len(doc), len(self.attrs)) for doc in docs]
        )
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
