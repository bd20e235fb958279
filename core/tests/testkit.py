"""A tiny plugin used by the kernel tests: a source the test drives directly, destinations
that succeed or fail on demand, and a text data type. Registered as an extra plugin object,
through the same hooks as any installed plugin."""

from __future__ import annotations

from typing import Any

import trio
from pannier import (
    ConnectorType,
    DataType,
    DataTypeSpec,
    DestinationConnector,
    MessageParseError,
    Response,
    SourceConnector,
    Status,
    hookimpl,
)


class DrivenSource(SourceConnector):
    """A source whose dispatcher the test calls itself."""

    def __init__(self, setup: Any) -> None:
        self.setup = setup
        self.dispatcher: Any = None

    async def run(self, dispatcher: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.dispatcher = dispatcher
        self.setup.report_state("idle", {"connections": 0})
        task_status.started(("driven", self.setup.channel_id))
        await trio.sleep_forever()


class Echo(DestinationConnector):
    def __init__(self, setup: Any) -> None:
        self.setup = setup
        self.sent: list[Any] = []

    async def send(self, request: Any) -> Response:
        if request.properties["fail"] == "block":
            self.setup.report_state("sending", {"message_id": request.message_id})
            await trio.sleep_forever()
        if request.properties["fail"] == "raise":
            raise ConnectionRefusedError("downstream refused the connection")
        if request.properties["fail"] == "error":
            return Response(Status.ERROR, error="downstream said no")
        self.sent.append(request)
        return Response(Status.SENT, message=f"echo:{request.properties['label']}")


class TextType(DataType):
    name = "TESTTEXT"

    def parse(self, raw: str) -> str:
        self.validate(raw)
        return raw

    def validate(self, raw: str) -> None:
        if raw.startswith("BAD"):
            raise MessageParseError("message starts with BAD")

    def metadata(self, raw: str) -> dict[str, str]:
        return {"mirth_source": "lab", "mirth_type": raw.split("|")[0]}

    def auto_response(self, raw: str, status: Status, error: str = "") -> Response | None:
        kind = {Status.ERROR: Status.ERROR, Status.FILTERED: Status.FILTERED}.get(
            status, Status.SENT
        )
        return Response(kind, message=f"ACK:{status.value}")


class KitPlugin:
    """The plugin object; keeps the connectors it built so tests can reach them."""

    def __init__(self) -> None:
        self.sources: list[DrivenSource] = []
        self.echoes: list[Echo] = []
        self.events: list[tuple[str, Any]] = []

    def _source(self, setup: Any) -> DrivenSource:
        self.sources.append(DrivenSource(setup))
        return self.sources[-1]

    def _echo(self, setup: Any) -> Echo:
        self.echoes.append(Echo(setup))
        return self.echoes[-1]

    @hookimpl
    def pannier_register_connectors(self) -> list[ConnectorType]:
        return [
            ConnectorType(
                "Driven Source",
                "source",
                self._source,
                defaults={"responseVariable": "Auto-generate (After source transformer)"},
            ),
            ConnectorType(
                "Echo",
                "destination",
                self._echo,
                defaults={"label": "", "fail": "", "headers": {}},
                templated=frozenset({"label", "headers"}),
            ),
        ]

    @hookimpl
    def pannier_register_datatypes(self) -> list[DataTypeSpec]:
        return [DataTypeSpec("TESTTEXT", lambda properties: TextType())]

    @hookimpl
    def pannier_engine_started(self, engine: Any) -> None:
        self.events.append(("started", engine.server_id))

    @hookimpl
    def pannier_engine_stopping(self, engine: Any) -> None:
        self.events.append(("stopping", engine.server_id))

    @hookimpl
    def pannier_channel_deployed(self, engine: Any, channel: Any) -> None:
        self.events.append(("deployed", channel.id))

    @hookimpl
    def pannier_channel_undeployed(self, engine: Any, channel_id: str) -> None:
        self.events.append(("undeployed", channel_id))

    @hookimpl
    def pannier_connector_state_changed(
        self, channel_id: str, metadata_id: int, state: str, details: Any
    ) -> None:
        self.events.append(("state", (metadata_id, state, dict(details))))

    @hookimpl
    def pannier_message_finished(self, channel_id: str, message_id: int, statuses: Any) -> None:
        self.events.append(("finished", (message_id, dict(statuses))))


def channel_toml(
    *,
    channel_id: str = "11111111-2222-3333-4444-555555555555",
    response: str = "Auto-generate (Destinations completed)",
    storage: str = "DEVELOPMENT",
    destinations: str | None = None,
    threads: int = 1,
) -> str:
    if destinations is None:
        destinations = """
[[destinations]]
name = "First"
transportName = "Echo"
inboundDataType = "TESTTEXT"
[destinations.properties]
label = "one ${message.messageId}"

[[destinations]]
name = "Second"
transportName = "Echo"
inboundDataType = "TESTTEXT"
[destinations.properties]
label = "two"
"""
    return f"""
id = "{channel_id}"
name = "Test channel"
[properties]
messageStorageMode = "{storage}"
[source]
transportName = "Driven Source"
inboundDataType = "TESTTEXT"
responseVariable = "{response}"
processingThreads = {threads}
{destinations}
"""
