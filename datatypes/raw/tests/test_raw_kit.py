"""The data type conformance kit itself: it fails data types that break the contract."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
from pannier import DataType, DataTypeSpec, MessageParseError, Response, Status
from pannier.testing.datatypes import check_datatype, xml_tree_equal


class Fine(DataType):
    """A small correct data type: lines of text, XML ``<lines><line>..</line></lines>``."""

    name = "LINES"

    def __init__(self, properties: Mapping[str, Any] | None = None) -> None:
        self.properties = dict(properties or {})

    def validate(self, raw: str) -> None:
        if "!" in raw:
            raise MessageParseError("no exclamation marks")

    def parse(self, raw: str) -> list[str]:
        self.validate(raw)
        return raw.splitlines()

    def to_xml(self, raw: str) -> str:
        body = "".join(f"<line>{line}</line>" for line in raw.splitlines())
        return f"<lines>{body}</lines>"

    def from_xml(self, xml: str) -> str:
        if not xml.startswith("<lines>"):
            raise MessageParseError("not lines")
        return "\n".join(re.findall("<line>(.*?)</line>", xml))


GOOD = ["a\nb", "c"]
BAD = ["wow!"]


def spec_of(cls: type[DataType], name: str = "LINES") -> DataTypeSpec:
    return DataTypeSpec(name=name, factory=cls, defaults={"x": 1})


def test_a_correct_data_type_passes() -> None:
    check_datatype(spec_of(Fine), GOOD, BAD)
    check_datatype(spec_of(Fine), GOOD, BAD, properties={"x": 2})


class WrongName(Fine):
    name = "OTHER"


class AcceptsBad(Fine):
    def validate(self, raw: str) -> None:
        pass


class WrongException(Fine):
    def validate(self, raw: str) -> None:
        if "!" in raw:
            raise KeyError("!")


class MetadataRaises(Fine):
    def metadata(self, raw: str) -> dict[str, str]:
        if not raw:
            raise IndexError("empty")
        return {}


class MetadataNotText(Fine):
    def metadata(self, raw: str) -> dict[str, str]:
        return {"mirth_version": 2}  # type: ignore[dict-item]


class BadResponseStatus(Fine):
    def auto_response(self, raw: str, status: Status, error: str = "") -> Response | None:
        return Response(status=Status.TRANSFORMED)


class ResponseRaises(Fine):
    def auto_response(self, raw: str, status: Status, error: str = "") -> Response | None:
        if status == Status.FILTERED:
            raise RuntimeError("no")
        return None


class LossyRoundTrip(Fine):
    def from_xml(self, xml: str) -> str:
        return "c"


class MalformedXML(Fine):
    def to_xml(self, raw: str) -> str:
        return "<lines>"


class FromXMLCrashes(Fine):
    def from_xml(self, xml: str) -> str:
        if not xml.startswith("<lines>"):
            raise IndexError("crash")
        return super().from_xml(xml)


class HalfXML(Fine):
    def to_xml(self, raw: str) -> str:
        if raw == "c":
            raise NotImplementedError
        return super().to_xml(raw)


class NoXMLButFromXML(Fine):
    def to_xml(self, raw: str) -> str:
        raise NotImplementedError


class SplitNotList(Fine):
    def split_batch(self, raw: str) -> list[str]:
        return tuple(raw.split("\n"))  # type: ignore[return-value]


def _failing_factory(_properties: Mapping[str, Any]) -> DataType:
    raise ValueError("cannot build")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (spec_of(WrongName), "is named 'OTHER'"),
        (spec_of(Fine, "lines"), "upper case"),
        (DataTypeSpec("LINES", _failing_factory), "factory must build"),
        (spec_of(AcceptsBad), "must refuse the bad message"),
        (spec_of(WrongException), "must raise MessageParseError, not KeyError"),
        (spec_of(MetadataRaises), "metadata\\(\\) must never raise"),
        (spec_of(MetadataNotText), "must map str to str"),
        (spec_of(BadResponseStatus), "SENT, ERROR, QUEUED or FILTERED"),
        (spec_of(ResponseRaises), "auto_response\\(\\) must never raise"),
        (spec_of(LossyRoundTrip), "round trip changed the message"),
        (spec_of(MalformedXML), "not well-formed"),
        (spec_of(FromXMLCrashes), "must raise MessageParseError, not IndexError"),
        (spec_of(HalfXML), "works for some good messages but not"),
        (spec_of(NoXMLButFromXML), "without an XML form, from_xml\\(\\) must raise"),
        (spec_of(SplitNotList), "split_batch\\(\\) must return a list"),
    ],
)
def test_the_kit_catches(spec: DataTypeSpec, expected: str) -> None:
    with pytest.raises(AssertionError, match=expected):
        check_datatype(spec, GOOD, BAD)


def test_the_kit_needs_a_good_message() -> None:
    with pytest.raises(AssertionError, match="at least one good message"):
        check_datatype(spec_of(Fine), [], BAD)


@pytest.mark.parametrize(
    ("first", "second", "equal"),
    [
        ("<a><b>x</b></a>", '<?xml version="1.0"?>\n<a>\n  <b>x</b>\n</a>\n', True),
        ('<a p="1" q="2"/>', "<a q='2' p='1'></a>", True),
        ("<a><b>x </b></a>", "<a><b>x</b></a>", False),  # leaf text is exact
        ("<a>t<b/></a>", "<a><b/>t</a>", False),
        ("<s:a><b/></s:a>", "<s:a><b/></s:a>", True),  # no namespace processing
        ("<a>&#233;</a>", "<a>\u00e9</a>", True),
    ],
)
def test_tree_equality(first: str, second: str, equal: bool) -> None:
    assert xml_tree_equal(first, second) is equal
