"""XML data type for Pannier, compatible with Mirth Connect's "XML" data type.

Public names:

* :class:`XMLDataType` — the :class:`pannier.DataType` the plugin registers as ``XML``;
  :data:`DEFAULTS` its properties with Mirth's defaults; :class:`XMLProperties` the checked
  form.
* :func:`strip_namespaces` — Mirth's ``StringUtil.stripNamespaces``;
  :func:`parse_document` — strict parsing with line/column errors.
"""

from pannier_xml.datatype import (
    DEFAULTS,
    NAME,
    SPLIT_TYPES,
    XMLDataType,
    XMLProperties,
    parse_document,
    strip_namespaces,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULTS",
    "NAME",
    "SPLIT_TYPES",
    "XMLDataType",
    "XMLProperties",
    "__version__",
    "parse_document",
    "strip_namespaces",
]
