"""Delimited text <-> Mirth's delimited XML (``DelimitedSerializer``).

Text to XML (``DelimitedReader`` + ``XMLPrettyPrinter``)::

    <?xml version="1.0" encoding="UTF-8"?><delimited><row><column1>a</column1>...</row>...
    </delimited>

(on one line)

unindented, one ``row`` element per record (``row1``, ``row2``... with ``numberedRows``), one
element per value named ``column1``... or by ``columnNames`` (columns past the names keep
``columnN``); an empty value is ``<column1></column1>``; text is encoded as Mirth's
``MirthXmlUtil.encode`` does.

XML to text (``DelimitedXMLHandler``, a SAX handler, ported as a state machine): an element whose
local name starts with ``row`` (any case) opens a record; each child element of it is a value,
whatever its name and in document order; values are joined by the column delimiter and every
record, the last one included, ends with the record delimiter. A value holding the column or
record delimiter is quoted, and inside it the escape token is doubled and the quote token
escaped (doubled, or preceded by the escape token). With ``columnWidths`` values are cut or
padded with spaces to their width and columns past the widths are dropped.
"""

from __future__ import annotations

import re

from lxml import etree
from pannier import MessageParseError, xmltext

from pannier_delimited.properties import DelimitedProperties
from pannier_delimited.reader import DelimitedReader, Record, prepare

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
ROOT = "delimited"

xml_escape = xmltext.encode
"""Mirth's ``MirthXmlUtil.encode`` (see :mod:`pannier.xmltext`)."""


def check_xml_characters(text: str) -> None:
    """Raise :class:`MessageParseError` if ``text`` holds a character XML 1.0 cannot carry."""
    offset = xmltext.first_unrepresentable(text)
    if offset is not None:
        code = ord(text[offset])
        what = (
            "an undecodable byte (lone surrogate)"
            if 0xD800 <= code <= 0xDFFF
            else f"character U+{code:04X}"
        )
        raise MessageParseError(
            f"the message contains {what} at offset {offset}, which its XML form cannot represent"
        )


def records_to_xml(records: list[Record], props: DelimitedProperties) -> str:
    """Mirth's XML for records already read."""
    out = [XML_DECLARATION, f"<{ROOT}>"]
    add = out.append
    numbered = props.numbered_rows
    names: list[str] = []
    for number, record in enumerate(records, 1):
        row = f"row{number}" if numbered else "row"
        add(f"<{row}>")
        while len(names) < len(record):
            names.append(props.column_name(len(names)))
        for index, value in enumerate(record):
            name = names[index]
            add(f"<{name}>{xml_escape(value)}</{name}>")
        add(f"</{row}>")
    add(f"</{ROOT}>")
    return "".join(out)


def text_to_xml(raw: str, props: DelimitedProperties) -> str:
    """Mirth's XML for delimited text; :class:`MessageParseError` only for characters XML
    cannot carry."""
    text = prepare(raw, props)
    check_xml_characters(text)
    return records_to_xml(list(DelimitedReader(props).records(text)), props)


# --- XML -> text ----------------------------------------------------------------------------

_POSITION_SUFFIX = re.compile(r", line \d+, column \d+$")


def _parser() -> etree.XMLParser:
    # A parser per call: lxml parser objects keep state and are not shared between threads.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, encoding="utf-8", huge_tree=False
    )


def parse_xml(xml: str) -> etree._Element:
    """Parse XML text; :class:`MessageParseError` (with line and column) unless well-formed.

    A DOCTYPE is refused, as Mirth's delimited deserializer refuses it.
    """
    text = xml.lstrip("\ufeff")
    try:
        root = etree.fromstring(text.encode("utf-8", "surrogatepass"), _parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        message = _POSITION_SUFFIX.sub("", exc.msg)
        raise MessageParseError(
            f"not well-formed XML at line {line}, column {column}: {message}"
        ) from None
    if root.getroottree().docinfo.doctype:
        raise MessageParseError("XML with a DOCTYPE declaration is not accepted")
    return root


def _local_name(element: etree._Element) -> str:
    return etree.QName(element).localname


class _Handler:
    """Mirth's ``DelimitedXMLHandler``, event for event."""

    def __init__(self, props: DelimitedProperties) -> None:
        self.props = props
        self.output: list[str] = []
        self.in_row = False
        self.in_column = False
        self.column_index = 0
        self.value: list[str] = []
        self.value_length = 0
        self.escaped_quote = (
            props.quote_token * 2
            if props.escape_with_double_quote
            else props.quote_escape_token + props.quote_token
        )
        self.escaped_escape = props.quote_escape_token * 2

    def start(self, name: str) -> None:
        if not self.in_row and len(name) >= 3 and name[:3].lower() == "row":
            self.in_row = True
            self.in_column = False
            self.column_index = 0
        elif self.in_row and not self.in_column:
            self.in_column = True
            if self.props.column_widths is None and self.column_index > 0:
                self.output.append(self.props.column_delimiter)
            self.value = []
            self.value_length = 0

    def end(self) -> None:
        props = self.props
        if self.in_column:
            value = "".join(self.value)
            widths = props.column_widths
            if widths is not None:
                if self.column_index < len(widths):
                    self.output.append(value + " " * (widths[self.column_index] - len(value)))
            elif props.column_delimiter in value or props.record_delimiter in value:
                value = value.replace(props.quote_escape_token, self.escaped_escape)
                value = value.replace(props.quote_token, self.escaped_quote)
                self.output.append(props.quote_token + value + props.quote_token)
            else:
                self.output.append(value)
            self.in_column = False
            self.column_index += 1
        elif self.in_row:
            self.in_row = False
            self.output.append(props.record_delimiter)

    def characters(self, text: str) -> None:
        if not text or not self.in_column:
            return
        widths = self.props.column_widths
        if widths is not None:
            if self.column_index >= len(widths):
                return
            room = widths[self.column_index] - self.value_length
            text = text[: max(room, 0)]
        self.value.append(text)
        self.value_length += len(text)


def xml_to_text(xml: str, props: DelimitedProperties) -> str:
    """Delimited text for Mirth's delimited XML (or any XML with row-like elements)."""
    root = parse_xml(xml)
    handler = _Handler(props)
    # Document order without recursion: (element, entering?) pairs on a stack. Comments and
    # processing instructions give no events, but the text after them does.
    stack: list[tuple[etree._Element, bool]] = [(root, True)]
    while stack:
        element, entering = stack.pop()
        is_element = isinstance(element.tag, str)
        if entering:
            if is_element:
                handler.start(_local_name(element))
                handler.characters(element.text or "")
                stack.append((element, False))
                stack.extend((child, True) for child in reversed(element))
            else:
                handler.characters(element.tail or "")
        else:
            handler.end()
            if element is not root:
                handler.characters(element.tail or "")
    return "".join(handler.output)
