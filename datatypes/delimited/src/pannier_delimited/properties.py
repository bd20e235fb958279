"""The DELIMITED data type's properties: Mirth's names and defaults, checked once at deploy time.

Mirth keeps them in three groups (``DelimitedSerializationProperties``,
``DelimitedDeserializationProperties``, ``DelimitedBatchProperties``). The serialization and
deserialization groups share their names (``columnDelimiter``, ``recordDelimiter``,
``columnWidths``, ``quoteToken``, ``escapeWithDoubleQuote``, ``quoteEscapeToken``); Pannier
builds one data type per connector side, so one value serves both directions here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

logger = logging.getLogger("pannier.delimited")

NAME = "DELIMITED"

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        # serialization (text -> XML) and deserialization (XML -> text)
        "columnDelimiter": ",",
        "recordDelimiter": "\\n",
        "columnWidths": "",
        "quoteToken": '"',
        "escapeWithDoubleQuote": True,
        "quoteEscapeToken": "\\",
        # serialization only
        "columnNames": "",
        "numberedRows": False,
        "ignoreCR": True,
        # batch, DelimitedBatchProperties
        "splitType": "Record",
        "batchSkipRecords": 0,
        "batchMessageDelimiter": "",
        "batchMessageDelimiterIncluded": False,
        "batchGroupingColumn": "",
        "batchScript": "",
    }
)
"""Every property the data type understands, with Mirth's default.

Delimiters and tokens are stored escaped, as in Mirth (``\\n`` is a backslash and an ``n``);
they are unescaped with Mirth's ``StringUtil.unescape`` (``\\b \\t \\n \\f \\r``, ``0xNN`` hex
characters, or a value in double quotes taken literally).
"""

ALIASES: Mapping[str, str] = MappingProxyType(
    {"quoteChar": "quoteToken", "quoteEscapeChar": "quoteEscapeToken"}
)
"""Names used before Mirth 3.3 (its ``migrate3_3_0`` renames them the same way)."""

SPLIT_TYPES = ("Record", "Delimiter", "Grouping_Column", "JavaScript")

_HEX = re.compile(r"[+-]?[0-9A-Fa-f]+")
_INTEGER = re.compile(r"[+-]?[0-9]+")
# In Mirth's order: standard escapes for non-printable characters only (not \\ " ').
_ESCAPES = (("\\b", "\b"), ("\\t", "\t"), ("\\n", "\n"), ("\\f", "\f"), ("\\r", "\r"))


def mirth_unescape(text: str) -> str:
    """Mirth's ``StringUtil.unescape`` (delimiters and tokens of delimited data)."""
    if not text:
        return text
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    for escaped, char in _ESCAPES:
        text = text.replace(escaped, char)
    n = 0
    while True:
        n = text.find("0x", n)
        if n == -1 or len(text) < n + 4:
            break
        digits = text[n + 2 : n + 4]
        if _HEX.fullmatch(digits) is None:
            n += 2
            continue
        char = chr(int(digits, 16) & 0xFFFF)
        text = text[:n] + char + text[n + 4 :]
        n += 1
    return text


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"DELIMITED property {key!r} must be true or false, got {value!r}")


def _as_str(key: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise ValueError(f"DELIMITED property {key!r} must be text, got {value!r}")


def _list(key: str, value: Any) -> list[str] | None:
    """A comma separated list (Mirth's form) or a list; None when empty."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value.split(",")
    if isinstance(value, list | tuple) and all(isinstance(v, str | int) for v in value):
        return [str(v) for v in value] or None
    raise ValueError(f"DELIMITED property {key!r} must be a comma separated list, got {value!r}")


def _column_widths(value: Any) -> tuple[int, ...] | None:
    items = _list("columnWidths", value)
    if items is None:
        return None
    widths: list[int] = []
    for item in items:
        width = int(item) if _INTEGER.fullmatch(item) else 0
        if width <= 0:
            # Mirth logs the error and keeps the columns delimited.
            logger.error(
                "DELIMITED columnWidths %r ignored: %r is not a positive integer", value, item
            )
            return None
        widths.append(width)
    return tuple(widths)


def valid_element_name(name: str) -> bool:
    """Mirth's simplified XML name check: a letter, ``_`` or ``:`` first, then letters, digits,
    ``.``, ``-``, ``_`` or ``:``."""
    if not name or not (name[0].isalpha() or name[0] in "_:"):
        return False
    return all(c.isalpha() or c.isdigit() or c in ".-_:" for c in name[1:])


def _column_names(value: Any) -> tuple[str, ...] | None:
    names = _list("columnNames", value)
    if names is None:
        return None
    bad = [name for name in names if not valid_element_name(name)]
    if bad:
        # Mirth logs the error and keeps the default names column1..columnN.
        logger.error(
            "DELIMITED columnNames %r ignored: %r is not a valid XML element name (letters, "
            "digits, '.', '-', '_' and ':', starting with a letter, '_' or ':')",
            value,
            bad[0],
        )
        return None
    return tuple(names)


def _as_count(key: str, value: Any, default: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"DELIMITED property {key!r} must be a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if not value:
            return default
        try:
            return int(value)
        except ValueError:
            # Mirth logs a warning and keeps the default.
            logger.warning("DELIMITED %s %r is not a number; using %d", key, value, default)
            return default
    raise ValueError(f"DELIMITED property {key!r} must be a number, got {value!r}")


@dataclass(frozen=True)
class DelimitedProperties:
    """Checked properties with delimiters and tokens unescaped (Mirth's names in DEFAULTS)."""

    column_delimiter: str = ","
    record_delimiter: str = "\n"
    column_widths: tuple[int, ...] | None = None
    quote_token: str = '"'
    escape_with_double_quote: bool = True
    quote_escape_token: str = "\\"
    column_names: tuple[str, ...] | None = None
    numbered_rows: bool = False
    ignore_cr: bool = True
    split_type: str = "Record"
    batch_skip_records: int = 0
    batch_message_delimiter: str = ""
    batch_message_delimiter_included: bool = False
    batch_grouping_column: str = ""

    @classmethod
    def from_mapping(cls, properties: Mapping[str, Any] | None) -> DelimitedProperties:
        """Check ``properties`` (Mirth names) over :data:`DEFAULTS`; ValueError on a bad one."""
        values = dict(DEFAULTS)
        for key, value in (properties or {}).items():
            key = ALIASES.get(key, key)
            if key not in DEFAULTS:
                raise ValueError(
                    f"unknown DELIMITED data type property {key!r}; allowed: "
                    + ", ".join(sorted(DEFAULTS))
                )
            values[key] = value

        def text(key: str) -> str:
            # Mirth ignores an empty delimiter or token and keeps its default.
            value = _as_str(key, values[key]) or str(DEFAULTS[key])
            return mirth_unescape(value)

        split_type = _as_str("splitType", values["splitType"]).replace(" ", "_")
        if split_type not in SPLIT_TYPES:
            raise ValueError(
                f"DELIMITED property splitType={values['splitType']!r} is not one of "
                + ", ".join(SPLIT_TYPES)
            )
        if split_type == "JavaScript" or _as_str("batchScript", values["batchScript"]):
            raise ValueError(
                "DELIMITED batch splitting by JavaScript (splitType 'JavaScript', batchScript) "
                "is not supported; use 'Record', 'Delimiter' or 'Grouping_Column'"
            )
        message_delimiter = _as_str("batchMessageDelimiter", values["batchMessageDelimiter"])
        grouping_column = _as_str("batchGroupingColumn", values["batchGroupingColumn"])
        if split_type == "Delimiter" and not message_delimiter:
            raise ValueError("DELIMITED splitType 'Delimiter' needs a batchMessageDelimiter")
        if split_type == "Grouping_Column" and not grouping_column:
            raise ValueError("DELIMITED splitType 'Grouping_Column' needs a batchGroupingColumn")
        return cls(
            column_delimiter=text("columnDelimiter"),
            record_delimiter=text("recordDelimiter"),
            column_widths=_column_widths(values["columnWidths"]),
            quote_token=text("quoteToken"),
            escape_with_double_quote=_as_bool(
                "escapeWithDoubleQuote", values["escapeWithDoubleQuote"]
            ),
            quote_escape_token=text("quoteEscapeToken"),
            column_names=_column_names(values["columnNames"]),
            numbered_rows=_as_bool("numberedRows", values["numberedRows"]),
            ignore_cr=_as_bool("ignoreCR", values["ignoreCR"]),
            split_type=split_type,
            batch_skip_records=_as_count("batchSkipRecords", values["batchSkipRecords"], 0),
            batch_message_delimiter=mirth_unescape(message_delimiter),
            batch_message_delimiter_included=_as_bool(
                "batchMessageDelimiterIncluded", values["batchMessageDelimiterIncluded"]
            ),
            batch_grouping_column=grouping_column,
        )

    def column_name(self, index: int) -> str:
        """The element name of column ``index`` (0-based): a configured name or ``columnN``."""
        names = self.column_names
        if names is not None and index < len(names):
            return names[index]
        return f"column{index + 1}"

    def grouping_column_index(self) -> int:
        """Mirth's resolution of ``batchGroupingColumn`` to a 0-based column index.

        With column names: the position of that name, else the first column. Without: the
        number at the end of the name (``column3`` -> 2), else the first column.
        """
        column = self.batch_grouping_column
        if self.column_names is not None:
            if column in self.column_names:
                return self.column_names.index(column)
            logger.warning("unknown batch grouping column %r; using the first column", column)
            return 0
        digits = re.search(r"[0-9]+$", column)
        if digits is None:
            logger.warning("unknown batch grouping column %r; using the first column", column)
            return 0
        return int(digits.group()) - 1
