"""Batch splitting as Mirth's ``DelimitedBatchAdaptor`` does it (split types other than
JavaScript).

* Before the first message, ``batchSkipRecords`` header records are skipped (each up to and
  including the first character of the record delimiter, read without the quoting rules).
* ``Record``: every record is a message: its text as read, with its record delimiter.
* ``Delimiter``: records are gathered until ``batchMessageDelimiter`` (unescaped) follows a
  record; the delimiter is consumed, and kept at the end of the message with
  ``batchMessageDelimiterIncluded``.
* ``Grouping_Column``: consecutive records with the same value in ``batchGroupingColumn`` (a
  configured column name, or ``columnN``) form a message.

Messages are the text the reader consumed: without carriage returns when ``ignoreCR`` is set.
"""

from __future__ import annotations

from pannier import MessageParseError

from pannier_delimited.properties import DelimitedProperties
from pannier_delimited.reader import DelimitedReader, Record, prepare


def split_batch(raw: str, props: DelimitedProperties) -> list[str]:
    """Split ``raw`` into messages; raise :class:`MessageParseError` when a record lacks the
    grouping column (Mirth's batch fails there too)."""
    text = prepare(raw, props)
    reader = DelimitedReader(props)
    position = 0
    if props.batch_skip_records > 0:
        stop = props.record_delimiter[0]
        for _ in range(props.batch_skip_records):
            found = text.find(stop, position)
            position = len(text) if found == -1 else found + 1
    if props.split_type == "Record":
        return _by_record(text, position, reader)
    if props.split_type == "Delimiter":
        return _by_delimiter(text, position, reader, props)
    return _by_group(text, position, reader, props)


def _by_record(text: str, position: int, reader: DelimitedReader) -> list[str]:
    messages: list[str] = []
    while (found := reader.record(text, position)) is not None:
        end = found[1]
        messages.append(text[position:end])
        position = end
    return messages


def _by_delimiter(
    text: str, position: int, reader: DelimitedReader, props: DelimitedProperties
) -> list[str]:
    delimiter = props.batch_message_delimiter
    messages: list[str] = []
    while True:
        start = position
        message = ""
        while (found := reader.record(text, position)) is not None:
            position = found[1]
            if text.startswith(delimiter, position):
                message = text[start:position]
                position += len(delimiter)
                if props.batch_message_delimiter_included:
                    message += delimiter
                break
        else:
            message = text[start:position]
        if not message:
            return messages
        messages.append(message)


def _by_group(
    text: str, position: int, reader: DelimitedReader, props: DelimitedProperties
) -> list[str]:
    index = props.grouping_column_index()
    spans: list[tuple[Record, int, int]] = []
    while (found := reader.record(text, position)) is not None:
        spans.append((found[0], position, found[1]))
        position = found[1]

    def key(number: int) -> str:
        record = spans[number][0]
        if not 0 <= index < len(record):
            raise MessageParseError(
                f"record {number + 1} has no column {index + 1}, the batch grouping column "
                f"{props.batch_grouping_column!r}"
            )
        return record[index]

    messages: list[str] = []
    first = 0
    while first < len(spans):
        value = key(first)
        last = first
        while last + 1 < len(spans) and key(last + 1) == value:
            last += 1
        messages.append(text[spans[first][1] : spans[last][2]])
        first = last + 1
    return messages
