"""A short schemathesis run against the served OpenAPI document: no request makes a 5xx.

It runs ``python -m tests.api.fuzz`` (what ``make fuzz`` runs, with fewer examples): an engine
serving the API on a free port in its own process, and schemathesis against it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
async def test_short_fuzz_run_has_no_server_errors() -> None:
    if shutil.which("schemathesis", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    result = await trio.run_process(
        [sys.executable, "-m", "tests.api.fuzz", "5", "--quick"],
        cwd=str(ROOT),
        capture_stdout=True,
        stderr=subprocess.STDOUT,
        check=False,
    )
    output = result.stdout.decode("utf-8", "replace")
    assert result.returncode == 0, output[-6000:]
    assert "No issues found" in output
