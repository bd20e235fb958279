"""Reading Mirth-style connector properties (strings such as ``"6661"`` or ``"true"``)."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pannier_mllp.framing import Framing

DEFAULT_ENCODING = "DEFAULT_ENCODING"
"""Mirth's ``CharsetUtils.DEFAULT_ENCODING``: the JVM default charset. Pannier reads it as UTF-8
(the JVM default on Linux and on every JVM since Java 18)."""

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


class PropertyError(ValueError):
    """A connector property has a value the connector cannot use."""


def get_bool(props: Mapping[str, Any], key: str, default: bool) -> bool:
    value = props.get(key, default)
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
    return to_int(props.get(key, default), key, minimum=minimum, maximum=maximum)


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


def get_str(props: Mapping[str, Any], key: str, default: str) -> str:
    value = props.get(key, default)
    return default if value is None else str(value)


def resolve_charset(name: Any) -> str:
    """The Python codec name for Mirth's ``charsetEncoding`` value.

    ``DEFAULT_ENCODING`` (and an empty value) is UTF-8. Java names such as ``ISO-8859-1``,
    ``US-ASCII``, ``windows-1252`` or ``Cp1252`` are accepted as Python knows them.
    """
    text = "" if name is None else str(name).strip()
    if not text or text == DEFAULT_ENCODING:
        return "utf-8"
    try:
        return codecs.lookup(text).name
    except LookupError:
        raise PropertyError(f"property 'charsetEncoding': unknown charset {text!r}") from None


def decoding_problem(data: bytes, charset: str) -> str | None:
    """``None`` when ``data`` decodes cleanly in ``charset``, else a description of the first
    invalid byte."""
    try:
        data.decode(charset)
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.end].hex().upper()
        return f"byte(s) 0x{bad} at offset {exc.start} are not valid {charset}"
    return None


def framing_from_properties(props: Mapping[str, Any], connector: str) -> Framing:
    """The frame codec a TCP connector's properties describe (start/end bytes as Mirth's hex
    strings, plus Pannier's ``maxFrameSize``); a bad value is a :class:`PropertyError`."""
    from pannier_mllp.framing import DEFAULT_MAX_FRAME_SIZE, Framing

    try:
        return Framing.from_hex(
            get_str(props, "startOfMessageBytes", "0B"),
            get_str(props, "endOfMessageBytes", "1C0D"),
            get_int(props, "maxFrameSize", DEFAULT_MAX_FRAME_SIZE, minimum=1),
        )
    except ValueError as exc:
        raise PropertyError(f"{connector}: {exc}") from None
