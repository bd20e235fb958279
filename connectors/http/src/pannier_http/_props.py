"""Reading connector properties (values may come from TOML or Mirth XML, so often as text)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pannier.properties import PropertyError, get_bool, get_int, get_str, resolve_charset

__all__ = ["PropertyError", "get_bool", "get_int", "get_multimap", "get_str", "resolve_charset"]


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
