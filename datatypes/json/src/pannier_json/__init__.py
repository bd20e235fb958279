"""JSON data type for Pannier, compatible with Mirth Connect's "JSON" data type.

Public names: :class:`JSONDataType` (registered as ``JSON``), :data:`DEFAULTS` (Mirth's
properties and defaults), :func:`decode` (JSON text to a value, with line/column errors).
"""

from pannier_json.datatype import DEFAULTS, NAME, JSONDataType, decode

__version__ = "0.1.0"

__all__ = ["DEFAULTS", "NAME", "JSONDataType", "__version__", "decode"]
