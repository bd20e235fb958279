"""Pannier plugin entry point (``pannier.plugins`` entry point ``xml``)."""

from __future__ import annotations

from collections.abc import Sequence

import pannier
from pannier import DataTypeSpec

from pannier_xml.datatype import DEFAULTS, NAME, XMLDataType


@pannier.hookimpl
def pannier_register_datatypes() -> Sequence[DataTypeSpec]:
    return [
        DataTypeSpec(
            name=NAME,
            factory=XMLDataType,
            defaults=DEFAULTS,
            description=(
                "XML documents: well-formedness checks with line and column, lxml trees, "
                "Mirth's stripNamespaces, batches split by element name, level or XPath"
            ),
        )
    ]
