"""Mirth's XML text encoding (``MirthXmlUtil.encode``), for data types that serialize to XML.

Public kernel API, so that every data type writes text the way Mirth does:
``& < > " '`` as named entities, CR and LF as ``&#13;`` and ``&#10;``, and every character at
or above U+0080 as a decimal reference. Characters above U+FFFF get one reference per code point
(Java writes one per UTF-16 unit, which no XML parser accepts).
"""

from __future__ import annotations

import re
import xml.parsers.expat
from dataclasses import dataclass, field

_NAMED = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "'": "&apos;",
    "\n": "&#10;",
    "\r": "&#13;",
}
_NEEDS_ENCODING = re.compile("[&<>\"'\r\n\x80-\U0010ffff]")
_NEEDS_ENCODING_BUT_CR = re.compile("[&<>\"'\n\x80-\U0010ffff]")
# Characters XML 1.0 cannot carry at all, not even as a numeric reference.
_UNREPRESENTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _encode_match(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"&#{ord(char)};"


def encode(text: str) -> str:
    """``text`` encoded for XML content exactly as Mirth encodes it."""
    if _NEEDS_ENCODING.search(text) is None:
        return text
    return _NEEDS_ENCODING.sub(_encode_match, text)


def needs_encoding(text: str, start: int = 0, *, ignore_cr: bool = False) -> bool:
    """Whether :func:`encode` would change anything in ``text[start:]`` (CR aside when
    ``ignore_cr``: useful when CR only delimits segments that become elements)."""
    if text.isascii():
        # A few memchr-speed scans; the regex looks at every character (7x slower on a
        # 1 KB HL7 message, which is encoded once per message in DEVELOPMENT storage).
        if not ignore_cr and text.find("\r", start) != -1:
            return True
        return any(text.find(char, start) != -1 for char in _ASCII_SPECIAL)
    probe = _NEEDS_ENCODING_BUT_CR if ignore_cr else _NEEDS_ENCODING
    return probe.search(text, start) is not None


_ASCII_SPECIAL = ("&", "<", ">", '"', "'", "\n")
_ASCII_REPRESENTABLE = bytes([0x09, 0x0A, 0x0D, *range(0x20, 0x80)])


def first_unrepresentable(text: str) -> int | None:
    """The offset of the first character XML 1.0 cannot carry, or ``None``."""
    if text.isascii() and not text.encode("ascii").translate(None, _ASCII_REPRESENTABLE):
        return None  # the usual case, answered by one C pass over the bytes
    match = _UNREPRESENTABLE.search(text)
    return None if match is None else match.start()


@dataclass
class Element:
    """An element of an XML document read by :func:`parse_document`: its name as written
    (``soap:Body`` stays one name: no namespace processing, as in a document whose
    declarations Mirth stripped), its attributes, and its content in order — text pieces and
    child elements."""

    name: str
    attributes: dict[str, str]
    content: list[str | Element] = field(default_factory=list)

    @property
    def children(self) -> list[Element]:
        return [part for part in self.content if isinstance(part, Element)]

    def text_segments(self) -> list[str]:
        """The text before the first child, between children and after the last child
        (one more segment than there are children)."""
        segments = [""]
        for part in self.content:
            if isinstance(part, Element):
                segments.append("")
            else:
                segments[-1] += part
        return segments


def parse_document(text: str) -> Element:
    """Parse ``text`` into a document node (name ``""``) holding the root element; ValueError
    if it is not well-formed or has no root element."""
    document = Element("", {})
    stack = [document]

    def start(name: str, attributes: dict[str, str]) -> None:
        node = Element(name, dict(attributes))
        stack[-1].content.append(node)
        stack.append(node)

    def end(_name: str) -> None:
        stack.pop()

    def characters(data: str) -> None:
        content = stack[-1].content
        if content and isinstance(content[-1], str):
            content[-1] += data
        else:
            content.append(data)

    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(text, True)
    except xml.parsers.expat.ExpatError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    if len(document.children) != 1:
        raise ValueError("not well-formed XML: no root element")
    return document
