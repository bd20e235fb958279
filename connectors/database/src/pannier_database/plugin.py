"""Registers the database connectors with Pannier."""

from __future__ import annotations

from collections.abc import Sequence

from pannier import ConnectorType, hookimpl

from pannier_database.reader import READER_DEFAULTS, READER_MIRTH_CLASS, DatabaseReader
from pannier_database.writer import WRITER_DEFAULTS, WRITER_MIRTH_CLASS, DatabaseWriter


@hookimpl
def pannier_register_connectors() -> Sequence[ConnectorType]:
    return [
        ConnectorType(
            transport_name="Database Reader",
            mode="source",
            factory=DatabaseReader,
            defaults=READER_DEFAULTS,
            description="polls a database with a SELECT and reads each row as an XML message",
            mirth_properties_class=READER_MIRTH_CLASS,
        ),
        ConnectorType(
            transport_name="Database Writer",
            mode="destination",
            factory=DatabaseWriter,
            defaults=WRITER_DEFAULTS,
            # Nothing is templated by the kernel: the query's ${...} values are bound as
            # parameters by the connector, never pasted into the SQL.
            description="runs a parameterised SQL statement for each message",
            mirth_properties_class=WRITER_MIRTH_CLASS,
        ),
    ]
