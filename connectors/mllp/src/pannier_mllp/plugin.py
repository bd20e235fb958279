"""The plugin module named by the ``pannier.plugins`` entry point ``mllp``."""

from __future__ import annotations

from collections.abc import Sequence

from pannier import CliCommand, ConnectorType, hookimpl

from pannier_mllp.cli import SEND_COMMAND
from pannier_mllp.listener import LISTENER_DEFAULTS, LISTENER_MIRTH_CLASS, TcpListener
from pannier_mllp.sender import (
    SENDER_DEFAULTS,
    SENDER_MIRTH_CLASS,
    SENDER_TEMPLATED,
    TcpSender,
)

TCP_LISTENER = ConnectorType(
    transport_name="TCP Listener",
    mode="source",
    factory=TcpListener,
    defaults=LISTENER_DEFAULTS,
    description="Receives HL7 v2 (or any framed) messages over MLLP and writes back the response.",
    mirth_properties_class=LISTENER_MIRTH_CLASS,
)

TCP_SENDER = ConnectorType(
    transport_name="TCP Sender",
    mode="destination",
    factory=TcpSender,
    defaults=SENDER_DEFAULTS,
    templated=SENDER_TEMPLATED,
    description="Sends each message as one MLLP frame and reads the framed response.",
    mirth_properties_class=SENDER_MIRTH_CLASS,
)


@hookimpl
def pannier_register_connectors() -> Sequence[ConnectorType]:
    return [TCP_LISTENER, TCP_SENDER]


@hookimpl
def pannier_register_commands() -> Sequence[CliCommand]:
    return [SEND_COMMAND]
