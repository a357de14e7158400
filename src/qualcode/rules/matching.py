"""Applying compiled rules to segments: one assignment per (segment, code) with its evidence.

Phrases and the token patterns whose gates a doc meets run on its tokens; the regexes whose
gates its words meet run on its text. An exclusion phrase vetoes every match of its code that
it overlaps.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

from qualcode.assistants import RuleHits
from qualcode.errors import RuleTimeoutError
from qualcode.models import CodeAssignment, Codebook, Evidence, Segment
from qualcode.regexes import REGEX_TIME_LIMIT
from qualcode.rules.compile import CompiledRules, RuleRef
from qualcode.rules.gates import LiteralGates, cached_literal_gates

# Rule evidence kept per code and segment; more says nothing new and would not fit a cell.
MAX_EVIDENCE = 50


class _Spans:
    """Character spans that veto rule hits, asked about overlap in logarithmic time."""

    def __init__(self, spans: list[tuple[int, int]]):
        spans = sorted(spans)
        self.starts = [start for start, _ in spans]
        self.reach = list(
            itertools.accumulate((end for _, end in spans), max)
        )  # furthest end so far

    def overlaps(self, start: int, end: int) -> bool:
        import bisect

        last = bisect.bisect_left(self.starts, end) - 1  # the spans that begin before ``end``
        return last >= 0 and self.reach[last] > start


class RuleMatcher(CompiledRules):
    """A codebook's rules, compiled once per run for one spaCy pipeline, applied to segments."""

    name = "rules"

    def suggest(self, segments: Sequence[Segment]) -> RuleHits:
        """The rules' suggestions for the segments, as an assistant gives them (``assistants``)."""
        return RuleHits(list(self.match(segments)))

    def match(
        self, segments: Iterable[Segment], *, batch_size: int = 64
    ) -> Iterator[CodeAssignment]:
        """Rule assignments for the segments, one per (segment, code) with all its evidence."""
        segments = list(segments)
        docs = self.docs(segments, batch_size=batch_size)
        for start in range(0, len(segments), 256):
            batch = segments[start : start + 256]
            yield from self.match_docs(batch, list(itertools.islice(docs, len(batch))))

    def docs(self, segments: Iterable[Segment], *, batch_size: int = 64) -> Iterator:
        """The segments' docs, made by only the pipeline components matching needs (``pipes_needed``)."""
        with self.nlp.select_pipes(enable=list(self.pipes_needed)):
            yield from self.nlp.pipe((segment.text for segment in segments), batch_size=batch_size)

    def match_docs(self, segments: Sequence[Segment], docs: Sequence) -> list[CodeAssignment]:
        """Rule assignments for the segments, given their docs from ``docs``."""
        literal_gates = self._literal_gates()
        return [
            assignment
            for segment, doc, opened in zip(segments, docs, self._pattern_gates.open_patterns(docs))
            for assignment in self._assign(segment, doc, literal_gates, opened)
        ]

    def _literal_gates(self) -> LiteralGates:
        # Looked up rather than kept: the cache is per process, so a matcher unpickled on a worker
        # finds (or builds) its own.
        return cached_literal_gates(self._regex_gate_key)

    def _token_matches(self, doc, opened: Sequence[int]) -> list[tuple[int, int, int]]:
        """(match id, start token, end token) of the phrases, then of the ``opened`` token patterns."""
        matches = list(self._phrases(doc)) if len(self._phrases) else []
        for index in opened:
            matches.extend(self._gated_patterns[index][0](doc))
        return matches

    def _regex_hits(self, segment: Segment, gates: LiteralGates) -> list[tuple[int, int, RuleRef]]:
        """(start, end, rule) of every non-empty regex match in the segment, trying only the regexes its words let through."""
        hits = []
        text = segment.text
        for index in gates.open_rules(text):
            pattern, ref, _ = self._regexes[index]
            try:
                hits.extend(
                    (found.start(), found.end(), ref)
                    for found in pattern.finditer(text, timeout=REGEX_TIME_LIMIT)
                    if found.end() > found.start()
                )
            except TimeoutError:
                raise RuleTimeoutError(
                    f"code {ref.code_id}: {ref.description} ran for over {REGEX_TIME_LIMIT:g} s on segment "
                    f"{segment.segment_id} and was stopped; it backtracks without end (often a repeated group that "
                    "holds a repeat, such as (\\w+\\s?)*): rewrite it, and see qualcode codebook validate"
                ) from None
        return hits

    def _assign(
        self, segment: Segment, doc, literal_gates: LiteralGates, opened: Sequence[int]
    ) -> Iterator[CodeAssignment]:
        strings = self.nlp.vocab.strings
        hits = [
            (doc[start].idx, doc[end - 1].idx + len(doc[end - 1]), self._refs[strings[match_id]])
            for match_id, start, end in self._token_matches(doc, opened)
        ]
        hits.extend(self._regex_hits(segment, literal_gates))
        if not hits:  # most segments: no exclusions to look for, no evidence to gather
            return
        vetoes: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for match_id, start, end in self._exclusions(doc) if len(self._exclusions) else ():
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
                found.setdefault(
                    Evidence(
                        ref.description,
                        segment.text[start:end],
                        segment.start_char + start,
                        segment.start_char + end,
                    )
                )
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
