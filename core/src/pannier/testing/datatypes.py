"""The conformance kit for data types: :func:`check_datatype`.

Every data type plugin runs it from its tests with messages of its own::

    from pannier.testing.datatypes import check_datatype
    from my_plugin.plugin import pannier_register_datatypes

    def test_my_datatype_conforms():
        (spec,) = pannier_register_datatypes()
        check_datatype(spec, good=[SAMPLE_1, SAMPLE_2], bad=["not a message"])

What it checks (each failure is an ``AssertionError`` naming the expectation):

1. **Building.** ``spec.name`` is upper case; ``spec.factory(spec.defaults)`` and
   ``spec.factory({})`` build a :class:`~pannier.DataType` whose ``name`` is ``spec.name``.
2. **Good messages** (at least one): ``validate`` accepts each, ``parse`` returns without
   raising, ``metadata`` returns a ``dict`` of ``str`` to ``str``, ``split_batch`` returns a
   list of ``str``.
3. **Bad messages** (may be empty, for a type that accepts any text): ``validate`` and
   ``parse`` raise :class:`~pannier.MessageParseError` — any other exception fails the kit.
4. **Never raising.** ``metadata`` and ``auto_response`` never raise, for good and bad messages
   and odd input (empty text, control characters, binary-looking text). ``auto_response``, for
   each status a message can end in, returns ``None`` or a :class:`~pannier.Response` whose
   status is SENT, ERROR, QUEUED or FILTERED.
5. **XML form.** A data type either has one or has none. Without one, ``to_xml`` and
   ``from_xml`` raise ``NotImplementedError`` for every message. With one, for every good
   message ``m``: ``x1 = to_xml(m)`` is well-formed XML; ``m2 = from_xml(x1)`` is text that
   validates; and ``x2 = to_xml(m2)`` is *tree-equal* to ``x1``. That is the round trip: the
   message read back from its XML is, to a transformer, the same message — its text may
   differ (line ends, trailing delimiters, quoting), its tree may not. Tree-equal means the
   same element names (prefixes included; namespaces are not resolved), attributes, order and
   text, where whitespace-only text between elements is ignored and the XML declaration does
   not matter. Finally ``from_xml`` given malformed XML either raises
   :class:`~pannier.MessageParseError` or returns text (a pass-through type), never another
   exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pannier import xmltext
from pannier.connectors import Response
from pannier.datatypes import DataType, DataTypeSpec, MessageParseError
from pannier.model.status import Status

#: Statuses a message can end in when the auto-responder is asked (RECEIVED: before processing).
END_STATUSES = (Status.RECEIVED, Status.TRANSFORMED, Status.FILTERED, Status.SENT, Status.ERROR)
#: Statuses a response may carry (Mirth's ``Response.fixStatus`` turns others into ERROR).
RESPONSE_STATUSES = frozenset({Status.SENT, Status.ERROR, Status.QUEUED, Status.FILTERED})
#: Inputs every data type must survive in ``metadata`` and ``auto_response``.
ODD_INPUTS = ("", " ", "\r\n", "\x00\x0b\x1c\r", "<", "{", "MSH", "\ufeff", "a" * 5000)
#: Input ``from_xml`` must refuse with MessageParseError or pass through.
MALFORMED_XML = ("<unclosed>", "<a></b>", "not xml at all", "")


def _tree_key(element: xmltext.Element) -> tuple[Any, ...]:
    """A comparable form of an element: whitespace-only text is dropped where an element
    has children; leaf text must match exactly."""
    segments = element.text_segments()
    if element.children:
        texts = tuple(t if t.strip() else "" for t in segments)
    else:
        texts = ("".join(segments),)
    return (
        element.name,
        tuple(sorted(element.attributes.items())),
        texts,
        tuple(_tree_key(child) for child in element.children),
    )


def xml_tree(text: str) -> xmltext.Element:
    """The root element of ``text`` (see :func:`pannier.xmltext.parse_document`)."""
    return xmltext.parse_document(text).children[0]


def xml_tree_equal(first: str, second: str) -> bool:
    """Whether two XML texts are tree-equal (see the module docstring)."""
    return _tree_key(xml_tree(first)) == _tree_key(xml_tree(second))


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _build(spec: DataTypeSpec, properties: Mapping[str, Any], what: str) -> DataType:
    try:
        datatype = spec.factory(properties)
    except Exception as exc:
        raise AssertionError(f"{spec.name}: the factory must build {what}: {exc!r}") from exc
    assert isinstance(datatype, DataType), (
        f"{spec.name}: the factory must return a pannier.DataType, got {type(datatype)!r}"
    )
    assert datatype.name == spec.name, (
        f"{spec.name}: the built data type is named {datatype.name!r}, not {spec.name!r}"
    )
    return datatype


def _never_raises(datatype: DataType, raw: str) -> None:
    name = datatype.name
    try:
        metadata = datatype.metadata(raw)
    except Exception as exc:
        raise AssertionError(
            f"{name}: metadata() must never raise; {_short(raw)}: {exc!r}"
        ) from exc
    assert isinstance(metadata, dict), f"{name}: metadata() must return a dict"
    for key, value in metadata.items():
        assert isinstance(key, str) and isinstance(value, str), (
            f"{name}: metadata() must map str to str, got {key!r}: {value!r}"
        )
    for status in END_STATUSES:
        for error in ("", "something went wrong"):
            try:
                response = datatype.auto_response(raw, status, error)
            except Exception as exc:
                raise AssertionError(
                    f"{name}: auto_response() must never raise; {_short(raw)} with status "
                    f"{status.name}: {exc!r}"
                ) from exc
            if response is None:
                continue
            assert isinstance(response, Response), (
                f"{name}: auto_response() must return None or a pannier.Response, got "
                f"{type(response)!r}"
            )
            assert response.status in RESPONSE_STATUSES, (
                f"{name}: auto_response() for status {status.name} gave a response with "
                f"status {response.status!r}; a response is SENT, ERROR, QUEUED or FILTERED"
            )
            assert isinstance(response.message, str), (
                f"{name}: an auto-response's message must be text"
            )


def _refuses(datatype: DataType, method: str, raw: str) -> None:
    try:
        getattr(datatype, method)(raw)
    except MessageParseError:
        return
    except Exception as exc:
        raise AssertionError(
            f"{datatype.name}: {method}() of a bad message must raise MessageParseError, not "
            f"{exc!r}; message {_short(raw)}"
        ) from exc
    raise AssertionError(
        f"{datatype.name}: {method}() must refuse the bad message {_short(raw)} with "
        "MessageParseError"
    )


def _has_xml(datatype: DataType, message: str) -> bool:
    try:
        datatype.to_xml(message)
    except NotImplementedError:
        return False
    return True


def _check_without_xml(datatype: DataType, messages: Sequence[str]) -> None:
    for message in messages:
        for method in ("to_xml", "from_xml"):
            try:
                getattr(datatype, method)(message)
            except NotImplementedError:
                continue
            except Exception as exc:
                raise AssertionError(
                    f"{datatype.name}: without an XML form, {method}() must raise "
                    f"NotImplementedError, not {exc!r}"
                ) from exc
            raise AssertionError(
                f"{datatype.name}: to_xml() raised NotImplementedError for one message but "
                f"{method}() works for {_short(message)}: a data type has an XML form or none"
            )


def _check_xml_round_trip(datatype: DataType, message: str) -> None:
    name = datatype.name
    try:
        first = datatype.to_xml(message)
    except NotImplementedError as exc:
        raise AssertionError(
            f"{name}: to_xml() works for some good messages but not for {_short(message)}"
        ) from exc
    assert isinstance(first, str), f"{name}: to_xml() must return text"
    try:
        xml_tree(first)
    except ValueError as exc:
        raise AssertionError(
            f"{name}: to_xml({_short(message)}) is {exc}: {_short(first)}"
        ) from exc
    back = datatype.from_xml(first)
    assert isinstance(back, str), f"{name}: from_xml() must return text"
    try:
        datatype.validate(back)
    except MessageParseError as exc:
        raise AssertionError(
            f"{name}: from_xml(to_xml(m)) must give a valid message; for {_short(message)} it "
            f"gave {_short(back)}, refused with: {exc}"
        ) from exc
    second = datatype.to_xml(back)
    assert xml_tree_equal(first, second), (
        f"{name}: the XML round trip changed the message {_short(message)}: to_xml gave "
        f"{_short(first, 200)}, to_xml(from_xml(that)) gave {_short(second, 200)}"
    )


def check_datatype(
    spec: DataTypeSpec,
    good: Sequence[str],
    bad: Sequence[str],
    *,
    properties: Mapping[str, Any] | None = None,
) -> None:
    """Check that a data type behaves as the kernel expects (see the module docstring).

    ``good`` are messages the data type must accept (at least one), ``bad`` messages it must
    refuse. ``properties`` (over ``spec.defaults``) configure the data type under test; by
    default it is built from its defaults.
    """
    assert spec.name and spec.name == spec.name.upper(), (
        f"a data type name is upper case, as Mirth stores it in D_MC.DATA_TYPE: {spec.name!r}"
    )
    assert good, f"{spec.name}: check_datatype needs at least one good message"
    assert isinstance(spec.defaults, Mapping), f"{spec.name}: defaults must be a mapping"
    _build(spec, {}, "from an empty mapping (every property at its default)")
    datatype = _build(spec, dict(spec.defaults), "from its defaults")
    if properties is not None:
        datatype = _build(spec, {**spec.defaults, **properties}, f"from {dict(properties)!r}")
    name = spec.name

    for message in good:
        try:
            datatype.validate(message)
            datatype.parse(message)
        except Exception as exc:
            raise AssertionError(
                f"{name}: a good message must validate and parse; {_short(message)}: {exc!r}"
            ) from exc
        parts = datatype.split_batch(message)
        assert isinstance(parts, list) and all(isinstance(p, str) for p in parts), (
            f"{name}: split_batch() must return a list of str, got {parts!r}"
        )
    for message in bad:
        _refuses(datatype, "validate", message)
        _refuses(datatype, "parse", message)
    for message in (*good, *bad, *ODD_INPUTS):
        _never_raises(datatype, message)

    if not _has_xml(datatype, good[0]):
        _check_without_xml(datatype, good)
        return
    for message in good:
        _check_xml_round_trip(datatype, message)
    for text in MALFORMED_XML:
        try:
            result = datatype.from_xml(text)
        except MessageParseError:
            continue
        except Exception as exc:
            raise AssertionError(
                f"{name}: from_xml() of malformed XML {_short(text)} must raise "
                f"MessageParseError, not {exc!r}"
            ) from exc
        assert isinstance(result, str), f"{name}: from_xml() must return text"
