"""Pannier plugin entry point (``pannier.plugins`` entry point ``delimited``)."""

from __future__ import annotations

from collections.abc import Sequence

import pannier
from pannier import DataTypeSpec

from pannier_delimited.datatype import DelimitedDataType
from pannier_delimited.properties import DEFAULTS, NAME


@pannier.hookimpl
def pannier_register_datatypes() -> Sequence[DataTypeSpec]:
    return [
        DataTypeSpec(
            name=NAME,
            factory=DelimitedDataType,
            defaults=DEFAULTS,
            description=(
                "delimited (CSV-like) and fixed-width text: Mirth's <delimited><row><column1> "
                "XML both ways, batches split by record, delimiter or grouping column"
            ),
        )
    ]
