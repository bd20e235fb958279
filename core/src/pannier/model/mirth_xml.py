"""Mirth Connect 4.5.2 channel XML (XStream, mirth-compat.md §4) ⇄ the channel model, and
the model → TOML channel file writer.

``channel_from_xml`` maps what Pannier understands onto :class:`~pannier.model.channel.Channel`
and keeps everything else: each imported object carries the XML it came from (with the parts
other model objects own cut out) in an opaque ``mirth_extra`` mapping, and
``channel_to_xml`` writes the model's values into that XML, so unknown fields, unknown
connector property classes, unknown filter/transformer elements, ``exportData`` and field
order all survive a round trip. Objects without that XML (built from a TOML file) are written
from Mirth 4.5.2's defaults.

What is mapped:

* channel: ``id``, ``nextMetaDataId``, ``name``, ``description``, ``revision``, the four
  scripts (language ``javascript``), ``properties`` (:class:`ChannelProperties`, including
  ``metaDataColumns``);
* connectors: ``metaDataId``, ``name``, ``transportName``, ``mode``, ``enabled``,
  ``waitForPrevious``, ``sourceConnectorProperties`` → ``Connector.source``,
  ``destinationConnectorProperties`` → ``Connector.queue``, the transformer's
  ``inboundDataType``/``outboundDataType``, the HL7 v2 data type properties Pannier reads
  (only those that differ from Mirth's defaults land in ``inboundProperties``/
  ``outboundProperties``), and the connector properties of :data:`CONNECTOR_PROPERTIES`
  (TCP Listener/Sender, File Reader/Writer, HTTP Listener/Sender, Database Reader/Writer,
  Channel Reader/Writer) as
  strings, as Mirth stores them (Mirth's maps and lists as tables and lists);
* filter rules and transformer steps: ``RuleBuilderRule`` → kind ``rule``, ``MapperStep`` →
  kind ``mapper``, ``JavaScriptRule``/``JavaScriptStep`` → kind ``javascript`` (``code``);
  any other element class becomes kind = its class name with its leaf fields as settings.
  Elements of other kinds (``python``) are written as ``<pannier-element kind="…">``, which
  Pannier reads back but Java Mirth cannot load.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, get_type_hints

from lxml import etree

from pannier.model.channel import (
    Channel,
    ChannelProperties,
    Connector,
    Element,
    Filter,
    MetaDataColumn,
    QueueSettings,
    Script,
    SourceSettings,
    Transformer,
)
from pannier.model.status import StorageMode

log = logging.getLogger("pannier.model.mirth_xml")

MIRTH_VERSION = "4.5.2"
EXTRA_ATTRIBUTE = "mirth_extra"
"""Name of the opaque per-object store (``dict[str, str]`` of raw XML keyed by role)."""

XmlElement = Any  # lxml.etree._Element; lxml ships no type information


class MirthXmlError(ValueError):
    """A channel XML cannot be read or a model cannot be written as Mirth XML."""


# --- opaque store ---------------------------------------------------------------------------------


def mirth_extra(obj: object) -> dict[str, str]:
    """The raw Mirth XML kept for ``obj`` (a Channel, Connector or Element), created empty.

    Stored as an instance attribute so it does not take part in model equality; when the model
    grows a ``mirth_extra`` field (``compare=False``) this keeps working unchanged.
    """
    extra = getattr(obj, EXTRA_ATTRIBUTE, None)
    if extra is None:
        extra = {}
        setattr(obj, EXTRA_ATTRIBUTE, extra)
    return extra


# --- Mirth names ----------------------------------------------------------------------------------

_TCP_MLLP = {
    "pluginPointName": "transmissionModeProperties/pluginPointName",
    "startOfMessageBytes": "transmissionModeProperties/startOfMessageBytes",
    "endOfMessageBytes": "transmissionModeProperties/endOfMessageBytes",
    "useMLLPv2": "transmissionModeProperties/useMLLPv2",
    "ackBytes": "transmissionModeProperties/ackBytes",  # MLLPv2 commit acknowledgement
    "nackBytes": "transmissionModeProperties/nackBytes",
    "maxRetries": "transmissionModeProperties/maxRetries",
}

CONNECTOR_PROPERTIES: dict[str, tuple[str, dict[str, str]]] = {
    "TCP Listener": (
        "com.mirth.connect.connectors.tcp.TcpReceiverProperties",
        {
            "host": "listenerConnectorProperties/host",
            "port": "listenerConnectorProperties/port",
            **_TCP_MLLP,
            "serverMode": "serverMode",
            "receiveTimeout": "receiveTimeout",
            "bufferSize": "bufferSize",
            "maxConnections": "maxConnections",
            "keepConnectionOpen": "keepConnectionOpen",
            "dataTypeBinary": "dataTypeBinary",
            "charsetEncoding": "charsetEncoding",
            "respondOnNewConnection": "respondOnNewConnection",
        },
    ),
    "TCP Sender": (
        "com.mirth.connect.connectors.tcp.TcpDispatcherProperties",
        {
            **_TCP_MLLP,
            "remoteAddress": "remoteAddress",
            "remotePort": "remotePort",
            "overrideLocalBinding": "overrideLocalBinding",
            "localAddress": "localAddress",
            "localPort": "localPort",
            "sendTimeout": "sendTimeout",
            "bufferSize": "bufferSize",
            "keepConnectionOpen": "keepConnectionOpen",
            "responseTimeout": "responseTimeout",
            "ignoreResponse": "ignoreResponse",
            "queueOnResponseTimeout": "queueOnResponseTimeout",
            "dataTypeBinary": "dataTypeBinary",
            "charsetEncoding": "charsetEncoding",
            "template": "template",
        },
    ),
    "File Writer": (
        "com.mirth.connect.connectors.file.FileDispatcherProperties",
        {
            "directory": "host",  # Mirth calls the File Writer's directory "host"
            "outputPattern": "outputPattern",
            "outputAppend": "outputAppend",
            "errorOnExists": "errorOnExists",
            "temporary": "temporary",
            "charsetEncoding": "charsetEncoding",
            "template": "template",
        },
    ),
    "File Reader": (
        "com.mirth.connect.connectors.file.FileReceiverProperties",
        {
            "pollingFrequency": "pollConnectorProperties/pollingFrequency",
            "pollOnStart": "pollConnectorProperties/pollOnStart",
            "directory": "host",  # as the File Writer
            "fileFilter": "fileFilter",
            "regex": "regex",
            "directoryRecursion": "directoryRecursion",
            "ignoreDot": "ignoreDot",
            "afterProcessingAction": "afterProcessingAction",
            "moveToDirectory": "moveToDirectory",
            "moveToFileName": "moveToFileName",
            "errorReadingAction": "errorReadingAction",
            "errorResponseAction": "errorResponseAction",
            "errorMoveToDirectory": "errorMoveToDirectory",
            "errorMoveToFileName": "errorMoveToFileName",
            "checkFileAge": "checkFileAge",
            "fileAge": "fileAge",
            "sortBy": "sortBy",
            "binary": "binary",
            "charsetEncoding": "charsetEncoding",
        },
    ),
    "HTTP Listener": (
        "com.mirth.connect.connectors.http.HttpReceiverProperties",
        {
            "host": "listenerConnectorProperties/host",
            "port": "listenerConnectorProperties/port",
            "xmlBody": "xmlBody",
            "parseMultipart": "parseMultipart",
            "includeMetadata": "includeMetadata",
            "binaryMimeTypes": "binaryMimeTypes",
            "binaryMimeTypesRegex": "binaryMimeTypesRegex",
            "responseContentType": "responseContentType",
            "responseDataTypeBinary": "responseDataTypeBinary",
            "responseStatusCode": "responseStatusCode",
            "responseHeaders": "responseHeaders",  # a name -> list of values table
            "charset": "charset",
            "contextPath": "contextPath",
            "timeout": "timeout",
        },
    ),
    "HTTP Sender": (
        "com.mirth.connect.connectors.http.HttpDispatcherProperties",
        {
            "host": "host",  # the URL
            "useProxyServer": "useProxyServer",
            "method": "method",
            "headers": "headers",  # a name -> list of values table
            "parameters": "parameters",  # a name -> list of values table
            "responseXmlBody": "responseXmlBody",
            "multipart": "multipart",
            "useAuthentication": "useAuthentication",
            "authenticationType": "authenticationType",
            "usePreemptiveAuthentication": "usePreemptiveAuthentication",
            "username": "username",
            "password": "password",
            "content": "content",
            "contentType": "contentType",
            "dataTypeBinary": "dataTypeBinary",
            "charset": "charset",
            "socketTimeout": "socketTimeout",
        },
    ),
    "Database Reader": (
        "com.mirth.connect.connectors.jdbc.DatabaseReceiverProperties",
        {
            "pollingFrequency": "pollConnectorProperties/pollingFrequency",
            "pollOnStart": "pollConnectorProperties/pollOnStart",
            "driver": "driver",
            "url": "url",
            "username": "username",
            "password": "password",
            "select": "select",
            "update": "update",
            "useScript": "useScript",
            "aggregateResults": "aggregateResults",
            "cacheResults": "cacheResults",
            "keepConnectionOpen": "keepConnectionOpen",
            "updateMode": "updateMode",
            "retryCount": "retryCount",
            "retryInterval": "retryInterval",
            "fetchSize": "fetchSize",
            "encoding": "encoding",
        },
    ),
    "Database Writer": (
        "com.mirth.connect.connectors.jdbc.DatabaseDispatcherProperties",
        {
            "driver": "driver",
            "url": "url",
            "username": "username",
            "password": "password",
            "query": "query",
            "useScript": "useScript",
        },
    ),
    "Channel Reader": ("com.mirth.connect.connectors.vm.VmReceiverProperties", {}),
    "Channel Writer": (
        "com.mirth.connect.connectors.vm.VmDispatcherProperties",
        {
            "channelId": "channelId",
            "channelTemplate": "channelTemplate",
            "mapVariables": "mapVariables",  # a list of names
        },
    ),
}
"""Per transport: Mirth's properties class, and Pannier property key → path under
``<properties>``. Fields not listed are kept verbatim in the connector's opaque XML.

Values are text, as Mirth stores them, except for the structured fields: a Mirth
``Map<String, List<String>>`` (the template's element has ``class="linked-hash-map"``:
HTTP headers and parameters) is a table of name → list of values, and a ``List<String>``
(:data:`_STRING_LISTS`, the Channel Writer's ``mapVariables``) is a list of text."""

_STRING_LISTS = frozenset({"mapVariables"})
"""Paths under ``<properties>`` that hold an XStream ``List<String>``."""

_DATATYPE_CLASSES = {
    "HL7V2": "com.mirth.connect.plugins.datatypes.hl7v2.HL7v2DataTypeProperties",
    "HL7V3": "com.mirth.connect.plugins.datatypes.hl7v3.HL7V3DataTypeProperties",
    "XML": "com.mirth.connect.plugins.datatypes.xml.XMLDataTypeProperties",
    "JSON": "com.mirth.connect.plugins.datatypes.json.JSONDataTypeProperties",
    "DELIMITED": "com.mirth.connect.plugins.datatypes.delimited.DelimitedDataTypeProperties",
    "RAW": "com.mirth.connect.plugins.datatypes.raw.RawDataTypeProperties",
    "EDI/X12": "com.mirth.connect.plugins.datatypes.edi.EDIDataTypeProperties",
    "NCPDP": "com.mirth.connect.plugins.datatypes.ncpdp.NCPDPDataTypeProperties",
    "DICOM": "com.mirth.connect.plugins.datatypes.dicom.DICOMDataTypeProperties",
}

_HL7V2_PROPERTIES: dict[str, tuple[str, str]] = {
    "handleRepetitions": ("serializationProperties/handleRepetitions", "true"),
    "handleSubcomponents": ("serializationProperties/handleSubcomponents", "true"),
    "useStrictParser": ("serializationProperties/useStrictParser", "false"),
    "useStrictValidation": ("serializationProperties/useStrictValidation", "false"),
    "stripNamespaces": ("serializationProperties/stripNamespaces", "false"),
    "segmentDelimiter": ("serializationProperties/segmentDelimiter", "\\r"),
    "convertLineBreaks": ("serializationProperties/convertLineBreaks", "true"),
    "splitType": ("batchProperties/splitType", "MSH_Segment"),
    "batchScript": ("batchProperties/batchScript", ""),
    "successfulACKCode": ("responseGenerationProperties/successfulACKCode", "AA"),
    "successfulACKMessage": ("responseGenerationProperties/successfulACKMessage", ""),
    "errorACKCode": ("responseGenerationProperties/errorACKCode", "AE"),
    "errorACKMessage": (
        "responseGenerationProperties/errorACKMessage",
        "An Error Occurred Processing Message.",
    ),
    "rejectedACKCode": ("responseGenerationProperties/rejectedACKCode", "AR"),
    "rejectedACKMessage": ("responseGenerationProperties/rejectedACKMessage", "Message Rejected."),
    "msh15ACKAccept": ("responseGenerationProperties/msh15ACKAccept", "false"),
    "dateFormat": ("responseGenerationProperties/dateFormat", "yyyyMMddHHmmss.SSS"),
}
"""HL7 v2 data type property → (path under ``inboundProperties``, Mirth's default text)."""

_DATATYPE_PROPERTIES = {"HL7V2": _HL7V2_PROPERTIES}

_RULE_BUILDER = "com.mirth.connect.plugins.rulebuilder.RuleBuilderRule"
_JAVASCRIPT_RULE = "com.mirth.connect.plugins.javascriptrule.JavaScriptRule"
_JAVASCRIPT_STEP = "com.mirth.connect.plugins.javascriptstep.JavaScriptStep"
_MAPPER_STEP = "com.mirth.connect.plugins.mapper.MapperStep"
_PANNIER_ELEMENT = "pannier-element"
_ELEMENT_COMMON = ("name", "sequenceNumber", "enabled", "operator")
_PAIR = "org.apache.commons.lang3.tuple.ImmutablePair"
_LINKED_HASH_MAP = "linked-hash-map"

_JS_PATH = re.compile(r"msg((?:\['[A-Z][A-Z0-9]{2}(?:\.[0-9]+)*'\])+)\.toString\(\)")
_JS_NOOP_LINE = re.compile(r"^\s*(//.*)?$")


def path_to_js(path: str) -> str:
    """``PID.5.1`` → ``msg['PID']['PID.5']['PID.5.1'].toString()`` (Mirth's rule builder and
    mapper form)."""
    parts = path.split(".")
    steps = [".".join(parts[: i + 1]) for i in range(len(parts))]
    return "msg" + "".join(f"['{step}']" for step in steps) + ".toString()"


def js_to_path(expression: str) -> str | None:
    """The message path of a rule builder / mapper expression, when it is exactly what
    :func:`path_to_js` writes; else ``None`` (the element stays Mirth JavaScript)."""
    match = _JS_PATH.fullmatch(expression)
    if match is None:
        return None
    path = re.findall(r"'([^']*)'", match.group(1))[-1]
    return path if path_to_js(path) == expression else None


def value_to_js(value: str) -> str:
    """A rule builder value as the JavaScript string literal Mirth stores."""
    if "'" in value or "\\" in value:
        return json.dumps(value)
    return f"'{value}'"


def js_to_value(literal: str) -> str | None:
    if len(literal) >= 2 and literal[0] == literal[-1] and literal[0] in "'\"":
        value = literal[1:-1]
        if value_to_js(value) == literal:
            return value
    return None


def _is_noop_script(code: str) -> bool:
    """Mirth's default scripts: only comments and ``return;`` / ``return message;``."""
    lines = [line for line in code.splitlines() if not _JS_NOOP_LINE.match(line)]
    return all(line.strip() in ("return;", "return message;") for line in lines)


_RESOURCE_IDS = """<resourceIds class="linked-hash-map"><entry><string>Default Resource</string>
<string>[Default Resource]</string></entry></resourceIds>"""

_CHANNEL_TEMPLATE = f"""<channel version="{MIRTH_VERSION}"><id/><nextMetaDataId/><name/>
<description/><revision/><sourceConnector/><destinationConnectors/><preprocessingScript/>
<postprocessingScript/><deployScript/><undeployScript/><properties version="{MIRTH_VERSION}">
<clearGlobalChannelMap/><messageStorageMode/><encryptData/>
<encryptAttachments>false</encryptAttachments><encryptCustomMetaData>false</encryptCustomMetaData>
<removeContentOnCompletion/><removeOnlyFilteredOnCompletion/><removeAttachmentsOnCompletion/>
<initialState/><storeAttachments/><metaDataColumns/><attachmentProperties
version="{MIRTH_VERSION}"><type>None</type><properties/></attachmentProperties>{_RESOURCE_IDS}
</properties></channel>"""

_CONNECTOR_TEMPLATE = """<{tag} version="{version}"><metaDataId/><name/><properties/>
<transformer version="{version}"><elements/><inboundDataType/><outboundDataType/>
<inboundProperties/><outboundProperties/></transformer>{response}<filter version="{version}">
<elements/></filter><transportName/><mode/><enabled/><waitForPrevious/></{tag}>"""

_RESPONSE_TRANSFORMER = """<responseTransformer version="{version}"><elements/><inboundDataType/>
<outboundDataType/><inboundProperties/><outboundProperties/></responseTransformer>"""

_SOURCE_SETTINGS = f"""<sourceConnectorProperties version="{MIRTH_VERSION}"><responseVariable/>
<respondAfterProcessing/><processBatch/><firstResponse/><processingThreads/>{_RESOURCE_IDS}
<queueBufferSize/></sourceConnectorProperties>"""

_QUEUE_SETTINGS = f"""<destinationConnectorProperties version="{MIRTH_VERSION}"><queueEnabled/>
<sendFirst/><retryIntervalMillis/><regenerateTemplate/><retryCount/><rotate/>
<includeFilterTransformer/><threadCount/><threadAssignmentVariable/><validateResponse/>
{_RESOURCE_IDS}<queueBufferSize/><reattachAttachments/></destinationConnectorProperties>"""

_MLLP = """<transmissionModeProperties
class="com.mirth.connect.plugins.mllpmode.MLLPModeProperties">
<pluginPointName>MLLP</pluginPointName><startOfMessageBytes>0B</startOfMessageBytes>
<endOfMessageBytes>1C0D</endOfMessageBytes><useMLLPv2>false</useMLLPv2><ackBytes>06</ackBytes>
<nackBytes>15</nackBytes><maxRetries>2</maxRetries></transmissionModeProperties>"""

_POLL = f"""<pollConnectorProperties version="{MIRTH_VERSION}"><pollingType>INTERVAL</pollingType>
<pollOnStart>false</pollOnStart><pollingFrequency>5000</pollingFrequency><pollingHour>0</pollingHour>
<pollingMinute>0</pollingMinute><cronJobs/><pollConnectorPropertiesAdvanced><weekly>true</weekly>
<inactiveDays>{"<boolean>false</boolean>" * 8}</inactiveDays><dayOfMonth>1</dayOfMonth>
<allDay>true</allDay><startingHour>8</startingHour><startingMinute>0</startingMinute>
<endingHour>17</endingHour><endingMinute>0</endingMinute></pollConnectorPropertiesAdvanced>
</pollConnectorProperties>"""

_NO_HTTP_AUTH = "com.mirth.connect.plugins.httpauth.NoneHttpAuthProperties"
_BINARY_MIME_TYPES = "application/.*(?&lt;!json|xml)$|image/.*|video/.*|audio/.*"

_PROPERTIES_TEMPLATES = {
    "TCP Listener": f"""<pluginProperties/><listenerConnectorProperties version="{MIRTH_VERSION}">
<host>0.0.0.0</host><port>6661</port></listenerConnectorProperties>{_SOURCE_SETTINGS}{_MLLP}
<serverMode>true</serverMode><remoteAddress/><remotePort/>
<overrideLocalBinding>false</overrideLocalBinding><reconnectInterval>5000</reconnectInterval>
<receiveTimeout>0</receiveTimeout><bufferSize>65536</bufferSize><maxConnections>10</maxConnections>
<keepConnectionOpen>true</keepConnectionOpen><dataTypeBinary>false</dataTypeBinary>
<charsetEncoding>DEFAULT_ENCODING</charsetEncoding><respondOnNewConnection>0</respondOnNewConnection>
<responseAddress/><responsePort/>""",
    "TCP Sender": f"""<pluginProperties/>{_QUEUE_SETTINGS}{_MLLP}<serverMode>false</serverMode>
<remoteAddress>127.0.0.1</remoteAddress><remotePort>6660</remotePort>
<overrideLocalBinding>false</overrideLocalBinding><localAddress>0.0.0.0</localAddress>
<localPort>0</localPort><sendTimeout>5000</sendTimeout><bufferSize>65536</bufferSize>
<maxConnections>1</maxConnections><keepConnectionOpen>false</keepConnectionOpen>
<checkRemoteHost>false</checkRemoteHost><responseTimeout>5000</responseTimeout>
<ignoreResponse>false</ignoreResponse><queueOnResponseTimeout>true</queueOnResponseTimeout>
<dataTypeBinary>false</dataTypeBinary><charsetEncoding>DEFAULT_ENCODING</charsetEncoding>
<template>${{message.encodedData}}</template>""",
    "File Writer": f"""<pluginProperties/>{_QUEUE_SETTINGS}<scheme>FILE</scheme><host/>
<outputPattern>${{message.messageId}}.txt</outputPattern><anonymous>true</anonymous><username>anonymous</username>
<password>anonymous</password><timeout>10000</timeout><keepConnectionOpen>true</keepConnectionOpen>
<maxIdleTime>0</maxIdleTime><secure>true</secure><passive>true</passive>
<validateConnection>true</validateConnection><outputAppend>true</outputAppend>
<errorOnExists>false</errorOnExists><temporary>false</temporary><binary>false</binary>
<charsetEncoding>DEFAULT_ENCODING</charsetEncoding><template>${{message.encodedData}}</template>""",
    "File Reader": f"""<pluginProperties/>{_POLL}{_SOURCE_SETTINGS}<scheme>FILE</scheme><host/>
<fileFilter>*</fileFilter><regex>false</regex><directoryRecursion>false</directoryRecursion>
<ignoreDot>true</ignoreDot><anonymous>true</anonymous><username>anonymous</username>
<password>anonymous</password><timeout>10000</timeout><secure>true</secure><passive>true</passive>
<validateConnection>true</validateConnection><afterProcessingAction>NONE</afterProcessingAction>
<moveToDirectory/><moveToFileName/><errorReadingAction>NONE</errorReadingAction>
<errorResponseAction>AFTER_PROCESSING</errorResponseAction><errorMoveToDirectory/>
<errorMoveToFileName/><checkFileAge>true</checkFileAge><fileAge>1000</fileAge>
<fileSizeMinimum>0</fileSizeMinimum><fileSizeMaximum/><ignoreFileSizeMaximum>true</ignoreFileSizeMaximum>
<sortBy>date</sortBy><binary>false</binary><charsetEncoding>DEFAULT_ENCODING</charsetEncoding>""",
    "HTTP Listener": f"""<pluginProperties>
<{_NO_HTTP_AUTH} version="{MIRTH_VERSION}"><authType>NONE</authType></{_NO_HTTP_AUTH}>
</pluginProperties><listenerConnectorProperties version="{MIRTH_VERSION}"><host>0.0.0.0</host>
<port>80</port></listenerConnectorProperties>{_SOURCE_SETTINGS}<xmlBody>false</xmlBody>
<parseMultipart>true</parseMultipart><includeMetadata>false</includeMetadata>
<binaryMimeTypes>{_BINARY_MIME_TYPES}</binaryMimeTypes><binaryMimeTypesRegex>true</binaryMimeTypesRegex>
<responseContentType>text/plain</responseContentType><responseDataTypeBinary>false</responseDataTypeBinary>
<responseStatusCode/><responseHeaders class="linked-hash-map"/><responseHeadersVariable/>
<useResponseHeadersVariable>false</useResponseHeadersVariable><charset>UTF-8</charset><contextPath/>
<timeout>30000</timeout><staticResources/>""",
    "HTTP Sender": f"""<pluginProperties/>{_QUEUE_SETTINGS}<host/>
<useProxyServer>false</useProxyServer><proxyAddress/><proxyPort/><method>post</method>
<headers class="linked-hash-map"/>
<parameters class="linked-hash-map"/><useHeadersVariable>false</useHeadersVariable>
<headersVariable/>
<useParametersVariable>false</useParametersVariable><parametersVariable/>
<responseXmlBody>false</responseXmlBody><responseParseMultipart>true</responseParseMultipart>
<responseIncludeMetadata>false</responseIncludeMetadata>
<responseBinaryMimeTypes>{_BINARY_MIME_TYPES}</responseBinaryMimeTypes>
<responseBinaryMimeTypesRegex>true</responseBinaryMimeTypesRegex><multipart>false</multipart>
<useAuthentication>false</useAuthentication><authenticationType>Basic</authenticationType>
<usePreemptiveAuthentication>false</usePreemptiveAuthentication><username/><password/><content/>
<contentType>text/plain</contentType><dataTypeBinary>false</dataTypeBinary><charset>UTF-8</charset>
<socketTimeout>30000</socketTimeout>""",
    "Database Reader": f"""<pluginProperties/>{_POLL}{_SOURCE_SETTINGS}
<driver>Please Select One</driver><url/><username/><password/><select/><update/>
<useScript>false</useScript><aggregateResults>false</aggregateResults>
<cacheResults>true</cacheResults><keepConnectionOpen>true</keepConnectionOpen>
<updateMode>1</updateMode><retryCount>3</retryCount><retryInterval>10000</retryInterval>
<fetchSize>1000</fetchSize><encoding>DEFAULT_ENCODING</encoding>""",
    "Database Writer": f"""<pluginProperties/>{_QUEUE_SETTINGS}<driver>Please Select One</driver>
<url/><username/><password/><query/><useScript>false</useScript>""",
    "Channel Reader": f"<pluginProperties/>{_SOURCE_SETTINGS}",
    "Channel Writer": f"""<pluginProperties/>{_QUEUE_SETTINGS}<channelId>none</channelId>
<channelTemplate>${{message.encodedData}}</channelTemplate><mapVariables/>""",
}
"""Per transport: the children of ``<properties>`` as Mirth 4.5.2 writes a new connector of
that type (field order and defaults of its properties class; checked against Mirth exports).
``sourceConnectorProperties`` / ``destinationConnectorProperties`` are filled from the model."""

_HL7 = "com.mirth.connect.plugins.datatypes.hl7v2."
_HL7V2_TEMPLATE = f"""<serializationProperties
class="{_HL7}HL7v2SerializationProperties" version="{MIRTH_VERSION}">
<handleRepetitions>true</handleRepetitions><handleSubcomponents>true</handleSubcomponents>
<useStrictParser>false</useStrictParser><useStrictValidation>false</useStrictValidation>
<stripNamespaces>false</stripNamespaces><segmentDelimiter>\\r</segmentDelimiter>
<convertLineBreaks>true</convertLineBreaks></serializationProperties><deserializationProperties
class="{_HL7}HL7v2DeserializationProperties" version="{MIRTH_VERSION}">
<useStrictParser>false</useStrictParser><useStrictValidation>false</useStrictValidation>
<segmentDelimiter>\\r</segmentDelimiter></deserializationProperties><batchProperties
class="{_HL7}HL7v2BatchProperties" version="{MIRTH_VERSION}">
<splitType>MSH_Segment</splitType><batchScript/></batchProperties><responseGenerationProperties
class="{_HL7}HL7v2ResponseGenerationProperties" version="{MIRTH_VERSION}">
<segmentDelimiter>\\r</segmentDelimiter><successfulACKCode>AA</successfulACKCode>
<successfulACKMessage/><errorACKCode>AE</errorACKCode>
<errorACKMessage>An Error Occurred Processing Message.</errorACKMessage>
<rejectedACKCode>AR</rejectedACKCode><rejectedACKMessage>Message Rejected.</rejectedACKMessage>
<msh15ACKAccept>false</msh15ACKAccept><dateFormat>yyyyMMddHHmmss.SSS</dateFormat>
</responseGenerationProperties><responseValidationProperties
class="{_HL7}HL7v2ResponseValidationProperties" version="{MIRTH_VERSION}">
<successfulACKCode>AA</successfulACKCode><errorACKCode>AE</errorACKCode>
<rejectedACKCode>AR</rejectedACKCode><validateMessageControlId>true</validateMessageControlId>
<originalMessageControlId>Destination_Encoded</originalMessageControlId><originalIdMapVariable/>
</responseValidationProperties>"""


# --- XML helpers ----------------------------------------------------------------------------------


def _parse(text: str | bytes) -> XmlElement:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise MirthXmlError(f"not well-formed XML: {exc}") from None
    _strip_layout(root)
    return root


def _strip_layout(root: XmlElement) -> None:
    """Drop indentation (whitespace-only text around child elements); keep leaf text."""
    for node in root.iter():
        if not isinstance(node.tag, str):
            continue
        if len(node) and node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None


def _fragment(xml: str) -> XmlElement:
    return _parse(xml)


def _serialize(element: XmlElement) -> str:
    return str(etree.tostring(element, encoding="unicode"))


def _find(parent: XmlElement, path: str) -> XmlElement | None:
    node = parent
    for tag in path.split("/"):
        node = next((c for c in node if c.tag == tag), None)
        if node is None:
            return None
    return node


def _ensure(parent: XmlElement, path: str) -> XmlElement:
    node = parent
    for tag in path.split("/"):
        found = next((c for c in node if c.tag == tag), None)
        node = found if found is not None else etree.SubElement(node, tag)
    return node


def _text(parent: XmlElement, path: str, default: str = "") -> str:
    node = _find(parent, path)
    if node is None:
        return default
    return str(node.text or "")


def _leaf_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, StorageMode):
        return value.name
    return str(value)


def _set(parent: XmlElement, path: str, value: Any) -> None:
    node = _ensure(parent, path)
    text = _leaf_text(value)
    node.text = text if text else None


def _replace(old: XmlElement, new: XmlElement) -> None:
    new.tail = old.tail
    old.getparent().replace(old, new)


def _parse_value(text: str, expected: Any, where: str) -> Any:
    text = text.strip()
    if expected is bool:
        if text not in ("true", "false"):
            raise MirthXmlError(f"{where}: expected true or false, got {text!r}")
        return text == "true"
    if expected is int:
        try:
            return int(text)
        except ValueError:
            raise MirthXmlError(f"{where}: expected an integer, got {text!r}") from None
    return text


def _read_settings(node: XmlElement | None, cls: type, where: str) -> Any:
    hints = get_type_hints(cls)
    kwargs = {}
    if node is not None:
        for f in dataclasses.fields(cls):
            child = _find(node, f.name)
            if child is not None:
                kwargs[f.name] = _parse_value(
                    str(child.text or ""), hints[f.name], f"{where}/{f.name}"
                )
    return cls(**kwargs)


def _write_settings(node: XmlElement, settings: object) -> None:
    for f in dataclasses.fields(settings):  # type: ignore[arg-type]
        _set(node, f.name, getattr(settings, f.name))


# --- import ---------------------------------------------------------------------------------------


def channel_from_xml(text: str | bytes) -> Channel:
    """Read a Mirth 4.5.2 channel export (or a ``CHANNEL.CHANNEL`` row) into the model."""
    root = _parse(text)
    if root.tag != "channel":
        raise MirthXmlError(f"expected a <channel> root element, got <{root.tag}>")
    source_node = _find(root, "sourceConnector")
    if source_node is None:
        raise MirthXmlError("channel: <sourceConnector> is missing")
    source = _connector_from_xml(source_node, "SOURCE", "channel/sourceConnector")
    destinations = []
    container = _find(root, "destinationConnectors")
    for index, node in enumerate(container if container is not None else ()):
        destinations.append(
            _connector_from_xml(node, "DESTINATION", f"channel/destinationConnectors[{index}]")
        )
    channel = Channel(
        id=_text(root, "id"),
        name=_text(root, "name"),
        description=_text(root, "description"),
        revision=_parse_value(_text(root, "revision", "1"), int, "channel/revision"),
        nextMetaDataId=_parse_value(
            _text(root, "nextMetaDataId", "0") or "0", int, "channel/nextMetaDataId"
        ),
        source=source,
        destinations=destinations,
        preprocessingScript=_script_from_xml(root, "preprocessingScript"),
        postprocessingScript=_script_from_xml(root, "postprocessingScript"),
        deployScript=_script_from_xml(root, "deployScript"),
        undeployScript=_script_from_xml(root, "undeployScript"),
        properties=_channel_properties_from_xml(_find(root, "properties")),
    )
    # Keep the rest; the connectors keep their own XML.
    _replace(source_node, etree.Element("sourceConnector"))
    if container is not None:
        for child in list(container):
            container.remove(child)
    columns = _find(root, "properties/metaDataColumns")
    if columns is not None:
        for child in list(columns):
            columns.remove(child)
    mirth_extra(channel)["channel"] = _serialize(root)
    return channel


def _script_from_xml(root: XmlElement, tag: str) -> Script:
    """Mirth's default (no-op) scripts become empty scripts, so an imported channel deploys
    without a JavaScript engine; their text stays in the kept XML and is written back."""
    code = _text(root, tag)
    return Script(code="" if _is_noop_script(code) else code, language="javascript")


def _channel_properties_from_xml(node: XmlElement | None) -> ChannelProperties:
    properties = ChannelProperties()
    if node is None:
        return properties
    hints = get_type_hints(ChannelProperties)
    for f in dataclasses.fields(ChannelProperties):
        child = _find(node, f.name)
        if child is None or f.name == "metaDataColumns":
            continue
        where = f"channel/properties/{f.name}"
        text = str(child.text or "").strip()
        if f.name == "messageStorageMode":
            try:
                properties.messageStorageMode = StorageMode[text]
            except KeyError:
                raise MirthXmlError(f"{where}: unknown storage mode {text!r}") from None
        elif f.name == "initialState":
            if text not in ("STARTED", "STOPPED", "PAUSED"):
                raise MirthXmlError(f"{where}: expected STARTED, STOPPED or PAUSED, got {text!r}")
            properties.initialState = text  # type: ignore[assignment]
        else:
            setattr(properties, f.name, _parse_value(text, hints[f.name], where))
    columns = _find(node, "metaDataColumns")
    if columns is not None:
        properties.metaDataColumns = [
            MetaDataColumn(
                name=_text(c, "name"),
                type=_text(c, "type", "STRING"),  # type: ignore[arg-type]
                mappingName=_text(c, "mappingName"),
            )
            for c in columns
        ]
    return properties


def _connector_from_xml(node: XmlElement, mode: str, where: str) -> Connector:
    transport = _text(node, "transportName")
    connector = Connector(
        metaDataId=_parse_value(_text(node, "metaDataId", "0"), int, f"{where}/metaDataId"),
        name=_text(node, "name"),
        transportName=transport,
        mode=mode,  # type: ignore[arg-type]
        enabled=_parse_value(_text(node, "enabled", "true"), bool, f"{where}/enabled"),
        waitForPrevious=_parse_value(
            _text(node, "waitForPrevious", "true"), bool, f"{where}/waitForPrevious"
        ),
    )
    properties = _find(node, "properties")
    if properties is not None:
        if mode == "SOURCE":
            connector.source = _read_settings(
                _find(properties, "sourceConnectorProperties"),
                SourceSettings,
                f"{where}/properties/sourceConnectorProperties",
            )
        else:
            connector.queue = _read_settings(
                _find(properties, "destinationConnectorProperties"),
                QueueSettings,
                f"{where}/properties/destinationConnectorProperties",
            )
        known = CONNECTOR_PROPERTIES.get(transport)
        if known is not None and properties.get("class") == known[0]:
            for key, path in known[1].items():
                child = _find(properties, path)
                if child is not None:
                    connector.properties[key] = _property_from_xml(child, path)
    transformer = _find(node, "transformer")
    if transformer is not None:
        connector.inboundDataType = _text(transformer, "inboundDataType", "HL7V2")
        connector.outboundDataType = _text(
            transformer, "outboundDataType", connector.inboundDataType
        )
        connector.inboundProperties = _datatype_properties_from_xml(
            connector.inboundDataType, _find(transformer, "inboundProperties")
        )
        connector.outboundProperties = _datatype_properties_from_xml(
            connector.outboundDataType, _find(transformer, "outboundProperties")
        )
        connector.transformer = Transformer(_elements_from_xml(transformer, rules=False))
    if mode == "DESTINATION":
        response = _find(node, "responseTransformer")
        if response is not None:
            connector.responseTransformer = Transformer(_elements_from_xml(response, rules=False))
    filter_node = _find(node, "filter")
    if filter_node is not None:
        connector.filter = Filter(_elements_from_xml(filter_node, rules=True))
    mirth_extra(connector)["connector"] = _serialize(node)
    return connector


def _property_from_xml(node: XmlElement, path: str) -> Any:
    """One mapped connector property: text, or a table / list for Mirth's structured fields."""
    if node.get("class") == _LINKED_HASH_MAP:
        table: dict[str, list[str]] = {}
        for entry in node:
            parts = list(entry)
            if entry.tag != "entry" or not parts:
                continue
            values = parts[1:]
            if len(values) == 1 and len(values[0]):  # <list><string>v</string>...</list>
                values = list(values[0])
            table.setdefault(str(parts[0].text or ""), []).extend(str(v.text or "") for v in values)
        return table
    if path in _STRING_LISTS:
        return [str(child.text or "") for child in node]
    return str(node.text or "")


def _datatype_properties_from_xml(datatype: str, node: XmlElement | None) -> dict[str, Any]:
    known = _DATATYPE_PROPERTIES.get(datatype.upper())
    if node is None or known is None or node.get("class") != _DATATYPE_CLASSES[datatype.upper()]:
        return {}
    values: dict[str, Any] = {}
    for key, (path, default) in known.items():
        child = _find(node, path)
        if child is not None and str(child.text or "") != default:
            values[key] = str(child.text or "")
    return values


def _elements_from_xml(container: XmlElement, *, rules: bool) -> list[Element]:
    elements = _find(container, "elements")
    result: list[Element] = []
    if elements is None:
        return result
    for node in list(elements):
        if isinstance(node.tag, str):
            result.append(_element_from_xml(node, rules=rules))
            elements.remove(node)
    return result


def _element_from_xml(node: XmlElement, *, rules: bool) -> Element:
    tag = str(node.tag)
    operator = _text(node, "operator", "NONE" if rules else "AND") or "AND"
    element = Element(
        kind=tag,
        name=_text(node, "name"),
        enabled=_text(node, "enabled", "true").strip() != "false",
        operator=operator,  # type: ignore[arg-type]
    )
    if tag in (_JAVASCRIPT_RULE, _JAVASCRIPT_STEP):
        element.kind = "javascript"
        element.settings = {"code": _text(node, "script")}
    elif tag == _RULE_BUILDER:
        values_node = _find(node, "values")
        literals = [str(v.text or "") for v in values_node] if values_node is not None else []
        field = _text(node, "field")
        path = js_to_path(field)
        values = [js_to_value(literal) for literal in literals]
        if path is not None and None not in values:
            element.kind, field, literals = "rule", path, [str(v) for v in values]
        element.settings = {
            "field": field,
            "condition": _text(node, "condition", "EXISTS"),
            "values": literals,
        }
    elif tag == _MAPPER_STEP:
        mapping = _text(node, "mapping")
        path = js_to_path(mapping)
        replacements = _find(node, "replacements")
        if path is not None and (replacements is None or not len(replacements)):
            element.kind, mapping = "mapper", path  # Pannier's mapper has no replacements
        element.settings = {
            "variable": _text(node, "variable"),
            "mapping": mapping,
            "defaultValue": _text(node, "defaultValue"),
            "replacements": [
                [_text(pair, "left"), _text(pair, "right")]
                for pair in (replacements if replacements is not None else ())
            ],
            "scope": _text(node, "scope", "CHANNEL"),
        }
    else:
        if tag == _PANNIER_ELEMENT:
            element.kind = str(node.get("kind", ""))
        element.settings = {
            str(child.tag): str(child.text or "")
            for child in node
            if child.tag not in _ELEMENT_COMMON and not len(child)
        }
    mirth_extra(element)["element"] = _serialize(node)
    return element


# --- export ---------------------------------------------------------------------------------------


def channel_to_xml(
    channel: Channel,
    *,
    export_data: bool = True,
    properties_classes: Mapping[str, str] | None = None,
    properties_defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """Write ``channel`` as Mirth 4.5.2 channel XML, into the XML it was imported from if any.

    ``export_data=False`` drops ``<exportData>``, as Mirth does for the ``CHANNEL`` row.
    ``properties_classes`` maps transport names of connectors this module has no template
    for to their Mirth properties class (``ConnectorType.mirth_properties_class``); their
    properties are then written as plain leaf elements.
    ``properties_defaults`` maps transport names to the plugin's defaults
    (``ConnectorType.defaults``): a connector written from Mirth's template (no kept XML)
    gets the plugin's default for every mapped property the channel leaves out, so the XML
    means what Pannier runs where the two defaults differ (the HTTP Sender's ``content``).
    """
    kept = mirth_extra(channel).get("channel")
    root = _parse(kept) if kept else _parse(_CHANNEL_TEMPLATE)
    _set(root, "id", channel.id)
    _set(root, "nextMetaDataId", channel.nextMetaDataId)
    _set(root, "name", channel.name)
    _set(root, "description", channel.description)
    _set(root, "revision", channel.revision)
    classes, defaults = properties_classes or {}, properties_defaults or {}
    source_slot = _ensure(root, "sourceConnector")
    _replace(source_slot, _connector_to_xml(channel.source, "sourceConnector", classes, defaults))
    container = _ensure(root, "destinationConnectors")
    for child in list(container):
        container.remove(child)
    for destination in channel.destinations:
        container.append(_connector_to_xml(destination, "connector", classes, defaults))
    for tag in ("preprocessingScript", "postprocessingScript", "deployScript", "undeployScript"):
        script: Script = getattr(channel, tag)
        if script.language != "javascript" and not script.is_empty:
            log.warning(
                "channel %r %s is %s; Java Mirth will run it as JavaScript",
                channel.name,
                tag,
                script.language,
            )
        if script.is_empty and _is_noop_script(_text(root, tag)):
            continue  # keep Mirth's default script text as imported
        _set(root, tag, script.code)
    _channel_properties_to_xml(_ensure(root, "properties"), channel.properties)
    if not export_data:
        data = _find(root, "exportData")
        if data is not None:
            root.remove(data)
    etree.indent(root, space="  ")
    return _serialize(root) + "\n"


def _channel_properties_to_xml(node: XmlElement, properties: ChannelProperties) -> None:
    for f in dataclasses.fields(ChannelProperties):
        if f.name != "metaDataColumns":
            _set(node, f.name, getattr(properties, f.name))
    columns = _ensure(node, "metaDataColumns")
    for child in list(columns):
        columns.remove(child)
    for column in properties.metaDataColumns:
        item = etree.SubElement(columns, "metaDataColumn")
        _set(item, "name", column.name)
        _set(item, "type", column.type)
        _set(item, "mappingName", column.mappingName)


def _connector_to_xml(
    connector: Connector,
    tag: str,
    classes: Mapping[str, str],
    defaults: Mapping[str, Mapping[str, Any]],
) -> XmlElement:
    kept = mirth_extra(connector).get("connector")
    if kept:
        node = _parse(kept)
        node.tag = tag
    else:
        response = _RESPONSE_TRANSFORMER.format(version=MIRTH_VERSION) if tag == "connector" else ""
        node = _parse(_CONNECTOR_TEMPLATE.format(tag=tag, version=MIRTH_VERSION, response=response))
    where = f"connector {connector.name!r}"
    _set(node, "metaDataId", connector.metaDataId)
    _set(node, "name", connector.name)
    _properties_to_xml(node, connector, where, classes, defaults.get(connector.transportName, {}))
    transformer = _find(node, "transformer")
    if transformer is not None:
        _datatypes_to_xml(transformer, connector.inboundDataType, connector.outboundDataType)
        _datatype_properties_to_xml(
            transformer, "inboundProperties", connector.inboundDataType, connector.inboundProperties
        )
        _datatype_properties_to_xml(
            transformer,
            "outboundProperties",
            connector.outboundDataType,
            connector.outboundProperties,
        )
        _elements_to_xml(transformer, connector.transformer.steps, rules=False)
    elif connector.transformer.steps:
        raise MirthXmlError(f"{where}: the kept XML has no <transformer> for its steps")
    response_node = _find(node, "responseTransformer")
    if response_node is not None:
        if not kept:
            _datatypes_to_xml(response_node, connector.outboundDataType, connector.outboundDataType)
            for slot in ("inboundProperties", "outboundProperties"):
                _datatype_properties_to_xml(response_node, slot, connector.outboundDataType, {})
        _elements_to_xml(response_node, connector.responseTransformer.steps, rules=False)
    _elements_to_xml(_ensure(node, "filter"), connector.filter.rules, rules=True)
    _set(node, "transportName", connector.transportName)
    _set(node, "mode", connector.mode)
    _set(node, "enabled", connector.enabled)
    _set(node, "waitForPrevious", connector.waitForPrevious)
    return node


def _properties_to_xml(
    node: XmlElement,
    connector: Connector,
    where: str,
    classes: Mapping[str, str],
    defaults: Mapping[str, Any],
) -> None:
    properties = _find(node, "properties")
    known = CONNECTOR_PROPERTIES.get(connector.transportName)
    values: dict[str, Any] = dict(connector.properties)
    generic = False
    if known is not None and (properties is None or properties.get("class") != known[0]):
        values = {k: v for k, v in defaults.items() if k in known[1]} | values
        fresh = _fragment(
            f'<properties class="{known[0]}" version="{MIRTH_VERSION}">'
            f"{_PROPERTIES_TEMPLATES[connector.transportName]}</properties>"
        )
        settings = _find(fresh, "sourceConnectorProperties")
        if connector.mode == "SOURCE" and settings is None:
            raise MirthXmlError(f"{where}: {connector.transportName!r} is not a source connector")
        if connector.mode == "DESTINATION" and settings is not None:
            raise MirthXmlError(
                f"{where}: {connector.transportName!r} is not a destination connector"
            )
        if properties is None:
            node.insert(2, fresh)
        else:
            _replace(properties, fresh)
        properties = fresh
    elif (properties is None or not properties.get("class")) and classes.get(
        connector.transportName
    ):
        # A plugin's own class: Mirth's common part, then every property (the plugin's
        # defaults overlaid by the channel's) as a leaf named after its key.
        settings = _SOURCE_SETTINGS if connector.mode == "SOURCE" else _QUEUE_SETTINGS
        fresh = _fragment(
            f'<properties class="{classes[connector.transportName]}" '
            f'version="{MIRTH_VERSION}"><pluginProperties/>{settings}</properties>'
        )
        if properties is None:
            node.insert(2, fresh)
        else:
            _replace(properties, fresh)
        properties = fresh
        values = {k: v for k, v in defaults.items() if k != "responseVariable"} | values
        known = (classes[connector.transportName], {key: key for key in values})
        generic = True
    elif properties is None or not properties.get("class"):
        raise MirthXmlError(
            f"{where}: no Mirth properties class is known for transport {connector.transportName!r}"
        )
    if connector.mode == "SOURCE":
        _write_settings(_ensure(properties, "sourceConnectorProperties"), connector.source)
    else:
        _write_settings(_ensure(properties, "destinationConnectorProperties"), connector.queue)
    paths = known[1] if known is not None else {}
    for key, value in values.items():
        if key in paths:
            where_key = f"{where} property {key!r}"
            _property_to_xml(properties, paths[key], value, where_key, generic=generic)
        elif key in defaults and defaults[key] == value:
            continue  # a plugin default Mirth has no place for: nothing to say
        else:
            log.warning(
                "%s: property %r has no place in Mirth's %s and is not exported",
                where,
                key,
                connector.transportName,
            )


def _property_to_xml(
    properties: XmlElement, path: str, value: Any, where: str, *, generic: bool = False
) -> None:
    """Write one mapped property; Mirth's tables and lists are written as XStream does.
    ``generic``: a plugin's own class, where a value's type says its form."""
    node = _ensure(properties, path)
    if generic and isinstance(value, Mapping):
        node.set("class", _LINKED_HASH_MAP)
    if node.get("class") == _LINKED_HASH_MAP:
        if not isinstance(value, Mapping):
            raise MirthXmlError(
                f"{where}: expected a table of name = value or [values], got {value!r}"
            )
        for child in list(node):
            node.remove(child)
        for name, items in value.items():
            entry = etree.SubElement(node, "entry")
            etree.SubElement(entry, "string").text = str(name)
            listed = etree.SubElement(entry, "list")
            for item in items if isinstance(items, (list, tuple)) else [items]:
                etree.SubElement(listed, "string").text = _leaf_text(item) or None
    elif path in _STRING_LISTS or (generic and isinstance(value, (list, tuple))):
        if isinstance(value, str):
            names = [n for n in value.strip().strip("[]").replace(",", " ").split() if n]
        elif isinstance(value, (list, tuple)):
            names = [_leaf_text(n) for n in value]
        else:
            raise MirthXmlError(f"{where}: expected a list of names, got {value!r}")
        for child in list(node):
            node.remove(child)
        for name in names:
            etree.SubElement(node, "string").text = name or None
    else:
        _set(properties, path, value)


def _datatypes_to_xml(transformer: XmlElement, inbound: str, outbound: str) -> None:
    _set(transformer, "inboundDataType", inbound)
    _set(transformer, "outboundDataType", outbound)


def _datatype_properties_to_xml(
    transformer: XmlElement, slot: str, datatype: str, values: Mapping[str, Any]
) -> None:
    node = _ensure(transformer, slot)
    datatype = datatype.upper()
    wanted = _DATATYPE_CLASSES.get(datatype)
    if wanted is not None and node.get("class") != wanted:
        fresh = etree.Element(slot, {"class": wanted, "version": MIRTH_VERSION})
        if datatype == "HL7V2":
            for child in _fragment(f"<x>{_HL7V2_TEMPLATE}</x>"):
                fresh.append(child)
        _replace(node, fresh)
        node = fresh
    known = _DATATYPE_PROPERTIES.get(datatype, {})
    for key, (path, default) in known.items():
        _set(node, path, values.get(key, default))
    for key in values:
        if key not in known:
            log.warning("data type %s: property %r is not exported to Mirth XML", datatype, key)


def _elements_to_xml(container: XmlElement, elements: Iterable[Element], *, rules: bool) -> None:
    slot = _ensure(container, "elements")
    for child in list(slot):
        slot.remove(child)
    for sequence, element in enumerate(elements):
        slot.append(_element_to_xml(element, sequence, rules=rules))


def _element_class(element: Element, rules: bool) -> str:
    if element.kind == "javascript":
        return _JAVASCRIPT_RULE if rules else _JAVASCRIPT_STEP
    if element.kind == "rule":
        return _RULE_BUILDER
    if element.kind == "mapper":
        return _MAPPER_STEP
    if "." in element.kind:
        return element.kind
    return _PANNIER_ELEMENT


def _element_to_xml(element: Element, sequence: int, *, rules: bool) -> XmlElement:
    tag = _element_class(element, rules)
    kept = mirth_extra(element).get("element")
    node = _parse(kept) if kept else None
    if node is None or node.tag != tag:
        node = etree.Element(tag)
        if tag == _PANNIER_ELEMENT:
            node.set("kind", element.kind)
        else:
            node.set("version", MIRTH_VERSION)
        for name in ("name", "sequenceNumber", "enabled"):
            etree.SubElement(node, name)
        if rules:
            etree.SubElement(node, "operator")
    _set(node, "name", element.name)
    _set(node, "sequenceNumber", sequence)
    _set(node, "enabled", element.enabled)
    if rules:
        _set(node, "operator", element.operator)
    settings = element.settings
    if tag in (_JAVASCRIPT_RULE, _JAVASCRIPT_STEP):
        _set(node, "script", settings.get("code", ""))
    elif tag == _RULE_BUILDER:
        translate = element.kind == "rule"
        field = str(settings.get("field", ""))
        _set(node, "field", path_to_js(field) if translate else field)
        _set(node, "condition", settings.get("condition", "EXISTS"))
        values = _ensure(node, "values")
        for child in list(values):
            values.remove(child)
        for value in settings.get("values", []):
            text = _leaf_text(value)
            etree.SubElement(values, "string").text = value_to_js(text) if translate else text
    elif tag == _MAPPER_STEP:
        mapping = str(settings.get("mapping", ""))
        _set(node, "variable", settings.get("variable", ""))
        _set(node, "mapping", path_to_js(mapping) if element.kind == "mapper" else mapping)
        _set(node, "defaultValue", settings.get("defaultValue", ""))
        replacements = _ensure(node, "replacements")
        for child in list(replacements):
            replacements.remove(child)
        for left, right in settings.get("replacements", []):
            pair = etree.SubElement(replacements, _PAIR)
            _set(pair, "left", left)
            _set(pair, "right", right)
        _set(node, "scope", str(settings.get("scope", "CHANNEL")).upper())
    else:
        for key, value in settings.items():
            if isinstance(value, (str, bool, int)):
                _set(node, key, value)
            else:
                log.warning("element %r: setting %r is not exported", element.name, key)
    return node


# --- TOML -----------------------------------------------------------------------------------------


def _toml_key(key: str) -> str:
    if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key):
        return key
    return _toml_string(key)


def _toml_string(value: str) -> str:
    escaped = []
    for char in value:
        if char == "\\":
            escaped.append("\\\\")
        elif char == '"':
            escaped.append('\\"')
        elif char == "\n":
            escaped.append("\\n")
        elif char == "\t":
            escaped.append("\\t")
        elif char == "\r":
            escaped.append("\\r")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _toml_multiline(value: str) -> str:
    """A multi-line basic string; every quote and backslash escaped, so it cannot end early."""
    out = []
    for char in value:
        if char == "\n":
            out.append("\n")
        elif char == "\t":
            out.append("\t")
        elif char in '\\"' or char == "\r" or ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(_toml_string(char)[1:-1])
        else:
            out.append(char)
    return '"""\n' + "".join(out) + '"""'


def _toml_value(value: Any) -> str:
    if isinstance(value, StorageMode):
        return _toml_string(value.name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        return _toml_multiline(value) if "\n" in value else _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}" if items else "{}"
    raise MirthXmlError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


def _toml_pairs(lines: list[str], pairs: Iterable[tuple[str, Any]]) -> None:
    for key, value in pairs:
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")


def _toml_connector(lines: list[str], connector: Connector, prefix: str) -> None:
    pairs: list[tuple[str, Any]] = []
    if connector.mode == "DESTINATION":
        pairs.append(("metaDataId", connector.metaDataId))
    pairs += [
        ("name", connector.name),
        ("transportName", connector.transportName),
        ("enabled", connector.enabled),
    ]
    if connector.mode == "DESTINATION":
        pairs.append(("waitForPrevious", connector.waitForPrevious))
    pairs += [
        ("inboundDataType", connector.inboundDataType),
        ("outboundDataType", connector.outboundDataType),
    ]
    settings = connector.source if connector.mode == "SOURCE" else connector.queue
    pairs += [(f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings)]
    _toml_pairs(lines, pairs)
    for key in ("properties", "inboundProperties", "outboundProperties"):
        values: dict[str, Any] = getattr(connector, key)
        if values:
            lines += ["", f"[{prefix}.{key}]"]
            _toml_pairs(lines, values.items())
    sections: list[tuple[str, str, list[Element]]] = [
        ("filter", "rules", connector.filter.rules),
        ("transformer", "steps", connector.transformer.steps),
    ]
    if connector.mode == "DESTINATION":
        sections.append(("responseTransformer", "steps", connector.responseTransformer.steps))
    for section, attribute, elements in sections:
        for element in elements:
            lines += ["", f"[[{prefix}.{section}.{attribute}]]"]
            _toml_pairs(
                lines,
                [
                    ("kind", element.kind),
                    ("name", element.name),
                    ("enabled", element.enabled),
                    ("operator", element.operator),
                ],
            )
            _toml_pairs(
                lines,
                (
                    (k, v)
                    for k, v in element.settings.items()
                    if k not in (*_ELEMENT_COMMON, "kind")
                ),
            )


def channel_to_toml(channel: Channel) -> str:
    """Write ``channel`` as a channel file that ``load_channel_file`` reads back equal.

    Only the model is written: the opaque Mirth XML of an imported channel (unmapped fields,
    ``exportData``, unknown connector properties) is not part of a TOML file.
    """
    lines = [f"# Pannier channel file; Mirth {MIRTH_VERSION} field names (see docs/channels.md)"]
    _toml_pairs(
        lines,
        [
            ("id", channel.id),
            ("name", channel.name),
            ("description", channel.description),
            ("revision", channel.revision),
            ("nextMetaDataId", channel.nextMetaDataId),
        ],
    )
    properties = channel.properties
    lines += ["", "[properties]"]
    _toml_pairs(
        lines,
        [
            (f.name, getattr(properties, f.name))
            for f in dataclasses.fields(ChannelProperties)
            if f.name != "metaDataColumns"
        ],
    )
    if not properties.metaDataColumns:
        lines.append("metaDataColumns = []")
    for column in properties.metaDataColumns:
        lines += ["", "[[properties.metaDataColumns]]"]
        _toml_pairs(
            lines,
            [("name", column.name), ("type", column.type), ("mappingName", column.mappingName)],
        )
    for tag in ("preprocessingScript", "postprocessingScript", "deployScript", "undeployScript"):
        script: Script = getattr(channel, tag)
        lines += ["", f"[{tag}]"]
        _toml_pairs(lines, [("language", script.language), ("code", script.code)])
    lines += ["", "[source]"]
    _toml_connector(lines, channel.source, "source")
    for destination in channel.destinations:
        lines += ["", "[[destinations]]"]
        _toml_connector(lines, destination, "destinations")
    return "\n".join(lines) + "\n"
