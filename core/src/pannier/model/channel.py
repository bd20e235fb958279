"""The channel model, shaped like Mirth's ``com.mirth.connect.model.Channel`` (mirth-compat.md §4).

Field names follow Mirth's so that Mirth users recognise them and the channel XML maps onto the
model one to one. Connector-specific settings stay in ``Connector.properties`` (a plain mapping
the connector type validates); the settings every source or destination has — response
selection, processing threads, queueing — are typed here because the kernel acts on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pannier.model.status import StorageMode

AUTO_BEFORE = "Auto-generate (Before processing)"
AUTO_AFTER_SOURCE = "Auto-generate (After source transformer)"
AUTO_DESTINATIONS = "Auto-generate (Destinations completed)"
RESPONSE_NONE = "None"
RESPONSE_POSTPROCESSOR = "Postprocessor"
AUTO_RESPONSES = (AUTO_BEFORE, AUTO_AFTER_SOURCE, AUTO_DESTINATIONS)


@dataclass
class Script:
    """A script with its language, kept verbatim so Mirth's JavaScript survives a round trip."""

    code: str = ""
    language: str = "python"

    @property
    def is_empty(self) -> bool:
        return not self.code.strip()


@dataclass
class Element:
    """A filter rule or transformer step; ``kind`` selects how the kernel runs it."""

    kind: str
    name: str = ""
    enabled: bool = True
    operator: Literal["AND", "OR", "NONE"] = "AND"
    settings: dict[str, Any] = field(default_factory=dict)
    mirth_extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Mirth channel XML this object was imported from, kept so that parts Pannier does not
    model survive an export (see :mod:`pannier.model.mirth_xml`)."""


@dataclass
class Filter:
    rules: list[Element] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not any(rule.enabled for rule in self.rules)


@dataclass
class Transformer:
    steps: list[Element] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not any(step.enabled for step in self.steps)


@dataclass
class SourceSettings:
    """Mirth's ``sourceConnectorProperties``."""

    responseVariable: str = ""
    """Empty means the source connector type's default (TCP Listener: after source
    transformer; most others: None), as each Mirth properties class sets its own."""
    respondAfterProcessing: bool = True
    """True (the default) means the source queue is off: respond after processing."""
    processBatch: bool = False
    firstResponse: bool = False
    processingThreads: int = 1
    queueBufferSize: int = 0


@dataclass
class QueueSettings:
    """Mirth's ``destinationConnectorProperties`` (defaults from
    ``DestinationConnectorProperties``)."""

    queueEnabled: bool = False
    sendFirst: bool = False
    retryIntervalMillis: int = 10000
    retryCount: int = 0
    rotate: bool = False
    regenerateTemplate: bool = False
    includeFilterTransformer: bool = False
    threadCount: int = 1
    threadAssignmentVariable: str = ""
    validateResponse: bool = False
    queueBufferSize: int = 0
    reattachAttachments: bool = True


@dataclass
class Connector:
    """A source or destination connector of a channel."""

    metaDataId: int
    name: str
    transportName: str
    mode: Literal["SOURCE", "DESTINATION"]
    enabled: bool = True
    waitForPrevious: bool = True
    properties: dict[str, Any] = field(default_factory=dict)
    inboundDataType: str = "HL7V2"
    outboundDataType: str = "HL7V2"
    inboundProperties: dict[str, Any] = field(default_factory=dict)
    outboundProperties: dict[str, Any] = field(default_factory=dict)
    filter: Filter = field(default_factory=Filter)
    transformer: Transformer = field(default_factory=Transformer)
    responseTransformer: Transformer = field(default_factory=Transformer)
    source: SourceSettings = field(default_factory=SourceSettings)
    """Only meaningful when ``mode == "SOURCE"``."""
    queue: QueueSettings = field(default_factory=QueueSettings)
    """Only meaningful when ``mode == "DESTINATION"``."""
    mirth_extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Mirth channel XML this object was imported from, kept so that parts Pannier does not
    model survive an export (see :mod:`pannier.model.mirth_xml`)."""


@dataclass
class MetaDataColumn:
    """A custom metadata column (``D_MCMn``), filled from the connector map key ``mappingName``."""

    name: str
    type: Literal["STRING", "NUMBER", "BOOLEAN", "TIMESTAMP"] = "STRING"
    mappingName: str = ""


def default_metadata_columns() -> list[MetaDataColumn]:
    """Mirth's ``DefaultMetaData``: SOURCE and TYPE."""
    return [
        MetaDataColumn("SOURCE", "STRING", "mirth_source"),
        MetaDataColumn("TYPE", "STRING", "mirth_type"),
    ]


@dataclass
class ChannelProperties:
    """Mirth's ``ChannelProperties``."""

    messageStorageMode: StorageMode = StorageMode.DEVELOPMENT
    initialState: Literal["STARTED", "STOPPED", "PAUSED"] = "STARTED"
    clearGlobalChannelMap: bool = True
    encryptData: bool = False
    removeContentOnCompletion: bool = False
    removeOnlyFilteredOnCompletion: bool = False
    removeAttachmentsOnCompletion: bool = False
    storeAttachments: bool = False
    metaDataColumns: list[MetaDataColumn] = field(default_factory=default_metadata_columns)


@dataclass
class Channel:
    """A channel: one source, destinations in chains, scripts and properties."""

    id: str
    name: str
    source: Connector
    destinations: list[Connector] = field(default_factory=list)
    description: str = ""
    revision: int = 1
    nextMetaDataId: int = 0
    preprocessingScript: Script = field(default_factory=Script)
    postprocessingScript: Script = field(default_factory=Script)
    deployScript: Script = field(default_factory=Script)
    undeployScript: Script = field(default_factory=Script)
    properties: ChannelProperties = field(default_factory=ChannelProperties)
    mirth_extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Mirth channel XML this object was imported from, kept so that parts Pannier does not
    model survive an export (see :mod:`pannier.model.mirth_xml`)."""

    def __post_init__(self) -> None:
        highest = max((d.metaDataId for d in self.destinations), default=0)
        self.nextMetaDataId = max(self.nextMetaDataId, highest + 1)

    @property
    def enabled_destinations(self) -> list[Connector]:
        return [d for d in self.destinations if d.enabled]

    def chains(self) -> list[list[Connector]]:
        """Enabled destinations grouped into chains: ``waitForPrevious=false`` starts a new one.

        Chains run concurrently; destinations within a chain run in order (mirth-compat §2.3).
        """
        chains: list[list[Connector]] = []
        for destination in self.enabled_destinations:
            if not chains or not destination.waitForPrevious:
                chains.append([])
            chains[-1].append(destination)
        return chains
