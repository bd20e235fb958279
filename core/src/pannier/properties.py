"""Reading connector properties, for connector plugins.

Properties come from TOML channel files (real numbers and booleans) or from Mirth channel XML
(everything as text: ``"6661"``, ``"true"``); these helpers accept both and raise
:class:`PropertyError` naming the property when a value cannot be used, so a bad channel fails
at deploy with a clear message.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import Any

DEFAULT_ENCODING = "DEFAULT_ENCODING"
"""Mirth's ``CharsetUtils.DEFAULT_ENCODING``: the JVM default charset. Pannier reads it as UTF-8
(the JVM default on Linux and on every JVM since Java 18)."""

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


class PropertyError(ValueError):
    """A connector property has a value the connector cannot use."""


def get_str(props: Mapping[str, Any], key: str, default: str) -> str:
    value = props.get(key, default)
    return default if value is None else str(value)


def get_bool(props: Mapping[str, Any], key: str, default: bool) -> bool:
    value = props.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise PropertyError(f"property {key!r}: {value!r} is not a boolean (true/false)")


def get_int(
    props: Mapping[str, Any],
    key: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    value = props.get(key, default)
    if value is None or (isinstance(value, str) and not value.strip()):
        value = default
    return to_int(value, key, minimum=minimum, maximum=maximum)


def to_int(value: Any, key: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int (Mirth stores numbers as strings); ``PropertyError`` otherwise."""
    if isinstance(value, bool):
        raise PropertyError(f"property {key!r}: {value!r} is not a whole number")
    try:
        number = value if isinstance(value, int) else int(str(value).strip())
    except ValueError:
        raise PropertyError(f"property {key!r}: {value!r} is not a whole number") from None
    if minimum is not None and number < minimum:
        raise PropertyError(f"property {key!r}: {number} is below the minimum of {minimum}")
    if maximum is not None and number > maximum:
        raise PropertyError(f"property {key!r}: {number} is above the maximum of {maximum}")
    return number


def resolve_charset(name: Any, key: str = "charsetEncoding") -> str:
    """The Python codec name for a Mirth charset value: ``DEFAULT_ENCODING`` (and empty) is
    UTF-8; Java names such as ``ISO-8859-1``, ``US-ASCII`` or ``Cp1252`` as Python knows them."""
    text = "" if name is None else str(name).strip()
    if not text or text == DEFAULT_ENCODING:
        return "utf-8"
    try:
        return codecs.lookup(text).name
    except LookupError:
        raise PropertyError(f"property {key!r}: unknown charset {text!r}") from None
