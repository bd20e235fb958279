"""The XML data type: properties, validation with positions, namespace stripping, batches."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from lxml import etree
from pannier import DataType, DataTypeSpec, MessageParseError, Response, Status
from pannier.testing.datatypes import check_datatype
from pannier_xml import DEFAULTS, XMLDataType, XMLProperties, strip_namespaces
from pannier_xml.plugin import pannier_register_datatypes

SOAP = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
    '<soap:Body><order xmlns="urn:shop" id="7"><item qty="2">Tea</item></order></soap:Body>'
    "</soap:Envelope>"
)


@pytest.fixture
def xml() -> XMLDataType:
    return XMLDataType({})


def test_plugin_registers_xml_with_mirth_defaults() -> None:
    (spec,) = pannier_register_datatypes()
    assert isinstance(spec, DataTypeSpec)
    assert spec.name == "XML" and spec.description
    assert dict(spec.defaults) == dict(DEFAULTS)
    assert isinstance(spec.factory(spec.defaults), DataType)


def test_distribution_declares_exactly_one_plugin_entry_point() -> None:
    ours = [
        ep
        for ep in entry_points(group="pannier.plugins")
        if ep.dist and ep.dist.name == "pannier-xml"
    ]
    assert [(ep.name, ep.value) for ep in ours] == [("xml", "pannier_xml.plugin")]


def test_defaults_are_mirths() -> None:
    # XMLSerializationProperties.stripNamespaces is true; XMLBatchProperties defaults.
    assert DEFAULTS == {
        "stripNamespaces": True,
        "splitType": "Element_Name",
        "elementName": "",
        "level": 1,
        "query": "",
        "batchScript": "",
    }
    assert XMLProperties.from_mapping(DEFAULTS) == XMLProperties()


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"stripNamespace": True}, "unknown XML data type property 'stripNamespace'"),
        ({"stripNamespaces": "maybe"}, "must be true or false"),
        ({"splitType": "JavaScript"}, "JavaScript"),
        ({"batchScript": "return null;"}, "JavaScript"),
        ({"splitType": "Tag"}, "is not one of"),
        ({"splitType": "XPath_Query", "query": "//["}, "is not an XPath"),
    ],
)
def test_bad_properties_are_refused(properties: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        XMLDataType(properties)


def test_property_values_as_strings() -> None:
    props = XMLProperties.from_mapping({"stripNamespaces": "false", "level": "3"})
    assert props.strip_namespaces is False and props.level == 3
    assert XMLProperties.from_mapping({"splitType": "XPath Query", "query": "//a"}).split_type == (
        "XPath_Query"
    )
    assert XMLProperties.from_mapping({"level": "-1"}).level == 1  # Mirth keeps its default


# --- validation and parsing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("<a><b></a>", "line 1, column 11"),
        ("<a>\n  <b>\n</a>", "line 3, column 5"),
        ("<a>x</a>\n<b/>", "line 2, column 1"),
        ("<a>&nbsp;</a>", "line 1, column 10"),
        ("plain text", "line 1, column 1"),
    ],
)
def test_validate_names_line_and_column(xml: XMLDataType, text: str, position: str) -> None:
    with pytest.raises(MessageParseError, match=f"not well-formed XML at {position}"):
        xml.validate(text)
    with pytest.raises(MessageParseError):
        xml.parse(text)


def test_validate_refuses_empty_and_accepts_leading_whitespace(xml: XMLDataType) -> None:
    for empty in ("", "  \n", "\ufeff"):
        with pytest.raises(MessageParseError, match="empty message"):
            xml.validate(empty)
    xml.validate("\ufeff<a/>")
    xml.validate("\n  <a/>\n")
    xml.validate('\r\n<?xml version="1.0"?><a/>')  # tolerated before a declaration
    with pytest.raises(MessageParseError, match="line 3"):
        xml.validate('\n\n<?xml version="1.0"?><a></b>')


def test_declared_encoding_does_not_matter_for_text(xml: XMLDataType) -> None:
    root = xml.parse('<?xml version="1.0" encoding="ISO-8859-1"?><a>é€</a>')
    assert root.text == "é€"


def test_entities_internal_only(xml: XMLDataType) -> None:
    root = xml.parse('<!DOCTYPE a [<!ENTITY who "world">]><a>hello &who;</a>')
    assert root.text == "hello world"
    external = '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>'
    with pytest.raises(MessageParseError, match="Entity 'x' not defined"):
        xml.parse(external)


def test_undeclared_prefixes_are_names(xml: XMLDataType) -> None:
    # Well-formed XML 1.0, and what Mirth's own stripNamespaces produces.
    xml.validate("<a:b>x</a:b>")
    assert xml.parse("<a:b><c:d/></a:b>")[0].tag == "c:d"


def test_parse_strips_namespaces_keeping_prefixes(xml: XMLDataType) -> None:
    root = xml.parse(SOAP)
    assert [e.tag for e in root.iter()] == ["soap:Envelope", "soap:Body", "order", "item"]
    assert root[0][0][0].text == "Tea" and root[0][0].get("id") == "7"
    kept = XMLDataType({"stripNamespaces": False}).parse(SOAP)
    assert kept.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"
    assert kept[0][0].tag == "{urn:shop}order"


def test_parse_refuses_what_stripping_broke(xml: XMLDataType) -> None:
    # Mirth's expression is applied to the text: here it eats into an element.
    text = '<a><b>xmlns</b><c d="1"/></a>'
    with pytest.raises(MessageParseError, match="after stripping namespaces"):
        xml.parse(text)
    XMLDataType({"stripNamespaces": False}).parse(text)


# --- serialization --------------------------------------------------------------------------


def test_strip_namespaces_is_mirths_expression() -> None:
    assert strip_namespaces('<a xmlns="urn:x" xmlns:p="urn:p" p:x="1"/>') == '<a   p:x="1"/>'
    assert strip_namespaces("<a xmlns='single'/>") == "<a xmlns='single'/>"  # double quotes only
    assert strip_namespaces("<a>no namespaces</a>") == "<a>no namespaces</a>"


def test_to_xml_and_from_xml_pass_through(xml: XMLDataType) -> None:
    assert xml.to_xml(SOAP) == strip_namespaces(SOAP)
    assert "xmlns" not in xml.to_xml(SOAP)
    assert XMLDataType({"stripNamespaces": False}).to_xml(SOAP) == SOAP
    assert xml.from_xml(SOAP) == SOAP
    assert xml.from_xml("<not closed") == "<not closed"  # Mirth's fromXML does not look


def test_no_metadata_and_the_default_auto_response(xml: XMLDataType) -> None:
    assert xml.metadata(SOAP) == {}
    assert xml.auto_response(SOAP, Status.TRANSFORMED) == Response(status=Status.SENT)
    assert xml.auto_response(SOAP, Status.ERROR) == Response(status=Status.ERROR)


# --- batches --------------------------------------------------------------------------------

BATCH = (
    '<batch xmlns:x="urn:x"><x:patient id="1"><name>Ann</name></x:patient>'
    '<group><patient id="2"/></group><patient id="3">Bob</patient></batch>'
)


def test_split_by_element_name_matches_local_names_at_any_depth() -> None:
    parts = XMLDataType({"elementName": "patient"}).split_batch(BATCH)
    assert [etree.fromstring(p).get("id") for p in parts] == ["1", "2", "3"]
    assert parts[0] == '<x:patient xmlns:x="urn:x" id="1"><name>Ann</name></x:patient>'
    assert parts[2] == '<patient id="3">Bob</patient>'


def test_split_with_default_properties_gives_nothing_as_in_mirth(xml: XMLDataType) -> None:
    assert xml.split_batch(BATCH) == []  # elementName "" matches no element


def test_split_by_level_and_by_xpath() -> None:
    level = XMLDataType({"splitType": "Level", "level": 1}).split_batch(BATCH)
    assert [etree.fromstring(p).tag for p in level] == ["{urn:x}patient", "group", "patient"]
    root = XMLDataType({"splitType": "Level", "level": 0}).split_batch(BATCH)
    assert len(root) == 1 and root[0].startswith("<batch")
    query = XMLDataType({"splitType": "XPath_Query", "query": "//patient[@id > 1]"})
    assert [etree.fromstring(p).get("id") for p in query.split_batch(BATCH)] == ["2", "3"]


def test_split_errors() -> None:
    with pytest.raises(MessageParseError, match="not well-formed"):
        XMLDataType({"elementName": "a"}).split_batch("<a>")
    with pytest.raises(MessageParseError, match="failed"):
        XMLDataType({"splitType": "XPath_Query", "query": "//y:a"}).split_batch("<a/>")
    with pytest.raises(MessageParseError, match="must select elements"):
        XMLDataType({"splitType": "XPath_Query", "query": "count(//a)"}).split_batch("<a/>")


# --- conformance ----------------------------------------------------------------------------

GOOD = [
    SOAP,
    "<a/>",
    '<?xml version="1.0"?>\n<root>\n  <child attr="v &amp; w">text</child>\n</root>\n',
    "<a>é &lt; <b>mixed</b> tail</a>",
]
BAD = ["", "<a>", "<a></b>", "text", "<a>x</a><b/>", "<a>\x00</a>"]


def test_xml_passes_the_conformance_kit() -> None:
    (spec,) = pannier_register_datatypes()
    check_datatype(spec, GOOD, BAD)


def test_xml_passes_the_conformance_kit_without_stripping() -> None:
    (spec,) = pannier_register_datatypes()
    check_datatype(spec, GOOD, BAD, properties={"stripNamespaces": False})


def test_encode_turns_a_transformed_tree_back_into_xml() -> None:
    from pannier_xml.plugin import pannier_register_datatypes

    (spec,) = pannier_register_datatypes()
    datatype = spec.factory(spec.defaults)
    root = datatype.parse("<order><id>7</id></order>")
    root.find("id").text = "8"
    assert datatype.encode(root) == "<order><id>8</id></order>"
