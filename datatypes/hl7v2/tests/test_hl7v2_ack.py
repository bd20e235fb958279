"""ACK generation, as Mirth's HL7v2AutoResponder and ACK generator (mirth-compat.md §5.2)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pannier import Response, Status
from pannier_hl7v2 import HL7Message, HL7v2DataType, JavaDateFormat, event_in_ack, generate_ack

SAMPLES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "hl7"
TIMESTAMP = re.compile(r"\d{14}\.\d{3}")

V23 = "MSH|^~\\&|LAB|HOSP|EHR|CLINIC|20260101120000||ORU^R01|CTRL23|T^R|2.3\rPID|1||7\r"
V251 = "MSH|^~\\&|LAB|HOSP|EHR|CLINIC|20260101120000||ORU^R01^ORU_R01|CTRL251|P|2.5.1\rPID|1\r"


def sample(name: str) -> str:
    return (SAMPLES / name).read_bytes().decode("utf-8", errors="surrogateescape")


def ack(raw: str, status: Status = Status.TRANSFORMED, **props) -> Response:
    response = HL7v2DataType(props).auto_response(raw, status)
    assert response is not None
    return response


def split(response: Response) -> tuple[HL7Message, str]:
    """The ACK as a message, and its timestamp (checked to be MSH-7 and MSH-10)."""
    text = response.message
    assert text.endswith("\r") and text.count("\r") == 2  # MSH, MSA, trailing delimiter
    msg = HL7Message(text)
    stamp = msg["MSH.7"]
    assert TIMESTAMP.fullmatch(stamp)
    assert msg["MSH.10"] == stamp
    return msg, stamp


def test_aa_for_the_adt_sample_swaps_parties_and_echoes_control_id() -> None:
    response = ack(sample("adt_a01.hl7"))
    assert response.status == Status.SENT
    assert response.status_message == "HL7v2 ACK successfully generated."
    msg, stamp = split(response)
    assert response.message == (
        f"MSH|^~\\&|PANNIER|CLINIC|REGADT|GOODHEALTH|{stamp}||ACK^A01^ACK|{stamp}|P|2.5.1\r"
        "MSA|AA|MSG00001\r"
    )
    assert msg["MSA.2"] == "MSG00001"


def test_ae_on_error_and_ar_on_filtered_carry_mirth_texts() -> None:
    error = ack(V251, Status.ERROR)
    assert error.status == Status.ERROR
    assert error.status_message == "HL7v2 NACK successfully generated."
    msg, _ = split(error)
    assert msg["MSA"] == "MSA|AE|CTRL251|An Error Occurred Processing Message."
    rejected = ack(V251, Status.FILTERED)
    assert rejected.status == Status.FILTERED
    assert split(rejected)[0]["MSA"] == "MSA|AR|CTRL251|Message Rejected."


@pytest.mark.parametrize(
    "status", [Status.RECEIVED, Status.TRANSFORMED, Status.SENT, Status.QUEUED, Status.PENDING]
)
def test_every_other_status_is_a_success(status: Status) -> None:
    response = ack(V251, status)
    assert response.status == Status.SENT
    assert split(response)[0]["MSA"] == "MSA|AA|CTRL251"


def test_version_23_gets_plain_ack_and_keeps_processing_mode() -> None:
    msg, stamp = split(ack(V23))
    assert msg["MSH"] == f"MSH|^~\\&|EHR|CLINIC|LAB|HOSP|{stamp}||ACK|{stamp}|T^R|2.3"


def test_version_251_gets_event_and_ack_structure() -> None:
    msg, _ = split(ack(V251))
    assert msg["MSH.9"] == "ACK^R01^ACK"
    assert msg["MSH.12"] == "2.5.1"


@pytest.mark.parametrize(
    ("version", "suffix"),
    [
        ("2.1", False),
        ("2.2", False),
        ("2.3", False),
        ("2.3.1", False),
        ("2.4", True),
        ("2.5", True),
        ("2.5.1", True),
        ("2.8", True),
        ("2", False),
        ("2.", False),
        ("3.0", False),
        ("2.x", True),
        ("x.5", True),
        (".5", True),
        ("99999999999.5", True),
        ("2.-1", False),
        ("2.+4", True),
    ],
)
def test_event_suffix_rule_follows_the_java_parse(version: str, suffix: bool) -> None:
    assert event_in_ack(version) is suffix


def test_missing_fields_take_mirth_defaults() -> None:
    raw = "MSH|^~\\&|||||||||\rPID|1\r"
    msg, stamp = split(ack(raw))
    assert msg["MSH"] == f"MSH|^~\\&|MIRTH||||{stamp}||ACK^^ACK|{stamp}|P|2.4"
    assert msg["MSA"] == "MSA|AA|1"


def test_message_without_msh_gets_a_default_ae() -> None:
    response = ack(sample("bad_no_msh.hl7"), Status.ERROR)
    assert response.status == Status.ERROR
    _, stamp = split(response)
    assert response.message == (
        f"MSH|^~\\&|MIRTH||||{stamp}||ACK^^ACK|{stamp}|P|2.4\r"
        "MSA|AE|1|An Error Occurred Processing Message.\r"
    )


@pytest.mark.parametrize("raw", ["", "   ", "MSH|^~\r", "MSH", "<not xml", "\x00\x0b\x1c"])
def test_garbage_never_breaks_the_responder(raw: str) -> None:
    msg, _ = split(ack(raw, Status.ERROR))
    assert msg["MSA.1"] == "AE" and msg["MSA.2"] == "1"


def test_binary_sample_is_answered_from_its_valid_msh() -> None:
    msg, _ = split(ack(sample("bad_binary.hl7"), Status.ERROR))
    assert msg["MSH.3"] == "MIRTH" and msg["MSH.5"] == "X"
    assert msg["MSH.6"] == "Y"
    assert msg["MSA.1"] == "AE"


def test_encoding_characters_are_copied_from_the_inbound_message() -> None:
    raw = "MSH#*@!%#APP#FAC#RAPP#RFAC#20260101##ADT*A08#77#P#2.4\r"
    msg, _ = split(ack(raw))
    assert msg.encode().startswith("MSH#*@!%#RAPP#RFAC#APP#FAC#")
    assert msg["MSH.9"] == "ACK*A08*ACK"
    assert msg["MSA"] == "MSA#AA#77"


def test_short_encoding_characters_fill_mirth_defaults() -> None:
    # Mirth copies positions 4..7 up to the field separator and defaults the rest; for the
    # MIRTH-1544 form "^~&" that makes the escape '&' and the subcomponent the default '&'.
    msg, _ = split(ack("MSH|^~&|APP|FAC|R|RF|20260101||ADT^A01|5|P|2.4\r"))
    assert msg.encode().startswith("MSH|^~&&|R|RF|APP|FAC|")


def test_msh15_is_ignored_unless_enabled() -> None:
    raw = V251.replace("|2.5.1\r", "|2.5.1|||NE\r")
    assert ack(raw).status == Status.SENT


@pytest.mark.parametrize(
    ("accept", "status", "answered"),
    [
        ("AL", Status.TRANSFORMED, True),
        ("AL", Status.ERROR, True),
        ("AL", Status.FILTERED, True),
        ("NE", Status.TRANSFORMED, False),
        ("NE", Status.ERROR, False),
        ("ER", Status.TRANSFORMED, False),
        ("ER", Status.ERROR, True),
        ("ER", Status.FILTERED, True),
        ("SU", Status.TRANSFORMED, True),
        ("SU", Status.ERROR, False),
        ("SU", Status.FILTERED, False),
        ("", Status.TRANSFORMED, True),
        ("XX", Status.ERROR, True),
        ("ne", Status.SENT, False),
    ],
)
def test_msh15_accept_ack_type_when_enabled(accept: str, status: Status, answered: bool) -> None:
    raw = V251.replace("|2.5.1\r", f"|2.5.1|||{accept}^x|NE\r")
    response = HL7v2DataType({"msh15ACKAccept": True}).auto_response(raw, status)
    assert (response is not None) is answered


def test_adt_sample_msh15_al_is_always_answered_when_enabled() -> None:
    response = HL7v2DataType({"msh15ACKAccept": True}).auto_response(
        sample("adt_a01.hl7"), Status.ERROR
    )
    assert response is not None and response.status == Status.ERROR


def test_custom_codes_and_messages_keep_the_status_mapping() -> None:
    props = {
        "successfulACKCode": "CA",
        "successfulACKMessage": "Thanks",
        "errorACKCode": "CE",
        "errorACKMessage": "Broken",
        "rejectedACKCode": "CR",
        "rejectedACKMessage": "",
    }
    ok = ack(V251, Status.SENT, **props)
    assert ok.status == Status.SENT and split(ok)[0]["MSA"] == "MSA|CA|CTRL251|Thanks"
    bad = ack(V251, Status.ERROR, **props)
    assert bad.status == Status.ERROR and split(bad)[0]["MSA"] == "MSA|CE|CTRL251|Broken"
    rejected = ack(V251, Status.FILTERED, **props)
    assert rejected.status == Status.FILTERED
    assert split(rejected)[0]["MSA"] == "MSA|CR|CTRL251"


def test_segment_delimiter_and_date_format_properties() -> None:
    response = HL7v2DataType(
        {"segmentDelimiter": "\\n", "dateFormat": "yyyy-MM-dd'T'HH:mm"}
    ).auto_response(V251, Status.SENT)
    assert response is not None
    lines = response.message.split("\n")
    assert len(lines) == 3 and lines[2] == ""
    fields = lines[0].split("|")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d", fields[6])
    assert fields[6] == fields[9]


def test_xml_encoded_inbound_message_is_answered_from_its_msh() -> None:
    datatype = HL7v2DataType({})
    xml = datatype.to_xml(V251)
    msg, _ = split(datatype.auto_response(xml, Status.SENT))  # type: ignore[arg-type]
    assert msg["MSA"] == "MSA|AA|CTRL251"
    assert msg["MSH.3"] == "EHR"


def test_generate_ack_helper_with_fixed_timestamp() -> None:
    assert generate_ack(V23, "AE", "bad", timestamp="20260101000000.000") == (
        "MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20260101000000.000||ACK|20260101000000.000|T^R|2.3\r"
        "MSA|AE|CTRL23|bad\r"
    )


def test_ack_timestamp_is_current_local_time() -> None:
    before = datetime.now().replace(microsecond=0)
    _, stamp = split(ack(V251))
    when = datetime.strptime(stamp, "%Y%m%d%H%M%S.%f")
    assert before <= when <= datetime.now() + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("yyyyMMddHHmmss.SSS", "20260305070908.042"),
        ("yyyyMMddHHmmss", "20260305070908"),
        ("yyMMdd", "260305"),
        ("d/M/y", "5/3/2026"),
        ("EEE, dd MMM yyyy", "Thu, 05 Mar 2026"),
        ("EEEE MMMM", "Thursday March"),
        ("hh:mm a", "07:09 AM"),
        ("HH 'o''clock'", "07 o'clock"),
        ("yyyyMMddHHmmssZ", "20260305070908+0100"),
        ("XXX", "+01:00"),
        ("X", "+01"),
        ("S", "42"),
        ("SSSS", "0042"),
        ("D", "64"),
        ("k K", "7 7"),
    ],
)
def test_java_date_format_patterns(pattern: str, expected: str) -> None:
    moment = datetime(2026, 3, 5, 7, 9, 8, 42_000, tzinfo=timezone(timedelta(hours=1)))
    assert JavaDateFormat(pattern).format(moment) == expected


def test_invalid_date_format_falls_back_to_the_default_like_mirth() -> None:
    with pytest.raises(ValueError, match="illegal pattern character"):
        JavaDateFormat("yyyyMMddbb")
    datatype = HL7v2DataType({"dateFormat": "yyyyMMddbb"})
    assert datatype.properties.date_format == "yyyyMMddHHmmss.SSS"
    split(datatype.auto_response(V251, Status.SENT))  # type: ignore[arg-type]
