"""A deployed channel and its message pipeline.

The synchronous path (source queue off, Mirth's default) makes each message durable in two
group-committed transactions:

1. **received** — ``D_M``, the source ``D_MM`` row (status R), RAW and SOURCE_MAP content;
   committed before any processing, so a crash after it is recovered, never lost;
2. **processed** — the source's final status and content, every destination's row, content and
   response, the selected response and ``PROCESSED = TRUE``; committed *before* the response is
   handed back, so a client never holds an ACK for a message the database does not have.

Everything a message needs that does not depend on the message (connector instances, data
types, compiled statements, storage settings, templates to render) is prepared at deploy.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import trio

from pannier.connectors import (
    ChannelStoppedError,
    ConnectorType,
    DestinationConnector,
    DispatchResult,
    RawMessage,
    Response,
    SendRequest,
    SourceConnector,
)
from pannier.datatypes import DataType, MessageParseError
from pannier.model.channel import Channel, Connector
from pannier.model.status import ContentType, Status
from pannier.runtime import xstream
from pannier.runtime.queue import DestinationQueue
from pannier.runtime.recovery import recover
from pannier.runtime.response import select_response
from pannier.runtime.scripts import (
    Compiled,
    CompiledFilter,
    CompiledTransformer,
    ResponseView,
    make_scope,
)
from pannier.runtime.storage import StorageSettings, storage_settings
from pannier.store.statistics import StatisticsAccumulator
from pannier.store.store import (
    INSERT_CONNECTOR,
    UPDATE_CONNECTOR,
    UPDATE_MESSAGE,
    ChannelStore,
    Unit,
)
from pannier.templates import render_template

if TYPE_CHECKING:
    from pannier.engine import Engine

log = logging.getLogger("pannier.channel")
script_log = logging.getLogger("pannier.script")


def _describe(exc: BaseException) -> str:
    """A stored error for a failed script or data type: the exception and where it arose."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = next(
        (f"{f.filename}, line {f.lineno}" for f in reversed(frames) if f.filename.startswith("<")),
        "",
    )
    return f"{type(exc).__name__}: {exc}" + (f" ({where})" if where else "")


STATS_FLUSH_SECONDS = 1.0


@dataclass
class DestinationRuntime:
    """A destination prepared at deploy."""

    model: Connector
    type: ConnectorType
    connector: DestinationConnector
    chain_id: int
    order_id: int
    templated: tuple[str, ...]
    datatype: DataType | None = None
    response_transformer: CompiledTransformer = field(
        default_factory=lambda: CompiledTransformer(())
    )
    filter: CompiledFilter = field(default_factory=lambda: CompiledFilter(()))
    transformer: CompiledTransformer = field(default_factory=lambda: CompiledTransformer(()))


PREPROCESSOR_NAMES = ("message", "channel_map", "source_map", "logger")
POSTPROCESSOR_NAMES = ("message", "channel_map", "source_map", "response_map", "logger")
LIFECYCLE_NAMES = ("channel_id", "channel_name", "logger")


@dataclass(frozen=True)
class SourceScripts:
    """The source connector's compiled filter and transformer, and the channel's scripts."""

    preprocessor: Compiled | None = None
    postprocessor: Compiled | None = None
    deploy: Compiled | None = None
    undeploy: Compiled | None = None

    filter: CompiledFilter = field(default_factory=lambda: CompiledFilter(()))
    transformer: CompiledTransformer = field(default_factory=lambda: CompiledTransformer(()))

    @property
    def empty(self) -> bool:
        return not self.filter.rules and not self.transformer.steps


@dataclass
class MessageContext:
    """What one message carries through the pipeline."""

    message_id: int
    raw: str
    received: Any
    source_map: dict[str, Any]
    channel_map: dict[str, Any] = field(default_factory=dict)
    response_map: dict[str, Any] = field(default_factory=dict)
    destination_statuses: list[Status] = field(default_factory=list)
    encoded: str = ""
    stats: list[tuple[int, Status, Status | None]] = field(default_factory=list)


class DeployedChannel:
    """One channel running on this engine: its source, destinations, pipeline and statistics."""

    def __init__(
        self,
        engine: Engine,
        channel: Channel,
        channel_store: ChannelStore,
        source: SourceConnector,
        source_type: ConnectorType,
        source_datatype: DataType,
        destinations: list[DestinationRuntime],
        scripts: SourceScripts | None = None,
    ) -> None:
        self.engine = engine
        self.scripts = scripts or SourceScripts()
        self.queues = {
            d.model.metaDataId: DestinationQueue(self, d)
            for d in destinations
            if d.model.queue.queueEnabled
        }
        self.channel = channel
        self.id = channel.id
        self.store = channel_store
        self.source = source
        self.source_type = source_type
        self.datatype = source_datatype
        self.destinations = destinations
        self.chains = _group_chains(destinations)
        self.storage: StorageSettings = storage_settings(channel.properties.messageStorageMode)
        self.statistics = StatisticsAccumulator()
        self.server_id = engine.server_id
        settings = channel.source.source
        self.response_variable = settings.responseVariable
        self._process_limit = trio.Semaphore(max(1, settings.processingThreads))
        self.source_queue: (
            tuple[trio.MemorySendChannel[Any], trio.MemoryReceiveChannel[Any]] | None
        ) = None
        if not settings.respondAfterProcessing:
            self.source_queue = trio.open_memory_channel(settings.queueBufferSize or 1000)
        self._metadata_columns = [
            (c.name, c.mappingName) for c in channel.properties.metaDataColumns
        ]
        channel_store.set_metadata_columns(
            (c.name, c.type) for c in channel.properties.metaDataColumns
        )
        self._stopping = False
        self._inflight = 0
        self._drained = trio.Event()
        self._drained.set()
        self._source_scope = trio.CancelScope()
        self._source_done = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.state = "deploying"
        self.bound: Any = None
        self.recovered = 0
        self.deployed_at = datetime.now(UTC)
        """When this deployment was made (the dashboard's ``deployedDate``)."""

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Start destinations, the statistics flush and the source; run until cancelled."""
        started: list[DestinationRuntime] = []
        lifecycle = {"channel_id": self.id, "channel_name": self.channel.name, "logger": script_log}
        if self.scripts.deploy is not None:
            self.scripts.deploy(lifecycle)  # an error here fails the deploy, as in Mirth
        try:
            for destination in self.destinations:
                await destination.connector.start()
                started.append(destination)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flush_statistics_forever)
                # Unfinished work of this server first, in message id order, before any new
                # message is accepted (mirth-compat §3.5).
                self.recovered = await recover(self)
                for queue in self.queues.values():  # after recovery, as Mirth (MIRTH-3467)
                    nursery.start_soon(queue.run)
                if self.source_queue is not None:
                    for _ in range(max(1, self.channel.source.source.processingThreads)):
                        nursery.start_soon(self._source_queue_worker)
                self._nursery = nursery
                self.bound = await nursery.start(self._run_source)
                self.state = "started"
                task_status.started(self.bound)
        finally:
            self.state = "stopped"
            if self.scripts.undeploy is not None:
                try:
                    self.scripts.undeploy(lifecycle)
                except Exception as exc:
                    log.error(
                        "channel %s: undeploy script failed: %s", self.channel.name, _describe(exc)
                    )
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await self._flush_statistics(final=True)
                for destination in started:
                    try:
                        await destination.connector.stop()
                    except Exception:
                        log.exception(
                            "channel %s: stopping destination %r failed",
                            self.channel.name,
                            destination.model.name,
                        )

    async def _run_source(self, *, task_status: trio.TaskStatus[Any]) -> None:
        with self._source_scope:
            await self.source.run(self, task_status=task_status)
        self._source_done.set()

    async def pause(self, deadline: float) -> None:
        """Mirth's pause: stop the source (after in-flight messages finish, until
        ``deadline``) while destinations and their queues keep running."""
        if self.state != "started":
            return
        self.state = "pausing"
        self._stopping = True
        with trio.move_on_at(deadline):
            await self._drained.wait()
        self._source_scope.cancel()
        await self._source_done.wait()
        self.state = "paused"

    async def resume(self) -> None:
        """Start the source again after :meth:`pause`."""
        if self.state != "paused" or self._nursery is None:
            return
        self._source_scope = trio.CancelScope()
        self._source_done = trio.Event()
        self._stopping = False
        self.bound = await self._nursery.start(self._run_source)
        self.state = "started"

    async def drain(self, deadline: float) -> bool:
        """Stop taking messages, wait for in-flight ones until ``deadline`` (trio time), then
        close the source. Returns True when every in-flight message finished."""
        self._stopping = True
        self.state = "stopping"
        finished = True
        with trio.move_on_at(deadline) as scope:
            await self._drained.wait()
        if scope.cancelled_caught:
            finished = False
            log.warning(
                "channel %s: %d message(s) still in flight at the drain deadline",
                self.channel.name,
                self._inflight,
            )
        await trio.sleep(0)  # let connection tasks write the responses they just got
        self._source_scope.cancel()
        return finished

    # --- the Dispatcher the source connector calls ----------------------------------------------

    async def dispatch(self, raw: RawMessage) -> DispatchResult:
        if self._stopping:
            raise ChannelStoppedError(f"channel {self.channel.name!r} is stopping")
        self._inflight += 1
        self._drained = self._drained if self._inflight > 1 else trio.Event()
        try:
            if self.source_queue is not None:  # workers limit processing, not receiving
                return await self._process(raw)
            async with self._process_limit:
                return await self._process(raw)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._drained.set()

    # --- the pipeline ---------------------------------------------------------------------------

    async def _process(self, raw_message: RawMessage) -> DispatchResult:
        content = raw_message.content
        decode_error = ""
        if isinstance(content, str):
            raw = content
        else:
            # A source hands over bytes it could not decode: keep a readable copy, and make
            # the message an error saying why rather than silently altering it.
            try:
                raw = content.decode("utf-8")
            except UnicodeDecodeError as exc:
                raw = content.decode("utf-8", "replace")
                decode_error = str(
                    raw_message.source_map.get("charsetError")
                    or f"message is not valid text: {exc}"
                )
        store = self.store.store
        received = store.now()
        storage = self.storage

        # Transaction 1: the message as received.
        first = Unit(new_message_for=self.store)
        source_map = dict(raw_message.source_map)

        def build_received(message_id: int) -> None:
            if not storage.enabled:
                return
            self.store.add_received(first, message_id, received)
            if storage.store_raw:
                self._add_content(first, message_id, 0, ContentType.RAW, raw, self.datatype.name)
            if storage.store_maps and source_map:
                self._add_content(
                    first,
                    message_id,
                    0,
                    ContentType.SOURCE_MAP,
                    xstream.serialize_map(source_map),
                    None,
                )

        first.build = build_received
        await store.commit(first)
        assert first.message_id is not None
        message_id = first.message_id
        self.statistics.update(0, Status.RECEIVED, None)
        ctx = MessageContext(message_id, raw, received, source_map)
        if self.source_queue is not None:
            # Source queue on: answer now (None or "Before processing"), process later. The
            # message is RECEIVED in the database, so a stop or crash loses nothing: recovery
            # finishes whatever the workers had not reached.
            await self.source_queue[0].send((ctx, decode_error))
            response = select_response(
                self.response_variable,
                datatype=self.datatype,
                raw=raw,
                source_status=Status.RECEIVED,
                source_error="",
                destination_statuses=[],
                destination_count=len(self.destinations),
                response_map={},
            )
            return DispatchResult(message_id=message_id, response=response)
        response = await self.process_received(ctx, decode_error)
        return DispatchResult(message_id=message_id, response=response)

    async def _source_queue_worker(self) -> None:
        assert self.source_queue is not None
        async for ctx, decode_error in self.source_queue[1]:
            try:
                await self.process_received(ctx, decode_error)
            except Exception as exc:  # stays RECEIVED; recovery retries it at next start
                log.error(
                    "channel %s: processing queued message %d failed: %s",
                    self.channel.name,
                    ctx.message_id,
                    exc,
                )

    async def process_received(
        self,
        ctx: MessageContext,
        decode_error: str = "",
        existing: Mapping[int, Status] | None = None,
    ) -> Response | None:
        """Process a message whose "received" transaction is committed: source
        filter/transformer, destinations, response, and the "processed" transaction.

        ``existing`` (recovery only) gives the status of destination rows already stored:
        final ones (S, F, E, Q) are kept as they are, R and P ones are sent again and updated.
        """
        store = self.store.store
        storage = self.storage
        raw = ctx.raw
        message_id = ctx.message_id
        # Source filter/transformer. With none configured Mirth skips the executor: the
        # encoded message is the raw one; the data type still vets the message.
        second = Unit()
        connector_map: dict[str, Any] = {}
        source_error = ""
        encoded = raw
        transformed: str | None = None
        shared = await self._load_shared(
            self.scripts.filter.shared or self.scripts.transformer.shared
        )
        try:
            if decode_error:
                raise MessageParseError(decode_error)
            raw = self._preprocess(raw, ctx, second)
            connector_map.update(self.datatype.metadata(raw))
            if self.scripts.empty:
                self.datatype.validate(raw)
                encoded = raw
                source_status = Status.TRANSFORMED
            else:
                source_status, encoded, transformed = self._filter_transform(
                    self.datatype,
                    self.scripts.filter,
                    self.scripts.transformer,
                    raw,
                    ctx,
                    connector_map,
                    shared,
                )
        except MessageParseError as exc:
            source_status, source_error = Status.ERROR, str(exc)
        except Exception as exc:  # a script or data type error is the message's, not ours
            source_status, source_error = Status.ERROR, _describe(exc)
        await self._save_shared(shared)
        ctx.encoded = encoded
        if storage.enabled and transformed is not None and storage.store_transformed:
            self._add_content(second, message_id, 0, ContentType.TRANSFORMED, transformed, "XML")
        ctx.stats.append((0, source_status, Status.RECEIVED))
        if storage.enabled:
            if source_status == Status.TRANSFORMED and storage.store_source_encoded:
                self._add_content(
                    second, message_id, 0, ContentType.ENCODED, encoded, self.datatype.name
                )
            if source_error:
                self._add_content(
                    second, message_id, 0, ContentType.PROCESSING_ERROR, source_error, None
                )
            if storage.store_maps and connector_map:
                self._add_content(
                    second,
                    message_id,
                    0,
                    ContentType.CONNECTOR_MAP,
                    xstream.serialize_map(connector_map),
                    None,
                )
            if storage.store_maps and ctx.channel_map:
                self._add_content(
                    second,
                    message_id,
                    0,
                    ContentType.CHANNEL_MAP,
                    xstream.serialize_map(ctx.channel_map),
                    None,
                )
            if storage.store_custom_metadata:
                self.store.add_custom_metadata(
                    second, message_id, 0, self._metadata_values(connector_map, ctx.channel_map)
                )

        if source_status == Status.TRANSFORMED and len(self.chains) == 1:
            # One chain (the common case): run it in this task; a nursery and a task per
            # message would only add scheduling work.
            await self._run_chain(self.chains[0], ctx, second, raw, existing or {})
        elif source_status == Status.TRANSFORMED and self.chains:
            async with trio.open_nursery() as nursery:
                for chain in self.chains:
                    nursery.start_soon(self._run_chain, chain, ctx, second, raw, existing or {})

        postprocessor_error = self._postprocess(ctx, source_status)
        response = select_response(
            self.response_variable,
            datatype=self.datatype,
            raw=raw,
            source_status=source_status,
            source_error=source_error,
            destination_statuses=ctx.destination_statuses,
            destination_count=len(self.destinations),
            response_map=ctx.response_map,
        )

        # Transaction 2: everything processing produced, the response, PROCESSED = TRUE.
        if storage.enabled:
            now = store.now()
            source_update: dict[str, Any] = {
                "b_message_id": message_id,
                "b_metadata_id": 0,
                "STATUS": source_status.value,
                "ERROR_CODE": (ContentType.PROCESSING_ERROR.error_code if source_error else 0)
                | (ContentType.POSTPROCESSOR_ERROR.error_code if postprocessor_error else 0),
            }
            if postprocessor_error:
                self._add_content(
                    second,
                    message_id,
                    0,
                    ContentType.POSTPROCESSOR_ERROR,
                    postprocessor_error,
                    None,
                )
            if response is not None:
                source_update.update(SEND_ATTEMPTS=1, RESPONSE_DATE=now)
                if storage.store_sent_response:
                    self._add_content(
                        second,
                        message_id,
                        0,
                        ContentType.RESPONSE,
                        xstream.serialize_response(response),
                        None,
                    )
            else:
                source_update.update(SEND_ATTEMPTS=0, RESPONSE_DATE=None)
            second.add(UPDATE_CONNECTOR, self.store.update_connector, source_update)
            if storage.store_response_map and ctx.response_map:
                self._add_content(
                    second,
                    message_id,
                    0,
                    ContentType.RESPONSE_MAP,
                    xstream.serialize_map(ctx.response_map),
                    None,
                )
            second.add(UPDATE_MESSAGE, self.store.mark_processed, {"b_message_id": message_id})
        await store.commit(second)  # returns at once when there is nothing to write
        for metadata_id, queue in self.queues.items():
            if ctx.response_map.get(f"d{metadata_id}", _NOT_QUEUED).status == Status.QUEUED:
                queue.wake()
        for metadata_id, new, previous in ctx.stats:
            self.statistics.update(metadata_id, new, previous)
        self.engine.notify_message_finished(self.id, message_id, source_status, ctx)
        return response

    async def _load_shared(self, needed: bool) -> dict[str, dict[str, Any]] | None:
        """Snapshots of the shared maps for a script that uses them (else None), with the
        originals kept to write back only what changed."""
        if not needed:
            return None
        backend = self.engine.map_backend
        shared = {
            "global_map": await backend.items("global"),
            "global_channel_map": await backend.items(f"global_channel:{self.id}"),
            "configuration_map": await backend.items("configuration"),
        }
        shared["__before__"] = {name: dict(values) for name, values in shared.items()}
        return shared

    async def _save_shared(self, shared: dict[str, dict[str, Any]] | None) -> None:
        """Write the keys a script set or removed back to the map backend."""
        if shared is None:
            return
        backend = self.engine.map_backend
        before = shared["__before__"]
        scopes = {
            "global_map": "global",
            "global_channel_map": f"global_channel:{self.id}",
            "configuration_map": "configuration",
        }
        for name, scope in scopes.items():
            old, new = before[name], shared[name]
            for key, value in new.items():
                if key not in old or old[key] != value:
                    await backend.put(scope, key, value)
            for key in old.keys() - new.keys():
                await backend.remove(scope, key)

    def _preprocess(self, raw: str, ctx: MessageContext, unit: Unit) -> str:
        """Run the preprocessor: its return value, when a string, replaces the message
        (stored as PROCESSED_RAW); an error makes the message an error."""
        if self.scripts.preprocessor is None:
            return raw
        result = self.scripts.preprocessor(
            {
                "message": raw,
                "channel_map": ctx.channel_map,
                "source_map": ctx.source_map,
                "logger": script_log,
            }
        )
        processed = result if isinstance(result, str) else raw
        if self.storage.enabled and self.storage.store_processed_raw:
            self._add_content(
                unit, ctx.message_id, 0, ContentType.PROCESSED_RAW, processed, self.datatype.name
            )
        return processed

    def _postprocess(self, ctx: MessageContext, source_status: Status) -> str:
        """Run the postprocessor: its return value goes to the response map as
        "Postprocessor"; returns the error text when it fails (stored, never fatal)."""
        if self.scripts.postprocessor is None:
            return ""
        try:
            result = self.scripts.postprocessor(
                {
                    "message": ctx.encoded or ctx.raw,
                    "channel_map": ctx.channel_map,
                    "source_map": ctx.source_map,
                    "response_map": ctx.response_map,
                    "logger": script_log,
                }
            )
        except Exception as exc:
            return _describe(exc)
        if result is not None:
            ctx.response_map["Postprocessor"] = (
                result if isinstance(result, Response) else Response(Status.SENT, str(result))
            )
        return ""

    def _filter_transform(
        self,
        datatype: DataType,
        filter_: CompiledFilter,
        transformer: CompiledTransformer,
        text: str,
        ctx: MessageContext,
        connector_map: dict[str, Any],
        shared: Mapping[str, dict[str, Any]] | None = None,
    ) -> tuple[Status, str, str | None]:
        """Parse, filter and transform one connector's message: (status, encoded, the
        transformed XML when it was made)."""
        msg = datatype.parse(text)
        scope = make_scope(
            msg,
            text,
            ctx.channel_map,
            connector_map,
            ctx.source_map,
            ctx.response_map,
            script_log,
            shared,
        )
        if not filter_.accepts(scope):
            return Status.FILTERED, text, None
        if not transformer.steps:
            return Status.TRANSFORMED, text, None
        transformer.run(scope)
        encoded = datatype.encode(msg)
        transformed = None
        if self.storage.store_transformed:
            try:
                transformed = datatype.to_xml(encoded)
            except (NotImplementedError, MessageParseError):
                transformed = None
        return Status.TRANSFORMED, encoded, transformed

    async def _run_chain(
        self,
        chain: list[DestinationRuntime],
        ctx: MessageContext,
        unit: Unit,
        raw: str,
        existing: Mapping[int, Status],
    ) -> None:
        for destination in chain:
            stored = existing.get(destination.model.metaDataId)
            if stored is not None and stored not in (Status.RECEIVED, Status.PENDING):
                # Finished before a restart: keep its outcome, do not send it twice.
                ctx.destination_statuses.append(stored)
                ctx.response_map[f"d{destination.model.metaDataId}"] = Response(stored)
                continue
            await self._run_destination(destination, ctx, unit, raw, stored is not None)

    async def _run_destination(
        self,
        destination: DestinationRuntime,
        ctx: MessageContext,
        unit: Unit,
        raw: str,
        row_exists: bool = False,
    ) -> Status:
        model = destination.model
        metadata_id = model.metaDataId
        storage = self.storage
        encoded = ctx.encoded or raw
        transformed: str | None = None
        properties: Mapping[str, Any] = {}
        send_date = None
        response_content: dict[ContentType, str] = {}
        connector_map: dict[str, Any] = {}
        queue = self.queues.get(metadata_id)
        will_send = queue is None or (
            model.queue.sendFirst and queue.depth == 0 and not queue.stopped
        )
        # Mirth runs the filter/transformer here unless the queue will (includeFilterTransformer).
        deferred = not will_send and queue is not None and queue.include_filter_transformer
        if (destination.filter.rules or destination.transformer.steps) and not deferred:
            assert destination.datatype is not None
            shared = await self._load_shared(
                destination.filter.shared or destination.transformer.shared
            )
            try:
                verdict, encoded, transformed = self._filter_transform(
                    destination.datatype,
                    destination.filter,
                    destination.transformer,
                    encoded,
                    ctx,
                    connector_map,
                    shared,
                )
            except Exception as exc:  # the message's error, stored on this destination
                verdict = Status.ERROR
                response = Response(Status.ERROR, error=_describe(exc))
            else:
                response = Response(verdict)
            await self._save_shared(shared)
        else:
            verdict = Status.TRANSFORMED
        if verdict == Status.TRANSFORMED:
            properties = self.render_properties(destination, ctx, encoded)
            if not will_send:
                response = Response(Status.QUEUED, status_message="Message queued")
            else:
                send_date = self.store.store.now()
                response = await self.send_with_retries(destination, ctx, encoded, properties)
                response, response_content = await self.transform_response(
                    destination, ctx, response
                )
        status = fix_status(response.status, model.queue.queueEnabled)
        if status != response.status:
            response = Response(status, response.message, response.status_message, response.error)
        ctx.response_map[f"d{metadata_id}"] = response
        ctx.destination_statuses.append(status)
        if not row_exists:
            ctx.stats.append((metadata_id, Status.RECEIVED, None))
        ctx.stats.append((metadata_id, status, Status.RECEIVED))
        if not storage.enabled:
            return status
        message_id = ctx.message_id
        error = response.error if status == Status.ERROR else ""
        error_code = ContentType.PROCESSING_ERROR.error_code if error else 0
        if ContentType.RESPONSE_ERROR in response_content:
            # The response transformer failed: its error is the RESPONSE_ERROR (bit 4).
            error, error_code = "", ContentType.RESPONSE_ERROR.error_code
        if row_exists:
            unit.add(
                UPDATE_CONNECTOR,
                self.store.update_connector,
                {
                    "b_message_id": message_id,
                    "b_metadata_id": metadata_id,
                    "STATUS": status.value,
                    "SEND_ATTEMPTS": int(send_date is not None),
                    "SEND_DATE": send_date,
                    "RESPONSE_DATE": send_date and self.store.store.now(),
                    "ERROR_CODE": error_code,
                },
            )
        else:
            unit.add(
                INSERT_CONNECTOR,
                self.store.insert_connector,
                {
                    "ID": metadata_id,
                    "MESSAGE_ID": message_id,
                    "SERVER_ID": self.server_id,
                    "RECEIVED_DATE": ctx.received,
                    "STATUS": status.value,
                    "CONNECTOR_NAME": model.name,
                    "SEND_ATTEMPTS": int(send_date is not None),
                    "SEND_DATE": send_date,
                    "RESPONSE_DATE": send_date and self.store.store.now(),
                    "ERROR_CODE": error_code,
                    "CHAIN_ID": destination.chain_id,
                    "ORDER_ID": destination.order_id,
                },
            )
        if transformed is not None and storage.store_transformed:
            self._add_content(
                unit, message_id, metadata_id, ContentType.TRANSFORMED, transformed, "XML"
            )
        if storage.store_custom_metadata and not deferred:  # as DestinationConnector.transform
            self.store.add_custom_metadata(
                unit, message_id, metadata_id, self._metadata_values(connector_map, ctx.channel_map)
            )
        if verdict != Status.TRANSFORMED:
            if error:
                self._add_content(
                    unit, message_id, metadata_id, ContentType.PROCESSING_ERROR, error, None
                )
            return status
        if storage.store_maps and ctx.channel_map:
            self._add_content(
                unit,
                message_id,
                metadata_id,
                ContentType.CHANNEL_MAP,
                xstream.serialize_map(ctx.channel_map),
                None,
            )
        if storage.store_maps and connector_map:  # a queue reads it back (thread assignment)
            self._add_content(
                unit,
                message_id,
                metadata_id,
                ContentType.CONNECTOR_MAP,
                xstream.serialize_map(connector_map),
                None,
            )
        if storage.store_destination_encoded:
            self._add_content(
                unit, message_id, metadata_id, ContentType.ENCODED, encoded, model.outboundDataType
            )
        if storage.store_sent:
            self._add_content(
                unit,
                message_id,
                metadata_id,
                ContentType.SENT,
                xstream.serialize_properties(destination.type.mirth_properties_class, properties),
                None,
            )
        self.add_response_content(unit, message_id, destination, response_content)
        if storage.store_response and status != Status.QUEUED:  # stored once it is sent
            self._add_content(
                unit,
                message_id,
                metadata_id,
                ContentType.RESPONSE,
                xstream.serialize_response(response),
                model.outboundDataType,
            )
        if error:
            self._add_content(
                unit, message_id, metadata_id, ContentType.PROCESSING_ERROR, error, None
            )
        return status

    async def transform_response(
        self, destination: DestinationRuntime, ctx: MessageContext, response: Response
    ) -> tuple[Response, dict[ContentType, str]]:
        """Run the destination's response transformer on a response it got back (Mirth's
        status P step): the script may change ``response.status`` and the rest. Returns the
        response to record and the content rows it produced (RESPONSE_TRANSFORMED,
        PROCESSED_RESPONSE, or RESPONSE_ERROR when the transformer failed)."""
        transformer = destination.response_transformer
        if not transformer.steps or response.status == Status.QUEUED:
            return response, {}
        view = ResponseView(
            response.status, response.message, response.status_message, response.error
        )
        datatype = destination.datatype
        content: dict[ContentType, str] = {}
        shared = await self._load_shared(transformer.shared)
        try:
            try:
                parsed: Any = datatype.parse(response.message) if datatype else response.message
            except MessageParseError:
                parsed = None
            scope = make_scope(
                parsed,
                response.message,
                ctx.channel_map,
                {},
                ctx.source_map,
                ctx.response_map,
                script_log,
                shared,
            )
            scope["response"] = view
            transformer.run(scope)
            if parsed is not None and datatype is not None:
                content[ContentType.RESPONSE_TRANSFORMED] = datatype.encode(parsed)
            result = Response(Status(view.status), view.message, view.status_message, view.error)
            content[ContentType.PROCESSED_RESPONSE] = xstream.serialize_response(result)
        except Exception as exc:
            error = _describe(exc)
            content = {ContentType.RESPONSE_ERROR: error}
            result = Response(Status.ERROR, response.message, response.status_message, error)
        await self._save_shared(shared)
        return result, content

    def add_response_content(
        self,
        unit: Unit,
        message_id: int,
        destination: DestinationRuntime,
        content: Mapping[ContentType, str],
    ) -> None:
        storage = self.storage
        wanted = {
            ContentType.RESPONSE_TRANSFORMED: storage.store_response_transformed,
            ContentType.PROCESSED_RESPONSE: storage.store_processed_response,
            ContentType.RESPONSE_ERROR: True,
        }
        for content_type, text in content.items():
            if storage.enabled and wanted[content_type]:
                self._add_content(
                    unit,
                    message_id,
                    destination.model.metaDataId,
                    content_type,
                    text,
                    destination.model.outboundDataType
                    if content_type != ContentType.RESPONSE_ERROR
                    else None,
                )

    async def send_with_retries(
        self,
        destination: DestinationRuntime,
        ctx: MessageContext,
        encoded: str,
        properties: Mapping[str, Any],
    ) -> Response:
        """Send in the pipeline: a QUEUED (failed) result is retried ``retryCount`` times,
        ``retryIntervalMillis`` apart, as Mirth does before giving up or queueing."""
        settings = destination.model.queue
        response = await self.send(destination, ctx, encoded, properties)
        for _ in range(settings.retryCount):
            if response.status != Status.QUEUED:
                break
            await trio.sleep(settings.retryIntervalMillis / 1000)
            response = await self.send(destination, ctx, encoded, properties)
        return response

    async def send(
        self,
        destination: DestinationRuntime,
        ctx: MessageContext,
        encoded: str,
        properties: Mapping[str, Any],
    ) -> Response:
        request = SendRequest(
            channel_id=self.id,
            message_id=ctx.message_id,
            metadata_id=destination.model.metaDataId,
            encoded=encoded,
            properties=properties,
            maps={**ctx.source_map, **ctx.channel_map},
        )
        try:
            return await destination.connector.send(request)
        except Exception as exc:
            log.warning(
                "channel %s: destination %r failed to send message %d: %s",
                self.channel.name,
                destination.model.name,
                ctx.message_id,
                exc,
            )
            return Response(Status.ERROR, error=f"{type(exc).__name__}: {exc}")

    def render_properties(
        self, destination: DestinationRuntime, ctx: MessageContext, encoded: str
    ) -> Mapping[str, Any]:
        properties = destination.model.properties
        if not destination.templated:
            return properties
        variables: dict[str, Any] = {
            **ctx.source_map,
            **ctx.channel_map,
            "message.encodedData": encoded,
            "message.rawData": ctx.raw,
            "message.messageId": ctx.message_id,
            "message.channelId": self.id,
            "message.metaDataId": destination.model.metaDataId,
            "channelId": self.id,
            "channelName": self.channel.name,
            "messageId": ctx.message_id,
            "UUID": _LazyUUID(),
            "SYSTIME": _LazySystime(),
        }
        rendered = dict(properties)
        for key in destination.templated:
            if key in rendered:
                rendered[key] = _render_value(rendered[key], variables)
        return rendered

    def _metadata_values(
        self, connector_map: Mapping[str, Any], channel_map: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A connector message's custom metadata (``D_MCM``) as Mirth's ``MetaDataReplacer``
        reads it: each column's ``mappingName`` from the connector map, else the channel map
        (never the source map); only the columns that found a value (none: no row)."""
        values = {}
        for column, mapping in self._metadata_columns:
            value = connector_map.get(mapping, channel_map.get(mapping)) if mapping else None
            if value is not None:
                values[column] = value
        return values

    def _add_content(
        self,
        unit: Unit,
        message_id: int,
        metadata_id: int,
        content_type: ContentType,
        content: str,
        data_type: str | None,
    ) -> None:
        self.store.add_content(unit, message_id, metadata_id, content_type, content, data_type)

    # --- statistics -------------------------------------------------------------------------------

    async def _flush_statistics_forever(self) -> None:
        while True:
            await trio.sleep(STATS_FLUSH_SECONDS)
            await self._flush_statistics()

    async def _flush_statistics(self, final: bool = False) -> None:
        deltas = self.statistics.drain()
        if not deltas or not self.storage.enabled:
            return
        unit = Unit(custom=[lambda conn: self.store.flush_statistics(conn, self.server_id, deltas)])
        store = self.store.store
        try:
            await (store.commit_now(unit) if final else store.commit(unit))
        except Exception as exc:
            log.warning(
                "channel %s: statistics flush failed, will retry: %s", self.channel.name, exc
            )
            self.statistics.restore(deltas)


_NOT_QUEUED = Response(Status.SENT)


def _render_value(value: Any, variables: Mapping[str, Any]) -> Any:
    """Replace ``${...}`` in a templated property: a text, or the texts inside a table of
    headers or parameters (``{"X-Id": ["${messageId}"]}``) or a list."""
    if isinstance(value, str):
        return render_template(value, variables)
    if isinstance(value, Mapping):
        return {key: _render_value(item, variables) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_render_value(item, variables) for item in value]
    return value


def fix_status(status: Status, queue_enabled: bool) -> Status:
    """Mirth's ``Response.fixStatus``: only S, E, F, Q are final; Q needs a queue."""
    if status not in (Status.SENT, Status.ERROR, Status.FILTERED, Status.QUEUED):
        return Status.ERROR
    if status == Status.QUEUED and not queue_enabled:
        return Status.ERROR
    return status


def _group_chains(destinations: list[DestinationRuntime]) -> list[list[DestinationRuntime]]:
    chains: dict[int, list[DestinationRuntime]] = {}
    for destination in destinations:
        chains.setdefault(destination.chain_id, []).append(destination)
    return list(chains.values())


class _LazyUUID:
    """``${UUID}``: a fresh UUID each time a template uses it."""

    def __str__(self) -> str:
        return str(uuid.uuid4())


class _LazySystime:
    """``${SYSTIME}``: milliseconds since the epoch, as Mirth."""

    def __str__(self) -> str:
        return str(math.floor(time.time() * 1000))


Builder = Callable[[Channel], DeployedChannel]
