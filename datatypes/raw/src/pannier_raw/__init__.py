"""Raw data type for Pannier, compatible with Mirth Connect's "Raw" data type.

Public names: :class:`RawDataType` (registered as ``RAW``), :data:`DEFAULTS` (Mirth's
properties and defaults).
"""

from pannier_raw.datatype import DEFAULTS, NAME, RawDataType

__version__ = "0.1.0"

__all__ = ["DEFAULTS", "NAME", "RawDataType", "__version__"]
