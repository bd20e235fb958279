"""Mirth's XStream content formats for maps, responses and sent connector properties (§2.2).

Java Mirth reads these rows back, so the shapes follow XStream's output: pretty-printed with
two-space indentation, ``<map><entry><string>key</string><type>value</type></entry></map>``
and ``<response><status>SENT</status>...</response>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from pannier.connectors import Response

MIRTH_VERSION = "4.5.2"
_NEEDS_ESCAPE = re.compile('[&<>"\r]')


def _text(value: str) -> str:
    # CR as a character reference, as XStream writes it: a literal CR would come back as LF
    # from any XML parser (line-end normalisation) and change an HL7 message. Most map keys
    # and values need nothing: one scan answers that (several times cheaper than escape()).
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    return escape(value, {'"': "&quot;", "\r": "&#13;"})


def _value(value: Any, indent: str) -> str:
    if isinstance(value, Response):
        return serialize_response(value, indent)
    if isinstance(value, bool):
        return f"{indent}<boolean>{str(value).lower()}</boolean>"
    if isinstance(value, int):
        return (
            f"{indent}<{'int' if -(2**31) <= value < 2**31 else 'long'}>{value}</"
            f"{'int' if -(2**31) <= value < 2**31 else 'long'}>"
        )
    if isinstance(value, float):
        return f"{indent}<double>{value!r}</double>"
    return f"{indent}<string>{_text(str(value))}</string>"


def serialize_map(values: Mapping[str, Any]) -> str:
    """A map as ``MapUtil.serializeMap`` writes it."""
    lines = ["<map>"]
    for key, value in values.items():
        lines.append("  <entry>")
        lines.append(f"    <string>{_text(str(key))}</string>")
        lines.append(_value(value, "    "))
        lines.append("  </entry>")
    lines.append("</map>")
    return "\n".join(lines)


def serialize_response(response: Response, indent: str = "") -> str:
    """A ``Response`` as XStream writes ``@XStreamAlias("response")``."""
    inner = indent + "  "
    lines = [
        f"{indent}<response>",
        f"{inner}<status>{response.status.name}</status>",
        f"{inner}<message>{_text(response.message)}</message>",
    ]
    if response.error:
        lines.append(f"{inner}<error>{_text(response.error)}</error>")
    if response.status_message:
        lines.append(f"{inner}<statusMessage>{_text(response.status_message)}</statusMessage>")
    lines.append(f"{indent}</response>")
    return "\n".join(lines)


def serialize_properties(class_name: str | None, properties: Mapping[str, Any]) -> str:
    """Sent content: the destination's properties after template replacement."""
    tag = class_name or "properties"
    lines = [f'<{tag} version="{MIRTH_VERSION}">', "  <pluginProperties/>"]
    for key, value in properties.items():
        text = str(value).lower() if isinstance(value, bool) else _text(str(value))
        lines.append(f"  <{key}>{text}</{key}>")
    lines.append(f"</{tag}>")
    return "\n".join(lines)


def parse_map(text: str) -> dict[str, Any]:
    """Read a map written by :func:`serialize_map` (or by Mirth, for string, number and
    boolean values; other values come back as their text)."""
    if not text.strip():
        return {}
    values: dict[str, Any] = {}
    for entry in ElementTree.fromstring(text).iter("entry"):
        children = list(entry)
        if len(children) != 2:
            continue
        key, value = children
        raw = value.text or ""
        if value.tag == "int" or value.tag == "long":
            values[key.text or ""] = int(raw)
        elif value.tag == "boolean":
            values[key.text or ""] = raw == "true"
        elif value.tag == "double":
            values[key.text or ""] = float(raw)
        else:
            values[key.text or ""] = raw
    return values


def parse_properties(text: str, like: Mapping[str, Any]) -> dict[str, Any]:
    """Read sent content written by :func:`serialize_properties` back into properties, with
    each value converted to the type of the same key in ``like`` (the connector's
    properties), so a queued message is resent exactly as it was rendered."""
    values: dict[str, Any] = dict(like)
    for element in ElementTree.fromstring(text):
        if element.tag == "pluginProperties" or element.tag not in like:
            continue
        raw = element.text or ""
        current = like[element.tag]
        if isinstance(current, bool):
            values[element.tag] = raw == "true"
        elif isinstance(current, int):
            values[element.tag] = int(raw) if raw.lstrip("-").isdigit() else raw
        elif isinstance(current, float):
            values[element.tag] = float(raw)
        else:
            values[element.tag] = raw
    return values
