"""Registers the channel connectors with Pannier."""

from __future__ import annotations

from collections.abc import Sequence

from pannier import ConnectorType, hookimpl

from pannier_vm.reader import READER_DEFAULTS, ChannelReader
from pannier_vm.writer import WRITER_DEFAULTS, WRITER_TEMPLATED, ChannelWriter


@hookimpl
def pannier_register_connectors() -> Sequence[ConnectorType]:
    return [
        ConnectorType(
            transport_name="Channel Reader",
            mode="source",
            factory=ChannelReader,
            defaults=READER_DEFAULTS,
            description="receives messages other channels route to this one",
            mirth_properties_class="com.mirth.connect.connectors.vm.VmReceiverProperties",
        ),
        ConnectorType(
            transport_name="Channel Writer",
            mode="destination",
            factory=ChannelWriter,
            defaults=WRITER_DEFAULTS,
            templated=WRITER_TEMPLATED,
            description="routes each message into another channel of this engine",
            mirth_properties_class="com.mirth.connect.connectors.vm.VmDispatcherProperties",
        ),
    ]
