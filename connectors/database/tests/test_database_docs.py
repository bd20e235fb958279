"""docs/connectors/database.md lists exactly the properties each connector reads, with their
defaults (a property added to the code but not to the page, or the reverse, fails here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pannier.testing.docs import check_properties_documented
from pannier_database.plugin import pannier_register_connectors

DOC = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "database.md"


@pytest.mark.parametrize("kind", pannier_register_connectors(), ids=lambda k: k.transport_name)
def test_every_property_is_documented_with_its_default(kind) -> None:
    check_properties_documented(DOC, kind.transport_name, kind.defaults)
