"""MLLP release 2 (HL7's "reliable transport"): commit acknowledgements, with Mirth's names.

Each message frame is answered by a commit acknowledgement frame, ``start + ackBytes + end``
(``<VT><ACK><FS><CR>``) once the receiver has stored it, or ``start + nackBytes + end`` when it
could not. The sender of a frame resends it when the answer is a NAK, something else, or does
not come in time, at most ``maxRetries`` times (Mirth's ``MLLPv2StreamHandler``: 0 = no limit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pannier.properties import PropertyError, get_bool, get_int, get_str

from pannier_mllp.framing import parse_hex_bytes

MLLPV2_DEFAULTS: Mapping[str, Any] = {
    "useMLLPv2": False,
    "ackBytes": "06",
    "nackBytes": "15",
    "maxRetries": 2,
}
"""Mirth's ``MLLPModeProperties`` for MLLPv2 and their defaults."""


@dataclass(frozen=True)
class MLLPv2:
    """The commit acknowledgement settings of one connector."""

    ack: bytes
    nack: bytes
    max_retries: int

    def is_commit_frame(self, payload: bytes) -> bool:
        """True for an ACK or NAK block (never a message)."""
        return payload in (self.ack, self.nack)


def mllpv2_from_properties(props: Mapping[str, Any], connector: str) -> MLLPv2 | None:
    """The MLLPv2 settings, or ``None`` when ``useMLLPv2`` is false."""
    if not get_bool(props, "useMLLPv2", False):
        return None
    try:
        ack = parse_hex_bytes(get_str(props, "ackBytes", "06"), name="ackBytes")
        nack = parse_hex_bytes(get_str(props, "nackBytes", "15"), name="nackBytes")
    except ValueError as exc:
        raise PropertyError(f"{connector}: {exc}") from None
    if not ack or not nack or ack == nack:
        raise PropertyError(
            f"{connector}: ackBytes ({ack.hex().upper()!r}) and nackBytes "
            f"({nack.hex().upper()!r}) must be non-empty and different"
        )
    retries = get_int(props, "maxRetries", 2, minimum=0)
    return MLLPv2(ack, nack, retries)
