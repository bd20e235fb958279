"""Pannier's channel connectors: "Channel Reader" and "Channel Writer" (Mirth's VM connectors)."""

from pannier_vm.reader import READER_DEFAULTS, ChannelReader
from pannier_vm.writer import (
    SOURCE_CHANNEL_ID,
    SOURCE_CHANNEL_IDS,
    SOURCE_MESSAGE_ID,
    SOURCE_MESSAGE_IDS,
    WRITER_DEFAULTS,
    WRITER_TEMPLATED,
    ChannelWriter,
)

__all__ = [
    "READER_DEFAULTS",
    "SOURCE_CHANNEL_ID",
    "SOURCE_CHANNEL_IDS",
    "SOURCE_MESSAGE_ID",
    "SOURCE_MESSAGE_IDS",
    "WRITER_DEFAULTS",
    "WRITER_TEMPLATED",
    "ChannelReader",
    "ChannelWriter",
]
