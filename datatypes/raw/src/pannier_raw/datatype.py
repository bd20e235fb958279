"""The ``RAW`` data type: Mirth's Raw data type for the Pannier kernel.

Mirth's ``RawSerializer`` does not serialize (``toXML``/``fromXML`` return null, serialization
type RAW): transformers see the text and TRANSFORMED content is stored with ``DATA_TYPE``
``RAW``. Any text is a message. No metadata, no data-type specific auto-response; batches only
by JavaScript in Mirth, which Pannier does not run.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pannier import DataType

NAME = "RAW"

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        # batch, RawBatchProperties (JavaScript is Mirth's only split type for Raw)
        "splitType": "JavaScript",
        "batchScript": "",
    }
)
"""Every property the data type understands, with Mirth's default."""


def _check(properties: Mapping[str, Any] | None) -> None:
    values = dict(DEFAULTS)
    for key, value in (properties or {}).items():
        if key not in DEFAULTS:
            raise ValueError(
                f"unknown RAW data type property {key!r}; allowed: " + ", ".join(sorted(DEFAULTS))
            )
        values[key] = value
    if values["splitType"] not in ("JavaScript", None, ""):
        raise ValueError(
            f"RAW property splitType={values['splitType']!r} is not 'JavaScript', the only "
            "split type of Mirth's Raw data type"
        )
    if values["batchScript"]:
        raise ValueError(
            "RAW batch splitting by JavaScript (batchScript) is not supported; a batch is "
            "processed as one message"
        )


class RawDataType(DataType):
    """Mirth's Raw data type. Every method is safe to call from several tasks."""

    name = NAME
    serialization_type = "RAW"
    """What Mirth's transformers work on (``D_MC.DATA_TYPE`` of TRANSFORMED content)."""

    def __init__(self, properties: Mapping[str, Any] | None = None) -> None:
        _check(properties)

    def parse(self, raw: str) -> str:
        """The text itself: raw messages are not parsed."""
        return raw

    def metadata(self, raw: str) -> dict[str, str]:
        """Empty: Mirth's ``RawSerializer`` gives no metadata."""
        return {}

    def to_xml(self, raw: str) -> str:
        raise NotImplementedError(
            "RAW has no XML serialization: Mirth's raw data type does not serialize "
            "(transformers work on the text itself)"
        )

    def from_xml(self, xml: str) -> str:
        raise NotImplementedError(
            "RAW has no XML serialization: Mirth's raw data type does not serialize "
            "(transformers work on the text itself)"
        )
