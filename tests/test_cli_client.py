"""The client commands as a user runs them: ``pannier run`` in one process with its API on a
free port, ``pannier login / status / channels / messages`` as separate processes against it."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every command is a new process

BIN = Path(sys.executable).parent / "pannier"
CHANNEL_ID = "3c9d1e2f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
CHANNEL = f"""
id = "{CHANNEL_ID}"
name = "CLI channel"
[properties]
messageStorageMode = "DEVELOPMENT"
[source]
transportName = "Channel Reader"
inboundDataType = "HL7V2"
responseVariable = "Auto-generate (Destinations completed)"
[[destinations]]
metaDataId = 1
name = "Write file"
transportName = "File Writer"
[destinations.properties]
directory = "OUT"
outputPattern = "${{message.messageId}}.hl7"
outputAppend = false
"""
# As a text editor saves it: LF line ends.
ADT = (
    "MSH|^~\\&|LAB|GOODHEALTH|REGADT|CLINIC|20240501120000||ADT^A01|MSG1|P|2.5\n"
    "PID|1||123^^^HOSP^MR||DOE^JOHN\n"
)


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``pannier run`` process serving the API; yields its base URL."""
    folder = tmp_path_factory.mktemp("engine")
    (folder / "channels").mkdir()
    (folder / "channels" / "cli.toml").write_text(
        CHANNEL.replace("OUT", str(folder / "out")), encoding="utf-8"
    )
    config = folder / "pannier.toml"
    config.write_text(
        '[server]\ndata_dir = "var"\n[channels]\npaths = ["channels/*.toml"]\n'
        '[api]\nhost = "127.0.0.1"\nport = 0\n',
        encoding="utf-8",
    )
    engine = subprocess.Popen(
        [str(BIN), "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(folder),
    )
    assert engine.stderr is not None
    lines: list[str] = []
    url = None
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        line = engine.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"HTTP API ready at (\S+)/api", line)
        if match:
            url = match.group(1)
    # Keep reading the log so the engine never blocks on a full pipe.
    threading.Thread(target=lambda: lines.extend(engine.stderr), daemon=True).start()  # type: ignore[arg-type]
    try:
        assert url, "the engine never said where its API listens:\n" + "".join(lines)
        yield url
    finally:
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(timeout=30)
        except subprocess.TimeoutExpired:
            engine.kill()
            raise


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANNIER_", "XDG_CONFIG_HOME"))}
    env["HOME"] = str(home)
    env.update(extra)
    return env


def pannier(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``pannier ARGS`` as a user whose home directory is ``home``."""
    return subprocess.run(
        [str(BIN), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(home, **env),
    )


ADMIN = {"PANNIER_API_USER": "admin", "PANNIER_API_PASSWORD": "admin"}


def test_an_engine_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = pannier(tmp_path, "status", "--url", f"http://127.0.0.1:{port}", **ADMIN)
    assert result.returncode == 1
    assert f"cannot reach the Pannier API at http://127.0.0.1:{port}" in result.stderr
    assert "connection refused" in result.stderr


def test_without_credentials_or_with_wrong_ones(engine_url: str, tmp_path: Path) -> None:
    anonymous = pannier(tmp_path, "status", "--url", engine_url)
    assert anonymous.returncode == 1 and "not logged in" in anonymous.stderr
    wrong = pannier(tmp_path, "status", "--url", engine_url, "--user", "admin", "--password", "x")
    assert wrong.returncode == 1 and "login failed for user 'admin'" in wrong.stderr
    refused = pannier(
        tmp_path, "login", "--url", engine_url, "--user", "admin", "--password", "nope"
    )
    assert refused.returncode == 1 and "login failed" in refused.stderr
    assert not (tmp_path / ".config" / "pannier" / "session").exists()


def test_login_keeps_a_private_session_until_logout(engine_url: str, tmp_path: Path) -> None:
    login = pannier(
        tmp_path, "login", "--url", engine_url, "--user", "admin", "--password", "admin"
    )
    assert login.returncode == 0, login.stderr
    session = tmp_path / ".config" / "pannier" / "session"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600

    status = pannier(tmp_path, "status")  # the URL and the login come from the session
    assert status.returncode == 0, status.stderr
    header, row = status.stdout.splitlines()[:2]
    assert header.split() == [
        "CHANNEL",
        "STATE",
        "RECEIVED",
        "FILTERED",
        "QUEUED",
        "SENT",
        "ERRORED",
    ]
    assert row.startswith("CLI channel") and "STARTED" in row

    logout = pannier(tmp_path, "logout")
    assert logout.returncode == 0 and not session.exists()
    after = pannier(tmp_path, "status", "--url", engine_url)
    assert after.returncode == 1 and "not logged in" in after.stderr


def test_send_search_and_show_a_message(engine_url: str, tmp_path: Path) -> None:
    message = tmp_path / "adt.hl7"
    message.write_text(ADT, encoding="utf-8")
    url = ("--url", engine_url)
    sent = pannier(tmp_path, "messages", "send", "CLI channel", str(message), *url, **ADMIN)
    assert sent.returncode == 0, sent.stderr
    found = re.search(
        r"message (\d+) sent to channel 'CLI channel': 0=TRANSFORMED, 1=SENT", sent.stdout
    )
    assert found, sent.stdout
    message_id = found.group(1)

    search = pannier(tmp_path, "messages", "search", "cli channel", "--status", "S", *url, **ADMIN)
    assert search.returncode == 0, search.stderr
    ids = [line.split()[0] for line in search.stdout.splitlines()[1:]]
    assert message_id in ids
    none = pannier(tmp_path, "messages", "search", CHANNEL_ID, "--status", "E", *url, **ADMIN)
    assert none.returncode == 0 and "no messages" in none.stdout

    show = pannier(tmp_path, "messages", "show", "CLI channel", message_id, *url, **ADMIN)
    assert show.returncode == 0, show.stderr
    assert "== Source (0): TRANSFORMED" in show.stdout
    assert "== Write file (1): SENT" in show.stdout
    assert "PID|1||123^^^HOSP^MR||DOE^JOHN" in show.stdout
    assert "metadata: SOURCE=GOODHEALTH, TYPE=ADT-A01" in show.stdout, "segments were CR-ended"

    missing = pannier(tmp_path, "messages", "show", "CLI channel", "999999", *url, **ADMIN)
    assert missing.returncode == 1 and "not found: message 999999" in missing.stderr
    nosuch = pannier(tmp_path, "messages", "search", "No such channel", *url, **ADMIN)
    assert nosuch.returncode == 1
    assert "no channel with id or name 'No such channel'" in nosuch.stderr
    unreadable = pannier(tmp_path, "messages", "send", "CLI channel", "nope.hl7", *url, **ADMIN)
    assert unreadable.returncode == 2 and "nope.hl7: cannot read" in unreadable.stderr
    bad_status = pannier(
        tmp_path, "messages", "search", "CLI channel", "--status", "Z", *url, **ADMIN
    )
    assert bad_status.returncode == 1 and "status = 'Z'" in bad_status.stderr


def test_list_stop_and_start_a_channel(engine_url: str, tmp_path: Path) -> None:
    url = ("--url", engine_url)
    listed = pannier(tmp_path, "channels", "list", *url, **ADMIN)
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"{CHANNEL_ID}\s+CLI channel\s+STARTED", listed.stdout), listed.stdout

    stopped = pannier(tmp_path, "channels", "stop", "CLI channel", *url, **ADMIN)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped: STOPPED" in stopped.stdout
    message = tmp_path / "adt.hl7"
    message.write_text(ADT, encoding="utf-8")
    refused = pannier(tmp_path, "messages", "send", "CLI channel", str(message), *url, **ADMIN)
    assert refused.returncode == 1 and "is stopped" in refused.stderr

    started = pannier(tmp_path, "channels", "start", CHANNEL_ID, *url, **ADMIN)
    assert started.returncode == 0 and "started: STARTED" in started.stdout, started.stderr
    undeployed = pannier(tmp_path, "channels", "undeploy", "cli CHANNEL", *url, **ADMIN)
    assert undeployed.returncode == 0 and "undeployed" in undeployed.stdout, undeployed.stderr
    status = pannier(tmp_path, "status", *url, **ADMIN)
    assert status.stdout.strip() == "no channels deployed"
    deployed = pannier(tmp_path, "channels", "deploy", "CLI channel", *url, **ADMIN)
    assert deployed.returncode == 0 and "deployed: STARTED" in deployed.stdout, deployed.stderr


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``pannier --help`` names each operation a user reaches for, with its one-line help."""
    from pannier.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in (
        "run", "config", "plugins", "channel", "convert", "send",
        "login", "logout", "channels", "status", "messages", "bench",
    ):  # fmt: skip
        assert f"\n    {command} " in out, f"{command} missing from pannier --help"
