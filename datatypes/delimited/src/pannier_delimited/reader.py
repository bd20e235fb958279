"""Records out of delimited text, exactly as Mirth's ``DelimitedReader`` reads them.

The rules (Mirth 3.3+, multi-character delimiters and tokens):

* With ``ignoreCR`` every ``\\r`` is skipped wherever it is, values included (done up front by
  :func:`prepare`).
* Records end at the record delimiter or the end of the text. A text that ends with the record
  delimiter has no empty last record; an empty line in the middle is a record with one empty
  value.
* Delimited columns: a value that starts with the quote token is quoted; inside it the record
  and column delimiters are text, and two quote tokens (``escapeWithDoubleQuote``) or the escape
  token followed by a quote token give a quote token (without double-quote escaping, two escape
  tokens give one escape token). Text after the closing quote up to the next delimiter is added
  to the value. An unquoted value runs to the next record or column delimiter.
* Fixed-width columns (``columnWidths``): each column takes up to its width in characters,
  stopping early at the record delimiter; trailing whitespace is removed from the value;
  characters after the last column up to the record delimiter are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator

from pannier_delimited.properties import DelimitedProperties

# java.lang.Character.isWhitespace: Unicode space separators except the no-break spaces, and
# the ASCII controls TAB, LF, VT, FF, CR, FS, GS, RS, US.
JAVA_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2008\u2009\u200a\u2028\u2029\u205f\u3000"
)

Record = list[str]


def prepare(text: str, props: DelimitedProperties) -> str:
    """The text as the reader sees it: without carriage returns when ``ignoreCR`` is set."""
    return text.replace("\r", "") if props.ignore_cr else text


class DelimitedReader:
    """Reads records from prepared text (see :func:`prepare`); positions are string indexes."""

    def __init__(self, props: DelimitedProperties) -> None:
        self.props = props
        self.column_delimiter = props.column_delimiter
        self.record_delimiter = props.record_delimiter
        self.quote = props.quote_token
        self.escape = props.quote_escape_token

    def records(self, text: str) -> Iterator[Record]:
        """Every record of ``text``."""
        position = 0
        while True:
            found = self.record(text, position)
            if found is None:
                return
            record, position = found
            yield record

    def record(self, text: str, position: int) -> tuple[Record, int] | None:
        """The record starting at ``position`` and the position after its record delimiter;
        None at the end of the text."""
        if position >= len(text):
            return None
        if self.props.column_widths is not None:
            return self._fixed_record(text, position, self.props.column_widths)
        return self._delimited_record(text, position)

    def _delimited_record(self, text: str, position: int) -> tuple[Record, int]:
        end = len(text)
        record_delimiter = self.record_delimiter
        column_delimiter = self.column_delimiter
        record: Record = []
        while True:
            value, position = self._column_value(text, position)
            record.append(value)
            if position >= end:
                break
            if text.startswith(record_delimiter, position):
                position += len(record_delimiter)
                break
            if text.startswith(column_delimiter, position):
                position += len(column_delimiter)
        return record, position

    def _column_value(self, text: str, position: int) -> tuple[str, int]:
        end = len(text)
        if position >= end:
            return "", position
        record_delimiter = self.record_delimiter
        column_delimiter = self.column_delimiter
        quote = self.quote
        if not text.startswith(quote, position):
            # Runs to the first record or column delimiter (Mirth looks at each character).
            stop = end
            for delimiter in (record_delimiter, column_delimiter):
                found = text.find(delimiter, position, stop + len(delimiter) - 1)
                if found != -1:
                    stop = found
            return text[position:stop], stop
        escape = self.escape
        double = self.props.escape_with_double_quote
        position += len(quote)
        in_quote = True
        value: list[str] = []
        while True:
            if in_quote:
                if double:
                    if text.startswith(quote + quote, position):
                        position += 2 * len(quote)
                        value.append(quote)
                        continue
                else:
                    if text.startswith(escape + quote, position):
                        position += len(escape) + len(quote)
                        value.append(quote)
                        continue
                    if text.startswith(escape + escape, position):
                        position += 2 * len(escape)
                        value.append(escape)
                        continue
                if text.startswith(quote, position):
                    position += len(quote)
                    in_quote = False
                    continue
            elif text.startswith(record_delimiter, position) or text.startswith(
                column_delimiter, position
            ):
                break
            if position >= end:
                break
            value.append(text[position])
            position += 1
        return "".join(value), position

    def _fixed_record(
        self, text: str, position: int, widths: tuple[int, ...]
    ) -> tuple[Record, int]:
        # A faithful port, including its edge: a last record that ends exactly at a column
        # boundary (no record delimiter) gets one more, empty, column.
        end = len(text)
        record_delimiter = self.record_delimiter
        at_end = False  # Mirth's ``ch == -1``: a read hit the end of the text
        at_delimiter = False
        record: Record = []
        for width in widths:
            start = position
            at_delimiter = text.startswith(record_delimiter, position)
            for _ in range(width):
                if at_delimiter:
                    break
                if position >= end:
                    at_end = True
                    break
                position += 1
                at_delimiter = text.startswith(record_delimiter, position)
            record.append(text[start:position].rstrip(JAVA_WHITESPACE))
            if at_end or at_delimiter:
                break
        while not at_end and not at_delimiter:
            if position >= end:
                at_end = True
                break
            position += 1
            at_delimiter = text.startswith(record_delimiter, position)
        if at_delimiter:
            position += len(record_delimiter)
        return record, position
