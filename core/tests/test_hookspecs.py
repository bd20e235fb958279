"""Every hook spec is typed, documented in its docstring and in docs/plugin-hooks.md, and
exercised by at least one test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from pannier import hookspecs

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "plugin-hooks.md").read_text(encoding="utf-8")
HOOKS = [
    (name, fn)
    for name, fn in vars(hookspecs).items()
    if name.startswith("pannier_") and inspect.isfunction(fn)
]


def test_there_are_hooks() -> None:
    assert len(HOOKS) >= 14


@pytest.mark.parametrize(("name", "fn"), HOOKS, ids=[name for name, _ in HOOKS])
def test_hook_is_documented_in_its_docstring(name: str, fn) -> None:
    doc = inspect.getdoc(fn) or ""
    assert doc, f"{name} has no docstring"
    assert "Added in:" in doc, f"{name}: say which version added it"
    assert "Cluster:" in doc, f"{name}: say what it means in cluster mode"
    params = [p for p in inspect.signature(fn).parameters]
    for param in params:
        assert f"{param}:" in doc, f"{name}: parameter {param} is not described"
    assert "return" in inspect.get_annotations(fn), f"{name} has no return annotation"


@pytest.mark.parametrize(("name", "fn"), HOOKS, ids=[name for name, _ in HOOKS])
def test_hook_is_in_the_reference_docs_with_the_same_text(name: str, fn) -> None:
    match = re.search(rf"^## {name}\n(.*?)(?=^## |\Z)", DOC, re.S | re.M)
    assert match, f"docs/plugin-hooks.md has no section for {name}"
    section = " ".join(match.group(1).split())
    assert " ".join((inspect.getdoc(fn) or "").split()) in section, (
        f"docs/plugin-hooks.md text for {name} differs from the docstring"
    )


@pytest.mark.parametrize(("name", "fn"), HOOKS, ids=[name for name, _ in HOOKS])
def test_hook_has_a_test(name: str, fn) -> None:
    this = Path(__file__).resolve()
    sources = [
        p
        for folder in ("core", "connectors", "datatypes", "backends", "plugins", "tests")
        for p in (ROOT / folder).rglob("*.py")
        if "tests" in p.parts and "plugin_dists" not in p.parts and p.resolve() != this
    ]
    assert any(name in p.read_text(encoding="utf-8") for p in sources), f"no test mentions {name}"
