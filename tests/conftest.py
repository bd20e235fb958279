"""Shared helpers for cross-distribution tests."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture
def hl7_sample():
    """Read a sample HL7 message from tests/fixtures/hl7 (CR segment delimiters kept)."""

    def read(name: str) -> bytes:
        return (FIXTURES / "hl7" / name).read_bytes()

    return read
