"""Mirth's XStream content formats round-trip what they carry, CR included."""

from pannier import Response, Status
from pannier.runtime import xstream


def test_properties_keep_hl7_segment_delimiters_and_types() -> None:
    like = {"template": "", "outputAppend": False, "remotePort": 0, "directory": ""}
    sent = {
        "template": "MSH|^~\\&|A\rPID|1||<x & y>",
        "outputAppend": True,
        "remotePort": 6661,
        "directory": "out",
    }
    text = xstream.serialize_properties("com.example.Props", sent)
    assert "&#13;" in text and "\r" not in text
    assert xstream.parse_properties(text, like) == sent


def test_maps_round_trip_and_responses_use_mirths_shape() -> None:
    values = {"a": "x\ry", "n": 3, "flag": True, "ratio": 0.5}
    assert xstream.parse_map(xstream.serialize_map(values)) == values
    text = xstream.serialize_response(Response(Status.SENT, "MSA|AA\r", "ok"))
    assert text.startswith("<response>\n  <status>SENT</status>")
    assert "<message>MSA|AA&#13;</message>" in text
