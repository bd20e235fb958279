"""Pannier: a healthcare integration engine on trio.

This package is the public kernel API. Plugins import from here (and from the modules named in
``__all__``'s objects) and never from ``pannier.runtime``, ``pannier.store`` or other internals.
"""

from pannier.bus import BusEvent, ClusterBus, ClusterBusSpec
from pannier.connectors import (
    ChannelNotDeployedError,
    ChannelStoppedError,
    ConnectorSetup,
    ConnectorType,
    DestinationConnector,
    Dispatcher,
    DispatchResult,
    RawMessage,
    Response,
    Router,
    SendRequest,
    SourceConnector,
    run_polls,
)
from pannier.datatypes import DataType, DataTypeSpec, MessageParseError
from pannier.extensions import CliCommand, Route, Service
from pannier.hookspecs import hookimpl
from pannier.maps import MapBackend, MapBackendSpec
from pannier.model.status import ContentType, Status, StorageMode
from pannier.sequences import SequenceAllocator, SequenceAllocatorSpec, SequenceSource
from pannier.templates import render_template
from pannier.threads import OwnThread

__version__ = "0.1.0"

__all__ = [
    "BusEvent",
    "ChannelNotDeployedError",
    "ChannelStoppedError",
    "CliCommand",
    "ClusterBus",
    "ClusterBusSpec",
    "ConnectorSetup",
    "ConnectorType",
    "ContentType",
    "DataType",
    "DataTypeSpec",
    "DestinationConnector",
    "DispatchResult",
    "Dispatcher",
    "MapBackend",
    "MapBackendSpec",
    "MessageParseError",
    "OwnThread",
    "RawMessage",
    "Response",
    "Route",
    "Router",
    "SendRequest",
    "SequenceAllocator",
    "SequenceAllocatorSpec",
    "SequenceSource",
    "Service",
    "SourceConnector",
    "Status",
    "StorageMode",
    "__version__",
    "hookimpl",
    "render_template",
    "run_polls",
]
