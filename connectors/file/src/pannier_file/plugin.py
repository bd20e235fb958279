"""Registers the file connectors with Pannier."""

from __future__ import annotations

from collections.abc import Sequence

from pannier import ConnectorType, hookimpl

from pannier_file.writer import DEFAULTS, TEMPLATED, FileWriter


@hookimpl
def pannier_register_connectors() -> Sequence[ConnectorType]:
    return [
        ConnectorType(
            transport_name="File Writer",
            mode="destination",
            factory=FileWriter,
            defaults=DEFAULTS,
            templated=TEMPLATED,
            description="writes each message to a file in a directory",
            mirth_properties_class="com.mirth.connect.connectors.file.FileDispatcherProperties",
        )
    ]
