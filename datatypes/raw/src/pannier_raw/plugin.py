"""Pannier plugin entry point (``pannier.plugins`` entry point ``raw``)."""

from __future__ import annotations

from collections.abc import Sequence

import pannier
from pannier import DataTypeSpec

from pannier_raw.datatype import DEFAULTS, NAME, RawDataType


@pannier.hookimpl
def pannier_register_datatypes() -> Sequence[DataTypeSpec]:
    return [
        DataTypeSpec(
            name=NAME,
            factory=RawDataType,
            defaults=DEFAULTS,
            description="text as it is: no parsing, no XML form, no metadata (Mirth's Raw)",
        )
    ]
