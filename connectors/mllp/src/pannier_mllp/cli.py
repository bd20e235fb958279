"""``pannier send --mllp HOST:PORT FILE [FILE...]``: send HL7 files to an MLLP listener."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio
from pannier import CliCommand

from pannier_mllp.client import MLLPClientError, send_mllp

DEFAULT_TIMEOUT = 10.0
_UTF8_BOM = b"\xef\xbb\xbf"


def parse_host_port(value: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6 address]:port"`` -> ``(host, port)``; ``ValueError`` otherwise."""
    text = value.strip()
    problem = f"bad address {value!r}: expected HOST:PORT, such as localhost:6661"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(problem)
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(problem)
        if ":" in host:
            raise ValueError(f"{problem} (write an IPv6 address in brackets: [::1]:6661)")
    if not host:
        raise ValueError(problem)
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{problem} ({port_text!r} is not a port number)") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{problem} (port {port} is outside 1-65535)")
    return host, port


def hl7_message_bytes(data: bytes) -> bytes:
    """A file's contents as one HL7 v2 message for the wire.

    Text editors save lines with LF or CRLF; HL7 v2 separates segments with CR. So CRLF and LF
    become CR, trailing empty lines are dropped, the message ends with exactly one CR, and a UTF-8
    byte order mark at the start (added by some Windows editors) is removed. Nothing else changes:
    the bytes are sent as they are in the file (no charset conversion).
    """
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").rstrip(b"\r")
    return data + b"\r" if data else b""


def _show(response: bytes) -> str:
    text = response.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mllp",
        metavar="HOST:PORT",
        required=True,
        help="the MLLP listener to send to, for example localhost:6661",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=(
            f"wait at most this long to connect and for each response (default {DEFAULT_TIMEOUT:g})"
        ),
    )
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="a file holding one HL7 v2 message (LF or CRLF line ends are sent as CR)",
    )


def run(args: argparse.Namespace) -> int:
    err = sys.stderr
    try:
        host, port = parse_host_port(str(args.mllp))
    except ValueError as exc:
        print(f"pannier send: {exc}", file=err)
        return 1
    timeout = float(getattr(args, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT)
    files = [str(name) for name in args.files]

    payloads: list[bytes] = []
    unreadable = False
    for name in files:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            print(f"pannier send: cannot read {name}: {exc.strerror or exc}", file=err)
            unreadable = True
            continue
        payload = hl7_message_bytes(data)
        if not payload:
            print(f"pannier send: {name} is empty", file=err)
            unreadable = True
            continue
        payloads.append(payload)
    if unreadable:
        print("pannier send: nothing was sent", file=err)
        return 1

    failure: MLLPClientError | None = None
    try:
        responses = trio.run(send_mllp, host, port, payloads, timeout)
    except MLLPClientError as exc:
        failure = exc
        responses = exc.responses
    except KeyboardInterrupt:
        print("pannier send: interrupted", file=err)
        return 1

    for name, response in zip(files, responses, strict=False):
        if len(files) > 1:
            print(f"==> {name} <==")
        sys.stdout.write(_show(response))
    sys.stdout.flush()
    if failure is not None:
        print(f"pannier send: {failure}", file=err)
        print(f"pannier send: {len(responses)} of {len(files)} response(s) received", file=err)
        return 1
    return 0


SEND_COMMAND = CliCommand(
    name="send",
    help="send HL7 v2 files to an MLLP listener and print the responses",
    configure=configure,
    run=run,
)
