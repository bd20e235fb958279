"""A small MLLP client: send framed payloads on one connection and collect the responses."""

from __future__ import annotations

from collections import deque

import trio

from pannier_mllp._net import error_text
from pannier_mllp.framing import FrameEncodeError, FrameTooLargeError, Framing, MLLPError


class MLLPClientError(MLLPError):
    """Sending failed; :attr:`responses` holds the responses received before the failure."""

    def __init__(self, message: str, responses: list[bytes]) -> None:
        super().__init__(message)
        self.responses = responses


async def send_mllp(
    host: str,
    port: int,
    payloads: list[bytes],
    timeout: float,
    *,
    framing: Framing | None = None,
) -> list[bytes]:
    """Open one connection to ``host:port``; for each payload, send it framed and read one
    framed response. Returns the response payloads in order.

    ``timeout`` (seconds) bounds the connect, each write and the wait for each response.
    Raises :class:`MLLPClientError` (with the responses received so far) on any failure:
    connection refused, a timeout, the peer closing early, a payload that cannot be framed.
    """
    framing = framing or Framing()
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    responses: list[bytes] = []
    frames: list[bytes] = []
    for number, payload in enumerate(payloads, 1):
        try:
            frames.append(framing.encode(payload))
        except FrameEncodeError as exc:
            raise MLLPClientError(f"message {number} cannot be sent: {exc}", responses) from None

    stream: trio.SocketStream | None = None
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise MLLPClientError(
                f"could not connect to {where}: {error_text(exc)}", responses
            ) from None
    if stream is None:
        raise MLLPClientError(f"could not connect to {where} within {timeout:g} s", responses)

    decoder = framing.decoder()
    pending: deque[bytes | FrameTooLargeError] = deque()
    try:
        for number, frame in enumerate(frames, 1):
            with trio.move_on_after(timeout) as scope:
                await stream.send_all(frame)
            if scope.cancelled_caught:
                raise MLLPClientError(
                    f"{where} did not take message {number} within {timeout:g} s", responses
                )
            with trio.move_on_after(timeout):
                while not pending:
                    data = await stream.receive_some()
                    if not data:
                        raise MLLPClientError(
                            f"{where} closed the connection before responding to message {number}",
                            responses,
                        )
                    pending.extend(decoder.feed(data))
            if not pending:
                raise MLLPClientError(
                    f"no response from {where} to message {number} within {timeout:g} s",
                    responses,
                )
            event = pending.popleft()
            if isinstance(event, FrameTooLargeError):
                raise MLLPClientError(f"response to message {number}: {event}", responses)
            responses.append(event)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise MLLPClientError(
            f"connection to {where} failed: {error_text(exc)}", responses
        ) from None
    finally:
        await trio.aclose_forcefully(stream)
    return responses
