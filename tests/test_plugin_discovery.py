"""Plugin discovery through real entry points of real installed distributions.

The test distributions in ``tests/plugin_dists`` are installed with pip into throw-away
directories and put on ``PYTHONPATH`` of a ``pannier`` subprocess, exactly as a user's
``pip install`` would expose them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DISTS = ROOT / "tests" / "plugin_dists"


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory):
    cache: dict[tuple[str, ...], Path] = {}

    def install(*names: str) -> Path:
        if names not in cache:
            target = tmp_path_factory.mktemp("site-" + "-".join(names))
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    "--no-build-isolation",
                    "--no-index",
                    "--target",
                    str(target),
                    *(str(DISTS / name) for name in names),
                ],
                check=True,
                capture_output=True,
            )
            cache[names] = target
        return cache[names]

    return install


def pannier(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run(
        [sys.executable, "-m", "pannier.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pannier.toml"
    path.write_text('[channels]\npaths = []\n[server]\ndata_dir = "var"\n' + text)
    return path


def test_plugins_lists_installed_plugins_and_reports_a_broken_one(installed) -> None:
    site = installed("good", "broken")
    result = pannier(site, "plugins")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "testgood  (pannier-testgood 1.2.0)" in out
    assert "Test Echo (destination)" in out
    assert "test-memory" in out
    assert "observes: engine_started" in out
    broken = next(line for line in out.splitlines() if line.startswith("testbroken"))
    assert "BROKEN" in broken and "pannier_dependency_that_does_not_exist" in broken
    assert "core  (pannier-core" in out


def test_a_plugin_command_runs(installed) -> None:
    result = pannier(installed("good", "broken"), "hello", "ward 7")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from testgood, ward 7"


def test_misspelt_hook_stops_startup_naming_plugin_and_hook(installed, tmp_path) -> None:
    site = installed("misspelt")
    for args in (["plugins"], ["config", "check", "--config", str(write_config(tmp_path, ""))]):
        result = pannier(site, *args)
        assert result.returncode == 2
        assert "testmisspelt" in result.stderr
        assert "pannier_register_conectors" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("required", "expected"),
    [
        ("pannier-testbroken", "is broken"),
        ("pannier-redis>=0.1", "is not installed"),
        ("pannier-testgood>=2", "installed at version 1.2.0"),
    ],
)
def test_required_plugin_problems_stop_startup(installed, tmp_path, required, expected) -> None:
    config = write_config(tmp_path, f'[plugins]\nrequired = ["{required}"]\n')
    result = pannier(installed("good", "broken"), "config", "check", "--config", str(config))
    assert result.returncode == 2, result.stdout
    assert required in result.stderr and expected in result.stderr


def test_required_plugin_present_starts(installed, tmp_path) -> None:
    config = write_config(tmp_path, '[plugins]\nrequired = ["pannier-testgood>=1.0", "file"]\n')
    result = pannier(installed("good", "broken"), "config", "check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_allow_list_skips_other_plugins_entirely(installed, tmp_path) -> None:
    config = write_config(
        tmp_path, '[plugins]\nenabled = ["testgood"]\n[cluster]\nmap_backend = "test-memory"\n'
    )
    result = pannier(installed("good", "broken"), "config", "check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "testbroken" not in result.stderr


def test_unknown_backend_lists_installed_ones(installed, tmp_path) -> None:
    config = write_config(tmp_path, '[cluster]\nmap_backend = "redis"\n')
    result = pannier(installed("good", "broken"), "config", "check", "--config", str(config))
    assert result.returncode == 2
    assert "cluster.map_backend = 'redis'" in result.stderr
    assert "memory, test-memory" in result.stderr
    assert "Install pannier-redis" in result.stderr


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ('repeat = "twice"', "plugins.testgood.repeat = 'twice'"),
        ("colour = 1", "plugins.testgood.colour: unknown key; testgood accepts: greeting, repeat"),
    ],
)
def test_plugin_settings_are_validated(installed, tmp_path, section, expected) -> None:
    config = write_config(tmp_path, f"[plugins.testgood]\n{section}\n")
    result = pannier(installed("good", "broken"), "config", "check", "--config", str(config))
    assert result.returncode == 2
    assert expected in result.stderr


def test_the_built_in_plugins_are_listed_with_what_they_contribute(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pannier.cli.main", "plugins"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for line in (
        "core  (pannier-core 0.1.0)",
        "mllp  (pannier-mllp 0.1.0)",
        "file  (pannier-file 0.1.0)",
        "hl7v2  (pannier-hl7v2 0.1.0)",
        "connectors: TCP Listener (source), TCP Sender (destination)",
        "connectors: File Writer (destination)",
        "data types: HL7V2",
        "map backends: memory",
        "sequence allocators: block, single",
        "cluster buses: local",
        "commands: send",
    ):
        assert line in out, f"{line!r} not in:\n{out}"
