"""Registers the file connectors with Pannier."""

from __future__ import annotations

from collections.abc import Sequence

from pannier import ConnectorType, hookimpl

from pannier_file.reader import READER_DEFAULTS, READER_MIRTH_CLASS, FileReader
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
        ),
        ConnectorType(
            transport_name="File Reader",
            mode="source",
            factory=FileReader,
            defaults=READER_DEFAULTS,
            description="polls a local directory and reads each matching file as a message",
            mirth_properties_class=READER_MIRTH_CLASS,
        ),
    ]
