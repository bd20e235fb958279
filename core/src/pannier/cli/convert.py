"""``pannier convert``: show a message the way a data type serializes it.

::

    pannier convert adt.hl7 --from hl7v2 --to xml      # the XML tree a transformer works on
    pannier convert adt.xml --from xml --to hl7v2      # and back
    pannier convert rows.csv --from delimited --to xml -p columnNames=id,name

``--from``/``--to`` name installed data types (case-insensitive), found through the plugin
registry only. ``xml`` means a data type's XML form: ``--to xml`` prints ``to_xml`` of the
``--from`` type, ``--from xml`` prints ``from_xml`` of the ``--to`` type; between two other
types the message goes through XML (``to_xml`` then ``from_xml``), as a Mirth channel whose
inbound and outbound data types differ. ``--from xml --to xml`` uses the XML data type.

HL7 v2 input is read as ``pannier send`` reads it: CRLF and LF become CR. Output is written
with CR line ends shown as LF and a final newline unless ``--exact`` is given. Errors (unknown
data type, unreadable file, a message that does not parse) are one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from pannier import xmltext
from pannier.datatypes import DataType, DataTypeSpec, MessageParseError
from pannier.extensions import CliCommand
from pannier.plugins import PluginError, build_registry, load_plugins, new_plugin_manager

XML_FORM = "XML"
HL7V2 = "HL7V2"
PROG = "pannier convert"


class ConvertError(Exception):
    """What to tell the user before exiting with status 2."""


def _fail(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the message to convert ('-' for stdin)")
    parser.add_argument(
        "--from",
        dest="source",
        metavar="TYPE",
        required=True,
        help="data type of FILE (hl7v2, delimited, ...), or xml for a data type's XML form",
    )
    parser.add_argument(
        "--to",
        dest="target",
        metavar="TYPE",
        required=True,
        help="xml for the XML form of the --from type, or a data type to convert to",
    )
    parser.add_argument(
        "--property",
        "-p",
        dest="properties",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a data type property (Mirth's name, e.g. columnNames=id,name); repeatable; "
        "applies to each of the two data types that has it",
    )
    parser.add_argument(
        "--encoding", default="utf-8", help="character encoding of FILE (default utf-8)"
    )
    parser.add_argument(
        "--pretty", action="store_true", help="indent XML output (one element per line)"
    )
    parser.add_argument(
        "--exact",
        action="store_true",
        help="write the result exactly (CR segment delimiters kept, no newline added)",
    )


def _registry_datatypes() -> tuple[dict[str, DataTypeSpec], list[str]]:
    """Installed data types by upper-case name, and notes on plugins that failed to load."""
    pm = new_plugin_manager()
    infos = load_plugins(pm, quiet=True)
    registry = build_registry(pm)
    specs = {name.upper(): spec for name, (spec, _plugin) in registry.datatypes.items()}
    broken = [f"{i.name} ({i.distribution}): {i.error}" for i in infos if i.error]
    return specs, broken


def _spec(name: str, specs: Mapping[str, DataTypeSpec], broken: list[str]) -> DataTypeSpec:
    spec = specs.get(name.upper())
    if spec is None:
        message = (
            f"unknown data type {name!r}; installed: {', '.join(sorted(specs)) or 'none'}"
            " (or xml for a data type's XML form)"
        )
        if broken:
            message += "; plugins that failed to load: " + "; ".join(broken)
        raise ConvertError(message)
    return spec


def _parse_properties(items: list[str]) -> dict[str, str]:
    properties: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConvertError(f"--property must be KEY=VALUE, got {item!r}")
        properties[key.strip()] = value
    return properties


def _coerce(key: str, value: str, default: Any) -> Any:
    if isinstance(default, bool):
        if value.strip().lower() not in ("true", "false"):
            raise ConvertError(f"property {key} must be true or false, got {value!r}")
        return value.strip().lower() == "true"
    if isinstance(default, int):
        try:
            return int(value)
        except ValueError:
            raise ConvertError(f"property {key} must be a number, got {value!r}") from None
    return value


def _build(spec: DataTypeSpec, overrides: Mapping[str, str]) -> DataType:
    properties = dict(spec.defaults)
    for key, value in overrides.items():
        if key in spec.defaults:
            properties[key] = _coerce(key, value, spec.defaults[key])
    try:
        return spec.factory(properties)
    except (ValueError, TypeError) as exc:
        raise ConvertError(f"{spec.name} properties: {exc}") from None


def _read(path: str, encoding: str) -> str:
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as handle:
                data = handle.read()
    except OSError as exc:
        raise ConvertError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode(encoding)
    except LookupError:
        raise ConvertError(f"unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise ConvertError(
            f"{path} is not {encoding} text (byte 0x{data[exc.start]:02X} at offset "
            f"{exc.start}); give its encoding with --encoding"
        ) from None
    return text.removeprefix("\ufeff")


def hl7_text(text: str) -> str:
    """An HL7 v2 file's text as ``pannier send`` sends it: CRLF and LF become CR, trailing
    empty lines are dropped and the message ends with one CR."""
    text = text.replace("\r\n", "\r").replace("\n", "\r").rstrip("\r")
    return text + "\r" if text else ""


def _no_xml(datatype: DataType, exc: NotImplementedError) -> ConvertError:
    return ConvertError(str(exc) or f"{datatype.name} has no XML form")


def _to_xml(datatype: DataType, text: str) -> str:
    datatype.validate(text)
    try:
        return datatype.to_xml(text)
    except NotImplementedError as exc:
        raise _no_xml(datatype, exc) from None


def _from_xml(datatype: DataType, xml_text: str) -> str:
    try:
        return datatype.from_xml(xml_text)
    except NotImplementedError as exc:
        raise _no_xml(datatype, exc) from None


def convert(
    text: str,
    source: str,
    target: str,
    specs: Mapping[str, DataTypeSpec],
    *,
    properties: Mapping[str, str] | None = None,
    broken: list[str] | None = None,
) -> str:
    """Convert ``text`` from ``source`` to ``target`` (data type names or ``xml``, any case).

    Raises :class:`ConvertError` for an unknown data type or property and a data type without
    an XML form, :class:`~pannier.MessageParseError` for a message that does not parse.
    """
    notes = broken or []
    from_xml_form, to_xml_form = source.upper() == XML_FORM, target.upper() == XML_FORM
    if from_xml_form and to_xml_form:
        reader, writer = _spec(XML_FORM, specs, notes), None
    elif to_xml_form:
        reader, writer = _spec(source, specs, notes), None
    elif from_xml_form:
        reader, writer = None, _spec(target, specs, notes)
    else:
        reader, writer = _spec(source, specs, notes), _spec(target, specs, notes)
    overrides = dict(properties or {})
    involved = [spec for spec in (reader, writer) if spec is not None]
    known = {key for spec in involved for key in spec.defaults}
    for key in overrides:
        if key not in known:
            raise ConvertError(
                f"unknown property {key!r} for {' and '.join(s.name for s in involved)}; "
                f"known: {', '.join(sorted(known)) or 'none'}"
            )
    if reader is not None:
        source_type = _build(reader, overrides)
        if source_type.name == HL7V2:
            text = hl7_text(text)
        text = _to_xml(source_type, text)
    if writer is not None:
        text = _from_xml(_build(writer, overrides), text)
    return text


# --- output -----------------------------------------------------------------------------------


def _escape_text(text: str) -> str:
    return escape(text).replace("\r", "&#13;").replace("\n", "&#10;")


def _open_tag(element: xmltext.Element) -> str:
    rendered = "".join(f" {k}={quoteattr(v)}" for k, v in element.attributes.items())
    return f"<{element.name}{rendered}>"


def _flat(element: xmltext.Element) -> str:
    inner = "".join(
        _flat(part) if isinstance(part, xmltext.Element) else _escape_text(part)
        for part in element.content
    )
    return f"{_open_tag(element)}{inner}</{element.name}>"


def _lines(element: xmltext.Element, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    children = element.children
    mixed = any(isinstance(part, str) and part.strip() for part in element.content)
    if not children or mixed:
        out.append(pad + _flat(element))
        return
    out.append(pad + _open_tag(element))
    for child in children:
        _lines(child, depth + 1, out)
    out.append(f"{pad}</{element.name}>")


def pretty_xml(text: str) -> str:
    """Indent XML two spaces per level, one element per line. Text of elements without
    children is kept exactly; elements with mixed content are written on one line; an XML
    declaration is kept. Namespaces are not processed (a stripped ``soap:Body`` stays as it
    is). ValueError if the text is not well-formed."""
    document = xmltext.parse_document(text)
    out: list[str] = []
    stripped = text.lstrip()
    if stripped.startswith("<?xml"):
        out.append(stripped[: stripped.find("?>") + 2])
    for child in document.children:
        _lines(child, 0, out)
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    try:
        properties = _parse_properties(list(args.properties or []))
        text = _read(str(args.file), str(args.encoding))
        try:
            specs, broken = _registry_datatypes()
        except PluginError as exc:
            raise ConvertError(str(exc)) from None
        result = convert(
            text, str(args.source), str(args.target), specs, properties=properties, broken=broken
        )
        if args.pretty and str(args.target).upper() == XML_FORM:
            result = pretty_xml(result)
    except ConvertError as exc:
        return _fail(str(exc))
    except MessageParseError as exc:
        return _fail(f"{args.file} does not parse: {exc}")
    except ValueError as exc:
        return _fail(f"{args.file}: {exc}")
    if not args.exact:
        result = result.replace("\r\n", "\n").replace("\r", "\n")
        if not result.endswith("\n"):
            result += "\n"
    sys.stdout.write(result)
    sys.stdout.flush()
    return 0


def convert_command() -> CliCommand:
    """The ``pannier convert`` command (the kernel's builtin commands list it)."""
    return CliCommand(
        "convert",
        "print a message as a data type serializes it (e.g. HL7 v2 as Mirth's XML) or back",
        configure,
        run,
    )
