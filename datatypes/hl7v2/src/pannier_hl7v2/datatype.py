"""The ``HL7V2`` data type: Mirth's HL7 v2.x data type for the Pannier kernel."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pannier import DataType, MessageParseError, Response, Status

from pannier_hl7v2.ack import DEFAULT_DATE_FORMAT, JavaDateFormat, build_ack, read_header
from pannier_hl7v2.message import (
    HEADER_SEGMENTS,
    JAVA_WHITESPACE,
    HL7Message,
    convert_line_breaks,
    detect_separators,
)
from pannier_hl7v2.xml import er7_to_xml, xml_to_er7

logger = logging.getLogger("pannier.hl7v2")

NAME = "HL7V2"

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        # serialization (ER7 -> parsed message / XML), HL7v2SerializationProperties
        "handleRepetitions": True,
        "handleSubcomponents": True,
        "useStrictParser": False,
        "useStrictValidation": False,
        "stripNamespaces": False,
        "segmentDelimiter": "\\r",
        "convertLineBreaks": True,
        # batch, HL7v2BatchProperties
        "splitType": "MSH_Segment",
        "batchScript": "",
        # response generation, HL7v2ResponseGenerationProperties
        "successfulACKCode": "AA",
        "successfulACKMessage": "",
        "errorACKCode": "AE",
        "errorACKMessage": "An Error Occurred Processing Message.",
        "rejectedACKCode": "AR",
        "rejectedACKMessage": "Message Rejected.",
        "msh15ACKAccept": False,
        "dateFormat": DEFAULT_DATE_FORMAT,
    }
)
"""Every property the data type understands, with Mirth's default.

Mirth keeps these in separate groups; ``segmentDelimiter`` (stored escaped, ``\\r``) serves as
the serialization, deserialization and response-generation delimiter at once here.
"""

_ESCAPES = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}


def unescape_delimiter(text: str) -> str:
    """Mirth's ``StringUtil.unescape`` for delimiters: ``\\r \\n \\t \\\\`` become the chars."""
    return re.sub(r"\\([rnt\\])", lambda m: _ESCAPES[m.group(1)], text)


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"HL7V2 property {key!r} must be true or false, got {value!r}")


def _as_str(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"HL7V2 property {key!r} must be text, got {value!r}")


@dataclass(frozen=True)
class HL7v2Properties:
    """Checked data type properties (Mirth's names in :data:`DEFAULTS`)."""

    handle_repetitions: bool = True
    handle_subcomponents: bool = True
    segment_delimiter: str = "\r"
    convert_line_breaks: bool = True
    successful_ack_code: str = "AA"
    successful_ack_message: str = ""
    error_ack_code: str = "AE"
    error_ack_message: str = "An Error Occurred Processing Message."
    rejected_ack_code: str = "AR"
    rejected_ack_message: str = "Message Rejected."
    msh15_ack_accept: bool = False
    date_format: str = DEFAULT_DATE_FORMAT

    @classmethod
    def from_mapping(cls, properties: Mapping[str, Any] | None) -> HL7v2Properties:
        """Check ``properties`` (Mirth names) over :data:`DEFAULTS`; ValueError on a bad one."""
        values = dict(DEFAULTS)
        for key, value in (properties or {}).items():
            if key not in DEFAULTS:
                raise ValueError(
                    f"unknown HL7V2 data type property {key!r}; allowed: "
                    + ", ".join(sorted(DEFAULTS))
                )
            values[key] = value
        for key, default in DEFAULTS.items():
            check = _as_bool if isinstance(default, bool) else _as_str
            values[key] = check(key, values[key])
        if values["useStrictParser"]:
            raise ValueError(
                "HL7V2 property useStrictParser=true (Mirth's HAPI strict parser) is not "
                "supported; Pannier implements the non-strict parser only"
            )
        if values["splitType"] != "MSH_Segment":
            raise ValueError(
                f"HL7V2 property splitType={values['splitType']!r} is not supported; "
                "only 'MSH_Segment' (JavaScript batch scripts are not available)"
            )
        delimiter = unescape_delimiter(values["segmentDelimiter"])
        if not delimiter:
            raise ValueError("HL7V2 property 'segmentDelimiter' must not be empty")
        date_format = values["dateFormat"] or DEFAULT_DATE_FORMAT
        try:
            JavaDateFormat(date_format)
        except ValueError as exc:
            # Mirth silently keeps its default when the pattern does not compile.
            logger.warning("HL7V2 dateFormat ignored, using %s: %s", DEFAULT_DATE_FORMAT, exc)
            date_format = DEFAULT_DATE_FORMAT
        return cls(
            handle_repetitions=values["handleRepetitions"],
            handle_subcomponents=values["handleSubcomponents"],
            segment_delimiter=delimiter,
            convert_line_breaks=values["convertLineBreaks"],
            successful_ack_code=values["successfulACKCode"],
            successful_ack_message=values["successfulACKMessage"],
            error_ack_code=values["errorACKCode"],
            error_ack_message=values["errorACKMessage"],
            rejected_ack_code=values["rejectedACKCode"],
            rejected_ack_message=values["rejectedACKMessage"],
            msh15_ack_accept=values["msh15ACKAccept"],
            date_format=date_format,
        )


# What validate() refuses inside a message: NUL (no database text column takes it, and it is
# never HL7 text), the MLLP frame bytes 0x0B and 0x1C (framing damage), and lone surrogates
# (bytes the connector could not decode). Other C0 controls (form feeds in reports, say) pass, as
# in Mirth; only the XML form refuses them, because XML 1.0 cannot carry them.
_FORBIDDEN = re.compile("[\x00\x0b\x1c\ud800-\udfff]")
_FORBIDDEN_BYTES = b"\x00\x0b\x1c"
_CONTROL_NAMES = {0x00: "NUL", 0x0B: "MLLP start block 0x0B", 0x1C: "MLLP end block 0x1C"}


def _check_characters(text: str) -> None:
    # Non-ASCII characters encode to bytes >= 0x80, so deleting the forbidden bytes from the
    # UTF-8 text finds them in C (a regex over the text is several times slower).
    try:
        data = text.encode("utf-8")
        clean = len(data.translate(None, _FORBIDDEN_BYTES)) == len(data)
    except UnicodeEncodeError:
        clean = False
    if clean:
        return
    bad = _FORBIDDEN.search(text)
    assert bad is not None
    code = ord(bad.group())
    what = _CONTROL_NAMES.get(code, "an undecodable byte")
    raise MessageParseError(
        f"message contains {what} at offset {bad.start()}, which HL7 v2 text cannot carry "
        "(binary data must be escaped as \\X..\\ or Base64-encoded)"
    )


_PRINTABLE_LIMIT = 40


def _excerpt(text: str) -> str:
    """A short, printable excerpt for an error message."""
    head = text[:_PRINTABLE_LIMIT]
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in head[:_PRINTABLE_LIMIT])
    return repr(shown + ("..." if len(text) > _PRINTABLE_LIMIT else ""))


class HL7v2DataType(DataType):
    """Mirth's HL7 v2.x data type (non-strict parser), configured by one connector's properties.

    Built once per connector at deploy time; every method is safe to call from several tasks.
    """

    name = NAME

    def __init__(self, properties: Mapping[str, Any] | None = None) -> None:
        self.properties = HL7v2Properties.from_mapping(properties)
        self._clock = JavaDateFormat(self.properties.date_format)
        delimiter = self.properties.segment_delimiter
        if self.properties.convert_line_breaks:
            pattern = r"\r\n|\r|\n"
            if delimiter not in ("\r", "\n", "\r\n"):
                pattern += "|" + re.escape(delimiter)
        else:
            pattern = re.escape(delimiter)
        self._line_pattern = re.compile(pattern)
        self._delimiter_is_break = delimiter in ("\r", "\n", "\r\n")

    # --- reading --------------------------------------------------------------------------

    def _text(self, raw: str) -> str:
        props = self.properties
        if props.convert_line_breaks:
            raw = convert_line_breaks(raw, props.segment_delimiter)
        return raw.strip(JAVA_WHITESPACE)

    def validate(self, raw: str) -> None:
        """Raise :class:`MessageParseError` unless ``raw`` can be an HL7 v2 ER7 message.

        Rejected: fewer than 6 characters after trimming (Mirth's rule); a first segment other
        than MSH, FHS or BHS; a header without a field separator or without complete encoding
        characters (MSH-2 must hold at least the component and repetition characters and be
        closed by a field separator); NUL, the MLLP frame bytes 0x0B and 0x1C inside the
        message, and undecodable bytes (lone surrogates). Mirth's non-strict parser checks none
        of this beyond the length; these are the cases that cannot be an HL7 message or cannot
        be stored.
        """
        text = self._text(raw)
        if len(text) < 6:
            raise MessageParseError(
                f"message is too short to be HL7 v2 ({len(text)} characters after trimming; "
                f"at least 6 are needed): {_excerpt(text)}"
            )
        if text[:3] not in HEADER_SEGMENTS:
            raise MessageParseError(
                f"message does not start with an MSH segment (starts with {_excerpt(text)})"
            )
        if text[3:9] != "|^~\\&|":
            self._check_header(text)
        _check_characters(text)

    def _check_header(self, text: str) -> None:
        end = text.find(self.properties.segment_delimiter)
        header = text if end == -1 else text[:end]
        name = header[:3]
        if len(header) < 6:
            raise MessageParseError(
                f"{name} segment is truncated: it must carry the field separator and the "
                f"encoding characters (normally |^~\\&), got {_excerpt(header)}"
            )
        fs = header[3]
        if fs.isalnum() or fs.isspace():
            raise MessageParseError(
                f"{name} segment has no field separator: {name}-1 is {fs!r} ({_excerpt(header)})"
            )
        close = header.find(fs, 4)
        chars = header[4:] if close == -1 else header[4:close]
        if close == -1 or len(chars) < 2:
            raise MessageParseError(
                f"{name} segment is truncated: {name}-2 must hold the encoding characters "
                f"(normally ^~\\&) followed by {fs!r}, got {_excerpt(header)}"
            )
        if (
            fs in chars
            or len(set(chars)) != len(chars)
            or any(c.isalnum() or c.isspace() for c in chars)
        ):
            raise MessageParseError(
                f"{name}-2 encoding characters {chars!r} are not valid: they must be distinct "
                f"punctuation characters other than the field separator {fs!r}"
            )

    def parse(self, raw: str) -> HL7Message:
        """Validate ``raw`` (see :meth:`validate`) and return it as a lazy :class:`HL7Message`."""
        self.validate(raw)
        return self.message(raw)

    def message(self, raw: str) -> HL7Message:
        """An :class:`HL7Message` for ``raw`` without validation."""
        props = self.properties
        return HL7Message(
            raw,
            segment_delimiter=props.segment_delimiter,
            convert_line_breaks=props.convert_line_breaks,
        )

    def metadata(self, raw: str) -> dict[str, str]:
        """``mirth_source`` (MSH-4.1), ``mirth_type`` (MSH-9.1, then ``-`` and MSH-9.2 only when
        MSH-9.2 is not empty) and ``mirth_version`` (MSH-12.1), from the first segment only.

        Mirth's ``ER7Serializer.populateMetaData``: a value whose field exists is returned even
        when empty; one whose field is missing is omitted. FHS/BHS give source and type (from
        their fields 4 and 9) but no version. Never raises.
        """
        try:
            return self._metadata(raw)
        except Exception:  # pragma: no cover - defensive: metadata never fails a message
            logger.exception("error reading HL7 v2 metadata")
            return {}

    def _metadata(self, raw: str) -> dict[str, str]:
        props = self.properties
        index = len(raw) - len(raw.lstrip(JAVA_WHITESPACE))
        name = raw[index : index + 3]
        if name not in HEADER_SEGMENTS:
            return {}
        delimiter = props.segment_delimiter
        if props.convert_line_breaks:
            end = len(raw)
            stops = ("\r", "\n") if self._delimiter_is_break else ("\r", "\n", delimiter)
            for stop in stops:
                found = raw.find(stop, index, end)
                if found != -1:
                    end = found
        else:
            end = raw.find(delimiter, index)
            if end == -1:
                end = len(raw)
        if end - index <= 3:
            return {}
        fields = raw[index:end].split(raw[index + 3])
        if len(fields) < 3:  # MSH-2 never closed
            return {}
        chars = fields[1]
        comp = chars[0:1]
        rep = chars[1:2] if props.handle_repetitions else ""
        sub = chars[3:4] if props.handle_subcomponents else ""
        result: dict[str, str] = {}
        if len(fields) > 3:
            result["mirth_source"] = _first_component(fields[3], comp, rep, sub)
        if len(fields) > 8:
            result["mirth_type"] = _message_type(fields[8], comp, rep, sub)
        if name == "MSH" and len(fields) > 11:
            result["mirth_version"] = _first_component(fields[11], comp, rep, sub)
        return result

    # --- XML --------------------------------------------------------------------------------

    def to_xml(self, raw: str) -> str:
        """Mirth's XML for ``raw`` (ER7Reader + XMLPrettyPrinter, §5.1)."""
        props = self.properties
        text = self._text(raw)
        if len(text) < 6:
            raise MessageParseError(
                f"Unable to parse message. It is NULL or too short: {_excerpt(text)}"
            )
        first_end = text.find(props.segment_delimiter)
        separators = detect_separators(text, len(text) if first_end == -1 else first_end)
        return er7_to_xml(
            text,
            separators,
            segment_delimiter=props.segment_delimiter,
            handle_repetitions=props.handle_repetitions,
            handle_subcomponents=props.handle_subcomponents,
        )

    def from_xml(self, xml: str) -> str:
        """ER7 for Mirth's XML form; every segment ends with the segment delimiter."""
        return xml_to_er7(xml, segment_delimiter=self.properties.segment_delimiter)

    # --- batches ----------------------------------------------------------------------------

    def split_batch(self, raw: str) -> list[str]:
        """Split a batch the way Mirth's ``ER7BatchAdaptor`` (split type MSH_Segment) does.

        Lines are split on line breaks, stripped of MLLP frame bytes and trimmed; each MSH line
        or empty line starts a new message; FHS, BHS, BTS and FTS lines are dropped. Each
        message's segments are joined with, and end with, the segment delimiter.
        """
        delimiter = self.properties.segment_delimiter
        messages: list[str] = []
        current: list[str] = []
        for line in self._line_pattern.split(raw):
            line = line.replace("\x0b", "").replace("\x1c", "").strip(JAVA_WHITESPACE)
            if not line or line.startswith("MSH"):
                if current:
                    messages.append(delimiter.join(current) + delimiter)
                    current = []
                if line:
                    current.append(line)
            elif line.startswith(("FHS", "BHS", "BTS", "FTS")):
                continue
            else:
                current.append(line)
        if current:
            messages.append(delimiter.join(current) + delimiter)
        return messages

    # --- responses --------------------------------------------------------------------------

    def auto_response(self, raw: str, status: Status, error: str = "") -> Response | None:
        """Mirth's HL7v2AutoResponder: an AA, AE or AR ACK for a message that ended in ``status``.

        ERROR gives ``errorACKCode`` (Response status ERROR), FILTERED ``rejectedACKCode``
        (FILTERED), anything else ``successfulACKCode`` (SENT). With ``msh15ACKAccept`` the
        inbound MSH-15 decides: NE never answers, ER only errors and rejections, SU only
        successes (None when no answer is due). A message without a usable MSH is answered
        with every field at its default. ``error`` is not put in the ACK (Mirth does not).
        """
        props = self.properties
        text = raw.strip(JAVA_WHITESPACE)
        if text.startswith("<"):
            try:
                text = xml_to_er7(text, segment_delimiter=props.segment_delimiter)
            except Exception:  # not our XML: answer with the defaults
                text = ""
        header = read_header(text, props.segment_delimiter)
        accept = header.accept_ack_type.upper() if props.msh15_ack_accept else ""
        if accept == "NE":
            return None
        if status == Status.ERROR:
            if accept == "SU":
                return None
            code, message, outcome = props.error_ack_code, props.error_ack_message, Status.ERROR
        elif status == Status.FILTERED:
            if accept == "SU":
                return None
            code, message, outcome = (
                props.rejected_ack_code,
                props.rejected_ack_message,
                Status.FILTERED,
            )
        else:
            if accept == "ER":
                return None
            code, message, outcome = (
                props.successful_ack_code,
                props.successful_ack_message,
                Status.SENT,
            )
        ack = build_ack(header, code, message, self._clock.now(), props.segment_delimiter)
        nack = "N" if outcome != Status.SENT else ""
        return Response(
            status=outcome, message=ack, status_message=f"HL7v2 {nack}ACK successfully generated."
        )


def _first_component(value: str, comp: str, rep: str, sub: str) -> str:
    """The text before the first component (or repetition) separator, cut at a subcomponent.

    An empty separator is one the message does not declare (or the properties switch off).
    """
    if comp:
        value = value.partition(comp)[0]
    if rep:
        value = value.partition(rep)[0]
    if sub:
        value = value.partition(sub)[0]
    return value


def _message_type(value: str, comp: str, rep: str, sub: str) -> str:
    """MSH-9.1, plus ``-`` and MSH-9.2 when that is not empty (``getComponent(.., true)``)."""
    if not comp:
        return _first_component(value, comp, rep, sub)
    head, found, rest = value.partition(comp)
    if rep and rep in head:  # the first component ends the field's first repetition
        return _first_component(head, "", rep, sub)
    first = _first_component(head, "", "", sub)
    if not found:
        return first
    second = _first_component(rest, comp, rep, sub)
    return f"{first}-{second}" if second else first
