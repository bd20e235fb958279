"""The RAW data type: text as it is, no XML form, plugin registration."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from pannier import DataType, DataTypeSpec, Response, Status
from pannier.testing.datatypes import check_datatype
from pannier_raw import DEFAULTS, RawDataType
from pannier_raw.plugin import pannier_register_datatypes


def test_plugin_registers_raw() -> None:
    (spec,) = pannier_register_datatypes()
    assert isinstance(spec, DataTypeSpec)
    assert spec.name == "RAW" and spec.description
    assert dict(spec.defaults) == {"splitType": "JavaScript", "batchScript": ""} == dict(DEFAULTS)
    datatype = spec.factory(spec.defaults)
    assert isinstance(datatype, DataType) and datatype.name == "RAW"
    assert datatype.serialization_type == "RAW"


def test_distribution_declares_exactly_one_plugin_entry_point() -> None:
    ours = [
        ep
        for ep in entry_points(group="pannier.plugins")
        if ep.dist and ep.dist.name == "pannier-raw"
    ]
    assert [(ep.name, ep.value) for ep in ours] == [("raw", "pannier_raw.plugin")]


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"stripNamespaces": True}, "unknown RAW data type property 'stripNamespaces'"),
        ({"batchScript": "return reader.readLine();"}, "not supported"),
        ({"splitType": "Record"}, "only split type"),
    ],
)
def test_bad_properties_are_refused(properties: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RawDataType(properties)


@pytest.mark.parametrize("text", ["", "anything at all", "MSH|^~\\&|", "\x00\x0b\x1c\r", "é😀"])
def test_any_text_is_a_message_and_parses_to_itself(text: str) -> None:
    raw = RawDataType({})
    raw.validate(text)
    assert raw.parse(text) == text
    assert raw.metadata(text) == {}
    assert raw.split_batch(text) == [text]


def test_no_xml_form_because_mirth_does_not_serialize_raw() -> None:
    raw = RawDataType({})
    with pytest.raises(NotImplementedError, match="does not serialize"):
        raw.to_xml("text")
    with pytest.raises(NotImplementedError, match="does not serialize"):
        raw.from_xml("<a/>")


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (Status.RECEIVED, Status.SENT),
        (Status.TRANSFORMED, Status.SENT),
        (Status.FILTERED, Status.SENT),
        (Status.SENT, Status.SENT),
        (Status.ERROR, Status.ERROR),
    ],
)
def test_auto_response_is_empty_with_the_kernels_status(status: Status, outcome: Status) -> None:
    # Mirth's DefaultAutoResponder: no content, only a status.
    assert RawDataType({}).auto_response("text", status) == Response(status=outcome, message="")


def test_raw_passes_the_conformance_kit() -> None:
    (spec,) = pannier_register_datatypes()
    check_datatype(spec, ["plain text", "", "MSH|^~\\&|\r", "<not/> {json}"], [])
