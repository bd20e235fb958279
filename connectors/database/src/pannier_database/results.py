"""Result rows as the XML messages Mirth's Database Reader makes of them.

One row is ``<result><column>value</column>...</result>``; aggregated rows are
``<results><result>...</result>...</results>``. As in Mirth (``DatabaseReceiver``):

* column names are the result's column labels, lower-cased (Mirth reads rows through a
  case-insensitive map with lower-case keys), and two columns whose names differ only in case
  are an error;
* a name that is not a valid XML element name is fixed the way Mirth's ``fixColumnName`` does:
  an invalid first character becomes ``_``, every run of invalid characters becomes ``_``;
* a NULL value gives no element at all;
* values are written as Java's ``toString`` would: ``true``/``false``, timestamps as
  ``2024-01-31 10:30:00.0``; bytes (BLOBs) are decoded with the connector's ``encoding``.

Mirth pretty-prints the message with an XML declaration; Pannier writes the same elements
compactly (``<result><id>1</id></result>``) — only whitespace differs.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Row = dict[str, Any]
"""One row: lower-cased column name → the driver's value."""

_START = (
    ":A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_MORE = "\\-.0-9\u00b7\u0300-\u036f\u203f-\u2040"
_VALID_NAME = re.compile(f"[{_START}][{_START}{_MORE}]*")
_INVALID_START = re.compile(f"[^{_START}]")
_INVALID_CHARS = re.compile(f"[^{_START}{_MORE}]+")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"}
_NEEDS_ESCAPE = re.compile("[&<>\r]")


class DuplicateColumnError(ValueError):
    """The query returns two columns whose names differ only in case."""


def column_names(labels: Sequence[str]) -> list[str]:
    """The lower-cased labels; :class:`DuplicateColumnError` when two are the same."""
    names = [label.lower() for label in labels]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DuplicateColumnError(
                f"the query returns the column {name!r} more than once (column names are "
                f"case-insensitive, as in Mirth); give the columns distinct aliases"
            )
        seen.add(name)
    return names


def fix_column_name(name: str) -> str:
    """Mirth's ``DatabaseReceiver.fixColumnName``: a usable XML element name."""
    if not name.strip():
        return "_"
    if _INVALID_START.match(name[0]):
        name = "_" + name[1:]
    return _INVALID_CHARS.sub("_", name)


def element_name(name: str) -> str:
    return name if _VALID_NAME.fullmatch(name) else fix_column_name(name)


def value_text(value: Any, encoding: str) -> str | None:
    """``value`` as Mirth writes it into the message (``None`` for SQL NULL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode(encoding, "replace")
    if isinstance(value, datetime.datetime):
        # java.sql.Timestamp.toString(): nanoseconds without trailing zeros, at least ".0".
        fraction = f"{value.microsecond:06d}000".rstrip("0") or "0"
        return f"{value:%Y-%m-%d %H:%M:%S}.{fraction}"
    if isinstance(value, datetime.time):
        return f"{value:%H:%M:%S}"
    return str(value)


def _escape(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], text)


def row_xml(row: Mapping[str, Any], encoding: str) -> str:
    """One row as ``<result>...</result>``."""
    parts = ["<result>"]
    for name, value in row.items():
        text = value_text(value, encoding)
        if text is None:
            continue
        tag = element_name(name)
        parts.append(f"<{tag}>{_escape(text)}</{tag}>")
    parts.append("</result>")
    return "".join(parts)


def rows_xml(rows: Iterable[str]) -> str:
    """Several ``row_xml`` results as one ``<results>`` message (``aggregateResults``)."""
    return "<results>" + "".join(rows) + "</results>"
