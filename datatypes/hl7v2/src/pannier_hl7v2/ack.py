"""HL7 v2 ACK generation, as Mirth's ``HL7v2AutoResponder`` and ACK generator do it (§5.2).

``MSH|^~\\&|{MSH-5.1 or MIRTH}|{MSH-6.1}|{MSH-3.1}|{MSH-4.1}|{ts}||ACK[^{MSH-9.2}^ACK]|{ts}|
{MSH-11.1 or P}[^{MSH-11.2}]|{MSH-12.1 or 2.4}<CR>MSA|{code}|{MSH-10.1 or 1}[|{text}]<CR>``

The event and ``^ACK`` suffix appear only for version 2.4 and later; MSH-10 of the ACK is the
same timestamp string as its MSH-7; the encoding characters are copied from the inbound MSH.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

from pannier_hl7v2.message import JAVA_WHITESPACE

DEFAULT_DATE_FORMAT = "yyyyMMddHHmmss.SSS"


# --- java.text.SimpleDateFormat -------------------------------------------------------------

_JAVA_LETTERS = frozenset("GyYMLwWDdFEuaHkKhmsSzZX")
_INT_MAX = 2**31 - 1


def _offset(moment: datetime, colon: bool, zulu: bool, hours_only: bool = False) -> str:
    delta = moment.utcoffset()
    minutes = 0 if delta is None else int(delta.total_seconds() // 60)
    if zulu and minutes == 0:
        return "Z"
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    if hours_only:
        return f"{sign}{hours:02d}"
    return f"{sign}{hours:02d}{':' if colon else ''}{mins:02d}"


def _number(getter: Callable[[datetime], int], width: int) -> Callable[[datetime], str]:
    return lambda moment: str(getter(moment)).zfill(width)


def _field(letter: str, count: int) -> Callable[[datetime], str]:
    if letter == "G":
        return lambda _moment: "AD"
    if letter in "yY":

        def year(moment: datetime) -> int:
            return moment.isocalendar()[0] if letter == "Y" else moment.year

        if count == 2:
            return lambda moment: f"{year(moment) % 100:02d}"
        return _number(year, count)
    if letter in "ML":
        if count >= 4:
            return lambda moment: calendar.month_name[moment.month]
        if count == 3:
            return lambda moment: calendar.month_abbr[moment.month]
        return _number(lambda moment: moment.month, count)
    if letter == "E":
        if count >= 4:
            return lambda moment: calendar.day_name[moment.weekday()]
        return lambda moment: calendar.day_abbr[moment.weekday()]
    getters: dict[str, Callable[[datetime], int]] = {
        "w": lambda m: m.isocalendar()[1],
        "W": lambda m: (m.day + datetime(m.year, m.month, 1).weekday()) // 7 + 1,
        "D": lambda m: m.timetuple().tm_yday,
        "d": lambda m: m.day,
        "F": lambda m: (m.day - 1) // 7 + 1,
        "u": lambda m: m.isoweekday(),
        "H": lambda m: m.hour,
        "k": lambda m: m.hour or 24,
        "K": lambda m: m.hour % 12,
        "h": lambda m: m.hour % 12 or 12,
        "m": lambda m: m.minute,
        "s": lambda m: m.second,
        "S": lambda m: m.microsecond // 1000,
    }
    if letter in getters:
        return _number(getters[letter], count)
    if letter == "a":
        return lambda moment: "AM" if moment.hour < 12 else "PM"
    if letter == "z":
        return lambda moment: moment.tzname() or _offset(moment, True, False)
    if letter == "Z":
        return lambda moment: _offset(moment, False, False)
    # X: ISO 8601 offset, "Z" for UTC
    if count == 1:
        return lambda moment: _offset(moment, False, True, hours_only=True)
    return lambda moment: _offset(moment, count >= 3, True)


def _literal(text: str) -> Callable[[datetime], str]:
    return lambda _moment: text


def _tokens(pattern: str) -> list[str | tuple[str, int]]:
    tokens: list[str | tuple[str, int]] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "'":
            if i + 1 < n and pattern[i + 1] == "'":
                tokens.append("'")
                i += 2
                continue
            j, literal = i + 1, []
            while True:
                if j >= n:
                    raise ValueError(f"unterminated quote in date format {pattern!r}")
                if pattern[j] == "'":
                    if j + 1 < n and pattern[j + 1] == "'":
                        literal.append("'")
                        j += 2
                        continue
                    break
                literal.append(pattern[j])
                j += 1
            tokens.append("".join(literal))
            i = j + 1
        elif ("a" <= char <= "z") or ("A" <= char <= "Z"):
            if char not in _JAVA_LETTERS:
                raise ValueError(f"illegal pattern character {char!r} in date format {pattern!r}")
            j = i
            while j < n and pattern[j] == char:
                j += 1
            tokens.append((char, j - i))
            i = j
        else:
            tokens.append(char)
            i += 1
    return tokens


def _default_format(moment: datetime) -> str:
    return (
        f"{moment.year:04d}{moment.month:02d}{moment.day:02d}{moment.hour:02d}"
        f"{moment.minute:02d}{moment.second:02d}.{moment.microsecond // 1000:03d}"
    )


_second_cache: tuple[int, str] = (-1, "")


def _default_now() -> str:
    """``yyyyMMddHHmmss.SSS`` for now; the seconds part is formatted once per second."""
    global _second_cache
    now = time.time()
    second = int(now)
    cached_second, prefix = _second_cache
    if second != cached_second:
        prefix = time.strftime("%Y%m%d%H%M%S", time.localtime(second))
        _second_cache = (second, prefix)
    return f"{prefix}.{int((now - second) * 1000):03d}"


def _seconds_format(moment: datetime) -> str:
    return (
        f"{moment.year:04d}{moment.month:02d}{moment.day:02d}{moment.hour:02d}"
        f"{moment.minute:02d}{moment.second:02d}"
    )


class JavaDateFormat:
    """A ``java.text.SimpleDateFormat`` pattern (English month and day names, local time).

    Raises ValueError for a pattern Java would reject (an unknown letter, an open quote).
    """

    __slots__ = ("_format", "_zoned", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._zoned = False
        if pattern == DEFAULT_DATE_FORMAT:
            self._format: Callable[[datetime], str] = _default_format
            return
        if pattern == "yyyyMMddHHmmss":
            self._format = _seconds_format
            return
        parts: list[Callable[[datetime], str]] = []
        for token in _tokens(pattern):
            if isinstance(token, str):
                parts.append(_literal(token))
            else:
                self._zoned = self._zoned or token[0] in "zZX"
                parts.append(_field(*token))
        self._format = lambda moment: "".join(part(moment) for part in parts)

    def format(self, moment: datetime) -> str:
        """``moment`` formatted by the pattern."""
        return self._format(moment)

    def now(self) -> str:
        """The current local time formatted by the pattern."""
        if self._format is _default_format:
            return _default_now()
        moment = datetime.now()
        return self._format(moment.astimezone() if self._zoned else moment)


# --- the ACK ----------------------------------------------------------------------------------


class InboundHeader(NamedTuple):
    """What the ACK generator reads from the inbound MSH ("" when absent)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    event: str = ""
    control_id: str = ""
    processing_id: str = ""
    processing_mode: str = ""
    version: str = ""
    accept_ack_type: str = ""


def _header_start(message: str) -> int:
    """Where the MSH segment the ACK answers starts, or -1 when there is none."""
    if message.startswith("MSH"):
        return 0
    if message.startswith(("FHS", "BHS")):
        # An unsplit batch: answer its first message.
        found = re.search(r"[\r\n]MSH", message)
        return -1 if found is None else found.start() + 1
    return -1


def read_header(message: str, segment_delimiter: str = "\r") -> InboundHeader:
    """The inbound fields Mirth's ACK generator uses; defaults when there is no usable MSH.

    ``message`` should be trimmed. The MSH ends at the first CR, LF or ``segment_delimiter``.
    """
    start = _header_start(message)
    if start < 0 or len(message) - start < 9:
        return InboundHeader()
    fd, cd = message[start + 3], message[start + 4]
    if cd == fd or cd in "\r\n":
        return InboundHeader()
    rd, ed, sd = "~", "\\", "&"
    stops = (fd, "\r", "\n")
    if message[start + 5] not in stops:
        rd = message[start + 5]
        if message[start + 6] not in stops:
            ed = message[start + 6]
            if message[start + 7] not in stops:
                sd = message[start + 7]
    end = len(message)
    for stop in ("\r", "\n") if segment_delimiter in "\r\n" else ("\r", "\n", segment_delimiter):
        found = message.find(stop, start, end)
        if found != -1:
            end = found
    fields = message[start:end].split(fd)
    if len(fields) < 15:
        fields.extend([""] * (15 - len(fields)))
    message_type = fields[8].split(cd)
    processing = fields[10].split(cd)
    return InboundHeader._make(
        (
            fd,
            cd,
            rd,
            ed,
            sd,
            fields[2].partition(cd)[0],  # sending application, MSH-3.1
            fields[3].partition(cd)[0],  # sending facility, MSH-4.1
            fields[4].partition(cd)[0],  # receiving application, MSH-5.1
            fields[5].partition(cd)[0],  # receiving facility, MSH-6.1
            message_type[1] if len(message_type) > 1 else "",  # event, MSH-9.2
            fields[9].partition(cd)[0],  # control id, MSH-10.1
            processing[0],  # processing id, MSH-11.1
            processing[1] if len(processing) > 1 else "",  # processing mode, MSH-11.2
            fields[11].partition(cd)[0],  # version, MSH-12.1
            fields[14].partition(cd)[0],  # accept acknowledgment type, MSH-15.1
        )
    )


def _java_int(text: str) -> int:
    """``Integer.parseInt``: an optional sign, decimal digits, 32-bit range."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits.isdecimal():
        raise ValueError(text)
    value = int(text)
    if not -_INT_MAX - 1 <= value <= _INT_MAX:
        raise ValueError(text)
    return value


@lru_cache(maxsize=256)
def event_in_ack(version: str) -> bool:
    """Mirth's rule: ``ACK^{event}^ACK`` only when the version reads as 2.x with x > 3.

    The version is split on dots (trailing empty parts dropped, as Java does); with fewer than
    two parts there is no suffix; a part that is not a number leaves the default 2.4.
    """
    parts = version.split(".")
    while parts and parts[-1] == "":
        parts.pop()
    if len(parts) < 2:
        return False
    major, minor = 2, 4
    try:
        major = _java_int(parts[0])
        minor = _java_int(parts[1])
    except ValueError:
        pass
    return major == 2 and minor > 3


def build_ack(
    header: InboundHeader,
    code: str,
    text: str,
    timestamp: str,
    segment_delimiter: str = "\r",
) -> str:
    """The ACK text for ``header`` (see the module docstring)."""
    fd, cd = header.field, header.component
    version = header.version or "2.4"
    ack_type = f"ACK{cd}{header.event}{cd}ACK" if event_in_ack(version) else "ACK"
    processing = header.processing_id or "P"
    if header.processing_mode:
        processing += cd + header.processing_mode
    msh = fd.join(
        (
            "MSH",
            cd + header.repetition + header.escape + header.subcomponent,
            header.receiving_application or "MIRTH",
            header.receiving_facility,
            header.sending_application,
            header.sending_facility,
            timestamp,
            "",
            ack_type,
            timestamp,
            processing,
            version,
        )
    )
    msa = f"MSA{fd}{code}{fd}{header.control_id or '1'}"
    if text:
        msa += fd + text
    return msh + segment_delimiter + msa + segment_delimiter


def generate_ack(
    message: str,
    code: str,
    text: str = "",
    *,
    timestamp: str | None = None,
    segment_delimiter: str = "\r",
) -> str:
    """An ACK answering ``message`` with acknowledgment ``code`` and optional ``text``."""
    if timestamp is None:
        timestamp = _default_now()
    header = read_header(message.strip(JAVA_WHITESPACE), segment_delimiter)
    return build_ack(header, code, text, timestamp, segment_delimiter)
