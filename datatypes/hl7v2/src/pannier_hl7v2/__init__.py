"""HL7 v2.x data type for Pannier, compatible with Mirth Connect's non-strict HL7V2 data type.

Public names:

* :class:`HL7v2DataType` — the :class:`pannier.DataType` the plugin registers as ``HL7V2``;
  :data:`DEFAULTS` its properties with Mirth's defaults; :class:`HL7v2Properties` the checked form.
* :class:`HL7Message`, :class:`Segment`, :class:`Separators` — the lazy ER7 message model.
* :func:`er7_to_xml`, :func:`xml_to_er7`, :func:`xml_escape` — Mirth's XML form.
* :func:`generate_ack`, :func:`build_ack`, :func:`read_header`, :class:`JavaDateFormat` — ACKs.
"""

from pannier_hl7v2.ack import (
    DEFAULT_DATE_FORMAT,
    InboundHeader,
    JavaDateFormat,
    build_ack,
    event_in_ack,
    generate_ack,
    read_header,
)
from pannier_hl7v2.datatype import DEFAULTS, NAME, HL7v2DataType, HL7v2Properties
from pannier_hl7v2.message import (
    HL7Message,
    PathError,
    Segment,
    Separators,
    convert_line_breaks,
    detect_separators,
    parse_path,
)
from pannier_hl7v2.xml import er7_to_xml, xml_escape, xml_to_er7

__version__ = "0.1.0"

__all__ = [
    "DEFAULTS",
    "DEFAULT_DATE_FORMAT",
    "NAME",
    "HL7Message",
    "HL7v2DataType",
    "HL7v2Properties",
    "InboundHeader",
    "JavaDateFormat",
    "PathError",
    "Segment",
    "Separators",
    "__version__",
    "build_ack",
    "convert_line_breaks",
    "detect_separators",
    "er7_to_xml",
    "event_in_ack",
    "generate_ack",
    "parse_path",
    "read_header",
    "xml_escape",
    "xml_to_er7",
]
