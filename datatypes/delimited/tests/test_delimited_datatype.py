"""The DELIMITED data type: properties, reading, Mirth's XML both ways, batches, the kit."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pannier import DataType, DataTypeSpec, MessageParseError, Response, Status
from pannier.testing.datatypes import check_datatype
from pannier_delimited import (
    DEFAULTS,
    DelimitedDataType,
    DelimitedMessage,
    DelimitedProperties,
    mirth_unescape,
)
from pannier_delimited.plugin import pannier_register_datatypes
from pannier_delimited.serializer import records_to_xml

DECL = '<?xml version="1.0" encoding="UTF-8"?>'


def xml(*rows: str) -> str:
    return f"{DECL}<delimited>{''.join(rows)}</delimited>"


def row(*values: str, name: str = "row") -> str:
    cells = "".join(f"<column{i}>{v}</column{i}>" for i, v in enumerate(values, 1))
    return f"<{name}>{cells}</{name}>"


@pytest.fixture
def csv() -> DelimitedDataType:
    return DelimitedDataType({})


# --- plugin and properties ----------------------------------------------------------------


def test_plugin_registers_delimited_with_mirth_defaults() -> None:
    (spec,) = pannier_register_datatypes()
    assert isinstance(spec, DataTypeSpec)
    assert spec.name == "DELIMITED" and spec.description
    assert dict(spec.defaults) == dict(DEFAULTS)
    datatype = spec.factory(spec.defaults)
    assert isinstance(datatype, DataType) and datatype.name == "DELIMITED"


def test_distribution_declares_exactly_one_plugin_entry_point() -> None:
    ours = [
        ep
        for ep in entry_points(group="pannier.plugins")
        if ep.dist and ep.dist.name == "pannier-delimited"
    ]
    assert [(ep.name, ep.value) for ep in ours] == [("delimited", "pannier_delimited.plugin")]


def test_defaults_are_mirths() -> None:
    assert DEFAULTS["columnDelimiter"] == ","
    assert DEFAULTS["recordDelimiter"] == "\\n"  # stored escaped, as Mirth does
    assert DEFAULTS["columnWidths"] == ""
    assert DEFAULTS["quoteToken"] == '"'
    assert DEFAULTS["escapeWithDoubleQuote"] is True
    assert DEFAULTS["quoteEscapeToken"] == "\\"
    assert DEFAULTS["columnNames"] == ""
    assert DEFAULTS["numberedRows"] is False
    assert DEFAULTS["ignoreCR"] is True
    assert DEFAULTS["splitType"] == "Record"
    assert DEFAULTS["batchSkipRecords"] == 0
    assert DEFAULTS["batchMessageDelimiter"] == ""
    assert DEFAULTS["batchMessageDelimiterIncluded"] is False
    assert DEFAULTS["batchGroupingColumn"] == ""
    assert DEFAULTS["batchScript"] == ""
    props = DelimitedProperties.from_mapping(DEFAULTS)
    assert props == DelimitedProperties()
    assert props.record_delimiter == "\n" and props.quote_escape_token == "\\"


@pytest.mark.parametrize(
    ("stored", "value"),
    [
        ("\\t", "\t"),
        ("\\r\\n", "\r\n"),
        ("0x09", "\t"),
        ("a0x7Cb", "a|b"),
        ('"\\t"', "\\t"),  # a value in double quotes is literal
        ("|", "|"),
        ("0xZZ", "0xZZ"),
        ('"', '"'),
        ("", ""),
    ],
)
def test_mirth_unescape(stored: str, value: str) -> None:
    assert mirth_unescape(stored) == value


def test_empty_delimiters_keep_mirths_defaults() -> None:
    props = DelimitedProperties.from_mapping(
        {"columnDelimiter": "", "recordDelimiter": "", "quoteToken": "", "quoteEscapeToken": ""}
    )
    assert (props.column_delimiter, props.record_delimiter) == (",", "\n")
    assert (props.quote_token, props.quote_escape_token) == ('"', "\\")


def test_pre_3_3_quote_names_are_accepted() -> None:
    props = DelimitedProperties.from_mapping({"quoteChar": "'", "quoteEscapeChar": "!"})
    assert (props.quote_token, props.quote_escape_token) == ("'", "!")


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"columnDelimeter": ";"}, "unknown DELIMITED data type property 'columnDelimeter'"),
        ({"numberedRows": "yes"}, "'numberedRows' must be true or false"),
        ({"splitType": "JavaScript"}, "JavaScript"),
        ({"batchScript": "return reader.readLine();"}, "JavaScript"),
        ({"splitType": "Lines"}, "is not one of Record, Delimiter"),
        ({"splitType": "Delimiter"}, "needs a batchMessageDelimiter"),
        ({"splitType": "Grouping Column"}, "needs a batchGroupingColumn"),
        ({"batchSkipRecords": True}, "must be a number"),
    ],
)
def test_bad_properties_are_refused(properties: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DelimitedDataType(properties)


def test_string_values_as_mirth_stores_them() -> None:
    props = DelimitedProperties.from_mapping(
        {
            "numberedRows": "true",
            "ignoreCR": "false",
            "batchSkipRecords": "2",
            "columnWidths": "3,2",
            "columnNames": "a,b",
        }
    )
    assert props.numbered_rows is True and props.ignore_cr is False
    assert props.batch_skip_records == 2
    assert props.column_widths == (3, 2) and props.column_names == ("a", "b")
    assert DelimitedProperties.from_mapping({"columnWidths": [4, 5]}).column_widths == (4, 5)


def test_invalid_column_names_and_widths_are_ignored_as_mirth_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="pannier.delimited"):
        props = DelimitedProperties.from_mapping({"columnNames": "id,1st", "columnWidths": "3,x"})
    assert props.column_names is None and props.column_widths is None
    assert "columnNames" in caplog.text and "columnWidths" in caplog.text
    assert DelimitedProperties.from_mapping({"columnWidths": "3,0"}).column_widths is None
    assert DelimitedProperties.from_mapping({"columnNames": "_a,b.c,d-e,f:g"}).column_names


# --- text -> XML ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b,c\n1,2,3\n", xml(row("a", "b", "c"), row("1", "2", "3"))),
        ("a,b", xml(row("a", "b"))),
        ("", xml()),
        ("a,b,\n", xml(row("a", "b", ""))),
        (",\n", xml(row("", ""))),
        ("a\n\nb\n", xml(row("a"), row(""), row("b"))),
        ('1,"x,y",3', xml(row("1", "x,y", "3"))),
        ('"line\nbreak",2', xml(row("line&#10;break", "2"))),
        ('"say ""hi""",2', xml(row("say &quot;hi&quot;", "2"))),
        ('"ab"cd,e', xml(row("abcd", "e"))),  # text after the closing quote is kept
        ('a"b,c', xml(row("a&quot;b", "c"))),  # a quote inside an unquoted value is text
        ('"open,end', xml(row("open,end"))),  # an unclosed quote runs to the end
        ("a,b\r\nc,d\r\n", xml(row("a", "b"), row("c", "d"))),  # ignoreCR
        ("x\r,y", xml(row("x", "y"))),
        ("<&>'é\u20ac😀", xml(row("&lt;&amp;&gt;&apos;&#233;&#8364;&#128512;"))),
        ("  padded  ,x", xml(row("  padded  ", "x"))),
    ],
)
def test_to_xml(csv: DelimitedDataType, text: str, expected: str) -> None:
    assert csv.to_xml(text) == expected


def test_carriage_returns_are_values_without_ignore_cr() -> None:
    datatype = DelimitedDataType({"ignoreCR": False})
    assert datatype.to_xml("a\r,b\r\n") == xml(row("a&#13;", "b&#13;"))


def test_numbered_rows_and_column_names() -> None:
    datatype = DelimitedDataType({"numberedRows": True, "columnNames": "id,name"})
    assert datatype.to_xml("1,Ann,x\n2,Bob\n") == (
        f"{DECL}<delimited><row1><id>1</id><name>Ann</name><column3>x</column3></row1>"
        "<row2><id>2</id><name>Bob</name></row2></delimited>"
    )


def test_other_delimiters_and_multi_character_tokens() -> None:
    tab = DelimitedDataType({"columnDelimiter": "\\t", "recordDelimiter": "\\r\\n"})
    # ignoreCR eats the CR of CRLF, so the record delimiter never matches
    assert tab.to_xml("a\tb\r\nc\td") == xml(row("a", "b&#10;c", "d"))
    tab = DelimitedDataType(
        {"columnDelimiter": "\\t", "recordDelimiter": "\\r\\n", "ignoreCR": False}
    )
    assert tab.to_xml("a\tb\r\nc\td") == xml(row("a", "b"), row("c", "d"))
    multi = DelimitedDataType(
        {"columnDelimiter": "||", "recordDelimiter": "~~", "quoteToken": "''"}
    )
    assert multi.to_xml("a||b|c~~''x||y''||z") == xml(row("a", "b|c"), row("x||y", "z"))


def test_escape_token_instead_of_doubled_quotes() -> None:
    datatype = DelimitedDataType({"escapeWithDoubleQuote": False})
    assert datatype.to_xml('"a\\"b\\\\c,d"') == xml(row("a&quot;b\\c,d"))
    assert DelimitedDataType({}).to_xml('"a\\"b"') == xml(row("a\\b&quot;"))


def test_fixed_width_columns() -> None:
    fixed = DelimitedDataType({"columnWidths": "3,4,2"})
    assert fixed.to_xml("ab cdefgh\nxyz1234zz\n") == xml(
        row("ab", "cdef", "gh"), row("xyz", "1234", "zz")
    )
    # Trailing whitespace goes, leading stays; text past the last column is dropped; a short
    # record stops at the record delimiter.
    assert fixed.to_xml("a   b  123456\nxy\n") == xml(row("a", " b", "12"), row("xy"))
    # Mirth's edge: a last record ending exactly at a column boundary gets one empty column.
    assert fixed.parse("abcdefg").records == [["abc", "defg", ""]]
    assert fixed.parse("abcdefg\n").records == [["abc", "defg"]]


def test_validate_refuses_only_what_xml_cannot_carry(csv: DelimitedDataType) -> None:
    for text in ("", "anything, really\n", '"unclosed', "\t\n"):
        csv.validate(text)
    for text in ("a,\x00", "a\x1cb", "bad \ud800"):
        with pytest.raises(MessageParseError, match="cannot represent"):
            csv.validate(text)
        with pytest.raises(MessageParseError):
            csv.to_xml(text)


def test_parse_gives_records_with_their_xml_names() -> None:
    datatype = DelimitedDataType({"columnNames": "id,name"})
    message = datatype.parse("1,Ann,x\n2,Bob\n")
    assert isinstance(message, DelimitedMessage)
    assert len(message) == 2 and message[0] == ["1", "Ann", "x"] and list(message)[1][1] == "Bob"
    assert message.value(0, "name") == "Ann" and message.value(0, "column3") == "x"
    assert message.value(1, 0) == "2"
    assert message.column_names(0) == ["id", "name", "column3"]
    assert message.row_name(0) == "row"
    assert message.rows() == [
        {"id": "1", "name": "Ann", "column3": "x"},
        {"id": "2", "name": "Bob"},
    ]
    with pytest.raises(KeyError, match="column3"):
        message.value(1, "column3")
    assert message.to_xml() == datatype.to_xml("1,Ann,x\n2,Bob\n")


def test_no_metadata_and_the_default_auto_response(csv: DelimitedDataType) -> None:
    assert csv.metadata("a,b\n") == {}
    assert csv.auto_response("a,b\n", Status.TRANSFORMED) == Response(status=Status.SENT)
    assert csv.auto_response("a,b\n", Status.ERROR, "boom") == Response(status=Status.ERROR)


# --- XML -> text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "text"),
    [
        (xml(row("a", "b"), row("c", "d")), "a,b\nc,d\n"),
        (xml(), ""),
        (xml(row("x,y", 'say "hi"', "plain")), '"x,y",say "hi",plain\n'),
        (xml(row('a "b", c')), '"a ""b"", c"\n'),
        (xml(row("two\nlines")), '"two\nlines"\n'),
        (xml(row("", "")), ",\n"),
        # Mirth doubles the escape token in a quoted value even with double-quote escaping.
        (xml(row("back\\slash,x")), '"back\\\\slash,x"\n'),
        # Any element starting with "row" (any case) is a record, whatever its children.
        ("<a><ROW7><x>1</x><y>2</y></ROW7><rows><p>3</p></rows></a>", "1,2\n3\n"),
        # Whitespace between elements is not data; whitespace inside a value is.
        ("<delimited>\n  <row>\n    <column1> a </column1>\n  </row>\n</delimited>", " a \n"),
        (
            "<delimited><row><column1>a<!-- c -->b<![CDATA[<c>]]></column1></row></delimited>",
            "ab<c>\n",
        ),
        # A nested element ends the value (Mirth's SAX handler): text after it is lost.
        ("<d><row><column1>a<b>x</b>y</column1><column2>z</column2></row></d>", "ax\n"),
        ('<?xml version="1.0" encoding="ISO-8859-1"?><d><row><c>é</c></row></d>', "é\n"),
    ],
)
def test_from_xml(csv: DelimitedDataType, document: str, text: str) -> None:
    assert csv.from_xml(document) == text


def test_from_xml_with_other_tokens() -> None:
    datatype = DelimitedDataType(
        {"columnDelimiter": "|", "recordDelimiter": "\\r\\n", "escapeWithDoubleQuote": False}
    )
    assert datatype.from_xml(xml(row('a|"b"', "c\\d"))) == '"a|\\"b\\""|c\\d\r\n'


def test_from_xml_fixed_width_pads_cuts_and_drops() -> None:
    fixed = DelimitedDataType({"columnWidths": "3,2"})
    assert fixed.from_xml(xml(row("a", "toolong", "dropped"), row("abc", "de"))) == (
        "a  to\nabcde\n"
    )


def test_from_xml_refuses_malformed_xml_and_doctypes(csv: DelimitedDataType) -> None:
    with pytest.raises(MessageParseError, match=r"line 2, column \d+"):
        csv.from_xml("<delimited>\n<row></delimited>")
    with pytest.raises(MessageParseError):
        csv.from_xml("")
    with pytest.raises(MessageParseError, match="DOCTYPE"):
        csv.from_xml('<!DOCTYPE d [<!ENTITY e "x">]><d><row><c>&e;</c></row></d>')


def test_round_trip_of_a_typical_file(csv: DelimitedDataType) -> None:
    text = 'id,name,notes\n1,"Smith, Ann","a ""b"", c"\n2,Bob,\n'
    assert csv.from_xml(csv.to_xml(text)) == text
    # Mirth quotes only values holding a delimiter.
    assert csv.from_xml(csv.to_xml('"said ""hi"""\n')) == 'said "hi"\n'


_VALUE = st.text(alphabet=st.sampled_from(list('ab ,"\n\té<&x')), max_size=8)


@given(st.lists(st.lists(_VALUE, min_size=1, max_size=4), max_size=4))
def test_xml_to_text_to_xml_keeps_every_value(records: list[list[str]]) -> None:
    # Mirth's writer only quotes values holding a delimiter, so a value that starts with a
    # quote and holds no delimiter reads back without its quotes: Mirth loses those too.
    for record in records:
        for value in record:
            assume(not (value.startswith('"') and "," not in value and "\n" not in value))
    props = DelimitedProperties()
    datatype = DelimitedDataType({})
    document = records_to_xml(records, props)
    assert datatype.parse(datatype.from_xml(document)).records == records
    assert datatype.to_xml(datatype.from_xml(document)) == document


# --- batches --------------------------------------------------------------------------------


def test_split_by_record(csv: DelimitedDataType) -> None:
    batch = 'h1,h2\r\na,b\r\n"multi\r\nline",c\r\n\r\nlast'
    assert csv.split_batch(batch) == ["h1,h2\n", "a,b\n", '"multi\nline",c\n', "\n", "last"]
    skip = DelimitedDataType({"batchSkipRecords": 1})
    assert skip.split_batch("h1,h2\na,b\nc,d\n") == ["a,b\n", "c,d\n"]
    assert csv.split_batch("") == []


def test_split_by_message_delimiter() -> None:
    datatype = DelimitedDataType({"splitType": "Delimiter", "batchMessageDelimiter": "END\\n"})
    batch = "a,1\nb,2\nEND\nc,3\nEND\nd,4\n"
    assert datatype.split_batch(batch) == ["a,1\nb,2\n", "c,3\n", "d,4\n"]
    kept = DelimitedDataType(
        {
            "splitType": "Delimiter",
            "batchMessageDelimiter": "END\\n",
            "batchMessageDelimiterIncluded": True,
        }
    )
    assert kept.split_batch(batch) == ["a,1\nb,2\nEND\n", "c,3\nEND\n", "d,4\n"]


def test_split_by_grouping_column() -> None:
    by_number = DelimitedDataType(
        {"splitType": "Grouping_Column", "batchGroupingColumn": "column1"}
    )
    assert by_number.split_batch("A,1\nA,2\nB,3\nB,4\nC,5") == ["A,1\nA,2\n", "B,3\nB,4\n", "C,5"]
    by_name = DelimitedDataType(
        {
            "splitType": "Grouping_Column",
            "batchGroupingColumn": "patient",
            "columnNames": "order,patient",
        }
    )
    assert by_name.split_batch("1,P1\n2,P1\n3,P2\n") == ["1,P1\n2,P1\n", "3,P2\n"]
    with pytest.raises(MessageParseError, match="record 2 has no column 2"):
        by_name.split_batch("1,P1\n2\n")


# --- conformance ----------------------------------------------------------------------------

GOOD = [
    "id,name\n1,Ann\n2,Bob\n",
    'a,"b,c","d ""e"""\r\nf,g\r\n',
    "single value",
    "",
    "x,y,\n\nz\n",
    "é,<&>\t",
]


def test_delimited_passes_the_conformance_kit() -> None:
    (spec,) = pannier_register_datatypes()
    check_datatype(spec, GOOD, ["nul\x00", "a,\x1c"])


@pytest.mark.parametrize(
    "properties",
    [
        {"numberedRows": True, "columnNames": "first,second"},
        {"columnWidths": "2,3"},
        {"columnDelimiter": "|", "recordDelimiter": "\\r\\n", "ignoreCR": False},
    ],
)
def test_delimited_passes_the_conformance_kit_configured(properties: dict[str, object]) -> None:
    (spec,) = pannier_register_datatypes()
    good = ["ab,cde\nfg,hij\n", "a|b\r\nc|d\r\n", ""]
    check_datatype(spec, good, ["\x00"], properties=properties)
