"""The ``XML`` data type: Mirth's XML data type for the Pannier kernel.

Mirth's ``DefaultXMLSerializer`` passes XML through: ``toXML`` returns the message, with its
namespace declarations removed when ``stripNamespaces`` is set (Mirth's regular expression
``xmlns:?[^=]*=["][^"]*["]``, applied to the text: prefixes stay, and so does the space before
each removed declaration); ``fromXML`` returns its input unchanged. There is no metadata and no
data-type specific auto-response.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lxml import etree
from pannier import DataType, MessageParseError

logger = logging.getLogger("pannier.xml")

NAME = "XML"

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        # serialization, XMLSerializationProperties
        "stripNamespaces": True,
        # batch, XMLBatchProperties
        "splitType": "Element_Name",
        "elementName": "",
        "level": 1,
        "query": "",
        "batchScript": "",
    }
)
"""Every property the data type understands, with Mirth's default."""

SPLIT_TYPES = ("Element_Name", "Level", "XPath_Query", "JavaScript")

# com.mirth.connect.util.StringUtil.stripNamespaces
NAMESPACE_DECLARATION = re.compile(r'xmlns:?[^=]*=["][^"]*["]')

_LEADING = "\ufeff \t\r\n"


def strip_namespaces(text: str) -> str:
    """Mirth's ``StringUtil.stripNamespaces``: every ``xmlns`` / ``xmlns:p`` declaration in
    double quotes is removed from the text (prefixes are kept)."""
    return NAMESPACE_DECLARATION.sub("", text)


def _parser(*, recover: bool = False) -> etree.XMLParser:
    # A parser per call: lxml parsers keep state and must not be shared between threads.
    return etree.XMLParser(
        resolve_entities="internal",
        no_network=True,
        load_dtd=False,
        encoding="utf-8",
        huge_tree=False,
        recover=recover,
    )


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"XML property {key!r} must be true or false, got {value!r}")


def _as_str(key: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise ValueError(f"XML property {key!r} must be text, got {value!r}")


def _as_level(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if value in ("", None):
        return 1
    # Mirth ignores a level that is not a number >= 0 and keeps 1.
    logger.warning("XML batch level %r is not a number >= 0; using 1", value)
    return 1


@dataclass(frozen=True)
class XMLProperties:
    """Checked data type properties (Mirth's names in :data:`DEFAULTS`)."""

    strip_namespaces: bool = True
    split_type: str = "Element_Name"
    element_name: str = ""
    level: int = 1
    query: str = ""

    @classmethod
    def from_mapping(cls, properties: Mapping[str, Any] | None) -> XMLProperties:
        """Check ``properties`` over :data:`DEFAULTS`; ValueError on a bad one."""
        values = dict(DEFAULTS)
        for key, value in (properties or {}).items():
            if key not in DEFAULTS:
                raise ValueError(
                    f"unknown XML data type property {key!r}; allowed: "
                    + ", ".join(sorted(DEFAULTS))
                )
            values[key] = value
        split_type = _as_str("splitType", values["splitType"]).replace(" ", "_")
        if split_type not in SPLIT_TYPES:
            raise ValueError(
                f"XML property splitType={values['splitType']!r} is not one of "
                + ", ".join(SPLIT_TYPES)
            )
        if split_type == "JavaScript" or _as_str("batchScript", values["batchScript"]):
            raise ValueError(
                "XML batch splitting by JavaScript (splitType 'JavaScript', batchScript) is "
                "not supported; use 'Element_Name', 'Level' or 'XPath_Query'"
            )
        query = _as_str("query", values["query"])
        if split_type == "XPath_Query":
            try:
                etree.XPath(query)
            except etree.XPathSyntaxError as exc:
                raise ValueError(f"XML property query={query!r} is not an XPath: {exc}") from None
        return cls(
            strip_namespaces=_as_bool("stripNamespaces", values["stripNamespaces"]),
            split_type=split_type,
            element_name=_as_str("elementName", values["elementName"]),
            level=_as_level(values["level"]),
            query=query,
        )


def _strip_leading(text: str) -> tuple[str, int]:
    """The text without a leading byte order mark, and without the whitespace before an XML
    declaration (which XML forbids and Mirth's E4X parsing tolerates); the lines removed."""
    text = text.removeprefix("\ufeff")
    stripped = text.lstrip(_LEADING)
    if not stripped.startswith("<?xml"):
        return text, 0
    removed = text[: len(text) - len(stripped)]
    return stripped, removed.count("\n") + removed.replace("\r\n", "\n").count("\r")


def _parse(text: str, what: str) -> etree._Element:
    stripped, lines = _strip_leading(text)
    if not stripped.strip(_LEADING):
        raise MessageParseError("empty message: an XML document needs a root element")
    parser = _parser(recover=True)
    try:
        root = etree.fromstring(stripped.encode("utf-8", "surrogatepass"), parser)
    except etree.XMLSyntaxError as exc:  # pragma: no cover - recover mode rarely raises
        line, column = exc.position
        raise MessageParseError(f"{what} at line {line + lines}, column {column}") from None
    for error in parser.error_log:
        if error.level >= etree.ErrorLevels.ERROR and error.domain_name != "NAMESPACE":
            raise MessageParseError(
                f"{what} at line {error.line + lines}, column {error.column}: {error.message}"
            )
    if root is None:  # pragma: no cover - the error log explains why
        raise MessageParseError(f"{what}: no root element")
    return root


def parse_document(text: str) -> etree._Element:
    """Parse ``text`` as an XML 1.0 document; :class:`MessageParseError` with the line and
    column of the first well-formedness error.

    Namespace errors (a prefix without a declaration) are not errors here: Mirth treats XML
    as text and its own ``stripNamespaces`` leaves such prefixes; the element is then named
    ``prefix:name`` without a namespace. A byte order mark and whitespace before an XML
    declaration are allowed.
    """
    return _parse(text, "not well-formed XML")


class XMLDataType(DataType):
    """Mirth's XML data type, configured by one connector's properties.

    Built once per connector at deploy time; every method is safe to call from several tasks.
    """

    name = NAME
    serialization_type = "XML"
    """What Mirth's transformers work on (``D_MC.DATA_TYPE`` of TRANSFORMED content)."""

    def __init__(self, properties: Mapping[str, Any] | None = None) -> None:
        self.properties = XMLProperties.from_mapping(properties)

    def validate(self, raw: str) -> None:
        """Raise :class:`MessageParseError` (with line and column) unless ``raw`` is a
        well-formed XML document (see :func:`parse_document`). Entities other than XML's own
        and those declared in the document are errors; external entities and DTDs are never
        loaded."""
        parse_document(raw)

    def encode(self, message: Any) -> str:
        """A transformed document back to text."""
        return str(etree.tostring(message, encoding="unicode"))

    def parse(self, raw: str) -> etree._Element:
        """The root element of the document the transformer works on: :meth:`to_xml` of
        ``raw``. With ``stripNamespaces`` elements keep their prefixes without a namespace
        (``soap:Envelope``), as Mirth's stripped text reads."""
        root = parse_document(raw)
        if not self.properties.strip_namespaces:
            return root
        # Mirth's expression works on the text and can break it (an "xmlns=..." in text).
        return _parse(
            strip_namespaces(raw),
            "not well-formed XML after stripping namespaces (stripNamespaces)",
        )

    def metadata(self, raw: str) -> dict[str, str]:
        """Empty: Mirth's ``DefaultXMLSerializer.populateMetaData`` sets nothing."""
        return {}

    def to_xml(self, raw: str) -> str:
        """The message itself, namespace declarations removed with ``stripNamespaces``."""
        return strip_namespaces(raw) if self.properties.strip_namespaces else raw

    def from_xml(self, xml: str) -> str:
        """The XML unchanged (Mirth's ``fromXML``)."""
        return xml

    def split_batch(self, raw: str) -> list[str]:
        """Split a batch as Mirth's ``XMLBatchAdaptor``: every element named ``elementName``
        (local name, any depth), every element at ``level`` (the root is level 0), or every
        element an XPath ``query`` selects, each serialized on its own.

        Raises :class:`MessageParseError` if the batch is not well-formed or the query fails.
        Mirth serializes each part with an indenting JAXP transformer; Pannier keeps the
        part's text as it was in the batch (element content identical, whitespace may
        differ). With the default empty ``elementName`` nothing matches and the batch gives
        no messages, as in Mirth.
        """
        root = parse_document(raw)
        props = self.properties
        if props.split_type == "Element_Name":
            nodes: Any = root.xpath("//*[local-name()=$name]", name=props.element_name)
        elif props.split_type == "Level":
            nodes = root.xpath("/*" + "/*" * props.level)
        else:
            try:
                nodes = root.xpath(props.query)
            except etree.XPathError as exc:
                raise MessageParseError(f"XML batch query {props.query!r} failed: {exc}") from None
        if not isinstance(nodes, list):
            raise MessageParseError(
                f"XML batch query {props.query!r} must select elements, not a "
                f"{type(nodes).__name__}"
            )
        parts = []
        for node in nodes:
            if isinstance(node, etree._Element) and isinstance(node.tag, str):
                part = copy.deepcopy(node)
                etree.cleanup_namespaces(part)  # keep only the declarations it uses
                parts.append(etree.tostring(part, encoding="unicode", with_tail=False))
        return parts
