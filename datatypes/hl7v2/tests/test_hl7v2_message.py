"""The lazy ER7 message: paths, repetitions, assignment, round trips, separators."""

from __future__ import annotations

from pathlib import Path

import pytest
from pannier_hl7v2 import HL7Message, HL7v2DataType, PathError, Separators

SAMPLES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "hl7"
GOOD = ["adt_a01.hl7", "oru_r01.hl7", "batch.hl7"]


def sample(name: str) -> str:
    return (SAMPLES / name).read_bytes().decode("utf-8")


@pytest.fixture
def adt() -> HL7Message:
    return HL7Message(sample("adt_a01.hl7"))


def test_paths_read_fields_components_and_msh_numbering(adt: HL7Message) -> None:
    assert adt["MSH.1"] == "|"
    assert adt["MSH.2"] == "^~\\&"
    assert adt["MSH.3"] == "REGADT"
    assert adt["MSH.9"] == "ADT^A01^ADT_A01"
    assert adt["MSH.9.1"] == "ADT"
    assert adt["MSH.9.2"] == "A01"
    assert adt["MSH.10"] == "MSG00001"
    assert adt["MSH.12"] == "2.5.1"
    assert adt["PID.5.1"] == "Everyman"
    assert adt["PID.5.2"] == "Adam"
    assert adt["PID.11.3"] == "Ann Arbor"
    assert adt["PID"].startswith("PID|1||555-44-3333")


def test_whole_field_keeps_every_repetition_and_first_is_default(adt: HL7Message) -> None:
    assert adt["PID.3"] == "555-44-3333^^^GOODHEALTH^MR~9988776655^^^NATIONAL^NI"
    assert adt["PID.3.1"] == "555-44-3333"
    assert adt["PID.3[1].4"] == "GOODHEALTH"
    assert adt["PID.3[2]"] == "9988776655^^^NATIONAL^NI"
    assert adt["PID.3[2].4"] == "NATIONAL"
    assert adt["PID.3[3]"] == ""
    assert adt.repetitions("PID.3") == ["555-44-3333^^^GOODHEALTH^MR", "9988776655^^^NATIONAL^NI"]
    assert adt.repetitions("PID.3.5") == ["MR", "NI"]
    assert adt.repetitions("PID.2") == []


def test_absent_values_read_as_empty_text(adt: HL7Message) -> None:
    assert adt["PID.2"] == ""
    assert adt["PID.99"] == ""
    assert adt["PID.5.9"] == ""
    assert adt["PID.5.1.2"] == ""
    assert adt["ZZZ.1"] == ""
    assert adt["OBX[2].5"] == ""
    assert adt.get("PID.2", "none") == "none"


def test_repeated_segments_by_occurrence_and_segments_list() -> None:
    msg = HL7Message(sample("oru_r01.hl7"))
    results = msg.segments("OBX")
    assert [s["3.2"] for s in results] == ["Glucose", "Creatinine", "Comment"]
    assert msg["OBX[2].5"] == "0.9"
    assert msg["OBX[3].5[2]"] == "Repeat advised"
    assert results[2].repetitions(5) == ["Specimen slightly hemolyzed", "Repeat advised"]
    assert msg.segment("OBX", 3) is not None and msg.segment("OBX", 4) is None
    assert msg.segment_names == ["MSH", "PID", "ORC", "OBR", "OBX", "OBX", "OBX", "NTE"]
    assert "NTE" in msg and "EVN" not in msg
    assert len(msg.segments()) == 8


def test_segment_view_numbers_fields_like_hl7(adt: HL7Message) -> None:
    msh = adt.segment("MSH")
    assert msh is not None
    assert msh.name == "MSH" and msh[1] == "|" and msh[2] == "^~\\&" and msh[3] == "REGADT"
    assert len(msh) == 16
    pid = adt.segments("PID")[0]
    assert pid[5] == "Everyman^Adam^A^III^Mr."
    assert pid["5.2"] == "Adam"
    assert pid["3[2].1"] == "9988776655"
    assert len(pid) == 20


def test_subcomponents_are_reachable() -> None:
    msg = HL7Message("MSH|^~\\&|A|B\rOBX|1|&&foo^bar&bar2&^baz|\r")
    assert msg["OBX.2.1"] == "&&foo"
    assert msg["OBX.2.1.3"] == "foo"
    assert msg["OBX.2.2.2"] == "bar2"
    assert msg["OBX.2.2.3"] == ""
    assert msg["OBX.2.3.1"] == "baz"


def test_assignment_grows_fields_components_and_segments(adt: HL7Message) -> None:
    adt["PID.5.1"] = "Smith"
    assert adt["PID.5"] == "Smith^Adam^A^III^Mr."
    adt["PID.3[2].4"] = "OTHER"
    assert adt["PID.3"] == "555-44-3333^^^GOODHEALTH^MR~9988776655^^^OTHER^NI"
    adt["PID.3[3].1"] = "X1"
    assert adt.repetitions("PID.3.1") == ["555-44-3333", "9988776655", "X1"]
    adt["EVN.7.3.2"] = "deep"
    assert adt["EVN"] == "EVN|A01|20261123091500|||ADMIT01^Admit^Clerk||^^&deep"
    adt["ZPD.2"] = "custom"
    assert adt["ZPD"] == "ZPD||custom"
    adt["MSH.10"] = "NEW01"
    assert adt["MSH.10"] == "NEW01"
    text = str(adt)
    assert text.endswith("DG1|1|I10|K35.80^Acute appendicitis^I10|||A\rZPD||custom\r")
    assert "|ADT^A01^ADT_A01|NEW01|P|" in text
    assert HL7Message(text)["PID.5.1"] == "Smith"


def test_assignment_of_separators_or_far_segments_is_refused(adt: HL7Message) -> None:
    with pytest.raises(ValueError, match="separators"):
        adt["MSH.2"] = "$$$$"
    with pytest.raises(IndexError, match="OBX"):
        adt["OBX[3].5"] = "x"
    with pytest.raises(TypeError):
        adt["PID.5.1"] = 5  # type: ignore[assignment]
    assert not adt.modified


def test_segment_view_assignment_writes_through(adt: HL7Message) -> None:
    obx = adt.segments("OBX")[0]
    obx[5] = "81"
    obx["6.2"] = "kilograms"
    assert adt["OBX.5"] == "81"
    assert adt["OBX.6"] == "kg^kilograms^UCUM"


def test_appending_a_segment() -> None:
    msg = HL7Message("MSH|^~\\&|A|B|C|D|||ORU^R01|1|P|2.5\r")
    nte = msg.append_segment("NTE|1||first")
    msg["NTE[2].3"] = "second"
    assert nte["3"] == "first"
    assert msg.encode() == "MSH|^~\\&|A|B|C|D|||ORU^R01|1|P|2.5\rNTE|1||first\rNTE|||second\r"


@pytest.mark.parametrize("name", GOOD)
def test_unchanged_samples_round_trip_byte_for_byte(name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    msg = HL7Message(data.decode("utf-8"))
    _ = msg["MSH.9"], msg.segments(), msg["PID.5.1"]
    assert str(msg).encode("utf-8") == data
    assert msg.encode().encode("utf-8") == data


@pytest.mark.parametrize("name", ["adt_a01.hl7", "oru_r01.hl7"])
def test_samples_survive_er7_xml_er7(name: str) -> None:
    datatype = HL7v2DataType({})
    raw = sample(name)
    assert datatype.from_xml(datatype.to_xml(raw)) == raw


def test_assign_then_restore_gives_the_same_bytes() -> None:
    raw = sample("oru_r01.hl7")
    msg = HL7Message(raw)
    msg["OBX[2].5"] = "1.4"
    msg["OBX[2].5"] = "0.9"
    assert msg.encode() == raw


def test_line_breaks_are_converted_but_raw_is_kept() -> None:
    raw = "MSH|^~\\&|A|B|C|D|||ADT^A01|7|P|2.3\r\nPID|1||42\nPV1|1|I\r\n"
    msg = HL7Message(raw)
    assert msg.segment_names == ["MSH", "PID", "PV1"]
    assert msg["PID.3"] == "42"
    assert msg.encode() == raw
    msg["PV1.2"] = "O"
    assert msg.encode() == "MSH|^~\\&|A|B|C|D|||ADT^A01|7|P|2.3\rPID|1||42\rPV1|1|O\r"
    kept = HL7Message(raw, convert_line_breaks=False)
    assert kept["PID.3"] == "42\nPV1"  # LF is data when line breaks are not converted


def test_empty_fields_and_trailing_separators_are_preserved() -> None:
    raw = "MSH|^~\\&|||||||ACK|1|P|2.4|||\rZZZ||^|~|\r"
    msg = HL7Message(raw)
    assert msg["MSH.3"] == "" and msg["MSH.13"] == "" and msg["MSH.15"] == ""
    assert msg["ZZZ.2"] == "^" and msg["ZZZ.2.1"] == "" and msg["ZZZ.2.2"] == ""
    assert msg["ZZZ.3"] == "~" and msg.repetitions("ZZZ.3") == ["", ""]
    assert len(msg.segment("ZZZ")) == 4  # type: ignore[arg-type]
    msg["ZZZ.1"] = "x"
    assert msg.encode() == "MSH|^~\\&|||||||ACK|1|P|2.4|||\rZZZ|x|^|~|\r"


def test_escape_sequences_stay_verbatim_until_unescaped() -> None:
    msg = HL7Message(sample("oru_r01.hl7"))
    note = msg["NTE.3"]
    assert note == "Reviewed by \\T\\ signed off: Dr. Müller & team"
    assert msg.separators.unescape_text("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X0D\\") == (
        "a|b^c&d~e\\f\\X0D\\"
    )
    assert msg.separators.escape_text("1|2^3&4~5\\") == "1\\F\\2\\S\\3\\T\\4\\R\\5\\E\\"


def test_mirth_1544_three_encoding_characters() -> None:
    msg = HL7Message("MSH|^~&|APP|FAC|||20260101||ADT^A01|9|P|2.4\rPID|1||a&b^c\r")
    assert msg.separators == Separators("|", "^", "~", "\\", "&")
    assert msg["MSH.2"] == "^~&"
    assert msg["PID.3.1.2"] == "b"


def test_custom_separators_are_read_from_msh() -> None:
    msg = HL7Message("MSH#*@!%#APP#FAC#####ORU*R01#5#P#2.5\rOBX#1#a*b@c*d%e\r")
    assert msg.separators == Separators("#", "*", "@", "!", "%")
    assert msg["MSH.9.2"] == "R01"
    assert msg["OBX.2[2].2.2"] == "e"
    msg["OBX.3.2"] = "z"
    assert msg["OBX"] == "OBX#1#a*b@c*d%e#*z"


def test_invalid_paths_are_reported() -> None:
    msg = HL7Message("MSH|^~\\&|A\r")
    for bad in ("", "PID.", "PID.0", "PID.x", "PID[0].1", "PID.1.2.3.4"):
        with pytest.raises(PathError):
            _ = msg[bad]


def test_fields_are_split_only_when_read() -> None:
    msg = HL7Message(sample("adt_a01.hl7"))
    assert msg._fields == [None] * 8  # nothing split on arrival
    _ = msg["PID.5.1"]
    assert [f is not None for f in msg._fields] == [
        False,
        False,
        True,
        False,
        False,
        False,
        False,
        False,
    ]


def test_to_xml_from_the_message_reflects_assignments() -> None:
    msg = HL7Message("MSH|^~\\&|A|B\rPID|1||x\r")
    msg["PID.5.2"] = "Zoë"
    assert "<PID.5><PID.5.1></PID.5.1><PID.5.2>Zo&#235;</PID.5.2></PID.5>" in msg.to_xml()


def test_short_and_padded_segment_names() -> None:
    msg = HL7Message("MSH|^~\\&|A\rA|B|C\r ZP |1\rZZ\r")
    assert msg.segment_names == ["MSH", "A", "ZP", "ZZ"]
    assert msg["A.2"] == "C" and msg["ZP.1"] == "1" and msg["ZZ"] == "ZZ"
