"""One MariaDB/MySQL text query, sent and answered on the event loop (no worker thread).

Why: a store batch run in a worker thread costs a thread hop, and the driver re-takes the GIL
after each of its blocking calls (the query, every statement's result, the commit) while the
event loop holds it most of the time under load: at 8 connections a batch the server answers
in under a millisecond spent 3.2 ms in its thread. Here the batch's statements and its COMMIT
go out as one ``COM_QUERY`` written without blocking, and the answers are read when the socket
says they are there; no thread, one round trip. Measured (bench/RESULTS.md): MariaDB
DEVELOPMENT +8 to +12 % msg/s, the engine's CPU per message -4 to -10 %.

Only what the store's write path needs: statements answered by OK or ERR packets (INSERT,
UPDATE, COMMIT), on a plain TCP or Unix socket the driver has already connected and
authenticated. A result set, an unknown packet, TLS or compression is the caller's cue to use
the driver instead (:class:`NotForWire`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import trio

_COM_QUERY = 0x03
_MAX_PAYLOAD = 0xFFFFFF
_SERVER_MORE_RESULTS_EXIST = 0x0008


class WireSocket:
    """The socket under a driver's (PyMySQL or mysqlclient) connection, checked once to be
    one :func:`run_query` can use: no TLS, no compression, autocommit off (so the
    statements before the COMMIT are one transaction).

    The socket is a duplicate of the driver's descriptor (mysqlclient keeps its own inside
    libmariadb); :meth:`close` it before giving the connection up: while it is open the
    server does not see the connection end, nor roll its transaction back."""

    def __init__(self, sock: socket.socket, encoding: str) -> None:
        self.sock = sock
        self.encoding = encoding

    @classmethod
    def of(cls, dbapi_connection: Any) -> WireSocket:
        """Blocking (a query to the server): call from a worker thread. Raises
        :class:`NotForWire` with the reason when the connection cannot be used."""
        conn = dbapi_connection
        module = type(conn).__module__
        if not module.startswith(("pymysql", "MySQLdb")):
            raise NotForWire(f"driver {module.split('.')[0]} is not known here")
        if conn.get_autocommit():
            raise NotForWire("autocommit is on")
        cursor = conn.cursor()
        try:
            cursor.execute(
                "SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_cipher', 'Compression')"
            )
            status = {_text(name).lower(): _text(value) for name, value in cursor.fetchall()}
        finally:
            cursor.close()
        if status.get("ssl_cipher"):
            raise NotForWire("the connection uses TLS")
        if status.get("compression", "OFF").upper() == "ON":
            raise NotForWire("the connection is compressed")
        if module.startswith("pymysql"):
            driver_socket = getattr(conn, "_sock", None)
            if type(driver_socket) is not socket.socket:
                raise NotForWire("PyMySQL's socket is not a plain socket")
            fd = driver_socket.fileno()
        else:
            fd = conn.fileno()
        # A socket object of our own on a duplicate descriptor: the driver's keeps its
        # settings (a timeout would make Python wait inside recv), ours never blocks.
        return cls(socket.socket(fileno=os.dup(fd)), conn.encoding)

    def close(self) -> None:
        self.sock.close()


class NotForWire(Exception):
    """This connection, or what came back on it, is not what this module handles (TLS,
    compression, autocommit, an unknown driver; a packet other than OK and ERR). Raised while
    reading answers, the connection's state is unknown: it must be given up."""


class WireError(Exception):
    """The server answered a statement with an error (``errno``, ``sqlstate``, ``message``);
    the statements after it did not run and the transaction is still open."""

    def __init__(self, errno: int, sqlstate: str, message: str) -> None:
        super().__init__(errno, message)
        self.errno = errno
        self.sqlstate = sqlstate
        self.message = message


class ConnectionLost(Exception):
    """The socket closed or failed before every answer arrived: whether the statements ran
    (the COMMIT included) is not known."""


@dataclass
class QueryResult:
    """The OK packets' affected-row counts, one per statement."""

    affected: list[int]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _packet(sequence: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes((sequence & 0xFF,)) + payload


def command_packets(sql: bytes) -> bytes:
    """``sql`` as a ``COM_QUERY`` command, split into protocol packets."""
    payload = bytes((_COM_QUERY,)) + sql
    out = bytearray()
    sequence = 0
    while True:
        chunk, payload = payload[:_MAX_PAYLOAD], payload[_MAX_PAYLOAD:]
        out += _packet(sequence, chunk)
        sequence += 1
        if len(chunk) < _MAX_PAYLOAD:
            return bytes(out)


def _lenenc(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFC:
        return int.from_bytes(data[pos + 1 : pos + 3], "little"), pos + 3
    if first == 0xFD:
        return int.from_bytes(data[pos + 1 : pos + 4], "little"), pos + 4
    if first == 0xFE:
        return int.from_bytes(data[pos + 1 : pos + 9], "little"), pos + 9
    raise ValueError(f"bad length-encoded integer 0x{first:02x}")


def parse_error(payload: bytes) -> WireError:
    errno = int.from_bytes(payload[1:3], "little")
    if payload[3:4] == b"#":
        sqlstate, message = payload[4:9].decode("ascii", "replace"), payload[9:]
    else:
        sqlstate, message = "HY000", payload[3:]
    return WireError(errno, sqlstate, message.decode("utf-8", "replace"))


class AnswerReader:
    """Reads one command's answers: OK packets until one without "more results", or an ERR."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.affected: list[int] = []

    def feed(self, data: bytes) -> bool:
        """Add received bytes; True once the last answer is in. Raises :class:`WireError`
        for an ERR packet and :class:`NotForWire` for anything but OK and ERR."""
        self._buffer += data
        buffer = self._buffer
        while len(buffer) >= 4:
            length = int.from_bytes(buffer[:3], "little")
            if len(buffer) < 4 + length:
                return False
            payload = bytes(buffer[4 : 4 + length])
            del buffer[: 4 + length]
            if not payload:
                raise NotForWire("empty packet")
            kind = payload[0]
            if kind == 0xFF:
                raise parse_error(payload)
            if kind != 0x00 or length < 7:
                raise NotForWire(f"unexpected answer packet 0x{kind:02x}")
            affected, pos = _lenenc(payload, 1)
            _insert_id, pos = _lenenc(payload, pos)
            status = int.from_bytes(payload[pos : pos + 2], "little")
            self.affected.append(affected)
            if not status & _SERVER_MORE_RESULTS_EXIST:
                if buffer:
                    raise NotForWire("bytes after the last answer")
                return True
        return False


async def run_query(sock: socket.socket, sql: bytes) -> QueryResult:
    """Send ``sql`` (statements separated by ``;``; the connection must allow multiple
    statements) and wait for every answer without blocking the event loop. The socket's own
    blocking mode is left alone: each call passes ``MSG_DONTWAIT``."""
    data = memoryview(command_packets(sql))
    try:
        while data:
            try:
                sent = sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            data = data[sent:]
        reader = AnswerReader()
        while True:
            try:
                received = sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            if not received:
                raise ConnectionLost("the server closed the connection")
            if reader.feed(received):
                return QueryResult(reader.affected)
    except OSError as exc:
        raise ConnectionLost(str(exc)) from exc
