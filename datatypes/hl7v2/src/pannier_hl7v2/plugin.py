"""Pannier plugin entry point (``pannier.plugins`` entry point ``hl7v2``)."""

from __future__ import annotations

from collections.abc import Sequence

import pannier
from pannier import DataTypeSpec

from pannier_hl7v2.datatype import DEFAULTS, NAME, HL7v2DataType


@pannier.hookimpl
def pannier_register_datatypes() -> Sequence[DataTypeSpec]:
    return [
        DataTypeSpec(
            name=NAME,
            factory=HL7v2DataType,
            defaults=DEFAULTS,
            description=(
                "HL7 v2.x in ER7 (pipe) encoding: lazy parser, Mirth-compatible XML, "
                "MSH batch splitting and AA/AE/AR ACK generation"
            ),
        )
    ]
