"""Pannier plugin entry point (``pannier.plugins`` entry point ``json``)."""

from __future__ import annotations

from collections.abc import Sequence

import pannier
from pannier import DataTypeSpec

from pannier_json.datatype import DEFAULTS, NAME, JSONDataType


@pannier.hookimpl
def pannier_register_datatypes() -> Sequence[DataTypeSpec]:
    return [
        DataTypeSpec(
            name=NAME,
            factory=JSONDataType,
            defaults=DEFAULTS,
            description=(
                "JSON values: RFC 8259 parsing with line/column errors, no XML form "
                "(Mirth serializes JSON as JSON)"
            ),
        )
    ]
