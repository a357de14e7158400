"""Codebook rules compiled into spaCy matchers and applied to segments.

Phrases are lemma-aware without running a lemma lookup per token at match time: each phrase
word is expanded once, at compile time, into every word form the English lookup table maps to
the same lemma ("involve" -> involve, involves, involved, involving), and the variants go into a
``PhraseMatcher`` on the ``NORM`` attribute (lower case, with contractions and curly apostrophes
normalised: "can’t" and "can't" match alike). Token patterns run in a ``Matcher``; regular
expressions run on the segment text, case-insensitively. An exclusion phrase vetoes every match
of its code that it overlaps.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from qualcode.errors import ConfigurationError
from qualcode.models import Code, Codebook, CodeAssignment, Evidence, Segment
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


def regex_gates(pattern: str) -> tuple[frozenset[str], ...]:
    """Sets of lower-case words; a match needs one word of every set in the text. Empty: always try.

    The first set comes from the start of each alternative (``regex_literals``); for a regex
    without top-level alternatives, every required plain word and every required group of plain
    alternatives adds a set, so "(had|seen) ... workers" is tried only where "workers" occurs too.
    """
    gates = []
    first = regex_literals(pattern)
    if first is not None:
        gates.append(first)
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
                alternatives = _top_level_alternatives(text) or []
                literals = [_literal(alternative) for alternative in alternatives]
                if literals and all(literals):
                    gates.append(frozenset(literals))
    close_word()
    unique = []
    for gate in gates:
        if gate not in unique:
            unique.append(gate)
    return tuple(unique)


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


@dataclass(frozen=True)
class _RuleRef:
    code_id: str
    description: str


class RuleMatcher:
    """A codebook's rules, compiled once per run for one spaCy pipeline."""

    def __init__(self, codebook: Codebook, nlp):
        from spacy.matcher import Matcher, PhraseMatcher

        self.codebook = codebook
        self.nlp = nlp
        self._phrases = PhraseMatcher(nlp.vocab, attr="NORM")
        self._exclusions = PhraseMatcher(nlp.vocab, attr="NORM")
        # One matcher per token pattern, run only on texts holding every word the pattern requires:
        # token patterns are the slowest rules, and most texts hold none of their anchor words.
        self._gated_patterns: list[tuple[object, list[tuple[int, frozenset[int]]]]] = []
        self._refs: dict[str, _RuleRef] = {}
        self._regexes: list[tuple[re.Pattern[str], _RuleRef, tuple[frozenset[str], ...]]] = []
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
                self._gated_patterns.append((matcher, self._gates(final)))
            for index, rule in enumerate(code.rules.regex):
                key = self._ref(code.code_id, "regex", index, regex_label(rule.pattern))
                self._regexes.append((re.compile(rule.pattern, re.IGNORECASE), self._refs[key],
                                      regex_gates(rule.pattern)))

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
        """For each token the pattern requires, the attribute and the string hashes one of which must occur."""
        from spacy.attrs import LOWER, NORM

        strings = self.nlp.vocab.strings
        gates = []
        for token in pattern:
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
        with self.nlp.select_pipes(enable=list(self.pipes_needed)):
            docs = self.nlp.pipe((segment.text for segment in segments), batch_size=batch_size)
            for segment, doc in zip(segments, docs):
                yield from self._assign(segment, doc)

    def _assign(self, segment: Segment, doc) -> Iterator[CodeAssignment]:
        strings = self.nlp.vocab.strings
        vetoes: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for match_id, start, end in (self._exclusions(doc) if len(self._exclusions) else ()):
            ref = self._refs[strings[match_id]]
            vetoes[ref.code_id].append((doc[start].idx, doc[end - 1].idx + len(doc[end - 1])))
        hits: list[tuple[int, int, _RuleRef]] = []
        matches = list(self._phrases(doc)) if len(self._phrases) else []
        if self._gated_patterns:
            from spacy.attrs import LOWER, NORM

            present = doc.to_array([NORM, LOWER])
            words = {NORM: set(present[:, 0].tolist()), LOWER: set(present[:, 1].tolist())} if len(doc) else {NORM: set(), LOWER: set()}
            for matcher, gates in self._gated_patterns:
                if all(not allowed.isdisjoint(words[attr]) for attr, allowed in gates):
                    matches.extend(matcher(doc))
        for match_id, start, end in matches:
            hits.append((doc[start].idx, doc[end - 1].idx + len(doc[end - 1]), self._refs[strings[match_id]]))
        lowered = " ".join(segment.text.lower().split())
        for pattern, ref, gates in self._regexes:
            if not all(any(literal in lowered for literal in gate) for gate in gates):
                continue
            hits.extend((found.start(), found.end(), ref) for found in pattern.finditer(segment.text) if found.end() > found.start())
        evidence: dict[str, list[Evidence]] = defaultdict(list)
        for start, end, ref in sorted(hits, key=lambda hit: (hit[0], -hit[1])):
            if any(start < veto_end and veto_start < end for veto_start, veto_end in vetoes.get(ref.code_id, ())):
                continue
            item = Evidence(ref.description, segment.text[start:end], segment.start_char + start, segment.start_char + end)
            if item not in evidence[ref.code_id]:
                evidence[ref.code_id].append(item)
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
