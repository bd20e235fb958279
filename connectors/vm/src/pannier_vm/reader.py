"""The "Channel Reader" source (Mirth's ``VmReceiver``).

It listens to nothing: other channels (a Channel Writer, or a script through the router) hand
messages to the engine's router, which calls this channel's dispatcher directly. The connector
only has to exist, say it is ready, and report its state.
"""

from __future__ import annotations

from typing import Any

import trio
from pannier import ConnectorSetup, Dispatcher, SourceConnector

READER_DEFAULTS: dict[str, Any] = {
    # Mirth's VmReceiverProperties answers with nothing unless told otherwise.
    "responseVariable": "None",
}


class ChannelReader(SourceConnector):
    def __init__(self, setup: ConnectorSetup) -> None:
        self.setup = setup

    async def run(
        self,
        dispatcher: Dispatcher,
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.setup.report_state("idle", {})
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self.setup.report_state("disconnected", {})
