"""The ``JSON`` data type: Mirth's JSON data type for the Pannier kernel.

Mirth's ``JSONDataTypeDelegate`` declares serialization type JSON: its ``JSONSerializer``
returns null from ``toXML``/``fromXML`` and the message itself from ``toJSON``/``fromJSON``, so
transformers work on the JSON and TRANSFORMED content is stored with ``DATA_TYPE`` ``JSON``.
Pannier does the same: there is no XML form. No metadata, no data-type specific auto-response;
batches only by JavaScript in Mirth, which Pannier does not run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NoReturn

from pannier import DataType, MessageParseError

NAME = "JSON"

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        # batch, JSONBatchProperties (JavaScript is Mirth's only split type for JSON)
        "splitType": "JavaScript",
        "batchScript": "",
    }
)
"""Every property the data type understands, with Mirth's default."""


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _check(properties: Mapping[str, Any] | None) -> None:
    values = dict(DEFAULTS)
    for key, value in (properties or {}).items():
        if key not in DEFAULTS:
            raise ValueError(
                f"unknown JSON data type property {key!r}; allowed: " + ", ".join(sorted(DEFAULTS))
            )
        values[key] = value
    if values["splitType"] not in ("JavaScript", None, ""):
        raise ValueError(
            f"JSON property splitType={values['splitType']!r} is not 'JavaScript', the only "
            "split type of Mirth's JSON data type"
        )
    if values["batchScript"]:
        raise ValueError(
            "JSON batch splitting by JavaScript (batchScript) is not supported; a batch is "
            "processed as one message"
        )


def decode(raw: str) -> Any:
    """Decode JSON text; :class:`MessageParseError` naming the line and column of the error."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise MessageParseError(
            f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:  # NaN, Infinity, -Infinity
        raise MessageParseError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise MessageParseError("not valid JSON: nested too deeply") from None


class JSONDataType(DataType):
    """Mirth's JSON data type. Every method is safe to call from several tasks."""

    name = NAME
    serialization_type = "JSON"
    """What Mirth's transformers work on (``D_MC.DATA_TYPE`` of TRANSFORMED content)."""

    def __init__(self, properties: Mapping[str, Any] | None = None) -> None:
        _check(properties)

    def validate(self, raw: str) -> None:
        """Raise :class:`MessageParseError` (with line and column) unless ``raw`` is one JSON
        value (RFC 8259: no ``NaN``/``Infinity``, no byte order mark, no trailing text)."""
        decode(raw)

    def parse(self, raw: str) -> Any:
        """The decoded value: ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` or
        ``None``."""
        return decode(raw)

    def encode(self, message: Any) -> str:
        """A transformed value back to JSON text (compact, non-ASCII kept as is)."""
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"))

    def metadata(self, raw: str) -> dict[str, str]:
        """Empty: Mirth's ``JSONSerializer.populateMetaData`` sets nothing."""
        return {}

    def to_xml(self, raw: str) -> str:
        raise NotImplementedError(
            "JSON has no XML serialization: Mirth's JSON data type serializes as JSON "
            "(transformers work on the JSON itself)"
        )

    def from_xml(self, xml: str) -> str:
        raise NotImplementedError(
            "JSON has no XML serialization: Mirth's JSON data type serializes as JSON "
            "(transformers work on the JSON itself)"
        )
