"""``pannier convert``: its arguments, conversions through the plugin registry, and its errors.

The command is run the way ``pannier`` runs it — an ``argparse`` sub-parser set up by its
``configure``, then ``run`` with the parsed namespace — with the data type plugins installed
in the workspace (a test skips when the data type it needs is not installed).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pytest
from pannier.cli.convert import convert_command, hl7_text, pretty_xml
from pannier.extensions import CliCommand
from pannier.plugins import build_registry, load_plugins, new_plugin_manager
from pannier.testing.datatypes import xml_tree_equal

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
VECTORS = FIXTURES / "conformance" / "hl7v2-xml"
ADT = FIXTURES / "hl7" / "adt_a01.hl7"


def installed() -> set[str]:
    pm = new_plugin_manager()
    load_plugins(pm, quiet=True)
    return set(build_registry(pm).datatypes)


INSTALLED = installed()


def needs(*names: str) -> pytest.MarkDecorator:
    missing = [name for name in names if name not in INSTALLED]
    return pytest.mark.skipif(bool(missing), reason=f"data type not installed: {missing}")


def run(*argv: str) -> int:
    command = convert_command()
    parser = argparse.ArgumentParser(prog="pannier convert")
    command.configure(parser)
    return command.run(parser.parse_args(list(argv)))


def output(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert run(*argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert run(*argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("pannier convert: error: ")
    assert captured.err.count("\n") == 1, "an error is one line"
    return captured.err


def crs(text: str) -> str:
    return text.replace("\r\n", "\r").replace("\n", "\r").rstrip("\r")


def test_the_command() -> None:
    command = convert_command()
    assert isinstance(command, CliCommand)
    assert command.name == "convert" and command.help
    parser = argparse.ArgumentParser()
    command.configure(parser)
    args = parser.parse_args(["f.hl7", "--from", "hl7v2", "--to", "xml", "-p", "a=1", "-p", "b=2"])
    assert (args.file, args.source, args.target) == ("f.hl7", "hl7v2", "xml")
    assert args.properties == ["a=1", "b=2"] and args.encoding == "utf-8"
    assert not args.pretty and not args.exact


def test_hl7_text_is_read_as_pannier_send_reads_it() -> None:
    assert hl7_text("MSH|1\r\nPID|2\nPV1|3\n\n") == "MSH|1\rPID|2\rPV1|3\r"
    assert hl7_text("") == ""


# --- HL7 v2 and the conformance vectors -------------------------------------------------------

# (ER7, XML, handleRepetitions, handleSubcomponents) as Mirth's HL7SerializerTest runs them
ER7_TO_XML = [
    ("test-hl7-input.txt", "test-hl7-output.xml", False, False),
    ("test-hl7-repetitions-input.txt", "test-hl7-repetitions-output.xml", True, False),
    ("test-hl7-subcomponents-input.txt", "test-hl7-subcomponents-output.xml", False, True),
    ("test-hl7-batch-input.txt", "test-hl7-batch-output.xml", False, False),
]


def flags(repetitions: bool, subcomponents: bool) -> list[str]:
    return [
        f"--property=handleRepetitions={str(repetitions).lower()}",
        f"--property=handleSubcomponents={str(subcomponents).lower()}",
    ]


@needs("HL7V2")
@pytest.mark.parametrize(("source", "expected", "repetitions", "subcomponents"), ER7_TO_XML)
def test_conformance_vectors_er7_to_xml(
    capsys: pytest.CaptureFixture[str],
    source: str,
    expected: str,
    repetitions: bool,
    subcomponents: bool,
) -> None:
    xml = output(
        capsys,
        str(VECTORS / source),
        "--from",
        "hl7v2",
        "--to",
        "xml",
        *flags(repetitions, subcomponents),
    )
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?><HL7Message>')
    assert xml_tree_equal(xml, (VECTORS / expected).read_text(encoding="utf-8"))


@needs("HL7V2")
@pytest.mark.parametrize(("expected", "source", "repetitions", "subcomponents"), ER7_TO_XML)
def test_conformance_vectors_back_from_xml(
    capsys: pytest.CaptureFixture[str],
    expected: str,
    source: str,
    repetitions: bool,
    subcomponents: bool,
) -> None:
    args = ["--from", "xml", "--to", "hl7v2", "--exact", *flags(repetitions, subcomponents)]
    er7 = output(capsys, str(VECTORS / source), *args)
    assert crs(er7) == crs((VECTORS / expected).read_text(encoding="utf-8"))


@needs("HL7V2")
def test_conformance_vector_xml_to_er7(capsys: pytest.CaptureFixture[str]) -> None:
    source = VECTORS / "test-hl7-missing-components-input.xml"
    er7 = output(
        capsys, str(source), "--from", "XML", "--to", "HL7V2", "--exact", *flags(False, False)
    )
    expected = (VECTORS / "test-hl7-missing-components-output.txt").read_text(encoding="utf-8")
    assert "\n" not in er7 and er7.endswith("\r")
    assert crs(er7) == crs(expected)


@needs("HL7V2")
def test_line_ends_of_an_hl7_file_do_not_matter(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = ADT.read_text(encoding="utf-8")
    results = []
    for name, ends in (("cr", "\r"), ("lf", "\n"), ("crlf", "\r\n")):
        path = tmp_path / f"{name}.hl7"
        path.write_bytes(("\ufeff" + crs(text).replace("\r", ends) + ends * 2).encode("utf-8"))
        results.append(output(capsys, str(path), "--from", "hl7v2", "--to", "xml"))
    assert results[0] == results[1] == results[2]


@needs("HL7V2")
def test_hl7_round_trip_and_display(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    xml = output(capsys, str(ADT), "--from", "Hl7V2", "--to", "xml")
    assert xml.endswith("</HL7Message>\n")
    path = tmp_path / "adt.xml"
    path.write_text(xml, encoding="utf-8")
    shown = output(capsys, str(path), "--from", "xml", "--to", "hl7v2")
    assert "\r" not in shown and shown.startswith("MSH|^~\\&|")  # CR shown as LF
    exact = output(capsys, str(path), "--from", "xml", "--to", "hl7v2", "--exact")
    assert exact == crs(ADT.read_text(encoding="utf-8")) + "\r"
    assert shown == exact.replace("\r", "\n")


@needs("HL7V2")
def test_pretty_xml_is_the_same_tree(capsys: pytest.CaptureFixture[str]) -> None:
    plain = output(capsys, str(ADT), "--from", "hl7v2", "--to", "xml")
    pretty = output(capsys, str(ADT), "--from", "hl7v2", "--to", "xml", "--pretty")
    assert xml_tree_equal(plain, pretty)
    lines = pretty.splitlines()
    assert lines[0] == '<?xml version="1.0" encoding="UTF-8"?>'
    assert lines[1:4] == ["<HL7Message>", "  <MSH>", "    <MSH.1>|</MSH.1>"]


@needs("HL7V2")
def test_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(ADT.read_bytes()))
    monkeypatch.setattr(sys, "stdin", stdin)
    from_stdin = output(capsys, "-", "--from", "hl7v2", "--to", "xml")
    assert from_stdin == output(capsys, str(ADT), "--from", "hl7v2", "--to", "xml")


@needs("HL7V2", "DELIMITED")
def test_between_two_data_types_through_xml(capsys: pytest.CaptureFixture[str]) -> None:
    # A Mirth channel HL7V2 -> DELIMITED without steps: nothing in HL7 XML is a "row".
    assert output(capsys, str(ADT), "--from", "hl7v2", "--to", "delimited") == "\n"


# --- other data types ---------------------------------------------------------------------


@needs("DELIMITED")
def test_delimited_with_properties(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('1,"Smith, Ann"\n2,Bob\n', encoding="utf-8")
    xml = output(
        capsys, str(path), "--from", "delimited", "--to", "xml", "-p", "columnNames=id,name"
    )
    assert xml == (
        '<?xml version="1.0" encoding="UTF-8"?><delimited><row><id>1</id><name>Smith, Ann</name>'
        "</row><row><id>2</id><name>Bob</name></row></delimited>\n"
    )
    numbered = output(
        capsys, str(path), "--from", "delimited", "--to", "xml", "-p", "numberedRows=true"
    )
    assert "<row2>" in numbered
    xml_path = tmp_path / "rows.xml"
    xml_path.write_text(xml, encoding="utf-8")
    back = output(
        capsys, str(xml_path), "--from", "xml", "--to", "delimited", "-p", "columnDelimiter=|"
    )
    assert back == "1|Smith, Ann\n2|Bob\n"


@needs("XML")
def test_xml_to_xml_uses_the_xml_data_type(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "doc.xml"
    path.write_text('<a xmlns="urn:x"><b>1</b></a>', encoding="utf-8")
    assert output(capsys, str(path), "--from", "xml", "--to", "xml") == "<a ><b>1</b></a>\n"
    kept = output(capsys, str(path), "--from", "xml", "--to", "xml", "-p", "stripNamespaces=false")
    assert kept == '<a xmlns="urn:x"><b>1</b></a>\n'
    path.write_text("<a>\n<b></a>", encoding="utf-8")
    assert "line 2, column" in error(capsys, str(path), "--from", "xml", "--to", "xml")


@needs("JSON", "RAW")
def test_types_without_an_xml_form(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"a": 1}', encoding="utf-8")
    assert "serializes as JSON" in error(capsys, str(path), "--from", "json", "--to", "xml")
    assert "does not serialize" in error(capsys, str(path), "--from", "raw", "--to", "xml")
    assert "does not serialize" in error(capsys, str(path), "--from", "xml", "--to", "raw")
    path.write_text('{"a": }', encoding="utf-8")
    message = error(capsys, str(path), "--from", "json", "--to", "xml")
    assert "does not parse: not valid JSON at line 1, column 7" in message


# --- errors -------------------------------------------------------------------------------


def test_unknown_data_type_lists_the_installed_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "m.txt"
    path.write_text("x", encoding="utf-8")
    message = error(capsys, str(path), "--from", "edi", "--to", "xml")
    assert "unknown data type 'edi'; installed: " in message
    for name in INSTALLED:
        assert name in message
    assert "unknown data type 'x12'" in error(capsys, str(path), "--from", "xml", "--to", "x12")


def test_unreadable_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "missing.hl7"
    assert "cannot read" in error(capsys, str(missing), "--from", "hl7v2", "--to", "xml")
    assert "cannot read" in error(capsys, str(tmp_path), "--from", "hl7v2", "--to", "xml")
    latin = tmp_path / "latin.hl7"
    latin.write_bytes(b"MSH|^~\\&|caf\xe9\r")
    message = error(capsys, str(latin), "--from", "hl7v2", "--to", "xml")
    assert "is not utf-8 text (byte 0xE9 at offset 12)" in message
    assert "unknown encoding" in error(
        capsys, str(latin), "--from", "hl7v2", "--to", "xml", "--encoding", "nope"
    )


@needs("HL7V2")
def test_latin1_input_with_encoding(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    latin = tmp_path / "latin.hl7"
    latin.write_bytes(b"MSH|^~\\&|caf\xe9|F\r")
    xml = output(capsys, str(latin), "--from", "hl7v2", "--to", "xml", "--encoding", "latin-1")
    assert "caf&#233;" in xml


@needs("HL7V2")
def test_messages_that_do_not_parse(capsys: pytest.CaptureFixture[str]) -> None:
    bad = FIXTURES / "hl7" / "bad_no_msh.hl7"
    message = error(capsys, str(bad), "--from", "hl7v2", "--to", "xml")
    assert f"{bad} does not parse: " in message and "MSH" in message


@needs("HL7V2")
def test_bad_properties(capsys: pytest.CaptureFixture[str]) -> None:
    message = error(capsys, str(ADT), "--from", "hl7v2", "--to", "xml", "-p", "nosuch=1")
    assert "unknown property 'nosuch' for HL7V2" in message and "segmentDelimiter" in message
    message = error(capsys, str(ADT), "--from", "hl7v2", "--to", "xml", "-p", "noequals")
    assert "KEY=VALUE" in message
    message = error(
        capsys, str(ADT), "--from", "hl7v2", "--to", "xml", "-p", "handleRepetitions=perhaps"
    )
    assert "handleRepetitions must be true or false" in message


def test_pretty_xml() -> None:
    text = '<?xml version="1.0"?><a x="1"><b>t &amp; u</b><c><d/></c><m>mixed<i>x</i></m></a>'
    assert pretty_xml(text) == (
        '<?xml version="1.0"?>\n'
        '<a x="1">\n'
        "  <b>t &amp; u</b>\n"
        "  <c>\n"
        "    <d></d>\n"
        "  </c>\n"
        "  <m>mixed<i>x</i></m>\n"
        "</a>\n"
    )
    assert pretty_xml("<s:a>\r\n</s:a>") == "<s:a>&#10;</s:a>\n"
    with pytest.raises(ValueError, match="not well-formed"):
        pretty_xml("<a>")
