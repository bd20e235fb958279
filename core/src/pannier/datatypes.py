"""The contract between the kernel and data type plugins (HL7 v2, XML, JSON, delimited, raw).

A data type plugin contributes :class:`DataTypeSpec` objects through the
``pannier_register_datatypes`` hook; channels name a data type by ``DataTypeSpec.name``
("HL7V2", the value Mirth stores in ``D_MC.DATA_TYPE``). The kernel builds one
:class:`DataType` per channel connector at deploy time with that connector's data type
properties, so per-message work never repeats configuration parsing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pannier.connectors import Response
from pannier.model.status import Status


class MessageParseError(ValueError):
    """The message cannot be read as this data type; the text says why, for the stored error."""


class DataType(ABC):
    """One configured data type: parses, serializes, extracts metadata, auto-generates responses."""

    name: str
    """Mirth's data type name, stored in ``D_MC.DATA_TYPE`` (for example ``"HL7V2"``)."""

    @abstractmethod
    def parse(self, raw: str) -> Any:
        """Parse a message for filters and transformers; raise :class:`MessageParseError`.

        Parsing should be lazy: split what is cheap on arrival and the rest on demand.
        """

    def encode(self, message: Any) -> str:
        """The text of a parsed (and possibly modified) message, in this data type's own
        format: what a transformer's changes produce as the encoded message. The default is
        ``str(message)``."""
        return str(message)

    def metadata(self, raw: str) -> dict[str, str]:
        """Values for Mirth's default metadata columns (``mirth_source``, ``mirth_type``,
        ``mirth_version``), taken from the raw message. Never raises; missing values are omitted."""
        return {}

    def validate(self, raw: str) -> None:  # noqa: B027 - optional hook, empty by design
        """Raise :class:`MessageParseError` if ``raw`` is not a message of this type.

        Called on each inbound message before the source filter/transformer when the channel
        has none (Mirth's fast path); the default accepts anything."""

    def auto_response(self, raw: str, status: Status, error: str = "") -> Response | None:
        """The response Mirth's auto-responder gives for a message that ended in ``status``.

        ``None`` when this data type has no auto-response or the message asks for none
        (HL7 MSH-15 = NE). The default returns a response with an empty message."""
        return Response(status=Status.SENT if status != Status.ERROR else Status.ERROR)

    def to_xml(self, raw: str) -> str:
        """Serialize to the XML tree Mirth's transformers see; data types without one raise."""
        raise NotImplementedError(f"{self.name} has no XML serialization")

    def from_xml(self, xml: str) -> str:
        """The inverse of :meth:`to_xml`."""
        raise NotImplementedError(f"{self.name} has no XML serialization")

    def split_batch(self, raw: str) -> list[str]:
        """Split a batch into its messages; the default treats the input as one message."""
        return [raw]


@dataclass(frozen=True)
class DataTypeSpec:
    """A data type a plugin provides."""

    name: str
    factory: Callable[[Mapping[str, Any]], DataType]
    """Builds a :class:`DataType` from a connector's data type properties."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
