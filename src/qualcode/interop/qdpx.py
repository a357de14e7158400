"""REFI-QDA Project Exchange (.qdpx): coded projects out to NVivo, ATLAS.ti, MAXQDA, QualCoder; theirs in.

Export writes ``project.qde`` and lowercase ``sources/`` with each document as UTF-8 text without
BOM, every coded segment as a ``PlainTextSelection`` (code-point offsets, end exclusive, the
selected text as its name), each code on it as a ``Coding`` by its coder: human coders as
themselves, machine suggestions under the user "qualcode", so the other tool can filter them.
Document attributes become ``Variables``, with one ``Case`` per document that has any.

Import reads any ``*.qde`` and ``Sources/`` or ``sources/``, works out how the producing tool
counted positions (code points or UTF-16 units, CRLF as one character or two), and re-cuts the
coded selections into qualcode segments: a code covers a segment when its selections cover more
than half of the segment's characters.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import logging
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qualcode import __version__
from qualcode.errors import InputDataError, InputMissingError
from qualcode.interop.qdc import code_guid, codes_element, read_code_tree
from qualcode.interop.safexml import (
    PROJECT_NS,
    child,
    children,
    local,
    normalise_guid,
    parse_xml,
    serialise,
    stable_guid,
    text_of,
)
from qualcode.models import Code, Codebook, Document, Segment
from qualcode.safezip import check_archive
from qualcode.turns import looks_like_transcript

logger = logging.getLogger(__name__)

MACHINE_USER = "qualcode"
COVERAGE = 0.5
_DATE = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class ProjectCoding:
    """One code on one segment, by a human coder or (``coder`` None) by the machine."""

    segment_id: str
    code_id: str
    coder: str | None


@dataclass(frozen=True)
class ProjectContent:
    name: str
    documents: tuple[Document, ...]
    segments: tuple[Segment, ...]
    codings: tuple[ProjectCoding, ...]
    codebook: Codebook
    created: str


def _user_guid(name: str) -> str:
    return stable_guid("user", name)


def _value_element(variable_guid: str, value: str) -> ET.Element:
    element = ET.Element("VariableValue")
    ET.SubElement(element, "VariableRef", {"targetGUID": variable_guid})
    ET.SubElement(element, "TextValue").text = value
    return element


def export_qdpx(content: ProjectContent) -> bytes:
    """The project as a .qdpx archive (bytes), deterministic for the same content."""
    coders = sorted({coding.coder for coding in content.codings if coding.coder})
    users = [(MACHINE_USER, "qualcode (machine suggestions)")] + [
        (coder, coder) for coder in coders
    ]
    root = ET.Element(
        "Project",
        {
            "xmlns": PROJECT_NS,
            "name": content.name,
            "origin": f"qualcode {__version__}",
            "creatingUserGUID": _user_guid(MACHINE_USER),
            "creationDateTime": content.created,
        },
    )
    users_element = ET.SubElement(root, "Users")
    for key, name in users:
        ET.SubElement(users_element, "User", {"guid": _user_guid(key), "name": name, "id": key})
    ET.SubElement(root, "CodeBook").append(codes_element(content.codebook))

    attributes = list(
        dict.fromkeys(name for document in content.documents for name in document.attributes)
    )
    variables = {name: stable_guid("variable", name) for name in attributes}
    if variables:
        variables_element = ET.SubElement(root, "Variables")
        for name, guid in variables.items():
            ET.SubElement(
                variables_element,
                "Variable",
                {"guid": guid, "name": name, "typeOfVariable": "Text"},
            )
    source_guid = {
        document.doc_id: stable_guid("source", document.doc_id) for document in content.documents
    }
    with_attributes = [document for document in content.documents if document.attributes]
    if with_attributes:
        cases = ET.SubElement(root, "Cases")
        for document in with_attributes:
            case = ET.SubElement(
                cases,
                "Case",
                {"guid": stable_guid("case", document.doc_id), "name": document.doc_id},
            )
            for name, value in document.attributes.items():
                case.append(_value_element(variables[name], value))
            ET.SubElement(case, "SourceRef", {"targetGUID": source_guid[document.doc_id]})

    by_segment: dict[str, list[ProjectCoding]] = {}
    for coding in content.codings:
        by_segment.setdefault(coding.segment_id, []).append(coding)
    segments_by_document: dict[str, list[Segment]] = {}
    for segment in content.segments:
        if segment.segment_id in by_segment:
            segments_by_document.setdefault(segment.doc_id, []).append(segment)
    sources = ET.SubElement(root, "Sources")
    files: dict[str, bytes] = {}
    for document in content.documents:
        guid = source_guid[document.doc_id]
        files[f"sources/{guid}.txt"] = document.text.encode("utf-8")
        source = ET.SubElement(
            sources,
            "TextSource",
            {
                "guid": guid,
                "name": document.doc_id,
                "plainTextPath": f"internal://{guid}.txt",
                "creatingUser": _user_guid(MACHINE_USER),
                "creationDateTime": content.created,
            },
        )
        for segment in sorted(
            segments_by_document.get(document.doc_id, []), key=lambda s: s.start_char
        ):
            selection = ET.SubElement(
                source,
                "PlainTextSelection",
                {
                    "guid": stable_guid("selection", segment.segment_id),
                    "name": segment.text,
                    "startPosition": str(segment.start_char),
                    "endPosition": str(segment.end_char),
                    "creatingUser": _user_guid(MACHINE_USER),
                    "creationDateTime": content.created,
                },
            )
            for coding in by_segment[segment.segment_id]:
                user = _user_guid(coding.coder or MACHINE_USER)
                element = ET.SubElement(
                    selection,
                    "Coding",
                    {
                        "guid": stable_guid(
                            "coding",
                            segment.segment_id,
                            coding.code_id,
                            coding.coder or MACHINE_USER,
                        ),
                        "creatingUser": user,
                        "creationDateTime": content.created,
                    },
                )
                ET.SubElement(element, "CodeRef", {"targetGUID": code_guid(coding.code_id)})
        for name, value in document.attributes.items():
            source.append(_value_element(variables[name], value))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_entry("project.qde"), serialise(root))
        for name, data in files.items():
            archive.writestr(_entry(name), data)
    return buffer.getvalue()


def _entry(name: str) -> zipfile.ZipInfo:
    # A fixed timestamp keeps the archive identical for identical content.
    info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


# --- reading ----------------------------------------------------------------------------------


class _SafeArchive:
    """A zip from elsewhere, read in memory, refusing path escapes and decompression bombs."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.archive = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise InputMissingError(f"{path}: no such file") from None
        except (zipfile.BadZipFile, OSError) as error:
            raise InputDataError(f"{path}: not a .qdpx (zip) archive ({error})") from None
        infos = check_archive(path, self.archive)
        self.names = {info.filename: info for info in infos if not info.is_dir()}

    def read(self, name: str) -> bytes:
        info = self.names[name]
        with self.archive.open(info) as handle:
            data = handle.read(info.file_size + 1)
        if len(data) > info.file_size:
            raise InputDataError(
                f"{self.path}: entry '{name}' holds more than its header declares; refused"
            )
        return data

    def project_entry(self) -> str:
        qde = [
            name
            for name in self.names
            if "/" not in name.strip("/") and name.lower().endswith(".qde")
        ]
        exact = [name for name in qde if name.lower() == "project.qde"]
        if exact:
            return exact[0]
        if len(qde) == 1:
            logger.warning(
                "%s: the project file is named %s, not project.qde; read it anyway",
                self.path,
                qde[0],
            )
            return qde[0]
        raise InputDataError(
            f"{self.path}: no project.qde in the archive"
            if not qde
            else f"{self.path}: several .qde files ({', '.join(qde)}); cannot tell which is the project"
        )

    def source(self, internal: str) -> bytes | None:
        wanted = f"sources/{internal}".lower()
        for name in self.names:
            if name.lower() == wanted:
                return self.read(name)
        return None


@dataclass(frozen=True)
class ImportedSelection:
    doc_id: str
    start_char: int
    end_char: int
    code_id: str
    user: str


@dataclass
class ImportedProject:
    name: str
    origin: str
    codes: list[Code]
    documents: list[Document]
    selections: list[ImportedSelection]
    offset_convention: str
    users: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


_CONVENTIONS = (
    ("code points", False),
    ("code points, CRLF counted as one", True),
    ("UTF-16 code units", False),
    ("UTF-16 code units, CRLF counted as one", True),
)


def _normalise(raw: str) -> tuple[str, list[int]]:
    """LF-only text and, for each raw code point index (and the end), its index in that text."""
    mapping, out = [], []
    index = 0
    while index < len(raw):
        mapping.append(len(out))
        if raw[index] == "\r":
            out.append("\n")
            if index + 1 < len(raw) and raw[index + 1] == "\n":
                mapping.append(len(out) - 1)
                index += 1
        else:
            out.append(raw[index])
        index += 1
    mapping.append(len(out))
    return "".join(out), mapping


def _units_to_points(text: str) -> list[int]:
    """For each UTF-16 unit offset into ``text``, the code point offset (a unit inside a pair maps forward)."""
    points = []
    for index, character in enumerate(text):
        points.append(index)
        if ord(character) > 0xFFFF:
            points.append(index + 1)
    points.append(len(text))
    return points


def _convert(raw: str, crlf_as_one: bool, utf16: bool) -> tuple[str, callable]:
    """The normalised text and a function from the tool's offset to a code point offset in it."""
    normalised, raw_to_norm = _normalise(raw)
    if crlf_as_one:
        indexed, to_norm = normalised, list(range(len(normalised) + 1))
    else:
        indexed, to_norm = raw, raw_to_norm
    units = _units_to_points(indexed) if utf16 else None

    def position(offset: int) -> int | None:
        if offset < 0:
            return None
        if units is not None:
            if offset >= len(units):
                return None
            offset = units[offset]
        return to_norm[offset] if offset < len(to_norm) else None

    return normalised, position


def _score(text: str, spans: list[tuple[int | None, int | None, str]]) -> int:
    score = 0
    for start, end, name in spans:
        if start is None or end is None or end < start:
            continue
        picked = text[start:end]
        wanted = name.strip().rstrip("…").strip()
        if wanted:
            score += 3 if " ".join(picked.split()).startswith(" ".join(wanted.split())) else 0
        else:
            before_ok = start == 0 or not text[start - 1].isalnum() or not text[start].isalnum()
            after_ok = end == len(text) or not text[end - 1].isalnum() or not text[end].isalnum()
            score += int(before_ok) + int(after_ok)
    return score


def read_qdpx(path: str | Path) -> ImportedProject:
    """Everything qualcode can use from a .qdpx: codes, text sources and their coded selections."""
    path = Path(path)
    archive = _SafeArchive(path)
    entry = archive.project_entry()
    root = parse_xml(archive.read(entry), f"{path}:{entry}", "project")
    origin = root.get("origin") or "another tool"
    users = {
        normalise_guid(user.get("guid")): user.get("name") or user.get("id") or "unknown"
        for users in children(root, "Users")
        for user in children(users, "User")
    }
    codebook = child(root, "CodeBook")
    codes_node = child(codebook, "Codes") if codebook is not None else None
    codes = (
        read_code_tree(codes_node, origin, str(path))
        if codes_node is not None and len(codes_node)
        else []
    )
    code_ids = {}
    if codes_node is not None:
        guids = [
            normalise_guid(node.get("guid"))
            for node in codes_node.iter()
            if local(node.tag) == "Code"
        ]
        code_ids = dict(zip(guids, (code.code_id for code in codes)))
    notes: list[str] = []
    raw_sources = []
    sources = child(root, "Sources")
    for source in list(sources) if sources is not None else []:
        kind = local(source.tag)
        name = source.get("name") or source.get("guid") or "source"
        if kind != "TextSource":
            notes.append(f"{kind} '{name}' skipped: only text sources are read")
            continue
        inline = child(source, "PlainTextContent")
        if inline is not None:
            raw = text_of(inline)
        else:
            plain = source.get("plainTextPath") or ""
            if not plain.startswith("internal://"):
                notes.append(
                    f"text source '{name}' skipped: its text is outside the archive ({plain or 'no path'})"
                )
                continue
            data = archive.source(plain[len("internal://") :])
            if data is None:
                raise InputDataError(
                    f"{path}: text source '{name}' points at {plain}, which is not in the archive"
                )
            raw = _decode(data, f"{path}:{plain}")
        spans = []
        for selection in children(source, "PlainTextSelection"):
            try:
                start, end = int(selection.get("startPosition")), int(selection.get("endPosition"))
            except (TypeError, ValueError):
                raise InputDataError(
                    f"{path}: a selection in '{name}' has no valid startPosition/endPosition"
                ) from None
            for coding in children(selection, "Coding"):
                reference = child(coding, "CodeRef")
                code_id = code_ids.get(
                    normalise_guid(reference.get("targetGUID")) if reference is not None else None
                )
                if code_id is None:
                    notes.append(
                        f"a coding in '{name}' refers to a code that is not in the codebook; skipped"
                    )
                    continue
                user = users.get(
                    normalise_guid(coding.get("creatingUser") or selection.get("creatingUser")),
                    "unknown",
                )
                spans.append((start, end, selection.get("name") or "", code_id, user))
        raw_sources.append((name, raw, spans))
    best = max(
        _CONVENTIONS,
        key=lambda convention: sum(
            _score(*_spans_for(raw, spans, convention)) for _, raw, spans in raw_sources
        ),
    )
    documents, selections = [], []
    taken: set[str] = set()
    for name, raw, spans in raw_sources:
        doc_id, number = name, 2
        while doc_id in taken:
            doc_id, number = f"{name} ({number})", number + 1
        taken.add(doc_id)
        text, position = _convert(raw, best[1], best[0].startswith("UTF-16"))
        kind = "transcript" if looks_like_transcript(text) else "essay"
        documents.append(Document(doc_id, f"{path}:{name}", kind, text))
        for start, end, _, code_id, user in spans:
            first, last = position(start), position(end)
            if first is None or last is None or last < first:
                notes.append(
                    f"a selection {start}-{end} in '{name}' lies outside its text; skipped"
                )
                continue
            selections.append(ImportedSelection(doc_id, first, last, code_id, user))
    return ImportedProject(
        root.get("name") or path.stem, origin, codes, documents, selections, best[0], users, notes
    )


def _spans_for(raw, spans, convention):
    text, position = _convert(raw, convention[1], convention[0].startswith("UTF-16"))
    return text, [(position(start), position(end), name) for start, end, name, _, _ in spans]


def _decode(data: bytes, where: str) -> str:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputDataError(f"{where}: not UTF-8 text (byte {error.start})") from None


def is_machine_user(name: str) -> bool:
    """Whether a project user is qualcode's own machine suggestions ("qualcode (machine suggestions)" in its exports)."""
    return name == MACHINE_USER or name.startswith(f"{MACHINE_USER} (")


@dataclass(frozen=True)
class UserChoice:
    """Whose selections become labels: ``taken`` and ``left_out`` map each user to their selections."""

    taken: dict[str, int]
    left_out: dict[str, int]

    def describe(self) -> str:
        def listed(users: dict[str, int]) -> str:
            return (
                ", ".join(f"{name} ({count} selections)" for name, count in users.items()) or "none"
            )

        text = f"users taken: {listed(self.taken)}"
        return f"{text}; left out: {listed(self.left_out)}" if self.left_out else text


def choose_users(
    project: ImportedProject, *, user: str | None = None, include_machine: bool = False
) -> UserChoice:
    """Every user's selections, or ``user``'s alone; qualcode's machine suggestions only with ``include_machine``.

    A qualcode export holds the machine's suggestions under its own user; taken as labels, they
    would teach the classifier its own guesses. Raises ``InputDataError`` when nothing is left to take.
    """
    counts: dict[str, int] = {}
    for selection in project.selections:
        counts[selection.user] = counts.get(selection.user, 0) + 1
    if user is not None and user not in counts:
        raise InputDataError(
            f"{project.name}: no selections by user '{user}' (users: {', '.join(counts) or 'none'})"
        )
    taken = {
        name: count
        for name, count in counts.items()
        if (name == user if user is not None else include_machine or not is_machine_user(name))
    }
    left_out = {name: count for name, count in counts.items() if name not in taken}
    if counts and not taken:
        machine = ", ".join(name for name in left_out if is_machine_user(name))
        raise InputDataError(
            f"{project.name}: every coded selection is by {machine}, qualcode's own suggestions; "
            "as labels they would teach the classifier its own guesses. Pass --include-machine "
            "to take them anyway"
        )
    return UserChoice(taken, left_out)


def label_warnings(
    segments: Sequence[Segment],
    labels: dict[str, set[str]],
    *,
    few: int = 20,
    mostly_negative: float = 0.2,
) -> list[str]:
    """What makes labels a poor training set: few coded segments, or a file of mostly negatives.

    Every segment without a covering selection becomes a negative for every code, which is right
    only where the coders read and coded the whole document.
    """
    coded = sum(1 for segment in segments if labels.get(segment.segment_id))
    warnings = []
    share = coded / len(segments) if segments else 0.0
    if segments and share < mostly_negative:
        warnings.append(
            f"only {coded} of {len(segments)} segments ({share:.0%}) carry a code; the rest are negatives "
            "for every code, so training on this file (--train) teaches the classifier that almost "
            "nothing is coded. If the coders did not read every document, keep only the rows they coded"
        )
    if coded < few:
        warnings.append(
            f"only {coded} segments carry a code: too few to train or evaluate on with confidence"
        )
    return warnings


def covered_codes(
    project: ImportedProject,
    segments: Sequence[Segment],
    *,
    user: str | None = None,
    users: Collection[str] | None = None,
    coverage: float = COVERAGE,
) -> dict[str, set[str]]:
    """segment id -> codes whose selections cover more than ``coverage`` of the segment's characters.

    ``user`` or ``users`` take those users' selections only (default: everyone's).
    """
    spans: dict[tuple[str, str], list[tuple[int, int]]] = {}
    chosen = {user} if user is not None else set(users) if users is not None else None
    for selection in project.selections:
        if chosen is None or selection.user in chosen:
            spans.setdefault((selection.doc_id, selection.code_id), []).append(
                (selection.start_char, selection.end_char)
            )
    merged = {key: _merge(value) for key, value in spans.items()}
    result: dict[str, set[str]] = {}
    by_document: dict[str, list[tuple[str, list[tuple[int, int]]]]] = {}
    for (doc_id, code_id), intervals in merged.items():
        by_document.setdefault(doc_id, []).append((code_id, intervals))
    for segment in segments:
        length = segment.end_char - segment.start_char
        for code_id, intervals in by_document.get(segment.doc_id, []):
            starts = [interval[0] for interval in intervals]
            covered = 0
            for start, end in intervals[
                max(0, bisect.bisect_right(starts, segment.start_char) - 1) :
            ]:
                if start >= segment.end_char:
                    break
                covered += max(0, min(end, segment.end_char) - max(start, segment.start_char))
            if length and covered / length > coverage:
                result.setdefault(segment.segment_id, set()).add(code_id)
    return result


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def write_labels(
    path: Path, segments: Sequence[Segment], labels: dict[str, set[str]], code_ids: Sequence[str]
) -> None:
    """A gold-style CSV: one row per segment, one 0/1 column per code (usable with --train and evaluate)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["segment_id", "document", "start", "end", "speaker", "text", *code_ids])
        for segment in segments:
            codes = labels.get(segment.segment_id, set())
            writer.writerow(
                [
                    segment.segment_id,
                    segment.doc_id,
                    segment.start_char,
                    segment.end_char,
                    segment.speaker or "",
                    segment.text,
                    *(int(code_id in codes) for code_id in code_ids),
                ]
            )


def relabel_for_codebook(
    project: ImportedProject, labels: dict[str, set[str]], codebook: Codebook
) -> tuple[dict[str, set[str]], list[str]]:
    """Labels renamed to ``codebook``'s ids (codes matched by name, else by id); the names that matched nothing."""
    by_name = {code.name.lower(): code.code_id for code in codebook.codes}
    mapping = {
        code.code_id: by_name.get(code.name.lower())
        or (code.code_id if code.code_id in codebook.code_ids else None)
        for code in project.codes
    }
    unmatched = [code.name for code in project.codes if mapping[code.code_id] is None]
    renamed = {
        segment_id: {mapping[code] for code in codes if mapping.get(code)}
        for segment_id, codes in labels.items()
    }
    return renamed, unmatched


def write_texts(project: ImportedProject, folder: Path) -> list[Path]:
    """Each text source as UTF-8 in ``folder``, named after it, so ``qualcode code`` can read the same texts."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for document in project.documents:
        name = re.sub(r"[^\w.\- ]+", "_", document.doc_id)
        path = folder / (name if name.endswith(".txt") else f"{name}.txt")
        path.write_text(document.text, encoding="utf-8")
        written.append(path)
    return written
