"""Reading frames one at a time from a trio stream (plain TCP or TLS).

MLLPv2 interleaves commit acknowledgements with messages on one connection, so the bytes of a
connection are decoded by one decoder and frames that arrived together wait in a queue until
they are asked for.
"""

from __future__ import annotations

from collections import deque

import trio
from pannier.net import receive_some_or_eof

from pannier_mllp.framing import FrameDecoder, FrameTooLargeError


class FrameReader:
    """Frames of one connection, in order; cancelling :meth:`next` loses no bytes."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        decoder: FrameDecoder,
        buffer_size: int,
        *,
        strict_tls_eof: bool = False,
    ) -> None:
        """``strict_tls_eof``: a TLS peer closing without ``close_notify`` raises
        ``trio.BrokenResourceError`` instead of reading as end of stream. A sender wants that:
        a TLS server that refuses a client certificate just drops the connection after the
        handshake, which must not pass for "closed without answering"."""
        self.stream = stream
        self.strict_tls_eof = strict_tls_eof
        self.decoder = decoder
        self.buffer_size = buffer_size
        self.pending: deque[bytes | FrameTooLargeError] = deque()
        self.skipped_reported = 0

    @property
    def idle(self) -> bool:
        """True when nothing is waiting: no queued frame and no partial frame."""
        return not self.pending and self.decoder.buffered == 0

    @property
    def in_frame(self) -> bool:
        """True while a frame has started and has not ended (and none is queued)."""
        return not self.pending and self.decoder.in_frame

    async def next(self) -> bytes | FrameTooLargeError | None:
        """The next frame's payload (or a too-large marker); ``None`` at end of stream."""
        while not self.pending:
            if self.strict_tls_eof:
                data = bytes(await self.stream.receive_some(self.buffer_size))
            else:
                data = await receive_some_or_eof(self.stream, self.buffer_size)
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        return self.pending.popleft()

    def newly_skipped(self) -> int:
        """Bytes skipped outside frames since the last call (for logging)."""
        skipped = self.decoder.skipped_bytes - self.skipped_reported
        self.skipped_reported = self.decoder.skipped_bytes
        return skipped
