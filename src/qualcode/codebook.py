"""Codebooks in YAML: loading, validating with line numbers, and the default codebook.

The format is documented in ``docs/codebook.md``; ``codebooks/relationship-themes.yaml`` is a
complete example and ships inside the package as the default.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import regex
import yaml

from qualcode.errors import CodebookError, InputMissingError
from qualcode.models import Code, Codebook, PatternRule, PhraseRule, RegexRule, Rules
from qualcode.regexes import REGEX_TIME_LIMIT, compile_regex, runaway_repeats

DEFAULT_CODEBOOK_NAME = "relationship-themes.yaml"
_CODE_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")

TOP_KEYS = ("name", "version", "description", "codes")
CODE_KEYS = (
    "id",
    "name",
    "color",
    "parent",
    "definition",
    "include",
    "exclude",
    "examples",
    "rules",
    "threshold",
    "replaces",
)
EXAMPLE_KEYS = ("positive", "negative")
RULE_KEYS = ("phrases", "patterns", "regex", "exclude")
PATTERN_KEYS = ("name", "pattern")

Path_ = tuple[Any, ...]


def default_codebook_path() -> Path:
    """The codebook used when none is named: the six relationship-based social work themes."""
    return Path(str(resources.files("qualcode") / "data" / DEFAULT_CODEBOOK_NAME))


def _line_map(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], duplicates: list[tuple[Path_, int]]
) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                duplicates.append((path + (key,), key_node.start_mark.line + 1))
            seen.add(key)
            _line_map(value_node, path + (key,), lines, duplicates)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, path + (index,), lines, duplicates)


def _describe(path: Path_, data: Any) -> str:
    parts = []
    for position, step in enumerate(path):
        if isinstance(step, int):
            parts.append(f"[{step}]")
            if path[:position] == ("codes",):
                code = data["codes"][step] if isinstance(data, dict) else None
                if isinstance(code, dict) and isinstance(code.get("id"), str):
                    parts.append(f" ({code['id']})")
        else:
            parts.append(f".{step}" if parts else str(step))
    return "".join(parts)


@dataclass
class _Checker:
    """Collects every problem with its line, so a researcher can fix them all in one pass."""

    data: Any
    lines: dict[Path_, int]
    problems: list[tuple[int, str]]

    def report(self, path: Path_, message: str) -> None:
        line = self.lines.get(path)
        while line is None and path:
            path = path[:-1]
            line = self.lines.get(path)
        where = _describe(path, self.data)
        self.problems.append((line or 1, f"{where}: {message}" if where else message))

    def mapping(self, value: Any, path: Path_, allowed: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            self.report(path, f"expected a mapping with keys {', '.join(allowed)}")
            return {}
        for key in value:
            if key not in allowed:
                self.report(path + (key,), f"unknown key '{key}' (allowed: {', '.join(allowed)})")
        return value

    def text(self, value: Any, path: Path_, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.report(path, "is required")
            return None
        if isinstance(value, dict):
            self.report(
                path, "expected text but found a mapping; put text containing ': ' in quotes"
            )
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.report(path, "expected text")
            return None
        text = str(value).strip()
        if required and not text:
            self.report(path, "must not be empty")
        return text

    def texts(self, value: Any, path: Path_) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.report(path, "expected a list of texts")
            return ()
        items = []
        for index, item in enumerate(value):
            text = self.text(item, path + (index,), required=True)
            if text:
                items.append(text)
        return tuple(items)


def _check_regex(checker: _Checker, pattern: str, path: Path_) -> None:
    try:
        compile_regex(pattern)
    except regex.error as error:
        checker.report(path, f"bad regular expression {pattern!r}: {error}")


@lru_cache(maxsize=1)
def _validation_vocab():
    from spacy.vocab import Vocab

    return Vocab()


def _check_token_pattern(checker: _Checker, name: str, pattern: Any, path: Path_) -> None:
    if (
        not isinstance(pattern, list)
        or not pattern
        or not all(isinstance(token, dict) for token in pattern)
    ):
        checker.report(
            path,
            "expected a non-empty list of token specifications (mappings like {LEMMA: worker})",
        )
        return
    try:
        key = json.dumps(pattern, sort_keys=True)
    except (TypeError, ValueError):  # YAML gave something JSON cannot hold: validate it as it is
        problem = _token_pattern_problem_of(pattern)
    else:
        problem = _token_pattern_problem(key)
    if problem:
        checker.report(path, f"malformed token pattern '{name}': {problem}")


# spaCy validates a pattern in about 40 ms; the default codebook has 42 of them and is loaded by
# every command, so each distinct pattern is validated once per process.
@lru_cache(maxsize=4096)
def _token_pattern_problem(pattern_json: str) -> str | None:
    return _token_pattern_problem_of(json.loads(pattern_json))


def _token_pattern_problem_of(pattern: list) -> str | None:
    from spacy.matcher import Matcher

    try:
        Matcher(_validation_vocab(), validate=True).add("pattern", [pattern])
    except (ValueError, KeyError, TypeError) as error:
        return " ".join(str(error).split())
    return None


def _build_rules(checker: _Checker, raw: Any, path: Path_) -> Rules:
    if raw is None:
        return Rules()
    rules = checker.mapping(raw, path, RULE_KEYS)
    phrases = tuple(
        PhraseRule(text, checker.lines.get(path + ("phrases", i)))
        for i, text in enumerate(checker.texts(rules.get("phrases"), path + ("phrases",)))
    )
    exclude = tuple(
        PhraseRule(text, checker.lines.get(path + ("exclude", i)))
        for i, text in enumerate(checker.texts(rules.get("exclude"), path + ("exclude",)))
    )
    regexes = []
    for index, pattern in enumerate(checker.texts(rules.get("regex"), path + ("regex",))):
        _check_regex(checker, pattern, path + ("regex", index))
        regexes.append(RegexRule(pattern, checker.lines.get(path + ("regex", index))))
    patterns = []
    raw_patterns = rules.get("patterns")
    if raw_patterns is not None and not isinstance(raw_patterns, list):
        checker.report(path + ("patterns",), "expected a list of {name, pattern} entries")
        raw_patterns = []
    seen_names: set[str] = set()
    for index, entry in enumerate(raw_patterns or []):
        entry_path = path + ("patterns", index)
        entry = checker.mapping(entry, entry_path, PATTERN_KEYS)
        name = checker.text(entry.get("name"), entry_path + ("name",), required=True)
        if not name:
            continue
        if name in seen_names:
            checker.report(entry_path + ("name",), f"duplicate pattern name '{name}' in this code")
        seen_names.add(name)
        _check_token_pattern(checker, name, entry.get("pattern"), entry_path + ("pattern",))
        if isinstance(entry.get("pattern"), list):
            patterns.append(
                PatternRule(name, tuple(entry["pattern"]), checker.lines.get(entry_path))
            )
    return Rules(phrases=phrases, patterns=tuple(patterns), regex=tuple(regexes), exclude=exclude)


def _build_code(checker: _Checker, raw: Any, path: Path_) -> Code | None:
    entry = checker.mapping(raw, path, CODE_KEYS)
    if not entry:
        return None
    code_id = checker.text(entry.get("id"), path + ("id",), required=True)
    if code_id and not _CODE_ID.match(code_id):
        checker.report(
            path + ("id",),
            f"id '{code_id}' must be lowercase letters, digits and underscores, starting with a letter",
        )
    name = checker.text(entry.get("name"), path + ("name",), required=True)
    definition = checker.text(entry.get("definition"), path + ("definition",), required=True)
    color = checker.text(entry.get("color"), path + ("color",))
    if color and not _COLOR.match(color):
        checker.report(path + ("color",), f"colour '{color}' must be a hex colour like \"#4E79A7\"")
    parent = checker.text(entry.get("parent"), path + ("parent",))
    examples = entry.get("examples")
    if examples is not None:
        examples = checker.mapping(examples, path + ("examples",), EXAMPLE_KEYS)
    examples = examples or {}
    rules = _build_rules(checker, entry.get("rules"), path + ("rules",))
    threshold = entry.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not 0 < threshold < 1
    ):
        checker.report(
            path + ("threshold",), f"threshold must be a number between 0 and 1, not {threshold!r}"
        )
        threshold = None
    if not code_id or not name:
        return None
    return Code(
        code_id=code_id,
        name=name,
        definition=definition or "",
        color=color.upper() if color and _COLOR.match(color) else None,
        parent=parent or None,
        include=checker.texts(entry.get("include"), path + ("include",)),
        exclude=checker.texts(entry.get("exclude"), path + ("exclude",)),
        positive_examples=checker.texts(examples.get("positive"), path + ("examples", "positive")),
        negative_examples=checker.texts(examples.get("negative"), path + ("examples", "negative")),
        rules=rules,
        threshold=float(threshold) if threshold is not None else None,
        replaces=checker.texts(entry.get("replaces"), path + ("replaces",)),
    )


def _check_hierarchy(checker: _Checker, codes: list[tuple[int, Code]]) -> None:
    ids = [code.code_id for _, code in codes]
    first_index: dict[str, int] = {}
    names: dict[str, int] = {}
    for index, code in codes:
        if code.code_id in first_index:
            checker.report(
                ("codes", index, "id"),
                f"duplicate id '{code.code_id}' (first used on line {checker.lines.get(('codes', first_index[code.code_id], 'id'))})",
            )
        else:
            first_index[code.code_id] = index
        if code.name.lower() in names:
            checker.report(
                ("codes", index, "name"),
                f"duplicate name '{code.name}' (also code [{names[code.name.lower()]}])",
            )
        names.setdefault(code.name.lower(), index)
    for index, code in codes:
        if code.code_id in code.replaces:
            checker.report(("codes", index, "replaces"), f"'{code.code_id}' cannot replace itself")
    parents = {code.code_id: code.parent for _, code in codes}
    for index, code in codes:
        if code.parent is None:
            continue
        if code.parent not in ids:
            checker.report(
                ("codes", index, "parent"),
                f"parent '{code.parent}' is not a code id in this codebook",
            )
            continue
        seen = {code.code_id}
        ancestor = code.parent
        while ancestor is not None:
            if ancestor in seen:
                checker.report(
                    ("codes", index, "parent"),
                    f"parent chain of '{code.code_id}' loops back on itself",
                )
                break
            seen.add(ancestor)
            ancestor = parents.get(ancestor)


# libyaml's parser when PyYAML was built with it: the pure-Python one costs a quarter of a second
# on the default codebook, before any worker can start.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_codebook(text: str, source: str = "<codebook>") -> tuple[Codebook | None, list[str]]:
    """Parse and validate codebook YAML. Returns the codebook (None if invalid) and every problem as ``line N: ...``."""
    loader = _SAFE_LOADER(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        return None, [f"{where}not valid YAML: {problem}"]
    if node is None:
        return None, ["line 1: the codebook is empty"]
    lines: dict[Path_, int] = {}
    duplicates: list[tuple[Path_, int]] = []
    _line_map(node, (), lines, duplicates)
    checker = _Checker(
        data,
        lines,
        [(line, f"{_describe(path, data)}: key given twice") for path, line in duplicates],
    )
    top = checker.mapping(data, (), TOP_KEYS)
    name = checker.text(top.get("name"), ("name",), required=True)
    version = checker.text(top.get("version"), ("version",)) or "1"
    description = checker.text(top.get("description"), ("description",)) or ""
    raw_codes = top.get("codes")
    built: list[tuple[int, Code]] = []
    if not isinstance(raw_codes, list) or not raw_codes:
        checker.report(("codes",), "expected a non-empty list of codes")
    else:
        for index, raw in enumerate(raw_codes):
            code = _build_code(checker, raw, ("codes", index))
            if code is not None:
                built.append((index, code))
        _check_hierarchy(checker, built)
    problems = [
        f"line {line}: {message}"
        for line, message in sorted(checker.problems, key=lambda item: item[0])
    ]
    if problems or not name:
        return None, problems
    codebook = Codebook(
        name=name,
        version=version,
        description=description,
        codes=tuple(code for _, code in built),
        source=source,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )
    return codebook, []


def _read_codebook_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputMissingError(f"{path}: no such codebook file") from None
    except OSError as error:
        raise InputMissingError(f"{path}: cannot read the codebook ({error.strerror})") from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CodebookError(
            path, [f"byte {error.start}: the codebook must be saved as UTF-8"]
        ) from error


def validate_codebook(path: str | os.PathLike[str]) -> list[str]:
    """Every problem in the codebook file, as ``line N: where: what`` strings; empty when valid."""
    path = Path(path)
    _, problems = parse_codebook(_read_codebook_text(path), str(path))
    return problems


def codebook_warnings(codebook: Codebook) -> list[str]:
    """What in a valid codebook is likely to go wrong, as ``line N: where: what`` strings."""
    warnings = []
    for code in codebook.codes:
        for index, rule in enumerate(code.rules.regex):
            if runaway_repeats(rule.pattern):
                warnings.append(
                    f"line {rule.line or 1}: codes ({code.code_id}).rules.regex[{index}]: /{rule.pattern}/ repeats a "
                    "group that itself repeats without limit, which can backtrack without end on a text it does not "
                    f"match; a run stops it after {REGEX_TIME_LIMIT:g} s per segment. Bound the inner repeat or drop "
                    "the outer one"
                )
    return warnings


def load_codebook(path: str | os.PathLike[str] | None = None) -> Codebook:
    """Load and validate a codebook (the default one when ``path`` is None); raise ``CodebookError`` listing problems."""
    path = Path(path) if path is not None else default_codebook_path()
    text = _read_codebook_text(path)
    codebook, problems = parse_codebook(text, str(path))
    if codebook is None:
        raise CodebookError(path, problems or ["invalid codebook"])
    return codebook


def codebook_to_data(codebook: Codebook) -> dict:
    """The codebook as the plain data of its YAML form (empty fields left out)."""
    codes = []
    for code in codebook.codes:
        entry: dict[str, Any] = {"id": code.code_id, "name": code.name}
        if code.color:
            entry["color"] = code.color
        if code.parent:
            entry["parent"] = code.parent
        entry["definition"] = code.definition
        if code.threshold is not None:
            entry["threshold"] = code.threshold
        if code.replaces:
            entry["replaces"] = list(code.replaces)
        if code.include:
            entry["include"] = list(code.include)
        if code.exclude:
            entry["exclude"] = list(code.exclude)
        if code.positive_examples or code.negative_examples:
            entry["examples"] = {
                "positive": list(code.positive_examples),
                "negative": list(code.negative_examples),
            }
        rules: dict[str, Any] = {}
        if code.rules.phrases:
            rules["phrases"] = [rule.text for rule in code.rules.phrases]
        if code.rules.patterns:
            rules["patterns"] = [
                {"name": rule.name, "pattern": [dict(token) for token in rule.pattern]}
                for rule in code.rules.patterns
            ]
        if code.rules.regex:
            rules["regex"] = [rule.pattern for rule in code.rules.regex]
        if code.rules.exclude:
            rules["exclude"] = [rule.text for rule in code.rules.exclude]
        if rules:
            entry["rules"] = rules
        codes.append(entry)
    data: dict[str, Any] = {"name": codebook.name, "version": codebook.version}
    if codebook.description:
        data["description"] = codebook.description
    data["codes"] = codes
    return data


def dump_codebook(codebook: Codebook) -> str:
    """YAML text that ``parse_codebook`` reads back to the same codebook."""
    return yaml.safe_dump(
        codebook_to_data(codebook), sort_keys=False, allow_unicode=True, width=100
    )
