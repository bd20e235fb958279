"""ER7 <-> Mirth's XML form of HL7 v2 (mirth-compat.md §5.1).

:func:`er7_to_xml` follows Mirth's non-strict ``ER7Reader`` and ``XMLPrettyPrinter`` exactly
(element for element, ``<X></X>`` for empty elements, no indentation, Mirth's entity
encoding). :func:`xml_to_er7` gives the ER7 that Mirth's ``XMLEncodedHL7Handler`` gives for the
XML Mirth (or an E4X transformer) produces: fields, components and subcomponents are placed by
the number in their element name, missing ones filled with empty values, repeated field elements
joined with the repetition separator, every segment followed by the segment delimiter.
"""

from __future__ import annotations

import re
import threading

from lxml import etree
from pannier import MessageParseError, xmltext

from pannier_hl7v2.message import HEADER_SEGMENTS, JAVA_WHITESPACE, Separators

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
ROOT = "HL7Message"

_ELEMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


xml_escape = xmltext.encode
"""Mirth's ``MirthXmlUtil.encode`` (see :mod:`pannier.xmltext`)."""


def check_xml_characters(text: str) -> None:
    """Raise :class:`MessageParseError` if ``text`` holds a character XML 1.0 cannot carry."""
    offset = xmltext.first_unrepresentable(text)
    if offset is not None:
        raise MessageParseError(
            f"the message contains character U+{ord(text[offset]):04X} at offset "
            f"{offset}, which XML cannot represent"
        )


class _FieldTags:
    """The element texts of one field position (``PID.3``), made once, not per message."""

    __slots__ = ("_components", "_templates", "close", "empty", "name", "open", "simple")

    def __init__(self, name: str) -> None:
        self.name = name
        self.open = f"<{name}>"
        self.close = f"</{name}>"
        self.empty = f"<{name}></{name}>"
        self.simple = f"<{name}><{name}.1>%s</{name}.1></{name}>"
        """A field of one component, as a ``%`` template (element names never hold a ``%``)."""
        self._components: list[_FieldTags] = []
        self._templates: dict[int, str] = {}

    def components(self, count: int) -> list[_FieldTags]:
        """Tags of components ``.1`` to ``.count`` (made on first use, then kept)."""
        made = self._components
        if len(made) < count:
            made = made + [_FieldTags(f"{self.name}.{n}") for n in range(len(made) + 1, count + 1)]
            if count <= _MAX_CACHED:  # a field of 100,000 components is not kept for later
                self._components = made  # one assignment: readers see the old or the new list
        return made

    def template(self, count: int) -> str:
        """The field with ``count`` components as one ``%`` template: each component is an
        element, an empty one too (``<PID.5.2></PID.5.2>``, Mirth's form for it)."""
        made = self._templates.get(count)
        if made is None:
            inner = "".join(f"{tag.open}%s{tag.close}" for tag in self.components(count)[:count])
            made = f"{self.open}{inner}{self.close}"
            if count <= _MAX_CACHED:
                self._templates[count] = made
        return made


_TAGS: dict[tuple[str, int], list[_FieldTags]] = {}
"""Cached field tags by (segment name, field offset). Threads may race to fill an entry; each
writes an equal list in one assignment, so no lock is needed."""


_MAX_CACHED = 64
"""Most fields (and components) per segment whose tags are kept; what a malformed message
has beyond that is made for it alone, so bad input cannot grow the cache."""


def _segment_tags(name: str, offset: int, count: int) -> list[_FieldTags]:
    """Field tags of segment ``name`` for positions ``0..count-1`` (cached per segment name:
    messages use a few dozen; names that are not standard are cached too, up to a bound)."""
    key = (name, offset)
    tags = _TAGS.get(key)
    if tags is None or len(tags) < count:
        made = [_FieldTags(f"{name}.{position + offset}") for position in range(count)]
        if len(_TAGS) < 1024 and count <= _MAX_CACHED:
            _TAGS[key] = made
        return made
    return tags


def er7_to_xml(
    text: str,
    separators: Separators,
    *,
    segment_delimiter: str = "\r",
    handle_repetitions: bool = True,
    handle_subcomponents: bool = True,
) -> str:
    """Mirth's XML for an ER7 message.

    ``text`` must already have its line breaks converted and be trimmed (what
    :attr:`HL7Message.text <pannier_hl7v2.message.HL7Message.text>` gives); ``separators`` come
    from :func:`~pannier_hl7v2.message.detect_separators`. Empty segments are skipped. Raises
    :class:`MessageParseError` for a segment id that cannot be an XML element name or a
    character XML cannot carry.
    """
    check_xml_characters(text)
    fs, cs, rs, es, ss = separators
    # Skip entity encoding altogether when nothing after MSH-2 needs it (the usual case).
    body_start = text.find(fs, 4) + 1 if text[:3] in HEADER_SEGMENTS else 0
    needed = xmltext.needs_encoding(text, body_start, ignore_cr=segment_delimiter == "\r")
    if ss:
        special = cs + rs + es[:1] + ss
    elif es:
        special = cs + rs + es
    else:
        special = cs + rs
    header_fields = f".1>{xml_escape(fs)}</"
    header_chars = f".2>{xml_escape(special)}</"
    split_subs = handle_subcomponents and bool(ss)
    # Mirth's test ``field.indexOf(sub) > -1`` is true for an empty separator: every field is then
    # wrapped as a composite, which gives the same elements as the simple case below.
    out: list[str] = [XML_DECLARATION, "<HL7Message>"]
    add = out.append

    def field(tags: _FieldTags, value: str) -> None:
        """A non-empty field (or repetition). Components are written by one template; a field
        with subcomponents element by element."""
        if split_subs and ss in value:
            add(tags.open)
            components = value.split(cs)
            component_tags = tags.components(len(components))
            for number, component in enumerate(components):
                ctag = component_tags[number]
                if split_subs and ss in component:
                    add(ctag.open)
                    for sub_number, sub in enumerate(component.split(ss), 1):
                        stag = f"{ctag.name}.{sub_number}"
                        add(f"<{stag}>{xml_escape(sub) if needed else sub}</{stag}>")
                    add(ctag.close)
                else:
                    add(ctag.open)
                    add(xml_escape(component) if needed else component)
                    add(ctag.close)
            add(tags.close)
        elif cs in value:
            components = value.split(cs)
            if needed:
                add(tags.template(len(components)) % tuple(map(xml_escape, components)))
            else:
                add(tags.template(len(components)) % tuple(components))
        else:
            add(tags.simple % (xml_escape(value) if needed else value))

    for number, segment in enumerate(text.split(segment_delimiter), 1):
        if not segment:
            continue
        parts = segment.split(fs)
        name = parts[0].strip(JAVA_WHITESPACE)
        if _ELEMENT_NAME.fullmatch(name) is None:
            raise MessageParseError(
                f"segment {number} has id {name[:20]!r}, which is not a segment name "
                f"(starts with {segment[:30]!r})"
            )
        add(f"<{name}>")
        offset = 0
        first = 1
        if name in HEADER_SEGMENTS and len(parts) > 1:
            add(f"<{name}{header_fields}{name}.1><{name}{header_chars}{name}.2>")
            offset = 1
            first = 2
        tags_of = _segment_tags(name, offset, len(parts))
        for position in range(first, len(parts)):
            value = parts[position]
            tags = tags_of[position]
            if not value:
                add(tags.empty)
            elif handle_repetitions and rs in value:
                for repetition in value.split(rs):
                    if repetition:
                        field(tags, repetition)
                    else:
                        add(tags.empty)
            elif cs in value or (split_subs and ss in value):
                field(tags, value)
            else:  # a plain field, most of them: inline, without a call
                add(tags.simple % (xml_escape(value) if needed else value))
        add(f"</{name}>")
    add("</HL7Message>")
    return "".join(out)


# --- XML -> ER7 -----------------------------------------------------------------------------

_DECLARATION = re.compile(r"^[\s\ufeff]*<\?xml[^>]*\?>")


def _name(tag: str) -> str:
    return tag.rpartition("}")[2] if "}" in tag else tag


def _number(tag: str) -> int:
    """The last number of an element name (``PID.5.2`` -> 2); 0 when there is none."""
    try:
        return int(tag.rpartition(".")[2])
    except ValueError:
        return 0


def _join(element: etree._Element, seps: Separators, separator: str, depth: int) -> str:
    """Join the children of a field (depth 1) or component (depth 2) by their numbers."""
    values: list[str] = []
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        number = _number(tag)
        if number > len(values) + 1:
            values.extend([""] * (number - len(values) - 1))
        if not len(child):
            values.append(child.text or "")
        elif depth == 1:
            values.append(_join(child, seps, seps.subcomponent, 2))
        else:  # deeper than a subcomponent: Mirth writes the text with no separator
            values.append("".join(child.itertext()))
    return separator.join(values)


def _segment(element: etree._Element, seps: Separators) -> str:
    name = _name(element.tag)
    header = name in HEADER_SEGMENTS
    parts: list[str] = [name]
    previous = 0
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        number = _number(tag)
        if header and number == 1:
            continue
        if not len(child) or (header and number == 2):
            value = child.text or ""
        else:
            value = _join(child, seps, seps.component, 1)
        if number == previous and number > 0:
            parts[-1] += seps.repetition + value
            continue
        position = number - 1 if header else number
        if number > previous and position > len(parts):
            parts.extend([""] * (position - len(parts)))
        parts.append(value)
        previous = number
    return seps.field.join(parts)


def _separators_from(segments: list[etree._Element]) -> Separators:
    defaults = Separators()
    for segment in segments:
        if _name(segment.tag) not in HEADER_SEGMENTS:
            continue
        field, chars = defaults.field, ""
        for child in segment:
            if not isinstance(child.tag, str):
                continue
            number = _number(child.tag)
            if number == 1 and child.text:
                field = child.text[0]
            elif number == 2:
                chars = child.text or ""
        return Separators(
            field,
            chars[0] if len(chars) > 0 else defaults.component,
            chars[1] if len(chars) > 1 else defaults.repetition,
            chars[2] if len(chars) > 2 else defaults.escape,
            chars[3] if len(chars) > 3 else defaults.subcomponent,
        )
    return defaults


_local_parsers = threading.local()


def _parser() -> etree.XMLParser:
    parser = getattr(_local_parsers, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            remove_comments=True,
            remove_pis=True,
            huge_tree=False,
        )
        _local_parsers.parser = parser
    return parser


def parse_xml(xml: str) -> etree._Element:
    """Parse XML text safely (no DTD, no entities, no network); MessageParseError on failure."""
    text = _DECLARATION.sub("", xml, count=1).lstrip("\ufeff")
    try:
        root = etree.fromstring(text, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise MessageParseError(f"the XML is not well-formed: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise MessageParseError("the XML has a DOCTYPE declaration, which is not allowed")
    return root


def xml_to_er7(xml: str, *, segment_delimiter: str = "\r") -> str:
    """ER7 from Mirth's XML form (root ``HL7Message``, or a single segment element).

    Separators come from the first MSH/FHS/BHS element's ``.1`` and ``.2`` children (``|^~\\&``
    when absent). Whitespace-only text between elements is ignored; the text of leaf elements is
    kept exactly. Every segment is followed by ``segment_delimiter``, as in Mirth.
    """
    root = parse_xml(xml)
    name = _name(root.tag)
    if name == ROOT:
        segments = [child for child in root if isinstance(child.tag, str)]
    elif "." not in name:
        segments = [root]
    else:
        raise MessageParseError(
            f"the XML root is <{name}>; expected <{ROOT}> or a segment element such as <PID>"
        )
    seps = _separators_from(segments)
    return "".join(_segment(segment, seps) + segment_delimiter for segment in segments)
