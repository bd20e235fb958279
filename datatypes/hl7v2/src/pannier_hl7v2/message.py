"""A lazy HL7 v2 (ER7, "pipe") message.

:class:`HL7Message` splits the message into segments when it is built and splits a segment into
fields only when something reads it; components, repetitions and subcomponents are split on each
access and never stored. Values are the raw ER7 text: HL7 escape sequences (``\\F\\``, ``\\T\\``...)
are kept as they are (:meth:`Separators.unescape_text` decodes them on request).

Paths name a value the way HL7 people write it, with Mirth's numbering (``MSH.1`` is the field
separator, ``MSH.2`` the encoding characters, so ``MSH.n`` is HL7 field n)::

    msg["PID"]            the whole first PID segment
    msg["PID.3"]          the whole field, every repetition
    msg["PID.3[2]"]       its second repetition (1-based)
    msg["PID.5.1"]        component 1 of the first repetition
    msg["PID.3[2].4.2"]   subcomponent 2 of component 4 of repetition 2
    msg["OBX[3].5"]       field 5 of the third OBX segment (1-based)

A value that is not in the message reads as ``""``. Assigning a value grows the segment, field,
repetition or component list as needed and appends the segment when it does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import NamedTuple

JAVA_WHITESPACE = "".join(chr(code) for code in range(0x21))
"""What Java's ``String.trim()`` strips (every char <= U+0020); Mirth trims with it."""

HEADER_SEGMENTS = frozenset(("MSH", "FHS", "BHS"))
"""Segments whose field 1 is the field separator and field 2 the encoding characters."""

_LINE_BREAKS = re.compile(r"\r\n|\r|\n")


class Separators(NamedTuple):
    """The delimiters of one message (from MSH-1 and MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as Mirth's XML shows it: component, repetition, escape, subcomponent."""
        return self.component + self.repetition + self.escape + self.subcomponent

    def escape_text(self, text: str) -> str:
        """Encode delimiters in ``text`` as HL7 escape sequences (``|`` -> ``\\F\\``...)."""
        esc = self.escape
        if not esc:
            raise ValueError("the message has no escape character; delimiters cannot be escaped")
        table = {
            esc: f"{esc}E{esc}",
            self.field: f"{esc}F{esc}",
            self.component: f"{esc}S{esc}",
            self.repetition: f"{esc}R{esc}",
        }
        if self.subcomponent:
            table[self.subcomponent] = f"{esc}T{esc}"
        return "".join(table.get(char, char) for char in text)

    def unescape_text(self, text: str) -> str:
        """Decode ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` in ``text``; other sequences are kept."""
        esc = self.escape
        if not esc or esc not in text:
            return text
        table = {
            "F": self.field,
            "S": self.component,
            "T": self.subcomponent,
            "R": self.repetition,
            "E": esc,
        }
        pattern = re.escape(esc) + "([FSTRE])" + re.escape(esc)
        return re.sub(pattern, lambda m: table[m.group(1)], text)


STANDARD_SEPARATORS = Separators()
"""``|^~\\&``, what nearly every message declares."""


def detect_separators(text: str, first_segment_end: int | None = None) -> Separators:
    """The separators Mirth's non-strict ``ER7Reader`` uses for ``text`` (already trimmed).

    When the message starts with MSH, FHS or BHS, the field separator is the 4th character and
    the encoding characters are those before the next field separator (each one only if
    present: a short MSH-2 leaves the escape and subcomponent characters empty). ``^~&|`` is
    read as ``^~\\&`` (MIRTH-1544). Without a header the defaults are ``|^~`` with no escape and
    no subcomponent character. The search for the end of MSH-2 stops at the end of the first
    segment (Mirth searches the whole message, which only differs for a truncated MSH).
    """
    if text[3:9] == "|^~\\&|" and text[:3] in HEADER_SEGMENTS:
        return STANDARD_SEPARATORS
    field, component, repetition, escape, subcomponent = "|", "^", "~", "", ""
    if len(text) > 3 and text[:3].upper() in HEADER_SEGMENTS:
        if first_segment_end is None:
            first_segment_end = len(text)
        field = text[3]
        end = text.find(field, 4, first_segment_end)
        if end == -1:
            end = first_segment_end
        if end > 4:
            component = text[4]
        if end > 5:
            repetition = text[5]
        if end > 6:
            escape = text[6]
        if end > 7:
            subcomponent = text[7]
    if text[4:8] == "^~&|":  # MIRTH-1544
        component, repetition, escape, subcomponent = "^", "~", "\\", "&"
    return Separators(field, component, repetition, escape, subcomponent)


def convert_line_breaks(text: str, delimiter: str = "\r") -> str:
    """Mirth's ``StringUtil.convertLineBreaks``: every CRLF, CR and LF becomes ``delimiter``."""
    if delimiter == "\r":
        if "\n" not in text:
            return text
        return text.replace("\r\n", "\r").replace("\n", "\r")
    return _LINE_BREAKS.sub(lambda _m: delimiter, text)


_convert_line_breaks = convert_line_breaks


class PathError(ValueError):
    """A path that does not name an HL7 value."""


_PATH = re.compile(
    r"([^.\[\]\s]+)(?:\[(\d+)\])?"
    r"(?:\.(\d+)(?:\[(\d+)\])?(?:\.(\d+)(?:\.(\d+))?)?)?"
)
_FIELD_PATH = re.compile(r"(\d+)(?:\[(\d+)\])?(?:\.(\d+)(?:\.(\d+))?)?")

_Path = tuple[str, int, int | None, int | None, int | None, int | None]
_FieldPath = tuple[int, int | None, int | None, int | None]


def _positive(path: str, *numbers: str | None) -> tuple[int | None, ...]:
    values = tuple(None if n is None else int(n) for n in numbers)
    if any(v is not None and v < 1 for v in values):
        raise PathError(f"invalid HL7 path {path!r}: positions and indexes start at 1")
    return values


@lru_cache(maxsize=2048)
def parse_path(path: str) -> _Path:
    """Split ``"OBX[2].5[1].3.1"`` into (segment, occurrence, field, repetition, comp, sub)."""
    match = _PATH.fullmatch(path)
    if match is None:
        raise PathError(
            f"invalid HL7 path {path!r}: expected SEG[n].field[r].component.subcomponent, "
            "for example 'PID.5.1' or 'OBX[2].5'"
        )
    name = match.group(1)
    occurrence, field, rep, comp, sub = _positive(path, *match.group(2, 3, 4, 5, 6))
    return name, occurrence or 1, field, rep, comp, sub


@lru_cache(maxsize=1024)
def _parse_field_path(path: str) -> _FieldPath:
    match = _FIELD_PATH.fullmatch(path)
    if match is None:
        raise PathError(
            f"invalid field path {path!r}: expected field[r].component.subcomponent, "
            "for example '5', '5.1' or '3[2].1'"
        )
    field, rep, comp, sub = _positive(path, *match.group(1, 2, 3, 4))
    assert field is not None
    return field, rep, comp, sub


def _pick(parts: list[str], position: int) -> str:
    return parts[position - 1] if position <= len(parts) else ""


def _put(parts: list[str], position: int, value: str) -> None:
    if position > len(parts):
        parts.extend([""] * (position - len(parts)))
    parts[position - 1] = value


class HL7Message:
    """An HL7 v2 message in ER7 encoding, split lazily.

    ``raw`` is kept untouched: :meth:`encode` returns it byte for byte until something is
    assigned. ``convert_line_breaks`` (Mirth's ``convertLineBreaks``, on by default) turns CRLF
    and LF into ``segment_delimiter`` before splitting; surrounding whitespace is set aside as
    Mirth trims it, and restored by :meth:`encode`.
    """

    __slots__ = (
        "_fields",
        "_modified",
        "_names",
        "_prefix",
        "_raw",
        "_segments",
        "_suffix",
        "delimiter",
        "separators",
    )

    def __init__(
        self, raw: str, *, segment_delimiter: str = "\r", convert_line_breaks: bool = True
    ) -> None:
        self._raw = raw
        text = _convert_line_breaks(raw, segment_delimiter) if convert_line_breaks else raw
        body = text.lstrip(JAVA_WHITESPACE)
        start = len(text) - len(body)
        body = body.rstrip(JAVA_WHITESPACE)
        self._prefix = text[:start]
        self._suffix = text[start + len(body) :]
        self.delimiter = segment_delimiter
        self._segments = body.split(segment_delimiter) if body else []
        first = self._segments[0] if self._segments else ""
        self.separators = detect_separators(body, len(first))
        self._fields: list[list[str] | None] = [None] * len(self._segments)
        self._names: list[str] | None = None
        self._modified = False

    # --- reading ----------------------------------------------------------------------------

    @property
    def raw(self) -> str:
        """The text the message was built from."""
        return self._raw

    @property
    def modified(self) -> bool:
        """True once a value has been assigned."""
        return self._modified

    def _segment_names(self) -> list[str]:
        names = self._names
        if names is None:
            fs = self.separators.field
            names = [s.partition(fs)[0].strip(JAVA_WHITESPACE) for s in self._segments]
            self._names = names
        return names

    def _split(self, index: int) -> list[str]:
        fields = self._fields[index]
        if fields is None:
            fields = self._segments[index].split(self.separators.field)
            self._fields[index] = fields
        return fields

    def _find(self, name: str, occurrence: int = 1) -> int:
        for index, segment_name in enumerate(self._segment_names()):
            if segment_name == name:
                occurrence -= 1
                if occurrence == 0:
                    return index
        return -1

    def _value(
        self, index: int, field: int, rep: int | None, comp: int | None, sub: int | None
    ) -> str:
        fields = self._split(index)
        seps = self.separators
        if self._segment_names()[index] in HEADER_SEGMENTS:
            if field <= 2:
                value = seps.field if field == 1 else (fields[1] if len(fields) > 1 else "")
                # MSH.1 and MSH.2 are atoms: only their first "component" exists.
                return value if (rep or 1) == 1 and (comp or 1) == 1 and (sub or 1) == 1 else ""
            position = field - 1
        else:
            position = field
        value = fields[position] if position < len(fields) else ""
        if rep is None and comp is None:
            return value
        if rep is None or rep == 1:
            cut = value.find(seps.repetition)
            if cut != -1:
                value = value[:cut]
        else:
            value = _pick(value.split(seps.repetition), rep)
        if comp is None:
            return value
        value = _pick(value.split(seps.component), comp)
        if sub is None:
            return value
        if not seps.subcomponent:
            return value if sub == 1 else ""
        return _pick(value.split(seps.subcomponent), sub)

    def __getitem__(self, path: str) -> str:
        name, occurrence, field, rep, comp, sub = parse_path(path)
        index = self._find(name, occurrence)
        if index < 0:
            return ""
        if field is None:
            return self._segments[index]
        return self._value(index, field, rep, comp, sub)

    def get(self, path: str, default: str = "") -> str:
        """``msg[path]``, or ``default`` when the value is empty or absent."""
        return self[path] or default

    def repetitions(self, path: str) -> list[str]:
        """Every repetition of a field, or a component of every repetition.

        ``msg.repetitions("PID.3")`` lists the identifiers; ``msg.repetitions("PID.3.4")`` their
        assigning authorities. An absent field gives ``[]``.
        """
        name, occurrence, field, rep, comp, sub = parse_path(path)
        if field is None or rep is not None:
            raise PathError(f"repetitions() needs a field path without [r], got {path!r}")
        index = self._find(name, occurrence)
        if index < 0:
            return []
        whole = self._value(index, field, None, None, None)
        if not whole:
            return []
        seps = self.separators
        if name in HEADER_SEGMENTS and field <= 2:
            return [whole]
        values = whole.split(seps.repetition)
        if comp is None:
            return values
        values = [_pick(v.split(seps.component), comp) for v in values]
        if sub is None:
            return values
        if not seps.subcomponent:
            return [v if sub == 1 else "" for v in values]
        return [_pick(v.split(seps.subcomponent), sub) for v in values]

    def segments(self, name: str | None = None) -> list[Segment]:
        """The segments called ``name`` in message order (all segments when ``name`` is None)."""
        names = self._segment_names()
        return [Segment(self, i) for i, n in enumerate(names) if n and (name is None or n == name)]

    def segment(self, name: str, occurrence: int = 1) -> Segment | None:
        """The ``occurrence``-th (1-based) segment called ``name``, or None."""
        index = self._find(name, occurrence)
        return None if index < 0 else Segment(self, index)

    @property
    def segment_names(self) -> list[str]:
        """The segment ids in message order."""
        return [n for n in self._segment_names() if n]

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments())

    def __contains__(self, name: object) -> bool:
        """``"PID" in msg``: whether the message has a segment of that name."""
        return isinstance(name, str) and bool(name) and name in self._segment_names()

    # --- writing ----------------------------------------------------------------------------

    def __setitem__(self, path: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"HL7 values are text; got {type(value).__name__} for {path!r}")
        name, occurrence, field, rep, comp, sub = parse_path(path)
        index = self._find(name, occurrence)
        if index < 0:
            present = sum(1 for n in self._segment_names() if n == name)
            if occurrence != present + 1:
                raise IndexError(
                    f"cannot set {path!r}: the message has {present} {name} segment(s), so only "
                    f"{name}[{present + 1}] can be added"
                )
            index = self._append(name)
        if field is None:
            self._replace(index, value)
            return
        self._assign(index, field, rep, comp, sub, value)

    def _append(self, text: str) -> int:
        self._segments.append(text)
        self._fields.append(None)
        self._names = None
        self._modified = True
        return len(self._segments) - 1

    def _replace(self, index: int, text: str) -> None:
        self._segments[index] = text
        self._fields[index] = None
        self._names = None
        self._modified = True

    def _assign(
        self,
        index: int,
        field: int,
        rep: int | None,
        comp: int | None,
        sub: int | None,
        value: str,
    ) -> None:
        seps = self.separators
        name = self._segment_names()[index]
        if name in HEADER_SEGMENTS:
            if field <= 2:
                raise ValueError(
                    f"{name}.1 and {name}.2 hold the message's separators and cannot be assigned"
                )
            position = field - 1
        else:
            position = field
        fields = list(self._split(index))
        if position >= len(fields):
            fields.extend([""] * (position + 1 - len(fields)))
        if rep is None and comp is None:
            fields[position] = value
        else:
            repetitions = fields[position].split(seps.repetition)
            r = rep or 1
            if comp is None:
                _put(repetitions, r, value)
            else:
                components = _pick(repetitions, r).split(seps.component)
                if sub is None:
                    _put(components, comp, value)
                else:
                    if not seps.subcomponent:
                        if sub != 1:
                            raise ValueError(
                                "the message declares no subcomponent separator in MSH-2"
                            )
                        _put(components, comp, value)
                    else:
                        subs = _pick(components, comp).split(seps.subcomponent)
                        _put(subs, sub, value)
                        _put(components, comp, seps.subcomponent.join(subs))
                _put(repetitions, r, seps.component.join(components))
            fields[position] = seps.repetition.join(repetitions)
        self._segments[index] = seps.field.join(fields)
        self._fields[index] = fields
        self._modified = True

    def append_segment(self, text: str) -> Segment:
        """Append a segment given as ER7 text (``"NTE|1||note"``) and return it."""
        return Segment(self, self._append(text))

    # --- output -----------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The message as Mirth sees it: line breaks converted, surrounding whitespace trimmed."""
        return self.delimiter.join(self._segments)

    def encode(self) -> str:
        """The message as ER7: the input unchanged if nothing was assigned."""
        if not self._modified:
            return self._raw
        return self._prefix + self.delimiter.join(self._segments) + self._suffix

    def __str__(self) -> str:
        return self.encode()

    def __repr__(self) -> str:
        kind = self["MSH.9"] if "MSH" in self else ""
        return f"<HL7Message {kind or '?'} {len(self.segment_names)} segments>"

    def to_xml(self, *, handle_repetitions: bool = True, handle_subcomponents: bool = True) -> str:
        """Mirth's XML for this message (see :func:`pannier_hl7v2.xml.er7_to_xml`)."""
        from pannier_hl7v2.xml import er7_to_xml

        return er7_to_xml(
            self.text,
            self.separators,
            segment_delimiter=self.delimiter,
            handle_repetitions=handle_repetitions,
            handle_subcomponents=handle_subcomponents,
        )


class Segment:
    """A view of one segment of an :class:`HL7Message`; reads and writes go to the message."""

    __slots__ = ("_index", "_message")

    def __init__(self, message: HL7Message, index: int) -> None:
        self._message = message
        self._index = index

    @property
    def name(self) -> str:
        return self._message._segment_names()[self._index]

    @property
    def text(self) -> str:
        """The segment as ER7 text."""
        return self._message._segments[self._index]

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"<Segment {self.text[:40]!r}>"

    def __len__(self) -> int:
        """The number of the last field present (HL7 numbering)."""
        count = len(self._message._split(self._index)) - 1
        return count + 1 if self.name in HEADER_SEGMENTS and count >= 1 else count

    def __getitem__(self, key: int | str) -> str:
        """``seg[5]``, ``seg["5.1"]`` or ``seg["3[2].1"]``."""
        if isinstance(key, int):
            if key < 1:
                raise PathError(f"field numbers start at 1, got {key}")
            return self._message._value(self._index, key, None, None, None)
        field, rep, comp, sub = _parse_field_path(key)
        return self._message._value(self._index, field, rep, comp, sub)

    def __setitem__(self, key: int | str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"HL7 values are text; got {type(value).__name__}")
        if isinstance(key, int):
            if key < 1:
                raise PathError(f"field numbers start at 1, got {key}")
            self._message._assign(self._index, key, None, None, None, value)
            return
        field, rep, comp, sub = _parse_field_path(key)
        self._message._assign(self._index, field, rep, comp, sub, value)

    def repetitions(self, field: int) -> list[str]:
        """Every repetition of field ``field`` (``[]`` when empty)."""
        whole = self[field]
        if not whole:
            return []
        if self.name in HEADER_SEGMENTS and field <= 2:
            return [whole]
        return whole.split(self._message.separators.repetition)
