"""Pannier's HTTP connectors: "HTTP Listener" (source, trio + h11) and "HTTP Sender"
(destination, httpx on trio)."""

from pannier_http.listener import LISTENER_DEFAULTS, LISTENER_MIRTH_CLASS, HttpListener
from pannier_http.sender import SENDER_DEFAULTS, SENDER_MIRTH_CLASS, SENDER_TEMPLATED, HttpSender

__all__ = [
    "LISTENER_DEFAULTS",
    "LISTENER_MIRTH_CLASS",
    "SENDER_DEFAULTS",
    "SENDER_MIRTH_CLASS",
    "SENDER_TEMPLATED",
    "HttpListener",
    "HttpSender",
]
