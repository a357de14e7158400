"""What changed between two codebook versions, and what the change does to the coding of a corpus."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qualcode.coding import CodingOptions, code_corpus
from qualcode.models import COUNTED_STATUSES, Code, Codebook, Corpus, Segment

EXAMPLES_PER_CODE = 5


@dataclass(frozen=True)
class CodeChange:
    code_id: str
    change: str
    detail: str


def _listed(items) -> set[str]:
    return set(items)


def _rule_texts(code: Code) -> dict[str, set[str]]:
    return {
        "phrases": {rule.text for rule in code.rules.phrases},
        "patterns": {f"{rule.name}: {list(rule.pattern)}" for rule in code.rules.patterns},
        "regex": {rule.pattern for rule in code.rules.regex},
        "exclude phrases": {rule.text for rule in code.rules.exclude},
    }


def diff_codebooks(old: Codebook, new: Codebook) -> list[CodeChange]:
    """Codes added, removed (retired), renamed, and every changed field, in the new codebook's order."""
    old_codes = {code.code_id: code for code in old.codes}
    new_codes = {code.code_id: code for code in new.codes}
    changes: list[CodeChange] = []
    for code in new.codes:
        before = old_codes.get(code.code_id)
        if before is None:
            replaces = f"; replaces {', '.join(code.replaces)}" if code.replaces else ""
            changes.append(CodeChange(code.code_id, "added", f"'{code.name}'{replaces}"))
            continue
        if before.name != code.name:
            changes.append(
                CodeChange(
                    code.code_id,
                    "renamed",
                    f"'{before.name}' -> '{code.name}' (reviews kept: same id)",
                )
            )
        for field in ("definition", "parent", "color", "threshold"):
            if getattr(before, field) != getattr(code, field):
                changes.append(
                    CodeChange(
                        code.code_id,
                        f"{field} changed",
                        f"{getattr(before, field)!r} -> {getattr(code, field)!r}",
                    )
                )
        for field in ("include", "exclude", "positive_examples", "negative_examples", "replaces"):
            was, now = _listed(getattr(before, field)), _listed(getattr(code, field))
            if was != now:
                changes.append(
                    CodeChange(
                        code.code_id,
                        f"{field.replace('_', ' ')} changed",
                        _added_removed(now - was, was - now),
                    )
                )
        was_rules, now_rules = _rule_texts(before), _rule_texts(code)
        for kind in was_rules:
            if was_rules[kind] != now_rules[kind]:
                changes.append(
                    CodeChange(
                        code.code_id,
                        f"{kind} changed",
                        _added_removed(
                            now_rules[kind] - was_rules[kind], was_rules[kind] - now_rules[kind]
                        ),
                    )
                )
    for code in old.codes:
        if code.code_id not in new_codes:
            takers = [c.code_id for c in new.codes if code.code_id in c.replaces]
            detail = (
                f"replaced by {', '.join(takers)}"
                if takers
                else "retired: its reviews stay in the study"
            )
            changes.append(CodeChange(code.code_id, "removed", detail))
    return changes


def _added_removed(added: set[str], removed: set[str]) -> str:
    parts = []
    if added:
        parts.append("added: " + "; ".join(sorted(added)))
    if removed:
        parts.append("removed: " + "; ".join(sorted(removed)))
    return " | ".join(parts)


@dataclass(frozen=True)
class CodeImpact:
    code_id: str
    before: int
    after: int
    gained: tuple[Segment, ...]
    lost: tuple[Segment, ...]


def coding_impact(
    corpus: Corpus,
    old: Codebook,
    new: Codebook,
    options: CodingOptions = CodingOptions(),
    *,
    nlp=None,
) -> list[CodeImpact]:
    """Code the corpus under both codebooks; per code, the segments gained and lost under the new one."""
    before = code_corpus(corpus, old, options, nlp=nlp)
    after = code_corpus(corpus, new, options, nlp=nlp)
    segments = {segment.segment_id: segment for segment in after.segments}
    segments.update(
        {
            segment.segment_id: segment
            for segment in before.segments
            if segment.segment_id not in segments
        }
    )

    def coded(result) -> dict[str, set[str]]:
        by_code: dict[str, set[str]] = {}
        for assignment in result.assignments:
            if assignment.status in COUNTED_STATUSES:
                by_code.setdefault(assignment.code_id, set()).add(assignment.segment_id)
        return by_code

    old_coded, new_coded = coded(before), coded(after)
    code_ids = list(dict.fromkeys([*new.code_ids, *old.code_ids]))
    order = {segment_id: index for index, segment_id in enumerate(segments)}

    def ordered(ids: Sequence[str]) -> tuple[Segment, ...]:
        return tuple(segments[i] for i in sorted(ids, key=lambda i: order[i]))

    return [
        CodeImpact(
            code_id,
            len(old_coded.get(code_id, ())),
            len(new_coded.get(code_id, ())),
            ordered(new_coded.get(code_id, set()) - old_coded.get(code_id, set())),
            ordered(old_coded.get(code_id, set()) - new_coded.get(code_id, set())),
        )
        for code_id in code_ids
    ]
