"""Reading connector properties (values may come from TOML or Mirth XML, so often as text)."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import Any


class PropertyError(ValueError):
    """A connector property has a value the connector cannot use."""


def get_str(props: Mapping[str, Any], key: str, default: str) -> str:
    value = props.get(key, default)
    return default if value is None else str(value)


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
        return default
    if isinstance(value, bool):
        raise PropertyError(f"{key} must be a whole number, not {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise PropertyError(f"{key} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise PropertyError(f"{key} must be at least {minimum}, not {number}")
    if maximum is not None and number > maximum:
        raise PropertyError(f"{key} must be at most {maximum}, not {number}")
    return number


def get_bool(props: Mapping[str, Any], key: str, default: bool) -> bool:
    value = props.get(key, default)
    if isinstance(value, bool):
        return value
    if value is None:
        return default
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise PropertyError(f"{key} must be true or false, not {value!r}")


def resolve_charset(name: Any) -> str:
    text = "" if name is None else str(name).strip()
    if text in ("", "DEFAULT_ENCODING"):
        return "utf-8"
    try:
        return codecs.lookup(text).name
    except LookupError:
        raise PropertyError(f"unknown charset {text!r}") from None


def get_multimap(props: Mapping[str, Any], key: str) -> list[tuple[str, str]]:
    """A Mirth ``Map<String, List<String>>`` (or a plain name → value table) as pairs."""
    value = props.get(key) or {}
    if not isinstance(value, Mapping):
        raise PropertyError(f"{key} must be a table of name = value (or list of values)")
    pairs: list[tuple[str, str]] = []
    for name, item in value.items():
        if isinstance(item, list | tuple):
            pairs.extend((str(name), str(v)) for v in item)
        else:
            pairs.append((str(name), str(item)))
    return pairs
