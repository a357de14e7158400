"""Parsing XML from other tools without trusting it, and writing REFI-QDA XML."""

from __future__ import annotations

import logging
import re
import uuid
import xml.etree.ElementTree as ET

from qualcode.errors import InputDataError

logger = logging.getLogger(__name__)

CODEBOOK_NS = "urn:QDA-XML:codebook:1.0"
PROJECT_NS = "urn:QDA-XML:project:1.0"
_REFI_NS = re.compile(r"^urn:QDA-XML:(codebook|project):(.+)$")
# Every GUID qualcode writes is derived from this namespace, so the same input gives the same file.
QUALCODE_GUID_NAMESPACE = uuid.UUID("6b1f7a52-3c8e-4f0e-9a4d-2e7c5b9d1f30")


def stable_guid(*parts: str) -> str:
    return str(uuid.uuid5(QUALCODE_GUID_NAMESPACE, "\x1f".join(parts))).upper()


def normalise_guid(value: str | None) -> str | None:
    return value.strip().strip("{}").upper() if value else None


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_xml(data: bytes, where: str, kind: str) -> ET.Element:
    """Parse untrusted REFI-QDA XML; entities, DTDs and external references are refused with a clear error."""
    import defusedxml
    from defusedxml.ElementTree import fromstring

    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DTDForbidden:
        raise InputDataError(
            f"{where}: contains a DTD; refused, since REFI-QDA files need none and DTDs can "
            "expand entities or read other files"
        ) from None
    except defusedxml.EntitiesForbidden:
        raise InputDataError(
            f"{where}: declares XML entities; refused (entity expansion can exhaust memory)"
        ) from None
    except defusedxml.ExternalReferenceForbidden:
        raise InputDataError(f"{where}: refers to an external resource; refused") from None
    except ET.ParseError as error:
        line, column = error.position
        raise InputDataError(
            f"{where}: line {line}, column {column}: not well-formed XML ({error.msg})"
        ) from None
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    match = _REFI_NS.match(namespace)
    if match is None or match.group(1) != kind:
        raise InputDataError(
            f"{where}: not a REFI-QDA {kind} file (root element {local(root.tag)} in namespace "
            f"'{namespace or 'none'}')"
        )
    if match.group(2) != "1.0":
        logger.warning("%s: namespace version %s read as 1.0", where, match.group(2))
    return root


def children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if local(child.tag) == name]


def child(element: ET.Element, name: str) -> ET.Element | None:
    found = children(element, name)
    return found[0] if found else None


def text_of(element: ET.Element | None) -> str:
    return (element.text or "") if element is not None else ""


def serialise(root: ET.Element) -> bytes:
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
