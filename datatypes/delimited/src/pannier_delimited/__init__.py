"""Delimited text data type for Pannier, compatible with Mirth Connect's "Delimited Text".

Public names:

* :class:`DelimitedDataType` — the :class:`pannier.DataType` the plugin registers as
  ``DELIMITED``; :data:`DEFAULTS` its properties with Mirth's defaults;
  :class:`DelimitedProperties` the checked form; :func:`mirth_unescape` Mirth's delimiter
  unescaping.
* :class:`DelimitedMessage` — what :meth:`DelimitedDataType.parse` returns.
* :class:`DelimitedReader` — records out of text; :func:`text_to_xml`, :func:`xml_to_text`,
  :func:`xml_escape` — Mirth's XML form; :func:`split_batch` — batches.
"""

from pannier_delimited.batch import split_batch
from pannier_delimited.datatype import DelimitedDataType, DelimitedMessage
from pannier_delimited.properties import (
    ALIASES,
    DEFAULTS,
    NAME,
    SPLIT_TYPES,
    DelimitedProperties,
    mirth_unescape,
)
from pannier_delimited.reader import DelimitedReader
from pannier_delimited.serializer import text_to_xml, xml_escape, xml_to_text

__version__ = "0.1.0"

__all__ = [
    "ALIASES",
    "DEFAULTS",
    "NAME",
    "SPLIT_TYPES",
    "DelimitedDataType",
    "DelimitedMessage",
    "DelimitedProperties",
    "DelimitedReader",
    "__version__",
    "mirth_unescape",
    "split_batch",
    "text_to_xml",
    "xml_escape",
    "xml_to_text",
]
