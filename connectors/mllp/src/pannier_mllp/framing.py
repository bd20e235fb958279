"""MLLP framing: an incremental frame decoder and an encoder (mirth-compat.md §5.3).

A frame is ``start bytes + payload + end bytes``; MLLP's defaults are ``0x0B`` and ``0x1C 0x0D``.
Like Mirth's ``FrameStreamHandler`` the decoder skips anything before a start block and, once a
frame has started, takes every byte as payload until the end bytes: a start byte inside a payload
is data, and only the full end sequence ends a frame.

Unlike Mirth, the decoder bounds memory: a frame whose payload grows past ``max_frame_size`` is
reported as a :class:`FrameTooLargeError` (in order with the good frames around it), its bytes are
dropped, and decoding resumes at the next start block.

The decoder is pure (no I/O) and works on whole buffers with ``bytearray.find``; it never loops
over single bytes in Python. Frame modes with a handshake (MLLPv2 commit acknowledgements) can be
built on top of it: they change what is written after a frame, not how frames are found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_START_BYTES = b"\x0b"
DEFAULT_END_BYTES = b"\x1c\x0d"
DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
"""16 MiB: far above any real HL7 v2 message, low enough that a runaway client cannot exhaust
memory."""

__all__ = [
    "DEFAULT_END_BYTES",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_START_BYTES",
    "FrameDecoder",
    "FrameEncodeError",
    "FrameTooLargeError",
    "Framing",
    "MLLPError",
    "encode_frame",
    "format_hex_bytes",
    "parse_hex_bytes",
]


class MLLPError(Exception):
    """Base class of this package's errors."""


class FrameTooLargeError(MLLPError):
    """A frame's payload exceeded the maximum frame size; its bytes were dropped.

    The decoder *returns* instances of this class in its event list (it does not raise them), so
    a caller sees the error exactly where it happened among the good frames.
    """

    def __init__(self, limit: int, received: int) -> None:
        self.limit = limit
        self.received = received
        super().__init__(
            f"MLLP frame larger than the maximum frame size of {limit} bytes "
            f"(at least {received} payload bytes received without the end-of-message bytes); "
            "the frame was discarded"
        )


class FrameEncodeError(MLLPError, ValueError):
    """A payload cannot be framed without being cut short by the receiver."""


_HEX_PREFIX = re.compile(r"0[xX]")


def parse_hex_bytes(value: str | bytes, *, name: str = "frame bytes") -> bytes:
    """Parse Mirth's hex notation for frame bytes (``"0B"``, ``"1C0D"``) into bytes.

    Whitespace and ``0x`` prefixes are accepted (``"0x1C 0x0D"``); bytes are returned unchanged.
    Raises ``ValueError`` naming ``name`` for anything that is not whole hex bytes.
    """
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    text = _HEX_PREFIX.sub("", "".join(str(value).split()))
    if len(text) % 2 or not re.fullmatch(r"[0-9A-Fa-f]*", text):
        raise ValueError(f"{name}: {value!r} is not a sequence of hex bytes such as '0B' or '1C0D'")
    return bytes.fromhex(text)


def format_hex_bytes(value: bytes) -> str:
    """The Mirth notation of ``value`` (``b"\\x1c\\r"`` -> ``"1C0D"``)."""
    return value.hex().upper()


def encode_frame(
    payload: bytes,
    start: bytes = DEFAULT_START_BYTES,
    end: bytes = DEFAULT_END_BYTES,
) -> bytes:
    """Frame ``payload``. Raises :class:`FrameEncodeError` if the payload holds the end bytes.

    A payload containing the end sequence would be cut there by every receiver (Mirth included),
    so it is refused instead of being delivered truncated.
    """
    if end:
        at = payload.find(end)
        if at >= 0:
            raise FrameEncodeError(
                f"the payload contains the end-of-message bytes {format_hex_bytes(end)} at "
                f"offset {at}; a receiver would cut the message there"
            )
    return b"".join((start, payload, end))


class FrameDecoder:
    """Incremental decoder: :meth:`feed` bytes as they arrive, get complete payloads back.

    Frames may be split across any number of :meth:`feed` calls, and one call may complete several
    frames. Bytes outside frames are skipped (counted in :attr:`skipped_bytes`).
    """

    __slots__ = (
        "_buf",
        "_end",
        "_in_frame",
        "_max",
        "_scan",
        "_start",
        "skipped_bytes",
    )

    def __init__(
        self,
        start: bytes = DEFAULT_START_BYTES,
        end: bytes = DEFAULT_END_BYTES,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        if not start:
            raise ValueError("the start-of-message bytes must not be empty in MLLP mode")
        if not end:
            raise ValueError("the end-of-message bytes must not be empty in MLLP mode")
        if max_frame_size < 1:
            raise ValueError(f"the maximum frame size must be at least 1, not {max_frame_size}")
        self._start = bytes(start)
        self._end = bytes(end)
        self._max = max_frame_size
        self._buf = bytearray()
        self._in_frame = False
        # Offset in _buf (while in a frame) from which the end bytes may still be found.
        self._scan = 0
        self.skipped_bytes = 0
        """Bytes seen outside any frame (before a start block or after a discarded frame)."""

    @property
    def in_frame(self) -> bool:
        """True while a frame has started and its end bytes have not arrived yet."""
        return self._in_frame

    @property
    def buffered(self) -> int:
        """Bytes held: the payload so far of an unfinished frame, or a possible partial start."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes | FrameTooLargeError]:
        """Add received bytes; return the frames they completed, in order.

        Each item is a payload (``bytes``) or a :class:`FrameTooLargeError` standing for a frame
        that was dropped at that point of the stream.
        """
        buf = self._buf
        buf += data
        start, end, limit = self._start, self._end, self._max
        events: list[bytes | FrameTooLargeError] = []
        pos = 0  # everything before pos in buf is consumed
        while True:
            if not self._in_frame:
                at = buf.find(start, pos)
                if at < 0:
                    # Keep a tail that could be the beginning of a split start sequence.
                    keep_from = max(pos, len(buf) - (len(start) - 1))
                    self.skipped_bytes += keep_from - pos
                    pos = keep_from
                    break
                self.skipped_bytes += at - pos
                pos = at + len(start)
                self._in_frame = True
                self._scan = pos
            at = buf.find(end, self._scan)
            if at >= 0:
                size = at - pos
                if size > limit:
                    events.append(FrameTooLargeError(limit, size))
                else:
                    events.append(bytes(buf[pos:at]))
                pos = at + len(end)
                self._in_frame = False
                continue
            # No end yet; the last len(end) - 1 bytes may be the start of a split end sequence.
            self._scan = max(pos, len(buf) - (len(end) - 1))
            certain = self._scan - pos  # payload bytes that cannot belong to the end sequence
            if certain > limit:
                events.append(FrameTooLargeError(limit, certain))
                pos = len(buf)
                self._in_frame = False  # resynchronise at the next start block
                continue  # (finds nothing more in this call)
            break
        if pos:
            del buf[:pos]
            if self._in_frame:
                self._scan -= pos
        return events

    def reset(self) -> None:
        """Forget any partial frame (for instance after a receive timeout)."""
        self._buf.clear()
        self._in_frame = False
        self._scan = 0


@dataclass(frozen=True)
class Framing:
    """A frame configuration: start and end bytes and the maximum payload size."""

    start: bytes = DEFAULT_START_BYTES
    end: bytes = DEFAULT_END_BYTES
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE

    def __post_init__(self) -> None:
        FrameDecoder(self.start, self.end, self.max_frame_size)  # validates

    @classmethod
    def from_hex(
        cls,
        start: str | bytes = "0B",
        end: str | bytes = "1C0D",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> Framing:
        """Build from Mirth's hex strings (``startOfMessageBytes``, ``endOfMessageBytes``)."""
        return cls(
            parse_hex_bytes(start, name="startOfMessageBytes"),
            parse_hex_bytes(end, name="endOfMessageBytes"),
            max_frame_size,
        )

    def decoder(self) -> FrameDecoder:
        """A fresh decoder for one stream."""
        return FrameDecoder(self.start, self.end, self.max_frame_size)

    def encode(self, payload: bytes) -> bytes:
        """Frame ``payload`` (see :func:`encode_frame`)."""
        return encode_frame(payload, self.start, self.end)
