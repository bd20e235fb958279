"""The whole plugin contract of Pannier, in one file.

Every hook is named ``pannier_<something>``; a plugin implements one by defining a function of
that name in the module its ``pannier.plugins`` entry point names, decorated with
``@pannier.hookimpl``. A function named ``pannier_...`` that matches no spec stops start-up, so
a misspelt hook never fails silently.

Hooks are synchronous and cheap. Anything long-running is an object the kernel runs in its own
nursery (a :class:`~pannier.extensions.Service`, a source connector, a bus).

Register hooks return lists; every plugin's list is collected. Observer hooks return nothing;
every implementation is called, in registration order, and an exception in one is logged and
does not stop the others or the engine.

Each spec's docstring says: what it is for, its parameters, what it returns, the version that
added it, and what it means when several engines share a database (cluster mode). The same text
is published in ``docs/plugin-hooks.md``; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pannier.bus import ClusterBusSpec
    from pannier.connectors import ConnectorType
    from pannier.datatypes import DataTypeSpec
    from pannier.engine import Engine
    from pannier.extensions import CliCommand, Route, Service
    from pannier.maps import MapBackendSpec
    from pannier.model.channel import Channel
    from pannier.scripting import ScriptEngineSpec
    from pannier.sequences import SequenceAllocatorSpec

PROJECT = "pannier"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registries -------------------------------------------------------------------------------


@hookspec
def pannier_register_connectors() -> Sequence[ConnectorType]:
    """Contribute connector types (sources and destinations).

    Returns:
        A list of :class:`pannier.connectors.ConnectorType`, each named by its Mirth transport
        name ("TCP Listener", "File Writer"). Two plugins contributing the same transport name and
        mode stop start-up with an error naming both.

    Added in: 0.1.

    Cluster: every node loads the same connectors; whether a polling source runs on this node
    is the kernel's decision, not the connector's.
    """


@hookspec
def pannier_register_datatypes() -> Sequence[DataTypeSpec]:
    """Contribute data types ("HL7V2", "XML", "JSON", "DELIMITED", "RAW").

    Returns:
        A list of :class:`pannier.datatypes.DataTypeSpec`. Names are upper case, as Mirth stores
        them in ``D_MC.DATA_TYPE``; a duplicate name stops start-up.

    Added in: 0.1.

    Cluster: no effect; data types are pure functions of the message.
    """


@hookspec
def pannier_register_map_backends() -> Sequence[MapBackendSpec]:
    """Contribute backends for the global, global channel and configuration maps.

    Returns:
        A list of :class:`pannier.maps.MapBackendSpec`; ``[cluster] map_backend`` selects one by
        name (core provides ``memory``).

    Added in: 0.1.

    Cluster: only a backend with ``shared=True`` makes map values visible to every node; the
    engine warns when a cluster runs on an unshared one.
    """


@hookspec
def pannier_register_sequence_allocators() -> Sequence[SequenceAllocatorSpec]:
    """Contribute message id allocation strategies.

    Returns:
        A list of :class:`pannier.sequences.SequenceAllocatorSpec`; ``[database]
        sequence_allocator`` selects one (core provides ``block`` and ``single``).

    Added in: 0.1.

    Cluster: an allocator must give ids unique across every engine sharing the database; it
    gets them only through the store's locked ``reserve``, never by counting on its own.

    Event loop: ``SequenceAllocator.next_ids_nowait`` may hand out ids already in memory without
    blocking (``block`` does); the store then allocates without a worker thread. The default
    answers None. ``wants_prefetch`` (event loop, non-blocking) and ``prefetch`` (worker thread)
    let an allocator fetch ids ahead of need, so no batch waits for ``reserve``; the defaults
    never prefetch.
    """


@hookspec
def pannier_register_cluster_buses() -> Sequence[ClusterBusSpec]:
    """Contribute buses that carry events between engines.

    Returns:
        A list of :class:`pannier.bus.ClusterBusSpec`; ``[cluster] bus`` selects one (core
        provides ``local``, which reaches this process only).

    Added in: 0.1.

    Cluster: a shared bus is what lets a deploy, a configuration change or a status query
    reach every node.
    """


@hookspec
def pannier_register_script_engines() -> Sequence[ScriptEngineSpec]:
    """Contribute languages for filters, transformers and channel scripts.

    Returns:
        A list of :class:`pannier.scripting.ScriptEngineSpec`, each named by its language in
        lower case; a filter rule or transformer step whose ``kind`` is that language, or a
        channel script whose ``language`` is, compiles with it at deploy (core provides
        ``python``). A duplicate language stops start-up.

    Added in: 0.1.

    Cluster: every node must install the same engines, or a channel deploys on some nodes
    only.
    """


@hookspec
def pannier_register_routes(engine: Engine) -> Sequence[Route]:
    """Contribute HTTP API routes under ``/api/extensions/<plugin>/`` or ``/api/system/``.

    Parameters:
        engine: the engine the routes will serve; handlers may keep a reference to it.

    Returns:
        A list of :class:`pannier.extensions.Route`. A route outside the two allowed prefixes,
        or clashing with another, stops start-up.

    Added in: 0.1.

    Cluster: a route answers for the node it is called on; routes that report cluster-wide
    state read it from shared storage or the bus.
    """


@hookspec
def pannier_register_commands() -> Sequence[CliCommand]:
    """Contribute ``pannier <name>`` sub-commands.

    Returns:
        A list of :class:`pannier.extensions.CliCommand`. A name already taken by the kernel or
        another plugin is reported and the later one skipped.

    Added in: 0.1.

    Cluster: no effect.
    """


@hookspec
def pannier_register_services(engine: Engine) -> Sequence[Service]:
    """Contribute background services (pruner, metrics exporter, cluster heartbeat...).

    Parameters:
        engine: the engine that will run them.

    Returns:
        A list of :class:`pannier.extensions.Service`, started in the engine's nursery after the
        store is ready and before channels deploy; cancelled after channels drain at shutdown.

    Added in: 0.1.

    Cluster: each node runs its own services; a service that must run on one node only takes
    a cluster lease first. In a node running several workers (``server.workers``) only
    worker 0 calls this hook and runs the services.
    """


@hookspec
def pannier_config_defaults() -> Mapping[str, Mapping[str, Any]]:
    """Declare default settings for plugin sections of ``pannier.toml``.

    Returns:
        A mapping ``{plugin name: {key: default}}``. Keys of ``[plugins.<name>]`` not declared
        here are an error at start-up naming the key and the keys the plugin accepts; a value of
        another type than its default's is an error naming the key, the value and the expected
        type.

    Added in: 0.1.

    Cluster: every node should carry the same plugin settings; nothing enforces it yet.
    """


# --- lifecycle and observer events --------------------------------------------------------------


@hookspec
def pannier_engine_started(engine: Engine) -> None:
    """Observe the engine becoming ready: store open, services and channels started.

    Parameters:
        engine: the engine.

    Added in: 0.1.

    Cluster: fires on each node as that node starts.
    """


@hookspec
def pannier_engine_stopping(engine: Engine) -> None:
    """Observe the start of shutdown, before listeners close and in-flight messages drain.

    Parameters:
        engine: the engine.

    Added in: 0.1.

    Cluster: fires on the node that is stopping only.
    """


@hookspec
def pannier_channel_deployed(engine: Engine, channel: Channel) -> None:
    """Observe a channel deployed and started on this engine.

    Parameters:
        engine: the engine.
        channel: the deployed channel's model.

    Added in: 0.1.

    Cluster: fires on each node that deploys the channel.
    """


@hookspec
def pannier_channel_undeployed(engine: Engine, channel_id: str) -> None:
    """Observe a channel stopped and undeployed on this engine.

    Parameters:
        engine: the engine.
        channel_id: the channel's id.

    Added in: 0.1.

    Cluster: fires on each node that undeploys the channel.
    """


@hookspec
def pannier_connector_state_changed(
    channel_id: str, metadata_id: int, state: str, details: Mapping[str, Any]
) -> None:
    """Observe a connector's state change ("idle", "receiving", "sending", "connected"...).

    Parameters:
        channel_id: the channel's id.
        metadata_id: 0 for the source, the destination's metaDataId otherwise.
        state: the new state.
        details: connector-specific facts, such as ``{"connections": 3}``.

    Added in: 0.1.

    Cluster: fires on the node where the change happened; a dashboard aggregates through a bus.
    """


@hookspec
def pannier_message_finished(channel_id: str, message_id: int, statuses: Mapping[int, str]) -> None:
    """Observe a message whose processing is complete and stored.

    Parameters:
        channel_id: the channel's id.
        message_id: the message id.
        statuses: the final status code of each connector message, by metadata id
            (0 = source).

    Called on the hot path: keep implementations to a few microseconds (count, enqueue).

    Added in: 0.1.

    Cluster: fires on the node that processed the message.
    """
