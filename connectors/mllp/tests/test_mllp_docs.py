"""docs/connectors/mllp.md lists exactly the properties each connector reads, with their
defaults (a property added to the code but not to the page, or the reverse, fails here)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pannier_mllp import LISTENER_DEFAULTS, SENDER_DEFAULTS

DOC = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "mllp.md"


def property_table(section: str) -> dict[str, str]:
    """``{property: default as written}`` from the first property table under the
    ``## <section>`` heading."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    [body] = [part for part in parts if part.startswith(section)]
    lines = body.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lower().startswith("| property |"))
    rows: dict[str, str] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break  # the end of the first property table
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        name, default = cells[0], cells[1]
        assert re.fullmatch(r"`\w+`", name), f"one property per row please: {line}"
        assert name[1:-1] not in rows, f"{name} is listed twice under {section}"
        rows[name[1:-1]] = default.replace("\\|", "|")
    return rows


def written(value: Any) -> str:
    """A default as the page writes it: TOML-like, in backticks."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{json.dumps(value)}`"
    return f"`{json.dumps(value)}`"


@pytest.mark.parametrize(
    ("section", "defaults"),
    [("TCP Listener", LISTENER_DEFAULTS), ("TCP Sender", SENDER_DEFAULTS)],
)
def test_every_property_is_documented_with_its_default(
    section: str, defaults: Mapping[str, Any]
) -> None:
    table = property_table(section)
    assert set(table) == set(defaults), (
        f"undocumented: {sorted(set(defaults) - set(table))}; "
        f"documented but not read: {sorted(set(table) - set(defaults))}"
    )
    wrong = {key: (table[key], written(value)) for key, value in defaults.items()}
    assert {k: v for k, v in wrong.items() if v[0] != v[1]} == {}
