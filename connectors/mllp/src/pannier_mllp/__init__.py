"""Pannier's MLLP plugin: the Mirth-compatible "TCP Listener" and "TCP Sender" connectors in
MLLP mode, an incremental MLLP frame codec, a small MLLP client and ``pannier send``."""

from pannier_mllp.client import MLLPClientError, send_mllp
from pannier_mllp.framing import (
    DEFAULT_END_BYTES,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_START_BYTES,
    FrameDecoder,
    FrameEncodeError,
    FrameTooLargeError,
    Framing,
    MLLPError,
    encode_frame,
    parse_hex_bytes,
)
from pannier_mllp.listener import LISTENER_DEFAULTS, TcpListener
from pannier_mllp.sender import SENDER_DEFAULTS, SENDER_TEMPLATED, TcpSender

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_END_BYTES",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_START_BYTES",
    "LISTENER_DEFAULTS",
    "SENDER_DEFAULTS",
    "SENDER_TEMPLATED",
    "FrameDecoder",
    "FrameEncodeError",
    "FrameTooLargeError",
    "Framing",
    "MLLPClientError",
    "MLLPError",
    "TcpListener",
    "TcpSender",
    "__version__",
    "encode_frame",
    "parse_hex_bytes",
    "send_mllp",
]
