"""Mirth 4.5.2 channel XML ⇄ the channel model ⇄ TOML channel files, and ``pannier channel``."""

from __future__ import annotations

import argparse
import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from pannier.cli.channel_commands import channel_command
from pannier.model.channel import Element, Script
from pannier.model.channel_file import channel_from_dict, load_channel_file
from pannier.model.mirth_xml import (
    MirthXmlError,
    channel_from_xml,
    channel_to_toml,
    channel_to_xml,
    js_to_path,
    js_to_value,
    mirth_extra,
    path_to_js,
    value_to_js,
)
from pannier.model.status import StorageMode

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "channels" / "mirth-4.5.2-tcp-hl7-two-destinations.xml"


def fixture_text() -> str:
    return FIXTURE.read_text(encoding="utf-8")


def _tree(text: str) -> Any:
    parser = etree.XMLParser(remove_blank_text=True)
    return etree.fromstring(text.encode("utf-8"), parser)


def tree_differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Differences between two XML trees: tags, attributes, child order and leaf text
    (whitespace between elements ignored; an empty element equals one with empty text)."""
    here = f"{path}/{a.tag}"
    if a.tag != b.tag:
        return [f"{here}: tag {a.tag} != {b.tag}"]
    out = []
    if dict(a.attrib) != dict(b.attrib):
        out.append(f"{here}: attributes {dict(a.attrib)} != {dict(b.attrib)}")
    if len(a) == 0 and len(b) == 0:
        if (a.text or "") != (b.text or ""):
            out.append(f"{here}: text {a.text!r} != {b.text!r}")
        return out
    if [c.tag for c in a] != [c.tag for c in b]:
        return [*out, f"{here}: children {[c.tag for c in a]} != {[c.tag for c in b]}"]
    for x, y in zip(a, b, strict=True):
        out += tree_differences(x, y, here)
    return out


# --- import ---------------------------------------------------------------------------------------


def test_import_maps_channel_fields() -> None:
    channel = channel_from_xml(fixture_text())
    assert channel.id == "8f0e6b2a-3c1d-4e5f-9a7b-2d4c6e8f0a1b"
    assert channel.name == "ADT Router"
    assert channel.revision == 7
    assert channel.nextMetaDataId == 3
    assert channel.description.startswith("Receives ADT over MLLP")
    props = channel.properties
    assert props.messageStorageMode == StorageMode.PRODUCTION
    assert props.initialState == "STARTED"
    assert props.storeAttachments is True
    assert props.clearGlobalChannelMap is True
    assert [(c.name, c.type, c.mappingName) for c in props.metaDataColumns] == [
        ("SOURCE", "STRING", "mirth_source"),
        ("TYPE", "STRING", "mirth_type"),
        ("PATIENT_ID", "STRING", "patientId"),
    ]
    # Mirth's default (no-op) scripts import as empty JavaScript scripts
    for script in (
        channel.preprocessingScript,
        channel.postprocessingScript,
        channel.deployScript,
        channel.undeployScript,
    ):
        assert script == Script(code="", language="javascript")


def test_import_maps_tcp_listener_source() -> None:
    source = channel_from_xml(fixture_text()).source
    assert (source.metaDataId, source.name, source.mode) == (0, "sourceConnector", "SOURCE")
    assert source.transportName == "TCP Listener"
    assert source.properties["host"] == "0.0.0.0"
    assert source.properties["port"] == "6661"  # a string, as Mirth stores it
    assert source.properties["startOfMessageBytes"] == "0B"
    assert source.properties["endOfMessageBytes"] == "1C0D"
    assert source.properties["pluginPointName"] == "MLLP"
    assert (source.properties["ackBytes"], source.properties["maxRetries"]) == ("06", "2")  # MLLPv2
    assert source.properties["maxConnections"] == "10"
    assert source.properties["charsetEncoding"] == "DEFAULT_ENCODING"
    assert "reconnectInterval" not in source.properties  # kept opaquely, not in the model
    settings = source.source
    assert settings.responseVariable == "Auto-generate (After source transformer)"
    assert settings.respondAfterProcessing is True
    assert settings.processBatch is False
    assert settings.firstResponse is False
    assert settings.processingThreads == 1
    assert settings.queueBufferSize == 1000
    assert (source.inboundDataType, source.outboundDataType) == ("HL7V2", "HL7V2")
    # only HL7 v2 properties that differ from Mirth's defaults are in the model
    assert source.inboundProperties == {"successfulACKMessage": "Accepted by ADT Router"}
    assert source.outboundProperties == {}


def test_import_maps_filter_and_transformer() -> None:
    source = channel_from_xml(fixture_text()).source
    [rule] = source.filter.rules
    assert rule == Element(
        kind="rule",
        name="Accept ADT A01 A04 A08",
        enabled=True,
        operator="NONE",
        settings={"field": "MSH.9.2", "condition": "EQUALS", "values": ["A01", "A04", "A08"]},
    )
    script_step, mapper = source.transformer.steps
    assert script_step.kind == "javascript"
    assert script_step.name == "Normalise sending facility"
    assert script_step.settings["code"].startswith("var facility = msg['MSH']")
    assert "facility.length > 0 && facility != 'MAIN'" in script_step.settings["code"]
    assert mapper.kind == "mapper"
    assert mapper.settings == {
        "variable": "patientId",
        "mapping": "PID.3.1",
        "defaultValue": "UNKNOWN",
        "replacements": [],
        "scope": "CHANNEL",
    }


def test_import_maps_destinations() -> None:
    archive, emr = channel_from_xml(fixture_text()).destinations
    assert (archive.metaDataId, archive.name, archive.transportName) == (
        1,
        "Archive to file",
        "File Writer",
    )
    assert archive.properties["directory"] == "/var/spool/adt/archive"  # Mirth's "host"
    assert archive.properties["outputPattern"] == "${message.messageId}.hl7"
    assert archive.properties["outputAppend"] == "false"
    assert "scheme" not in archive.properties
    assert archive.queue.queueEnabled is False
    assert archive.waitForPrevious is True

    assert (emr.metaDataId, emr.transportName, emr.waitForPrevious) == (2, "TCP Sender", False)
    assert emr.properties["remoteAddress"] == "emr.example.org"
    assert emr.properties["remotePort"] == "6662"
    assert emr.properties["responseTimeout"] == "10000"
    queue = emr.queue
    assert queue.queueEnabled is True
    assert queue.sendFirst is True
    assert queue.retryIntervalMillis == 30000
    assert queue.retryCount == 5
    assert queue.threadCount == 2
    assert queue.threadAssignmentVariable == "patientId"
    assert queue.validateResponse is True
    assert queue.queueBufferSize == 1000
    assert queue.reattachAttachments is True
    [step] = emr.responseTransformer.steps
    assert step.kind == "javascript" and "logger.warn" in step.settings["code"]


# --- export ---------------------------------------------------------------------------------------


def test_export_is_tree_equal_to_the_input() -> None:
    exported = channel_to_xml(channel_from_xml(fixture_text()))
    assert tree_differences(_tree(fixture_text()), _tree(exported)) == []


def test_export_then_import_gives_an_equal_model() -> None:
    channel = channel_from_xml(fixture_text())
    again = channel_from_xml(channel_to_xml(channel))
    assert again == channel
    assert channel_to_xml(again) == channel_to_xml(channel)


def test_export_starts_like_a_mirth_export_and_orders_fields_as_mirth() -> None:
    exported = channel_to_xml(channel_from_xml(fixture_text()))
    assert exported.startswith('<channel version="4.5.2">\n  <id>')
    root = _tree(exported)
    assert [c.tag for c in root] == [
        "id",
        "nextMetaDataId",
        "name",
        "description",
        "revision",
        "sourceConnector",
        "destinationConnectors",
        "preprocessingScript",
        "postprocessingScript",
        "deployScript",
        "undeployScript",
        "properties",
        "exportData",
    ]


def test_model_changes_are_written_in_place() -> None:
    channel = channel_from_xml(fixture_text())
    channel.source.properties["port"] = "7777"
    channel.destinations[0].properties["directory"] = "/srv/out"
    channel.destinations[1].queue.retryCount = 9
    channel.source.filter.rules[0].settings["values"] = ["A01", "it's"]
    channel.source.inboundProperties = {}
    channel.properties.messageStorageMode = StorageMode.RAW
    channel.deployScript = Script("logger.info('deployed');", "javascript")
    root = _tree(channel_to_xml(channel))
    source = root.find("sourceConnector/properties")
    assert source.findtext("listenerConnectorProperties/port") == "7777"
    assert source.findtext("reconnectInterval") == "5000"  # unmapped field kept
    destinations = root.findall("destinationConnectors/connector")
    assert destinations[0].findtext("properties/host") == "/srv/out"
    assert destinations[0].findtext("properties/scheme") == "FILE"
    assert destinations[1].findtext("properties/destinationConnectorProperties/retryCount") == "9"
    rule = root.find("sourceConnector/filter/elements")[0]
    assert [v.text for v in rule.find("values")] == ["'A01'", '"it\'s"']
    assert rule.findtext("field") == "msg['MSH']['MSH.9']['MSH.9.2'].toString()"
    ack = root.findtext(
        "sourceConnector/transformer/inboundProperties/responseGenerationProperties/"
        "successfulACKMessage"
    )
    assert ack in (None, "")
    assert root.findtext("properties/messageStorageMode") == "RAW"
    assert root.findtext("deployScript") == "logger.info('deployed');"
    assert root.findtext("preprocessingScript").startswith("// Modify the message")


def test_unknown_parts_survive_a_round_trip() -> None:
    """An unknown connector class, unknown elements and fields come back unchanged."""
    root = _tree(fixture_text())
    connectors = root.find("destinationConnectors")
    http = copy.deepcopy(connectors[1])
    http.find("metaDataId").text = "3"
    http.find("name").text = "Notify portal"
    http.find("transportName").text = "Web Service Sender"  # a transport Pannier does not map
    properties = http.find("properties")
    for child in list(properties)[2:]:
        properties.remove(child)
    properties.set("class", "com.mirth.connect.connectors.ws.WebServiceDispatcherProperties")
    for tag, text in (("wsdlUrl", "https://portal.example.org/adt?wsdl"), ("operation", "send")):
        etree.SubElement(properties, tag).text = text
    headers = etree.SubElement(properties, "headers", {"class": "linked-hash-map"})
    entry = etree.SubElement(headers, "entry")
    etree.SubElement(entry, "string").text = "X-Token"
    etree.SubElement(etree.SubElement(entry, "list"), "string").text = "${token}"
    xslt = etree.SubElement(
        http.find("transformer/elements"),
        "com.mirth.connect.plugins.xsltstep.XsltStep",
        {"version": "4.5.2"},
    )
    for tag, text in (
        ("name", "to CDA"),
        ("sequenceNumber", "0"),
        ("enabled", "true"),
        ("sourceXml", "msg"),
        ("resultVariable", "cda"),
        ("template", "<xsl:stylesheet/>"),
        ("useCustomFactory", "false"),
        ("customFactory", ""),
    ):
        etree.SubElement(xslt, tag).text = text
    rule = etree.SubElement(
        http.find("filter/elements"),
        "com.mirth.connect.plugins.rulebuilder.RuleBuilderRule",
        {"version": "4.5.2"},
    )
    for tag, text in (
        ("name", ""),
        ("sequenceNumber", "0"),
        ("enabled", "false"),
        ("operator", "NONE"),
        ("field", "msg['PID'][1]['PID.5'].toString()"),  # not a plain path: stays JavaScript
        ("condition", "EXISTS"),
    ):
        etree.SubElement(rule, tag).text = text
    etree.SubElement(rule, "values")
    connectors.append(http)
    etree.SubElement(root.find("properties"), "futureField").text = "kept"
    root.find("nextMetaDataId").text = "4"
    text = etree.tostring(root, encoding="unicode")

    channel = channel_from_xml(text)
    portal = channel.destinations[2]
    assert portal.transportName == "Web Service Sender"
    assert portal.properties == {}
    assert portal.queue.queueEnabled is True  # destinationConnectorProperties still mapped
    assert portal.transformer.steps[0].kind == "com.mirth.connect.plugins.xsltstep.XsltStep"
    assert portal.transformer.steps[0].settings["resultVariable"] == "cda"
    assert portal.filter.rules[0].kind == "com.mirth.connect.plugins.rulebuilder.RuleBuilderRule"
    assert portal.filter.rules[0].enabled is False
    exported = channel_to_xml(channel)
    assert tree_differences(_tree(text), _tree(exported)) == []
    assert channel_from_xml(exported) == channel


def test_export_data_can_be_left_out_for_the_channel_table() -> None:
    channel = channel_from_xml(fixture_text())
    assert _tree(channel_to_xml(channel)).find("exportData") is not None
    assert _tree(channel_to_xml(channel, export_data=False)).find("exportData") is None


def test_opaque_store_is_not_part_of_equality() -> None:
    channel = channel_from_xml(fixture_text())
    assert "channel" in mirth_extra(channel)
    assert "connector" in mirth_extra(channel.source)
    assert "element" in mirth_extra(channel.source.filter.rules[0])
    plain = channel_from_dict(tomllib.loads(channel_to_toml(channel)))
    assert mirth_extra(plain) == {}
    assert plain == channel


def test_paths_and_values_translate_both_ways() -> None:
    assert path_to_js("PID.5.1") == "msg['PID']['PID.5']['PID.5.1'].toString()"
    assert js_to_path("msg['PID']['PID.5']['PID.5.1'].toString()") == "PID.5.1"
    assert js_to_path("msg['PID']['PID.5.1'].toString()") is None  # not Mirth's full form
    assert js_to_path("msg['PID'][1]['PID.5'].toString()") is None
    assert js_to_path("channelMap.get('x')") is None
    assert js_to_value("'A01'") == "A01"
    assert js_to_value('"A01"') is None  # would not come back the same
    assert js_to_value("A01") is None
    assert value_to_js("it's") == '"it\'s"' and js_to_value('"it\'s"') == "it's"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<channel", "not well-formed XML"),
        ("<connector/>", "expected a <channel> root element"),
        ('<channel version="4.5.2"><name>x</name></channel>', "<sourceConnector> is missing"),
        (
            "<channel><revision>seven</revision><sourceConnector><transportName>TCP Listener"
            "</transportName></sourceConnector></channel>",
            "channel/revision: expected an integer",
        ),
    ],
)
def test_bad_xml_is_named(text: str, message: str) -> None:
    with pytest.raises(MirthXmlError, match=message):
        channel_from_xml(text)


# --- without kept XML: written from Mirth's defaults ---------------------------------------------


def _python_channel() -> Any:
    return channel_from_dict(
        {
            "id": "0b6a4b1e-52a1-4a53-8d58-3a0f7f3c2d10",
            "name": "Python ADT",
            "properties": {"messageStorageMode": "PRODUCTION"},
            "preprocessingScript": {"code": "return message", "language": "python"},
            "source": {
                "transportName": "TCP Listener",
                "processingThreads": 2,
                "properties": {"port": 6662},
                "filter": {
                    "rules": [
                        {
                            "kind": "rule",
                            "field": "MSH.9.1",
                            "condition": "EQUALS",
                            "values": ["ADT"],
                        },
                        {"kind": "python", "operator": "OR", "code": "msg['MSH.9.2'] == 'A08'"},
                    ]
                },
                "transformer": {
                    "steps": [{"kind": "mapper", "variable": "mrn", "mapping": "PID.3.1"}]
                },
            },
            "destinations": [
                {"name": "out", "transportName": "File Writer", "properties": {"directory": "out"}},
                {
                    "name": "fwd",
                    "transportName": "TCP Sender",
                    "queueEnabled": True,
                    "properties": {"remotePort": "6663"},
                },
            ],
        }
    )


def test_channel_from_toml_exports_with_mirth_defaults_and_reimports_equal() -> None:
    channel = _python_channel()
    exported = channel_to_xml(channel)
    root = _tree(exported)
    source = root.find("sourceConnector")
    assert source.find("properties").get("class") == (
        "com.mirth.connect.connectors.tcp.TcpReceiverProperties"
    )
    assert source.findtext("properties/listenerConnectorProperties/port") == "6662"
    assert source.findtext("properties/transmissionModeProperties/endOfMessageBytes") == "1C0D"
    assert source.findtext("properties/sourceConnectorProperties/processingThreads") == "2"
    assert source.findtext("transformer/inboundProperties/batchProperties/splitType") == (
        "MSH_Segment"
    )
    [file_writer, sender] = root.findall("destinationConnectors/connector")
    assert file_writer.findtext("properties/host") == "out"
    assert file_writer.find("responseTransformer") is not None
    assert sender.findtext("properties/destinationConnectorProperties/queueEnabled") == "true"
    again = channel_from_xml(exported)
    # Mirth's defaults come back as explicit properties (Mirth's text), the rest as written
    assert again.source.properties["port"] == "6662"
    assert again.source.properties["endOfMessageBytes"] == "1C0D"
    assert again.destinations[1].properties["remotePort"] == "6663"
    assert again.source.filter == channel.source.filter
    assert again.source.transformer.steps[0].settings["mapping"] == "PID.3.1"
    assert again.source.source == channel.source.source
    assert [d.queue for d in again.destinations] == [d.queue for d in channel.destinations]
    assert again.preprocessingScript == Script("return message", "javascript")  # see docs
    third = channel_from_xml(channel_to_xml(again))
    assert third == again
    assert tree_differences(_tree(exported), _tree(channel_to_xml(again))) == []


def test_a_connector_of_the_wrong_mode_is_refused() -> None:
    channel = _python_channel()
    channel.destinations[0].transportName = "TCP Listener"
    with pytest.raises(MirthXmlError, match="not a destination connector"):
        channel_to_xml(channel)
    channel = _python_channel()
    channel.destinations[0].transportName = "Carrier Pigeon"
    with pytest.raises(MirthXmlError, match="no Mirth properties class"):
        channel_to_xml(channel)


# --- TOML -----------------------------------------------------------------------------------------


def test_toml_form_loads_back_to_the_same_model(tmp_path: Path) -> None:
    channel = channel_from_xml(fixture_text())
    path = tmp_path / "adt.toml"
    path.write_text(channel_to_toml(channel), encoding="utf-8")
    assert load_channel_file(path) == channel


def test_toml_strings_survive_awkward_text(tmp_path: Path) -> None:
    channel = _python_channel()
    awkward = 'a "quoted" \\ back\\slash\r\n"""triple""" \t tab \x01 é ${x}\n'
    channel.description = awkward
    channel.deployScript = Script(awkward, "python")
    channel.source.properties["weird key.x"] = awkward
    channel.source.transformer.steps.append(
        Element("python", name=awkward, settings={"code": awkward, "n": 1.5, "m": {"a": [1]}})
    )
    path = tmp_path / "c.toml"
    path.write_text(channel_to_toml(channel), encoding="utf-8")
    assert load_channel_file(path) == channel


# --- pannier channel ------------------------------------------------------------------------------


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    command = channel_command()
    parser = argparse.ArgumentParser(prog="pannier channel")
    command.configure(parser)
    status = command.run(parser.parse_args(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_channel_import_writes_a_toml_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "adt.toml"
    status, out, err = _run(["import", str(FIXTURE), "--to", str(target)], capsys)
    assert (status, err) == (0, "")
    assert str(target) in out and "'ADT Router'" in out
    assert load_channel_file(target) == channel_from_xml(fixture_text())
    status, _, err = _run(["import", str(FIXTURE), "--to", str(target)], capsys)
    assert status == 2 and "exists; use --force" in err
    assert _run(["import", str(FIXTURE), "--to", str(target), "--force"], capsys)[0] == 0


def test_channel_export_prints_xml_and_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml_path = tmp_path / "adt.toml"
    toml_path.write_text(channel_to_toml(channel_from_xml(fixture_text())), encoding="utf-8")
    status, out, _ = _run(["export", str(toml_path), "--format", "toml"], capsys)
    assert status == 0 and out == toml_path.read_text(encoding="utf-8")
    status, out, _ = _run(["export", str(toml_path), "--format", "xml"], capsys)
    assert status == 0 and channel_from_xml(out) == load_channel_file(toml_path)
    status, out, _ = _run(["export", str(FIXTURE), "--format", "xml"], capsys)
    assert status == 0 and tree_differences(_tree(fixture_text()), _tree(out)) == []
    status, out, _ = _run(["export", str(FIXTURE), "--no-export-data"], capsys)
    assert status == 0 and "<exportData>" not in out
    latin = tmp_path / "latin.xml"
    latin.write_bytes(
        b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        + fixture_text().replace("ADT Router", "ADT R\u00e9seau").encode("latin-1")
    )
    status, out, _ = _run(["export", str(latin), "--format", "toml"], capsys)
    assert status == 0 and 'name = "ADT R\u00e9seau"' in out


def test_channel_export_names_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[source]\ntransportName = "TCP Listener"\nprot = 1\n')
    status, out, err = _run(["export", str(bad)], capsys)
    assert status == 2 and out == ""
    assert str(bad) in err and "'prot'" in err
    status, _, err = _run(["export", str(tmp_path / "missing.xml")], capsys)
    assert status == 2 and "missing.xml: cannot read" in err


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and configuration: the installed plugins, data in tmp."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PANNIER_CONFIG", raising=False)
    config = tmp_path / "pannier.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n')
    return config


def test_channel_validate_accepts_good_channels(
    isolated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    imported = channel_from_xml(fixture_text())
    imported.source.transformer.steps = [  # the kernel runs no JavaScript
        s for s in imported.source.transformer.steps if s.kind != "javascript"
    ]
    imported.destinations[1].responseTransformer.steps = []
    from_mirth = tmp_path / "from-mirth.toml"
    from_mirth.write_text(channel_to_toml(imported), encoding="utf-8")
    python_channel = _python_channel()
    python_channel.preprocessingScript = Script()  # Mirth XML does not say a script is Python
    python = tmp_path / "python.xml"
    python.write_text(channel_to_xml(python_channel), encoding="utf-8")
    example = ROOT / "examples" / "channels" / "adt-to-file.toml"
    status, out, err = _run(
        ["validate", str(from_mirth), str(python), str(example), "--config", str(isolated)], capsys
    )
    assert (status, err) == (0, "")
    assert out.count(" OK ") == 3


def test_channel_validate_names_the_file_and_key(
    isolated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong.toml"
    channel = _python_channel()
    channel.preprocessingScript = Script()
    channel.source.properties["prot"] = "6661"
    wrong.write_text(channel_to_toml(channel), encoding="utf-8")
    status, out, err = _run(
        ["validate", str(wrong), str(FIXTURE), "--config", str(isolated)], capsys
    )
    assert status == 2 and out == ""
    first, second = err.strip().splitlines()
    assert str(wrong) in first and "'prot'" in first
    # the hand-written Mirth channel has JavaScript steps: named, not run
    assert str(FIXTURE) in second and "Normalise sending facility" in second


def test_channel_validate_reports_a_connector_refusing_its_properties(
    isolated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A connector that refuses a property when it is built (a TLS certificate file that does
    not exist) is a deploy error naming the channel, the connector and the file — not a
    traceback."""
    channel = _python_channel()
    channel.preprocessingScript = Script()
    missing = tmp_path / "no-such-cert.pem"
    channel.source.properties.update(
        tlsEnabled="true", tlsCertFile=str(missing), tlsKeyFile=str(missing)
    )
    path = tmp_path / "tls.toml"
    path.write_text(channel_to_toml(channel), encoding="utf-8")
    status, out, err = _run(["validate", str(path), "--config", str(isolated)], capsys)
    assert status == 2 and out == ""
    assert str(path) in err and "source" in err and "no-such-cert.pem" in err
    assert "Traceback" not in err


# --- more transports: File Reader, HTTP Listener/Sender, Channel Reader/Writer --------------------
#
# Each fragment is a connector's <properties> as Mirth 4.5.2 writes it (field order and nesting
# of its properties class, written by hand from Mirth's classes and exports; see
# tests/fixtures/channels/README.md), with some values changed from Mirth's defaults.

_RESOURCES = (
    '<resourceIds class="linked-hash-map"><entry><string>Default Resource</string>'
    "<string>[Default Resource]</string></entry></resourceIds>"
)
_SOURCE_SETTINGS = (
    '<sourceConnectorProperties version="4.5.2"><responseVariable>None</responseVariable>'
    "<respondAfterProcessing>true</respondAfterProcessing><processBatch>false</processBatch>"
    "<firstResponse>false</firstResponse><processingThreads>1</processingThreads>"
    f"{_RESOURCES}<queueBufferSize>1000</queueBufferSize></sourceConnectorProperties>"
)
_QUEUE_SETTINGS = (
    '<destinationConnectorProperties version="4.5.2"><queueEnabled>false</queueEnabled>'
    "<sendFirst>false</sendFirst><retryIntervalMillis>10000</retryIntervalMillis>"
    "<regenerateTemplate>false</regenerateTemplate><retryCount>0</retryCount>"
    "<rotate>false</rotate><includeFilterTransformer>false</includeFilterTransformer>"
    "<threadCount>1</threadCount><threadAssignmentVariable/><validateResponse>false"
    f"</validateResponse>{_RESOURCES}<queueBufferSize>1000</queueBufferSize>"
    "<reattachAttachments>true</reattachAttachments></destinationConnectorProperties>"
)
_POLL = (
    '<pollConnectorProperties version="4.5.2"><pollingType>INTERVAL</pollingType>'
    "<pollOnStart>true</pollOnStart><pollingFrequency>2000</pollingFrequency>"
    "<pollingHour>0</pollingHour><pollingMinute>0</pollingMinute><cronJobs/>"
    "<pollConnectorPropertiesAdvanced><weekly>true</weekly><inactiveDays>"
    + "<boolean>false</boolean>"
    * 8
    + "</inactiveDays><dayOfMonth>1</dayOfMonth><allDay>true</allDay>"
    "<startingHour>8</startingHour><startingMinute>0</startingMinute><endingHour>17</endingHour>"
    "<endingMinute>0</endingMinute></pollConnectorPropertiesAdvanced></pollConnectorProperties>"
)
_BINARY = "application/.*(?&lt;!json|xml)$|image/.*|video/.*|audio/.*"

FRAGMENTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "File Reader": (
        f"""<properties class="com.mirth.connect.connectors.file.FileReceiverProperties"
        version="4.5.2"><pluginProperties/>{_POLL}{_SOURCE_SETTINGS}<scheme>FILE</scheme>
        <host>/var/spool/adt/in</host><fileFilter>*.hl7</fileFilter><regex>false</regex>
        <directoryRecursion>false</directoryRecursion><ignoreDot>true</ignoreDot>
        <anonymous>true</anonymous><username>anonymous</username><password>anonymous</password>
        <timeout>10000</timeout><secure>true</secure><passive>true</passive>
        <validateConnection>true</validateConnection>
        <afterProcessingAction>MOVE</afterProcessingAction><moveToDirectory>/var/spool/adt/done</moveToDirectory>
        <moveToFileName>${{originalFilename}}.done</moveToFileName>
        <errorReadingAction>DELETE</errorReadingAction>
        <errorResponseAction>AFTER_PROCESSING</errorResponseAction>
        <errorMoveToDirectory/><errorMoveToFileName/><checkFileAge>false</checkFileAge>
        <fileAge>1000</fileAge><fileSizeMinimum>0</fileSizeMinimum><fileSizeMaximum/>
        <ignoreFileSizeMaximum>true</ignoreFileSizeMaximum><sortBy>name</sortBy>
        <binary>false</binary><charsetEncoding>ISO-8859-1</charsetEncoding></properties>""",
        "SOURCE",
        {
            "pollingFrequency": "2000",
            "pollOnStart": "true",
            "directory": "/var/spool/adt/in",
            "fileFilter": "*.hl7",
            "regex": "false",
            "directoryRecursion": "false",
            "ignoreDot": "true",
            "afterProcessingAction": "MOVE",
            "moveToDirectory": "/var/spool/adt/done",
            "moveToFileName": "${originalFilename}.done",
            "errorReadingAction": "DELETE",
            "errorResponseAction": "AFTER_PROCESSING",
            "errorMoveToDirectory": "",
            "errorMoveToFileName": "",
            "checkFileAge": "false",
            "fileAge": "1000",
            "sortBy": "name",
            "binary": "false",
            "charsetEncoding": "ISO-8859-1",
        },
    ),
    "HTTP Listener": (
        f"""<properties class="com.mirth.connect.connectors.http.HttpReceiverProperties"
        version="4.5.2"><pluginProperties>
        <com.mirth.connect.plugins.httpauth.NoneHttpAuthProperties version="4.5.2">
        <authType>NONE</authType></com.mirth.connect.plugins.httpauth.NoneHttpAuthProperties>
        </pluginProperties><listenerConnectorProperties version="4.5.2"><host>0.0.0.0</host>
        <port>8081</port></listenerConnectorProperties>{_SOURCE_SETTINGS}<xmlBody>false</xmlBody>
        <parseMultipart>true</parseMultipart><includeMetadata>true</includeMetadata>
        <binaryMimeTypes>{_BINARY}</binaryMimeTypes>
        <binaryMimeTypesRegex>true</binaryMimeTypesRegex><responseContentType>application/json</responseContentType>
        <responseDataTypeBinary>false</responseDataTypeBinary>
        <responseStatusCode>202</responseStatusCode><responseHeaders class="linked-hash-map">
        <entry><string>X-Engine</string><list><string>pannier</string></list></entry>
        <entry><string>Cache-Control</string><list><string>no-store</string>
        <string>no-cache</string></list></entry></responseHeaders><responseHeadersVariable/>
        <useResponseHeadersVariable>false</useResponseHeadersVariable><charset>UTF-8</charset>
        <contextPath>/adt</contextPath><timeout>60000</timeout><staticResources/>
        </properties>""",
        "SOURCE",
        {
            "host": "0.0.0.0",
            "port": "8081",
            "xmlBody": "false",
            "parseMultipart": "true",
            "includeMetadata": "true",
            "binaryMimeTypes": "application/.*(?<!json|xml)$|image/.*|video/.*|audio/.*",
            "binaryMimeTypesRegex": "true",
            "responseContentType": "application/json",
            "responseDataTypeBinary": "false",
            "responseStatusCode": "202",
            "responseHeaders": {"X-Engine": ["pannier"], "Cache-Control": ["no-store", "no-cache"]},
            "charset": "UTF-8",
            "contextPath": "/adt",
            "timeout": "60000",
        },
    ),
    "HTTP Sender": (
        f"""<properties class="com.mirth.connect.connectors.http.HttpDispatcherProperties"
        version="4.5.2"><pluginProperties/>{_QUEUE_SETTINGS}
        <host>https://emr.example.org/adt/${{mrn}}</host><useProxyServer>false</useProxyServer>
        <proxyAddress/><proxyPort/><method>put</method><headers class="linked-hash-map"><entry>
        <string>X-Token</string><list><string>${{token}}</string></list></entry></headers>
        <parameters class="linked-hash-map"/><useHeadersVariable>false</useHeadersVariable>
        <headersVariable/><useParametersVariable>false</useParametersVariable>
        <parametersVariable/><responseXmlBody>false</responseXmlBody>
        <responseParseMultipart>true</responseParseMultipart>
        <responseIncludeMetadata>false</responseIncludeMetadata>
        <responseBinaryMimeTypes>{_BINARY}</responseBinaryMimeTypes>
        <responseBinaryMimeTypesRegex>true</responseBinaryMimeTypesRegex>
        <multipart>false</multipart><useAuthentication>true</useAuthentication>
        <authenticationType>Digest</authenticationType>
        <usePreemptiveAuthentication>false</usePreemptiveAuthentication>
        <username>pannier</username><password>s3cret</password>
        <content>${{message.encodedData}}</content><contentType>application/hl7-v2</contentType>
        <dataTypeBinary>false</dataTypeBinary><charset>UTF-8</charset>
        <socketTimeout>10000</socketTimeout></properties>""",
        "DESTINATION",
        {
            "host": "https://emr.example.org/adt/${mrn}",
            "useProxyServer": "false",
            "method": "put",
            "headers": {"X-Token": ["${token}"]},
            "parameters": {},
            "responseXmlBody": "false",
            "multipart": "false",
            "useAuthentication": "true",
            "authenticationType": "Digest",
            "usePreemptiveAuthentication": "false",
            "username": "pannier",
            "password": "s3cret",
            "content": "${message.encodedData}",
            "contentType": "application/hl7-v2",
            "dataTypeBinary": "false",
            "charset": "UTF-8",
            "socketTimeout": "10000",
        },
    ),
    "Database Reader": (
        f"""<properties class="com.mirth.connect.connectors.jdbc.DatabaseReceiverProperties"
        version="4.5.2"><pluginProperties/>{_POLL}{_SOURCE_SETTINGS}
        <driver>org.postgresql.Driver</driver><url>jdbc:postgresql://db.example:5432/lab</url>
        <username>mirth</username><password>s3cret</password>
        <select>SELECT id, mrn, result FROM lab_results WHERE sent = false</select>
        <update>UPDATE lab_results SET sent = true WHERE id = ${{id}}</update>
        <useScript>false</useScript><aggregateResults>true</aggregateResults>
        <cacheResults>true</cacheResults><keepConnectionOpen>false</keepConnectionOpen>
        <updateMode>3</updateMode><retryCount>3</retryCount><retryInterval>10000</retryInterval>
        <fetchSize>500</fetchSize><encoding>DEFAULT_ENCODING</encoding></properties>""",
        "SOURCE",
        {
            "pollingFrequency": "2000",
            "pollOnStart": "true",
            "driver": "org.postgresql.Driver",
            "url": "jdbc:postgresql://db.example:5432/lab",
            "username": "mirth",
            "password": "s3cret",
            "select": "SELECT id, mrn, result FROM lab_results WHERE sent = false",
            "update": "UPDATE lab_results SET sent = true WHERE id = ${id}",
            "useScript": "false",
            "aggregateResults": "true",
            "cacheResults": "true",
            "keepConnectionOpen": "false",
            "updateMode": "3",
            "retryCount": "3",
            "retryInterval": "10000",
            "fetchSize": "500",
            "encoding": "DEFAULT_ENCODING",
        },
    ),
    "Database Writer": (
        f"""<properties class="com.mirth.connect.connectors.jdbc.DatabaseDispatcherProperties"
        version="4.5.2"><pluginProperties/>{_QUEUE_SETTINGS}
        <driver>com.mysql.cj.jdbc.Driver</driver><url>jdbc:mysql://db.example:3306/his</url><username>his</username>
        <password/><query>INSERT INTO adt (mrn, event) VALUES (${{mrn}}, ${{event}})</query>
        <useScript>false</useScript></properties>""",
        "DESTINATION",
        {
            "driver": "com.mysql.cj.jdbc.Driver",
            "url": "jdbc:mysql://db.example:3306/his",
            "username": "his",
            "password": "",
            "query": "INSERT INTO adt (mrn, event) VALUES (${mrn}, ${event})",
            "useScript": "false",
        },
    ),
    "Channel Reader": (
        f"""<properties class="com.mirth.connect.connectors.vm.VmReceiverProperties"
        version="4.5.2"><pluginProperties/>{_SOURCE_SETTINGS}</properties>""",
        "SOURCE",
        {},
    ),
    "Channel Writer": (
        f"""<properties class="com.mirth.connect.connectors.vm.VmDispatcherProperties"
        version="4.5.2"><pluginProperties/>{_QUEUE_SETTINGS}
        <channelId>3c1e7a52-2d7b-4b43-9a3e-6f5e1f0d2a10</channelId>
        <channelTemplate>${{message.rawData}}</channelTemplate><mapVariables>
        <string>mrn</string><string>facility</string></mapVariables></properties>""",
        "DESTINATION",
        {
            "channelId": "3c1e7a52-2d7b-4b43-9a3e-6f5e1f0d2a10",
            "channelTemplate": "${message.rawData}",
            "mapVariables": ["mrn", "facility"],
        },
    ),
}


def _channel_with(transport: str) -> str:
    """The two-destination fixture with its source (or first destination) turned into a
    ``transport`` connector with that transport's Mirth properties fragment."""
    fragment, mode, _ = FRAGMENTS[transport]
    root = _tree(fixture_text())
    if mode == "SOURCE":
        connector = root.find("sourceConnector")
    else:
        connector = root.find("destinationConnectors")[0]
    connector.find("transportName").text = transport
    old = connector.find("properties")
    connector.replace(old, _tree(fragment))
    return etree.tostring(root, encoding="unicode")


def _connector(channel: Any, transport: str) -> Any:
    return channel.source if FRAGMENTS[transport][1] == "SOURCE" else channel.destinations[0]


def _shape(node: Any) -> list[Any]:
    """Tags and attribute names, recursively; the entries of Mirth's maps and lists (the
    values) are left out."""
    if node.get("class") == "linked-hash-map" or node.tag == "mapVariables":
        return [node.tag, sorted(node.attrib)]
    return [node.tag, sorted(node.attrib), [_shape(child) for child in node]]


@pytest.mark.parametrize("transport", list(FRAGMENTS))
def test_mirth_connector_properties_import(transport: str) -> None:
    connector = _connector(channel_from_xml(_channel_with(transport)), transport)
    assert connector.transportName == transport
    assert connector.properties == FRAGMENTS[transport][2]


@pytest.mark.parametrize("transport", list(FRAGMENTS))
def test_mirth_connector_properties_export_back_the_same_tree(transport: str) -> None:
    text = _channel_with(transport)
    channel = channel_from_xml(text)
    assert tree_differences(_tree(text), _tree(channel_to_xml(channel))) == []
    # values changed in the model land in Mirth's places, in Mirth's form
    connector = _connector(channel, transport)
    for key, value in FRAGMENTS[transport][2].items():
        if isinstance(value, dict):
            connector.properties[key] = {"X-New": ["1", "2"]}
        elif isinstance(value, list):
            connector.properties[key] = ["only"]
        else:
            connector.properties[key] = f"changed-{key}"
    again = _connector(channel_from_xml(channel_to_xml(channel)), transport)
    assert again.properties == connector.properties


@pytest.mark.parametrize("transport", list(FRAGMENTS))
def test_pannier_channel_exports_mirths_full_default_properties(transport: str) -> None:
    fragment, mode, expected = FRAGMENTS[transport]
    given = dict(list(expected.items())[:2])  # a channel file sets only a few properties
    connector = {"transportName": transport, "properties": given}
    model: dict[str, Any] = {"id": "c0ffee00-0000-4000-8000-000000000001", "name": "built"}
    if mode == "SOURCE":
        model["source"] = connector
        model["destinations"] = [{"name": "out", "transportName": "File Writer"}]
    else:
        model["source"] = {"transportName": "Channel Reader"}
        model["destinations"] = [{"name": "out", **connector}]
    channel = channel_from_dict(model)
    exported = _tree(channel_to_xml(channel))
    xpath = "sourceConnector" if mode == "SOURCE" else "destinationConnectors/connector"
    properties = exported.find(f"{xpath}/properties")
    mirth = _tree(fragment)
    assert properties.get("class") == mirth.get("class")
    assert properties.get("version") == "4.5.2"
    assert _shape(properties) == _shape(mirth)
    again = _connector(channel_from_xml(etree.tostring(exported, encoding="unicode")), transport)
    assert {key: again.properties[key] for key in given} == {
        key: value if isinstance(value, (dict, list)) else str(value)
        for key, value in given.items()
    }


def test_mirths_defaults_fill_a_pannier_connector_unless_plugin_defaults_are_given() -> None:
    channel = channel_from_dict(
        {
            "id": "c0ffee00-0000-4000-8000-000000000002",
            "name": "to portal",
            "source": {"transportName": "Channel Reader"},
            "destinations": [
                {
                    "name": "portal",
                    "transportName": "HTTP Sender",
                    "properties": {"host": "http://127.0.0.1:8080/"},
                }
            ],
        }
    )
    path = "destinationConnectors/connector/properties"
    plain = _tree(channel_to_xml(channel)).find(path)
    assert plain.findtext("content") in (None, "")  # Mirth's HttpDispatcherProperties default
    assert plain.findtext("socketTimeout") == "30000"
    plugin = {"HTTP Sender": {"content": "${message.encodedData}", "maxBodySize": 1}}
    filled = _tree(channel_to_xml(channel, properties_defaults=plugin)).find(path)
    assert filled.findtext("content") == "${message.encodedData}"
    assert filled.find("maxBodySize") is None  # a default without a Mirth place is not written
    assert filled.findtext("host") == "http://127.0.0.1:8080/"


def test_properties_without_a_mirth_place_are_warned_about_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = channel_from_dict(
        {
            "id": "c0ffee00-0000-4000-8000-000000000003",
            "name": "http in",
            "source": {
                "transportName": "HTTP Listener",
                "properties": {"port": 8082, "maxBodySize": 1024, "tlsEnabled": True},
            },
            "destinations": [],
        }
    )
    with caplog.at_level("WARNING", logger="pannier.model.mirth_xml"):
        properties = _tree(channel_to_xml(channel)).find("sourceConnector/properties")
    assert properties.findtext("listenerConnectorProperties/port") == "8082"
    assert properties.find("maxBodySize") is None and properties.find("tlsEnabled") is None
    assert "'maxBodySize' has no place in Mirth's HTTP Listener" in caplog.text
    assert "'tlsEnabled' has no place" in caplog.text
    # the engine merges the plugin's defaults in; a Pannier-only key left at its default
    # is not worth a warning on every deploy
    caplog.clear()
    plugin = {"HTTP Listener": {"port": 80, "maxBodySize": 1024, "tlsEnabled": False}}
    with caplog.at_level("WARNING", logger="pannier.model.mirth_xml"):
        channel_to_xml(channel, properties_defaults=plugin)
    assert "maxBodySize" not in caplog.text
    assert "'tlsEnabled' has no place" in caplog.text


def test_a_table_property_that_is_not_a_table_is_named() -> None:
    channel = channel_from_dict(
        {
            "id": "c0ffee00-0000-4000-8000-000000000004",
            "name": "bad headers",
            "source": {"transportName": "Channel Reader"},
            "destinations": [
                {
                    "name": "portal",
                    "transportName": "HTTP Sender",
                    "properties": {"headers": "X-Token: 1"},
                }
            ],
        }
    )
    with pytest.raises(MirthXmlError, match=r"'portal' property 'headers': expected a table"):
        channel_to_xml(channel)


def test_a_plugin_connector_exports_under_its_class_with_every_property() -> None:
    """A third-party connector (``ConnectorType.mirth_properties_class``): Mirth's common
    part with Mirth's field order, then the plugin's defaults overlaid by the channel's values,
    one leaf per key; a table becomes a Mirth map, a list a list of strings."""
    channel = channel_from_dict(
        {
            "id": "c0ffee00-0000-4000-8000-000000000005",
            "name": "plugin",
            "source": {"transportName": "Channel Reader"},
            "destinations": [
                {
                    "name": "lines",
                    "transportName": "Line Sender",
                    "properties": {"port": 7001, "tags": ["a", "b"]},
                }
            ],
        }
    )
    classes = {"Line Sender": "org.example.LineDispatcherProperties"}
    defaults = {"Line Sender": {"host": "127.0.0.1", "port": 7000, "extra": {"k": "v"}}}
    root = _tree(channel_to_xml(channel, properties_classes=classes, properties_defaults=defaults))
    properties = root.find("destinationConnectors/connector/properties")
    assert properties.get("class") == "org.example.LineDispatcherProperties"
    assert [c.tag for c in properties] == [
        "pluginProperties",
        "destinationConnectorProperties",
        "host",
        "port",
        "extra",
        "tags",
    ]
    queue = _tree(fixture_text()).find("destinationConnectors/connector/properties")
    assert _shape(properties.find("destinationConnectorProperties")) == _shape(
        queue.find("destinationConnectorProperties")
    )
    assert (properties.findtext("host"), properties.findtext("port")) == ("127.0.0.1", "7001")
    assert properties.find("extra").get("class") == "linked-hash-map"
    assert properties.findtext("extra/entry/list/string") == "v"
    assert [s.text for s in properties.find("tags")] == ["a", "b"]
