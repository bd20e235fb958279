"""Registers the HTTP connectors with Pannier."""

from __future__ import annotations

from collections.abc import Sequence

from pannier import ConnectorType, hookimpl

from pannier_http.listener import LISTENER_DEFAULTS, LISTENER_MIRTH_CLASS, HttpListener
from pannier_http.sender import SENDER_DEFAULTS, SENDER_MIRTH_CLASS, SENDER_TEMPLATED, HttpSender


@hookimpl
def pannier_register_connectors() -> Sequence[ConnectorType]:
    return [
        ConnectorType(
            transport_name="HTTP Listener",
            mode="source",
            factory=HttpListener,
            defaults=LISTENER_DEFAULTS,
            description="receives messages as HTTP request bodies and answers with the response",
            mirth_properties_class=LISTENER_MIRTH_CLASS,
        ),
        ConnectorType(
            transport_name="HTTP Sender",
            mode="destination",
            factory=HttpSender,
            defaults=SENDER_DEFAULTS,
            templated=SENDER_TEMPLATED,
            description="sends each message in an HTTP request",
            mirth_properties_class=SENDER_MIRTH_CLASS,
        ),
    ]
