"""A check that a connector's documentation page lists exactly the properties it reads.

A connector page (``docs/connectors/<name>.md``) has, under a ``## <transport name>``
heading, a table whose header starts ``| property |`` and whose rows are one property each:
``| `name` | `default` | meaning |``. :func:`check_properties_documented` compares that table
with the connector's ``ConnectorType.defaults``, so a property added to the code but not to
the page (or the reverse), or a default that changed, fails the plugin's tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def property_table(doc: Path, section: str) -> dict[str, str]:
    """``{property: default as written}`` from the first property table under the
    ``## <section>`` heading of ``doc``."""
    text = doc.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    bodies = [part for part in parts if part.startswith(section)]
    assert bodies, f"{doc.name} has no '## {section}' section"
    lines = bodies[0].splitlines()
    starts = [i for i, line in enumerate(lines) if line.lower().startswith("| property |")]
    assert starts, f"{doc.name}, '## {section}': no table with a '| property |' header"
    rows: dict[str, str] = {}
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break  # the end of the first property table
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        # `name` and `default` may carry a note after them: "`url` (required)".
        name = re.fullmatch(r"`(\w+)`(?: \(.*\))?", cells[0])
        default = re.match(r"`([^`]*)`", cells[1].replace("\\|", "|"))
        assert name, f"{doc.name}: one property per row please: {line}"
        assert default, f"{doc.name}: no `default` in: {line}"
        assert name[1] not in rows, f"{doc.name}: {name[1]} is listed twice under {section}"
        rows[name[1]] = default[0]
    return rows


def written(value: Any) -> set[str]:
    """How a page may write a default: TOML-like (``true``, ``5000``, ``"text"``; a word of
    text also bare, as ``None``), in backticks."""
    if isinstance(value, bool):
        return {f"`{str(value).lower()}`"}
    if isinstance(value, str) and re.fullmatch(r"[\w.-]+", value):
        return {f"`{json.dumps(value)}`", f"`{value}`"}
    return {f"`{json.dumps(value)}`"}


def check_properties_documented(doc: Path, section: str, defaults: Mapping[str, Any]) -> None:
    """Assert that ``doc``'s property table under ``## <section>`` names exactly the keys of
    ``defaults``, each with its default."""
    table = property_table(doc, section)
    assert set(table) == set(defaults), (
        f"{doc.name}, {section}: undocumented: {sorted(set(defaults) - set(table))}; "
        f"documented but not read: {sorted(set(table) - set(defaults))}"
    )
    wrong = {
        key: (table[key], min(written(value)))
        for key, value in defaults.items()
        if table[key] not in written(value)
    }
    assert not wrong, f"{doc.name}, {section}: defaults differ (page, code): {wrong}"
