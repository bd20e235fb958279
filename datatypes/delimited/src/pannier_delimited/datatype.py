"""The ``DELIMITED`` data type: Mirth's "Delimited Text" data type for the Pannier kernel."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pannier import DataType

from pannier_delimited.batch import split_batch
from pannier_delimited.properties import NAME, DelimitedProperties
from pannier_delimited.reader import DelimitedReader, Record, prepare
from pannier_delimited.serializer import check_xml_characters, records_to_xml, xml_to_text


class DelimitedMessage(Sequence[Record]):
    """A parsed delimited message: its records (lists of values), with the element names its
    XML form gives them.

    ``message[0]`` is the first record; ``message.value(0, "column2")`` or
    ``message.value(0, 1)`` a value; ``message.row_name(0)`` is ``row`` (``row1`` with
    numbered rows).
    """

    def __init__(self, records: list[Record], props: DelimitedProperties) -> None:
        self.records = records
        self._props = props

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: Any) -> Any:
        return self.records[index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"DelimitedMessage({self.records!r})"

    def row_name(self, row: int) -> str:
        """The element name of record ``row`` (0-based) in the XML form."""
        return f"row{row + 1}" if self._props.numbered_rows else "row"

    def column_names(self, row: int) -> list[str]:
        """The element names of the values of record ``row`` in the XML form."""
        return [self._props.column_name(i) for i in range(len(self.records[row]))]

    def value(self, row: int, column: int | str) -> str:
        """A value by record (0-based) and column: a 0-based index or an element name
        (``column3``, or a configured column name). KeyError for an unknown name."""
        record = self.records[row]
        if isinstance(column, int):
            return record[column]
        names = self.column_names(row)
        if column not in names:
            raise KeyError(f"record {row} has no column {column!r}; it has {', '.join(names)}")
        return record[names.index(column)]

    def rows(self) -> list[dict[str, str]]:
        """Every record as a mapping of element name to value (the first value wins when
        configured column names repeat)."""
        result = []
        for number, record in enumerate(self.records):
            row: dict[str, str] = {}
            for name, value in zip(self.column_names(number), record, strict=True):
                row.setdefault(name, value)
            result.append(row)
        return result

    def to_xml(self) -> str:
        """Mirth's XML form of the message."""
        return records_to_xml(self.records, self._props)


class DelimitedDataType(DataType):
    """Mirth's delimited text data type, configured by one connector's properties.

    Built once per connector at deploy time; every method is safe to call from several tasks.
    """

    name = NAME
    serialization_type = "XML"
    """What Mirth's transformers work on (``D_MC.DATA_TYPE`` of TRANSFORMED content)."""

    def __init__(self, properties: Mapping[str, Any] | None = None) -> None:
        self.properties = DelimitedProperties.from_mapping(properties)
        self._reader = DelimitedReader(self.properties)

    def _records(self, raw: str) -> list[Record]:
        text = prepare(raw, self.properties)
        check_xml_characters(text)
        return list(self._reader.records(text))

    def validate(self, raw: str) -> None:
        """Mirth's reader reads any text as delimited records; only characters the XML form
        cannot carry (C0 controls other than TAB, LF and CR, lone surrogates) are refused."""
        check_xml_characters(prepare(raw, self.properties))

    def parse(self, raw: str) -> DelimitedMessage:
        """The message's records (see :class:`DelimitedMessage`)."""
        return DelimitedMessage(self._records(raw), self.properties)

    def metadata(self, raw: str) -> dict[str, str]:
        """Empty: Mirth's ``DelimitedSerializer.populateMetaData`` sets no source, type or
        version."""
        return {}

    def to_xml(self, raw: str) -> str:
        """Mirth's ``<delimited><row><column1>`` XML for ``raw``."""
        return records_to_xml(self._records(raw), self.properties)

    def from_xml(self, xml: str) -> str:
        """Delimited text for the XML form; :class:`~pannier.MessageParseError` for XML that is
        not well-formed or has a DOCTYPE."""
        return xml_to_text(xml, self.properties)

    def split_batch(self, raw: str) -> list[str]:
        """Split a batch by record, message delimiter or grouping column (``splitType``)."""
        return split_batch(raw, self.properties)
