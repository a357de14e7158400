"""REFI-QDA Codebook Exchange (.qdc): qualcode codebooks out to other tools, and theirs in.

A code's GUID is derived from its id, so a codebook exported twice gives the same GUIDs and a
.qdc that went through NVivo or ATLAS.ti and back can be matched to the codes it came from.
Definitions travel as descriptions; what only qualcode has (rules, examples, criteria) stays in
the YAML, and ``import_qdc(..., base=...)`` puts it back on the codes it recognises.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

from qualcode import __version__
from qualcode.errors import InputDataError, InputMissingError
from qualcode.interop.safexml import (
    CODEBOOK_NS,
    child,
    children,
    local,
    normalise_guid,
    parse_xml,
    serialise,
    stable_guid,
    text_of,
)
from qualcode.models import Code, Codebook

logger = logging.getLogger(__name__)

_COLOR = re.compile(r"^#([0-9A-Fa-f]{6}|[0-9A-Fa-f]{3})$")
IMPORTED_DEFINITION = (
    "Imported from {origin} without a description; write a definition before relying on this code."
)


def code_guid(code_id: str) -> str:
    return stable_guid("code", code_id)


def _code_element(code: Code, by_parent: dict[str | None, list[Code]]) -> ET.Element:
    attributes = {"guid": code_guid(code.code_id), "name": code.name, "isCodable": "true"}
    if code.color:
        attributes["color"] = code.color
    element = ET.Element("Code", attributes)
    if code.definition:
        ET.SubElement(element, "Description").text = code.definition
    for sub in by_parent.get(code.code_id, []):
        element.append(_code_element(sub, by_parent))
    return element


def codes_element(codebook: Codebook) -> ET.Element:
    """The ``<Codes>`` tree, hierarchy by nesting (shared by .qdc and .qdpx)."""
    by_parent: dict[str | None, list[Code]] = {}
    for code in codebook.codes:
        by_parent.setdefault(code.parent, []).append(code)
    codes = ET.Element("Codes")
    for code in by_parent.get(None, []):
        codes.append(_code_element(code, by_parent))
    return codes


def export_qdc(codebook: Codebook) -> bytes:
    """The codebook as Codebook Exchange XML (UTF-8, no BOM, namespace urn:QDA-XML:codebook:1.0)."""
    root = ET.Element("CodeBook", {"xmlns": CODEBOOK_NS, "origin": f"qualcode {__version__}"})
    root.append(codes_element(codebook))
    return serialise(root)


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return slug if slug and slug[0].isalpha() else f"code_{slug}".rstrip("_")


def read_code_tree(codes: ET.Element, origin: str, where: str) -> list[Code]:
    """Codes from a REFI ``<Codes>`` element: ids from names (unique), names made unique by their path."""
    flat: list[tuple[str, ET.Element, str | None, tuple[str, ...]]] = []

    def walk(element: ET.Element, parent_guid: str | None, path: tuple[str, ...]) -> None:
        for node in children(element, "Code"):
            guid = normalise_guid(node.get("guid"))
            if not guid:
                raise InputDataError(f"{where}: a Code has no guid")
            name = (node.get("name") or "").strip() or "(unnamed)"
            flat.append((guid, node, parent_guid, path + (name,)))
            walk(node, guid, path + (name,))

    walk(codes, None, ())
    if not flat:
        raise InputDataError(f"{where}: no codes")
    name_counts: dict[str, int] = {}
    for _, _, _, path in flat:
        name_counts[path[-1].lower()] = name_counts.get(path[-1].lower(), 0) + 1
    ids: dict[str, str] = {}
    taken: set[str] = set()
    names: set[str] = set()
    built = []
    for guid, node, parent_guid, path in flat:
        name = unique = path[-1] if name_counts[path[-1].lower()] == 1 else " › ".join(path)
        number = 2
        while unique.lower() in names:
            unique, number = f"{name} ({number})", number + 1
        name = unique
        names.add(name.lower())
        code_id = base = _slug(name)
        number = 2
        while code_id in taken:
            code_id, number = f"{base}_{number}", number + 1
        taken.add(code_id)
        ids[guid] = code_id
        color = node.get("color")
        if color and not _COLOR.match(color):
            logger.warning(
                "%s: code '%s' has colour %r, which is not #RRGGBB; left out", where, name, color
            )
            color = None
        if color and len(color) == 4:
            color = "#" + "".join(digit * 2 for digit in color[1:])
        description = text_of(child(node, "Description")).strip()
        built.append(
            Code(
                code_id=code_id,
                name=name,
                definition=description or IMPORTED_DEFINITION.format(origin=origin),
                color=color.upper() if color else None,
                parent=ids.get(parent_guid) if parent_guid else None,
            )
        )
    return built


def import_qdc(path: str | Path, *, base: Codebook | None = None) -> Codebook:
    """A qualcode codebook from a .qdc; with ``base``, codes it recognises keep base's rules, examples and criteria.

    A code is recognised by the GUID qualcode gave it on export, else by its name.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputMissingError(f"{path}: no such file") from None
    root = parse_xml(data, str(path), "codebook")
    origin = root.get("origin") or "another tool"
    codes_node = child(root, "Codes")
    if codes_node is None:
        raise InputDataError(f"{path}: no <Codes> element")
    sets = child(root, "Sets")
    if sets is not None and not children(sets, "Set"):
        logger.warning(
            "%s: an empty <Sets/> element (schema-invalid, as %s writes it) was ignored",
            path,
            origin,
        )
    codes = read_code_tree(codes_node, origin, str(path))
    if base is not None:
        codes = _carry_over(codes, base, codes_node)
    name = base.name if base is not None else f"{path.stem} (from {origin})"
    return Codebook(
        name=name,
        version=base.version if base is not None else "1",
        codes=tuple(codes),
        description=base.description
        if base is not None
        else f"Imported from {path.name} ({origin}).",
    )


def _carry_over(codes: list[Code], base: Codebook, codes_node: ET.Element) -> list[Code]:
    by_guid = {code_guid(code.code_id): code for code in base.codes}
    by_name = {code.name.lower(): code for code in base.codes}
    guids = [
        normalise_guid(node.get("guid")) for node in codes_node.iter() if local(node.tag) == "Code"
    ]
    renamed: dict[str, str] = {}
    carried = []
    for guid, code in zip(guids, codes):
        known = by_guid.get(guid) or by_name.get(code.name.lower())
        if known is None:
            carried.append(code)
            continue
        renamed[code.code_id] = known.code_id
        definition = (
            code.definition if not code.definition.startswith("Imported from") else known.definition
        )
        carried.append(
            replace(
                known,
                name=code.name,
                color=code.color or known.color,
                definition=definition,
                parent=code.parent,
            )
        )
    return [replace(code, parent=renamed.get(code.parent, code.parent)) for code in carried]
