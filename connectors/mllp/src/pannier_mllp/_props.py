"""Reading Mirth-style connector properties (strings such as ``"6661"`` or ``"true"``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pannier_mllp.framing import Framing

from pannier.properties import (
    DEFAULT_ENCODING,
    PropertyError,
    get_bool,
    get_int,
    get_str,
    resolve_charset,
    to_int,
)

__all__ = [
    "DEFAULT_ENCODING",
    "PropertyError",
    "decoding_problem",
    "framing_from_properties",
    "get_bool",
    "get_int",
    "get_str",
    "resolve_charset",
    "to_int",
]


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
