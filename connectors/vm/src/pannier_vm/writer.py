"""The "Channel Writer" destination (Mirth's ``VmDispatcher``): routes each message into
another channel of the same engine.

Properties (Mirth's ``VmDispatcherProperties``):

* ``channelId`` — the target channel's id, with ``${...}`` templates; ``"none"`` (Mirth's
  default) disables the writer: every message is SENT without being routed.
* ``channelTemplate`` — what to send, with ``${...}`` templates (default
  ``${message.encodedData}``, the encoded message). Empty sends the encoded message.
* ``mapVariables`` — names of map entries copied into the target message's source map.

The target message's source map also gets Mirth's chain keys: ``sourceChannelId`` and
``sourceMessageId`` (this channel and message) always, and ``sourceChannelIds`` /
``sourceMessageIds`` (every channel and message id of the chain, oldest first) when this
message itself came from another channel.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from pannier import (
    ChannelNotDeployedError,
    ChannelStoppedError,
    ConnectorSetup,
    DestinationConnector,
    RawMessage,
    Response,
    SendRequest,
    Status,
)

SOURCE_CHANNEL_ID = "sourceChannelId"
SOURCE_CHANNEL_IDS = "sourceChannelIds"
SOURCE_MESSAGE_ID = "sourceMessageId"
SOURCE_MESSAGE_IDS = "sourceMessageIds"

DISABLED = "none"

WRITER_DEFAULTS: dict[str, Any] = {
    "channelId": DISABLED,
    "channelTemplate": "${message.encodedData}",
    "mapVariables": [],
}
WRITER_TEMPLATED = frozenset({"channelId", "channelTemplate"})


def map_variable_names(value: Any) -> list[str]:
    """``mapVariables`` as a list of names. A list is taken as is; text (a queued message's
    properties read back from its SENT content, or a hand-written value) may be a list literal
    (``['a', 'b']``) or names separated by commas or whitespace."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(name) for name in value if str(name)]
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, (list, tuple)):
            return [str(name) for name in parsed if str(name)]
        text = text.strip("[]")
    return [name for name in text.replace(",", " ").split() if name]


def _chain(maps: Mapping[str, Any], single: str, plural: str, kind: type) -> list[Any] | None:
    """The chain of ids before this hop, as Mirth's ``VmDispatcher.getSource*Ids`` builds it:
    ``None`` when this message did not come from another channel (no ``single`` key of the
    right type), else the incoming list (or just the incoming id when there is no list)."""
    current = maps.get(single)
    if current is None or isinstance(current, bool) or not isinstance(current, kind):
        return None
    previous = maps.get(plural)
    if isinstance(previous, (list, tuple)):
        return list(previous)
    return [current]


class ChannelWriter(DestinationConnector):
    def __init__(self, setup: ConnectorSetup) -> None:
        self.setup = setup
        map_variable_names(setup.properties.get("mapVariables"))  # fail at deploy if odd

    async def start(self) -> None:
        self.setup.report_state("idle", {})

    async def stop(self) -> None:
        self.setup.report_state("disconnected", {})

    def build_message(self, request: SendRequest) -> RawMessage:
        """The message the target channel receives: content and source map."""
        properties = request.properties
        template = properties.get("channelTemplate")
        content: str | bytes = template if isinstance(template, str) and template else ""
        if not content:
            content = request.encoded
        maps = request.maps
        source_map: dict[str, Any] = {}
        channel_ids = _chain(maps, SOURCE_CHANNEL_ID, SOURCE_CHANNEL_IDS, str)
        if channel_ids is not None:
            source_map[SOURCE_CHANNEL_IDS] = [*channel_ids, request.channel_id]
        message_ids = _chain(maps, SOURCE_MESSAGE_ID, SOURCE_MESSAGE_IDS, int)
        if message_ids is not None:
            source_map[SOURCE_MESSAGE_IDS] = [*message_ids, request.message_id]
        source_map[SOURCE_CHANNEL_ID] = request.channel_id
        source_map[SOURCE_MESSAGE_ID] = request.message_id
        for name in map_variable_names(properties.get("mapVariables")):
            value = maps.get(name)
            if value is not None:  # Mirth skips variables with no value
                source_map[name] = value
        return RawMessage(content, source_map)

    async def send(self, request: SendRequest) -> Response:
        target = str(request.properties.get("channelId", DISABLED)).strip()
        routed = f"Message routed successfully to channel id: {target}"
        if target == DISABLED:
            return Response(Status.SENT, status_message=routed)
        failure = f"Error routing message to channel id: {target}"
        router = self.setup.router
        if router is None:
            return Response(
                Status.QUEUED,
                status_message=failure,
                error=f"Channel Writer: {failure}: no router (not running in an engine)",
            )
        self.setup.report_state("sending", {"target_channel_id": target})
        try:
            result = await router.route(target, self.build_message(request))
        except ChannelNotDeployedError as exc:
            # QUEUED, as Mirth's VmDispatcher answers every failure: a queued destination
            # retries once the target is deployed, an unqueued one records an error.
            return Response(
                Status.QUEUED,
                status_message=failure,
                error=f"Channel Writer: {failure}: channel {target!r} is not deployed ({exc})",
            )
        except ChannelStoppedError as exc:
            return Response(
                Status.QUEUED,
                status_message=failure,
                error=f"Channel Writer: {failure}: channel {target!r} is stopped ({exc})",
            )
        except Exception as exc:  # the target's failure is this destination's error
            return Response(
                Status.QUEUED,
                status_message=failure,
                error=f"Channel Writer: {failure}: {type(exc).__name__}: {exc}",
            )
        finally:
            self.setup.report_state("idle", {})
        message = ""
        if result.response is not None:
            message = result.response.message
        return Response(Status.SENT, message=message, status_message=routed)
