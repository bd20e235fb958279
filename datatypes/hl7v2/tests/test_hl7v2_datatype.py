"""The HL7V2 data type: properties, validation, metadata, XML, batches, plugin registration."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
from pannier import DataType, DataTypeSpec, MessageParseError
from pannier_hl7v2 import DEFAULTS, HL7Message, HL7v2DataType
from pannier_hl7v2.plugin import pannier_register_datatypes

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
SAMPLES = FIXTURES / "hl7"


def sample(name: str, errors: str = "strict") -> str:
    return (SAMPLES / name).read_bytes().decode("utf-8", errors=errors)


@pytest.fixture
def hl7() -> HL7v2DataType:
    return HL7v2DataType({})


# --- plugin and properties ----------------------------------------------------------------


def test_plugin_registers_hl7v2_with_mirth_defaults() -> None:
    (spec,) = pannier_register_datatypes()
    assert isinstance(spec, DataTypeSpec)
    assert spec.name == "HL7V2"
    assert spec.description
    assert dict(spec.defaults) == dict(DEFAULTS)
    datatype = spec.factory(spec.defaults)
    assert isinstance(datatype, DataType) and datatype.name == "HL7V2"


def test_distribution_declares_exactly_one_plugin_entry_point() -> None:
    ours = [
        ep
        for ep in entry_points(group="pannier.plugins")
        if ep.dist and ep.dist.name == "pannier-hl7v2"
    ]
    assert [(ep.name, ep.value) for ep in ours] == [("hl7v2", "pannier_hl7v2.plugin")]


def test_defaults_are_mirths() -> None:
    assert DEFAULTS["handleRepetitions"] is True
    assert DEFAULTS["handleSubcomponents"] is True
    assert DEFAULTS["convertLineBreaks"] is True
    assert DEFAULTS["segmentDelimiter"] == "\\r"
    assert DEFAULTS["successfulACKCode"] == "AA" and DEFAULTS["successfulACKMessage"] == ""
    assert DEFAULTS["errorACKCode"] == "AE"
    assert DEFAULTS["errorACKMessage"] == "An Error Occurred Processing Message."
    assert DEFAULTS["rejectedACKCode"] == "AR"
    assert DEFAULTS["rejectedACKMessage"] == "Message Rejected."
    assert DEFAULTS["msh15ACKAccept"] is False
    assert DEFAULTS["dateFormat"] == "yyyyMMddHHmmss.SSS"


def test_unknown_property_names_the_key_and_the_allowed_keys() -> None:
    with pytest.raises(ValueError) as caught:
        HL7v2DataType({"handleRepetition": True})
    text = str(caught.value)
    assert "'handleRepetition'" in text
    assert "handleRepetitions" in text and "successfulACKCode" in text and "msh15ACKAccept" in text


def test_property_types_are_checked_and_mirth_strings_accepted() -> None:
    assert HL7v2DataType({"handleRepetitions": "false"}).properties.handle_repetitions is False
    with pytest.raises(ValueError, match="handleSubcomponents"):
        HL7v2DataType({"handleSubcomponents": "maybe"})
    with pytest.raises(ValueError, match="errorACKCode"):
        HL7v2DataType({"errorACKCode": 5})


def test_unsupported_mirth_modes_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="useStrictParser"):
        HL7v2DataType({"useStrictParser": True})
    with pytest.raises(ValueError, match="JavaScript"):
        HL7v2DataType({"splitType": "JavaScript"})
    with pytest.raises(ValueError, match="segmentDelimiter"):
        HL7v2DataType({"segmentDelimiter": ""})


def test_segment_delimiter_is_unescaped_like_mirth() -> None:
    assert HL7v2DataType({"segmentDelimiter": "\\r\\n"}).properties.segment_delimiter == "\r\n"
    assert HL7v2DataType({"segmentDelimiter": "\n"}).properties.segment_delimiter == "\n"


# --- validate and parse -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adt_a01.hl7", "oru_r01.hl7", "batch.hl7"])
def test_good_samples_validate_and_parse(hl7: HL7v2DataType, name: str) -> None:
    hl7.validate(sample(name))
    assert isinstance(hl7.parse(sample(name)), HL7Message)


def test_no_msh_sample_is_rejected_with_an_excerpt(hl7: HL7v2DataType) -> None:
    with pytest.raises(MessageParseError) as caught:
        hl7.parse(sample("bad_no_msh.hl7"))
    assert str(caught.value) == (
        "message does not start with an MSH segment (starts with "
        "'PID|1||1001^^^GOODHEALTH^MR||Alpha^Ann')"
    )


def test_truncated_msh_sample_is_rejected(hl7: HL7v2DataType) -> None:
    with pytest.raises(MessageParseError, match=r"MSH segment is truncated: MSH-2 .*'MSH\|\^~'"):
        hl7.validate(sample("bad_truncated_msh.hl7"))


@pytest.mark.parametrize("errors", ["surrogateescape", "replace"])
def test_binary_sample_is_rejected_for_its_control_characters(hl7, errors) -> None:
    raw = sample("bad_binary.hl7", errors)
    with pytest.raises(MessageParseError, match=r"contains NUL at offset 13"):
        hl7.validate(raw)
    # nothing else falls over on it either; its MSH stops after MSH-4
    assert hl7.metadata(raw) == {"mirth_source": "Y"}
    assert HL7Message(raw).encode() == raw
    with pytest.raises(MessageParseError):
        hl7.to_xml(raw)


def test_binary_read_as_latin1_is_rejected_too(hl7: HL7v2DataType) -> None:
    raw = (SAMPLES / "bad_binary.hl7").read_bytes().decode("latin-1")
    with pytest.raises(MessageParseError, match="NUL"):
        hl7.parse(raw)


def test_mllp_frame_byte_inside_a_message_is_rejected(hl7: HL7v2DataType) -> None:
    with pytest.raises(MessageParseError, match="MLLP end block 0x1C at offset 12"):
        hl7.validate("MSH|^~\\&|A|B\x1c\rPID|1\r")


def test_form_feed_in_a_report_passes_validation_but_not_xml(hl7: HL7v2DataType) -> None:
    raw = "MSH|^~\\&|A|B\rOBX|1|TX|||page one\x0cpage two\r"
    hl7.validate(raw)
    assert hl7.parse(raw)["OBX.5"] == "page one\x0cpage two"
    with pytest.raises(MessageParseError, match="U\\+000C"):
        hl7.to_xml(raw)


def test_undecodable_bytes_are_named(hl7: HL7v2DataType) -> None:
    raw = b"MSH|^~\\&|A|B\rPID|1||\xff\xfe\r".decode("utf-8", errors="surrogateescape")
    with pytest.raises(MessageParseError, match="an undecodable byte at offset 20"):
        hl7.validate(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "too short"),
        ("  MSH| \r\n", "too short"),
        ("MSH|^~", "truncated"),
        ("MSH\rPID|1|2|3", "truncated"),
        ("MSHA^~\\&A", "no field separator"),
        ("MSH|^^\\&|A|B", "not valid"),
        ("MSH|^A\\&|A", "not valid"),
        ("msh|^~\\&|A|B", "does not start with an MSH"),
        ("<HL7Message/>", "MSH"),
    ],
)
def test_validation_failures_say_what_is_wrong(hl7, raw, message) -> None:
    with pytest.raises(MessageParseError, match=message):
        hl7.validate(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "MSH|^~\\&|A",
        "  \x0bMSH|^~\\&|A|B\r\x1c\r",
        "FHS|^~\\&|X\rBHS|^~\\&|X\r",
        "MSH|^~&|APP",
        "MSH#*@!%#APP",
        "MSH|^~|A",
        "MSH|^~\\&|A\tB|Zoë\r",
    ],
)
def test_validation_accepts_odd_but_readable_messages(hl7, raw) -> None:
    hl7.validate(raw)


# --- metadata -----------------------------------------------------------------------------


def test_metadata_of_the_samples(hl7: HL7v2DataType) -> None:
    assert hl7.metadata(sample("adt_a01.hl7")) == {
        "mirth_source": "GOODHEALTH",
        "mirth_type": "ADT-A01",
        "mirth_version": "2.5.1",
    }
    assert hl7.metadata(sample("oru_r01.hl7")) == {
        "mirth_source": "GOODHEALTH",
        "mirth_type": "ORU-R01",
        "mirth_version": "2.5.1",
    }


@pytest.mark.parametrize(
    ("msh9", "expected"),
    [
        ("ADT^A01", "ADT-A01"),
        ("ADT^A01^ADT_A01", "ADT-A01"),
        ("ADT^", "ADT"),
        ("ADT", "ADT"),
        ("", ""),
        ("^A01", "-A01"),
        ("ADT~ORM^O01", "ADT"),
        ("ADT&x^A0&y", "ADT-A0"),
    ],
)
def test_message_type_adds_the_dash_only_when_the_event_is_present(hl7, msh9, expected) -> None:
    raw = f"MSH|^~\\&|APP|FAC|||20260101||{msh9}|1|P|2.3\r"
    assert hl7.metadata(raw)["mirth_type"] == expected


def test_metadata_respects_repetition_and_subcomponent_settings() -> None:
    raw = "MSH|^~\\&|APP|FAC&SUB~ALT|||20260101||ADT~X^A01|1|P|2.4\r"
    assert HL7v2DataType({}).metadata(raw)["mirth_source"] == "FAC"
    off = HL7v2DataType({"handleRepetitions": False, "handleSubcomponents": False})
    assert off.metadata(raw)["mirth_source"] == "FAC&SUB~ALT"
    assert off.metadata(raw)["mirth_type"] == "ADT~X-A01"


def test_metadata_omits_fields_the_msh_does_not_reach(hl7: HL7v2DataType) -> None:
    assert hl7.metadata("MSH|^~\\&|APP\rPID|1|2|3|4|5|6|7|8|9|10|11|12\r") == {}
    assert hl7.metadata("MSH|^~\\&|APP|FAC\rPID|1\r") == {"mirth_source": "FAC"}
    assert hl7.metadata("MSH|^~\\&|APP||||||ORU^R01|1|P\r") == {
        "mirth_source": "",
        "mirth_type": "ORU-R01",
    }


def test_metadata_of_a_batch_header_has_no_version(hl7: HL7v2DataType) -> None:
    raw = "FHS|^~\\&|APP|FAC|||20260101||NAME|1|2|3\rMSH|^~\\&|A|B|||x||ORU^R01|1|P|2.5\r"
    assert hl7.metadata(raw) == {"mirth_source": "FAC", "mirth_type": "NAME"}


def test_metadata_handles_leading_whitespace_and_lf_delimiters(hl7: HL7v2DataType) -> None:
    raw = "\n  MSH|^~\\&|APP|FAC|||t||ADT^A04|1|P|2.3\nPID|1\n"
    assert hl7.metadata(raw) == {
        "mirth_source": "FAC",
        "mirth_type": "ADT-A04",
        "mirth_version": "2.3",
    }


@pytest.mark.parametrize("raw", ["", "MSH", "MSH|", "PID|1|2", "\x00\x01", "MSH|^~\\&"])
def test_metadata_never_raises(hl7: HL7v2DataType, raw: str) -> None:
    assert hl7.metadata(raw) == {}


# --- XML ----------------------------------------------------------------------------------


def test_xml_escapes_like_mirthxmlutil(hl7: HL7v2DataType) -> None:
    raw = "MSH|^~\\&|A<B>|\"Q\"|'s'|x\\T\\y|Müller 😀\r"
    xml = hl7.to_xml(raw)
    assert "<MSH.3><MSH.3.1>A&lt;B&gt;</MSH.3.1></MSH.3>" in xml
    assert "<MSH.4.1>&quot;Q&quot;</MSH.4.1>" in xml
    assert "<MSH.5.1>&apos;s&apos;</MSH.5.1>" in xml
    assert "<MSH.6.1>x\\T\\y</MSH.6.1>" in xml  # HL7 escapes are not decoded
    assert "<MSH.7.1>M&#252;ller &#128512;</MSH.7.1>" in xml
    assert xml.isascii()
    assert hl7.from_xml(xml) == raw


def test_xml_keeps_line_feeds_as_numeric_references_when_not_converted() -> None:
    datatype = HL7v2DataType({"convertLineBreaks": False})
    xml = datatype.to_xml("MSH|^~\\&|A\rNTE|1||line one\nline two\r")
    assert "<NTE.3.1>line one&#10;line two</NTE.3.1>" in xml
    assert datatype.from_xml(xml) == "MSH|^~\\&|A\rNTE|1||line one\nline two\r"


def test_oru_sample_xml_shows_repetitions_and_non_ascii(hl7: HL7v2DataType) -> None:
    xml = hl7.to_xml(sample("oru_r01.hl7"))
    assert (
        "<OBX.5><OBX.5.1>Specimen slightly hemolyzed</OBX.5.1></OBX.5>"
        "<OBX.5><OBX.5.1>Repeat advised</OBX.5.1></OBX.5>"
    ) in xml
    assert (
        "<NTE.3><NTE.3.1><NTE.3.1.1>Reviewed by \\T\\ signed off: Dr. M&#252;ller "
        "</NTE.3.1.1><NTE.3.1.2> team</NTE.3.1.2></NTE.3.1></NTE.3>"
    ) in xml


def test_xml_of_empty_fields_and_trailing_separator(hl7: HL7v2DataType) -> None:
    xml = hl7.to_xml("MSH|^~\\&|A\rZZZ||a^|^^|~x~|\r")
    assert xml.endswith(
        "<ZZZ><ZZZ.1></ZZZ.1><ZZZ.2><ZZZ.2.1>a</ZZZ.2.1><ZZZ.2.2></ZZZ.2.2></ZZZ.2>"
        "<ZZZ.3><ZZZ.3.1></ZZZ.3.1><ZZZ.3.2></ZZZ.3.2><ZZZ.3.3></ZZZ.3.3></ZZZ.3>"
        "<ZZZ.4></ZZZ.4><ZZZ.4><ZZZ.4.1>x</ZZZ.4.1></ZZZ.4><ZZZ.4></ZZZ.4>"
        "<ZZZ.5></ZZZ.5></ZZZ></HL7Message>"
    )


def test_to_xml_errors_are_parse_errors(hl7: HL7v2DataType) -> None:
    with pytest.raises(MessageParseError, match="too short"):
        hl7.to_xml("MSH|")
    with pytest.raises(MessageParseError, match="not a segment name"):
        hl7.to_xml("MSH|^~\\&|A\r1AB|x\r")
    with pytest.raises(MessageParseError, match="U\\+0007"):
        hl7.to_xml("MSH|^~\\&|A\rNTE|a\x07b\r")


def test_from_xml_accepts_pretty_printed_declared_and_namespaced_input(hl7) -> None:
    xml = """<?xml version="1.0" encoding="ISO-8859-1"?>
    <!-- from a transformer -->
    <HL7Message xmlns="urn:example">
        <MSH>
            <MSH.1>|</MSH.1>
            <MSH.2>^~\\&amp;</MSH.2>
            <MSH.3><MSH.3.1>APP</MSH.3.1></MSH.3>
            <MSH.9><MSH.9.1>ADT</MSH.9.1><MSH.9.2>A01</MSH.9.2></MSH.9>
        </MSH>
        <NTE><NTE.3><![CDATA[a < b]]></NTE.3><NTE.5>  padded  </NTE.5></NTE>
    </HL7Message>"""
    assert hl7.from_xml(xml) == "MSH|^~\\&|APP||||||ADT^A01\rNTE|||a < b||  padded  \r"


def test_from_xml_of_a_single_segment(hl7: HL7v2DataType) -> None:
    assert hl7.from_xml("<PID><PID.3><PID.3.1>1</PID.3.1></PID.3></PID>") == "PID|||1\r"


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<HL7Message><MSH>", "not well-formed"),
        ("not xml", "not well-formed"),
        ('<!DOCTYPE x [<!ENTITY e "boom">]><HL7Message/>', "DOCTYPE"),
        ("<PID.3><PID.3.1>x</PID.3.1></PID.3>", "root"),
    ],
)
def test_from_xml_rejects_bad_input(hl7: HL7v2DataType, xml: str, message: str) -> None:
    with pytest.raises(MessageParseError, match=message):
        hl7.from_xml(xml)


# --- batches ------------------------------------------------------------------------------


def test_batch_sample_splits_into_three_messages(hl7: HL7v2DataType) -> None:
    messages = hl7.split_batch(sample("batch.hl7"))
    assert len(messages) == 3
    assert [HL7Message(m)["MSH.10"] for m in messages] == ["B0001", "B0002", "B0003"]
    for message in messages:
        assert message.startswith("MSH|") and message.endswith("\r")
        assert HL7Message(message).segment_names == ["MSH", "PID", "OBX"]
        hl7.validate(message)
    assert messages[1] == (
        "MSH|^~\\&|LAB|GOODHEALTH|EHR|GOODHEALTH|20261123110002||ORU^R01^ORU_R01|B0002|P|2.5.1\r"
        "PID|1||1002^^^GOODHEALTH^MR||Beta^Bob\r"
        "OBX|1|NM|2345-7^Glucose^LN||130|mg/dL|70-99|H|||F\r"
    )


def test_plain_concatenated_messages_split_on_msh(hl7: HL7v2DataType) -> None:
    raw = "MSH|^~\\&|A|1\r\nPID|1\nMSH|^~\\&|A|2\rPID|2\r\x0bMSH|^~\\&|A|3\x1c\r"
    assert hl7.split_batch(raw) == [
        "MSH|^~\\&|A|1\rPID|1\r",
        "MSH|^~\\&|A|2\rPID|2\r",
        "MSH|^~\\&|A|3\r",
    ]


def test_conformance_batch_is_one_message_without_headers(hl7: HL7v2DataType) -> None:
    raw = (FIXTURES / "conformance/hl7v2-xml/test-hl7-batch-input.txt").read_bytes().decode()
    (message,) = hl7.split_batch(raw)
    assert message.startswith("MSH|^~\\&|MIRTH|MIRTH|||200612131519||ORM^O01|")
    assert "FHS" not in message and "BHS" not in message


def test_blank_line_ends_a_message_like_mirth(hl7: HL7v2DataType) -> None:
    assert hl7.split_batch("MSH|^~\\&|A\rPID|1\r\rMSH|^~\\&|B\r") == [
        "MSH|^~\\&|A\rPID|1\r",
        "MSH|^~\\&|B\r",
    ]
    assert hl7.split_batch("FHS|^~\\&\rBHS|^~\\&\rBTS|0\rFTS|1\r") == []


def test_hl7v2_passes_the_data_type_conformance_kit() -> None:
    from pannier.testing import check_datatype

    (spec,) = pannier_register_datatypes()
    good = [sample("adt_a01.hl7"), sample("oru_r01.hl7"), sample("batch.hl7")]
    bad = [
        sample("bad_no_msh.hl7"),
        sample("bad_truncated_msh.hl7"),
        sample("bad_binary.hl7", errors="surrogateescape"),
    ]
    check_datatype(spec, good, bad)
