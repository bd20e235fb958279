"""The JSON data type: parsing with line/column errors, no XML form, plugin registration."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from pannier import DataType, DataTypeSpec, MessageParseError, Response, Status
from pannier.testing.datatypes import check_datatype
from pannier_json import DEFAULTS, JSONDataType
from pannier_json.plugin import pannier_register_datatypes

ORDER = '{\n  "patient": {"id": "P1", "name": "Ann"},\n  "items": [1, 2.5, true, null]\n}\n'


@pytest.fixture
def js() -> JSONDataType:
    return JSONDataType({})


def test_plugin_registers_json() -> None:
    (spec,) = pannier_register_datatypes()
    assert isinstance(spec, DataTypeSpec)
    assert spec.name == "JSON" and spec.description
    assert dict(spec.defaults) == {"splitType": "JavaScript", "batchScript": ""} == dict(DEFAULTS)
    datatype = spec.factory(spec.defaults)
    assert isinstance(datatype, DataType) and datatype.name == "JSON"
    assert datatype.serialization_type == "JSON"


def test_distribution_declares_exactly_one_plugin_entry_point() -> None:
    ours = [
        ep
        for ep in entry_points(group="pannier.plugins")
        if ep.dist and ep.dist.name == "pannier-json"
    ]
    assert [(ep.name, ep.value) for ep in ours] == [("json", "pannier_json.plugin")]


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"batchscript": ""}, "unknown JSON data type property 'batchscript'"),
        ({"batchScript": "return reader.readLine();"}, "not supported"),
        ({"splitType": "Record"}, "only split type"),
    ],
)
def test_bad_properties_are_refused(properties: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JSONDataType(properties)


def test_parse_gives_python_values(js: JSONDataType) -> None:
    assert js.parse(ORDER) == {
        "patient": {"id": "P1", "name": "Ann"},
        "items": [1, 2.5, True, None],
    }
    assert js.parse(" 42 ") == 42
    assert js.parse('"text"') == "text"
    assert js.parse('{"a": 1, "a": 2}') == {"a": 2}  # the last one wins, as in JSON.parse
    assert js.parse('"\ufeff"') == "\ufeff"  # a byte order mark inside a string is text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{\n  "a": 1,\n  "b": \n}', "line 4, column 1: Expecting value"),
        ('{"a" 1}', "line 1, column 6: Expecting ':' delimiter"),
        ("[1, 2] [3]", "line 1, column 8: Extra data"),
        ("", "line 1, column 1: Expecting value"),
        ("{'a': 1}", "line 1, column 2"),
        ("\ufeff{}", "line 1, column 1"),
        ("NaN", "NaN is not JSON"),
        ('{"a": -Infinity}', "-Infinity is not JSON"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_errors_name_line_and_column(js: JSONDataType, text: str, error: str) -> None:
    with pytest.raises(MessageParseError, match=error):
        js.validate(text)
    with pytest.raises(MessageParseError):
        js.parse(text)


def test_no_xml_form_because_mirth_serializes_json_as_json(js: JSONDataType) -> None:
    with pytest.raises(NotImplementedError, match="serializes as JSON"):
        js.to_xml(ORDER)
    with pytest.raises(NotImplementedError, match="serializes as JSON"):
        js.from_xml("<a/>")


def test_no_metadata_default_response_one_message_per_batch(js: JSONDataType) -> None:
    assert js.metadata(ORDER) == {}
    assert js.auto_response(ORDER, Status.TRANSFORMED) == Response(status=Status.SENT)
    assert js.auto_response(ORDER, Status.ERROR, "x") == Response(status=Status.ERROR)
    assert js.split_batch('{"a": 1}\n{"a": 2}') == ['{"a": 1}\n{"a": 2}']


def test_json_passes_the_conformance_kit() -> None:
    (spec,) = pannier_register_datatypes()
    good = [ORDER, "[]", "0", '"é \\u20ac \\ud83d\\ude00"', "null"]
    bad = ["", "{", "NaN", "[1,]", "{} {}", "undefined"]
    check_datatype(spec, good, bad)


def test_encode_turns_a_transformed_value_back_into_json() -> None:
    from pannier_json.plugin import pannier_register_datatypes

    (spec,) = pannier_register_datatypes()
    datatype = spec.factory(spec.defaults)
    message = datatype.parse('{"patient": {"name": "Zoë"}, "ids": [1, 2]}')
    message["patient"]["name"] = "ZOË"
    assert datatype.encode(message) == '{"patient":{"name":"ZOË"},"ids":[1,2]}'
