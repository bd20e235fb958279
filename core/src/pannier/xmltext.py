"""Mirth's XML text encoding (``MirthXmlUtil.encode``), for data types that serialize to XML.

Public kernel API, so that every data type writes text the way Mirth does:
``& < > " '`` as named entities, CR and LF as ``&#13;`` and ``&#10;``, and every character at
or above U+0080 as a decimal reference. Characters above U+FFFF get one reference per code point
(Java writes one per UTF-16 unit, which no XML parser accepts).
"""

from __future__ import annotations

import re

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
    probe = _NEEDS_ENCODING_BUT_CR if ignore_cr else _NEEDS_ENCODING
    return probe.search(text, start) is not None


def first_unrepresentable(text: str) -> int | None:
    """The offset of the first character XML 1.0 cannot carry, or ``None``."""
    match = _UNREPRESENTABLE.search(text)
    return None if match is None else match.start()
