"""``pannier bench`` measures a real engine and checks what it stored: a short run on SQLite
acknowledges and stores every message once, and the check notices a message that is not
there. (Its numbers are not asserted: performance lives in bench/RESULTS.md.)"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from pannier.cli.bench import verify

BIN = Path(sys.executable).parent


def bench(*args: str) -> list[dict]:
    result = subprocess.run(
        [str(BIN / "pannier"), "bench", "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_a_short_run_acknowledges_stores_and_verifies_every_message() -> None:
    (result,) = bench("--database", "sqlite", "--messages", "60", "--warmup", "10")
    assert result["errors"] == 0
    assert result["acknowledged"] == result["stored"] == result["rows"] == 70
    assert result["lost"] == result["duplicated"] == 0
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["max"]
    assert result["rss_peak_mib"] >= result["rss_idle_mib"] > 0
    # Where the CPU went: SQLite runs inside the engine, so no database server line.
    assert set(result["cpu_ms_per_message"]) == {"engine", "load"}
    assert result["cpu_ms_per_message"]["engine"] > result["cpu_ms_per_message"]["load"] > 0
    assert 0 < result["machine_busy"] <= 1


def test_a_local_database_server_cpu_is_counted(mysql_url: str) -> None:
    """With the server on this machine, its processes' CPU per message is reported beside the
    engine's: the two halves of the budget the targets in bench/RESULTS.md are held to."""
    from pannier.cli.bench import server_cpu_seconds

    before = server_cpu_seconds("mysql")
    if before is None:
        pytest.skip("the MariaDB server of the test URL does not run on this machine")
    engine = sa.create_engine(mysql_url, poolclass=sa.NullPool)
    with engine.connect() as conn:  # make the server work: its CPU count must move
        conn.exec_driver_sql("SELECT BENCHMARK(3000000, SHA2('pannier', 256))").all()
    engine.dispose()
    after = server_cpu_seconds("mysql")
    assert after is not None and after - before >= 0.05
    assert server_cpu_seconds("sqlite") is None


@pytest.mark.slow
def test_storage_disabled_is_verified_from_the_written_files() -> None:
    (result,) = bench("--storage", "DISABLED", "--messages", "40", "--warmup", "5")
    assert result["stored"] == result["acknowledged"] == 45 and result["lost"] == 0


@pytest.mark.slow
def test_repeated_runs_are_summed_up_by_their_median_and_range(tmp_path) -> None:
    """A machine whose speed drifts needs several runs: each is reported, then the median
    and range of them all, in the output and in the results file."""
    import statistics

    results = tmp_path / "RESULTS.md"
    lines = bench(
        "--database", "sqlite", "--messages", "40", "--warmup", "5", "--repeat", "3",
        "--results", str(results),
    )  # fmt: skip
    runs = [line for line in lines if "summary" not in line]
    (summary,) = [line["summary"] for line in lines if "summary" in line]
    assert len(runs) == 3 and summary["runs"] == 3
    throughputs = [run["throughput"] for run in runs]
    assert summary["throughput_median"] == statistics.median(throughputs)
    assert (summary["throughput_min"], summary["throughput_max"]) == (
        min(throughputs),
        max(throughputs),
    )
    assert summary["lost"] == summary["duplicated"] == 0
    text = results.read_text()
    assert "Medians of the runs:" in text and "; 3 runs)" in text
    assert f"median {summary['throughput_median']:,.0f} msg/s" in text
    assert text.count("msg/s, ACK p50") == 3  # and every run's own line below


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--repeat", "0", "a whole number of 1 or more"),
        ("--connections", "0", "a whole number of 1 or more"),
        ("--messages", "many", "a whole number of 1 or more"),
        ("--rate", "-5", "a number of 0 or more"),
        ("--rate", "inf", "a number of 0 or more"),
    ],
)
def test_a_number_out_of_range_is_refused_before_anything_runs(option, value, expected) -> None:
    """``--connections 0`` once ran, and reported every acknowledged message lost."""
    result = subprocess.run(
        [str(BIN / "pannier"), "bench", option, value], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"argument {option}: expected {expected}, not {value!r}" in result.stderr
    assert "msg/s" not in result.stdout


def test_the_check_counts_a_message_that_is_missing_or_stored_twice(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "1.hl7").write_bytes(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|PB0001000001|P|2.5.1\r")
    (out / "2.hl7").write_bytes(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|PB0001000002|P|2.5.1\r")
    (out / "3.hl7").write_bytes(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|PB0001000002|P|2.5.1\r")
    counts = verify("", "", out, "DISABLED", ["PB0001000001", "PB0001000002", "PB0001000003"])
    assert (counts["stored"], counts["lost"], counts["duplicated"]) == (2, 1, 1)


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux CPU affinity and two CPUs",
)
def test_the_load_generator_keeps_off_a_pinned_engine_and_gets_its_cpus_back() -> None:
    from pannier.cli.bench import off_engine_cpus

    mine = os.sched_getaffinity(0)
    engine_cpu = min(mine)
    engine = subprocess.Popen(
        ["taskset", "-c", str(engine_cpu), sys.executable, "-c", "import time; time.sleep(30)"]
    )
    try:
        time.sleep(0.3)  # taskset has pinned itself and exec'd python
        with off_engine_cpus(engine.pid):
            assert os.sched_getaffinity(0) == mine - {engine_cpu}
        assert os.sched_getaffinity(0) == mine  # the next engine it starts may use them all
    finally:
        engine.kill()
        engine.wait()


def test_a_server_that_cannot_be_reached_is_named_with_the_option_to_change(
    mysql_url: str, postgres_url: str
) -> None:
    """``make bench`` on a machine without MariaDB: the set says which server it could not
    reach and how to point it elsewhere, instead of failing scenario after scenario."""
    from pannier.cli.bench import unreachable_servers

    port = _closed_port()
    missing = unreachable_servers(
        argparse.Namespace(
            mysql_url=f"mysql+pymysql://root@127.0.0.1:{port}/", postgres_url=postgres_url
        )
    )
    assert list(missing) == ["mysql"]
    assert missing["mysql"].startswith(
        f"cannot reach the MariaDB/MySQL server at 127.0.0.1:{port} (--mysql-url): "
    )
    assert "refused" in missing["mysql"].lower()
    reachable = argparse.Namespace(mysql_url=mysql_url, postgres_url=postgres_url)
    assert unreachable_servers(reachable) == {}


def test_the_standard_set_skips_the_scenarios_of_a_missing_server(
    tmp_path, monkeypatch, capsys
) -> None:
    """Skipped scenarios are said once (on the terminal and in the results file) and do not
    make the set fail; what could run, ran."""
    from pannier.cli import bench as module

    port = _closed_port()
    monkeypatch.setattr(
        module,
        "STANDARD",
        [
            ("echo", ["--scenario", "echo"]),
            ("mysql PRODUCTION", ["--database", "mysql", "--storage", "PRODUCTION"]),
        ],
    )
    results = tmp_path / "RESULTS.md"
    argv = ["pannier", "bench", "--standard", "--repeat", "2", "--messages", "50"]
    argv += ["--warmup", "5", "--mysql-url", f"mysql+pymysql://root@127.0.0.1:{port}/"]
    argv += ["--results", str(results)]
    monkeypatch.setattr(sys, "argv", argv)
    parser = argparse.ArgumentParser()
    module._configure(parser)
    assert module._run(parser.parse_args(argv[2:])) == 0
    out, err = capsys.readouterr()
    said = f"mysql PRODUCTION: skipped: cannot reach the MariaDB/MySQL server at 127.0.0.1:{port}"
    assert err.count(said) == 1
    runs = [line for line in out.splitlines() if line.startswith("bare echo, 8 conn:")]
    assert len(runs) == 2 and "  bare echo, 8 conn: median " in out
    text = results.read_text()
    assert "Not run:" in text and said in text


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_sample_saved_with_editor_line_ends_is_sent_as_hl7(tmp_path) -> None:
    """A message pasted into an editor ends its lines with LF (or CRLF); the generator sends
    CR-separated segments and writes each control id into MSH-10, also when MSH-10 was
    empty (a value-based replacement would have hit the empty MSH-8 instead)."""
    from pannier.cli.bench import make_frames, read_sample

    sample = tmp_path / "mine.hl7"
    sample.write_bytes(
        b"MSH|^~\\&|LAB|HOSP|PANNIER|CLINIC|20261206120000||ORU^R01||P|2.5.1\r\n"
        b"PID|1||123^^^HOSP^MR||Doe^Jane\r\n"
        b"OBX|1|NM|GLU^Glucose||5.4|mmol/L|||||F\r\n\r\n"
    )
    ((control, frame),) = make_frames(read_sample(sample), 12, 1)
    message = frame[1:-2]
    assert b"\n" not in message and message.count(b"\r") == 3 and message.endswith(b"F\r")
    header = message.split(b"\r")[0].split(b"|")
    assert header[9] == control.encode() and header[7] == b"" and header[8] == b"ORU^R01"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"PID|1||123\r", "expected an HL7 v2 message starting with 'MSH|'"),
        (b"MSH|^~\\&|LAB|HOSP\r", "the MSH segment stops before MSH-12"),
    ],
)
def test_a_sample_that_cannot_carry_control_ids_is_refused_at_once(
    tmp_path, content, expected
) -> None:
    sample = tmp_path / "bad.hl7"
    sample.write_bytes(content)
    result = subprocess.run(
        [str(BIN / "pannier"), "bench", "--sample", str(sample)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"pannier bench: --sample {sample}: {expected}" in result.stderr


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--out-dir", "expected an existing folder"),
        ("--results", "the folder {missing} does not exist"),
    ],
)
def test_a_folder_to_write_to_that_is_missing_is_refused_before_measuring(
    tmp_path, option, expected
) -> None:
    """Found out only after the runs, a missing results folder lost what they measured."""
    missing = tmp_path / "nowhere"
    target = missing if option == "--out-dir" else missing / "RESULTS.md"
    result = subprocess.run(
        [str(BIN / "pannier"), "bench", option, str(target)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"pannier bench: {option} {target}: {expected.format(missing=missing)}" in result.stderr
    assert "msg/s" not in result.stdout


OWN_CHANNEL = """\
id = "6f1c0e2a-8b1d-4c6e-9a5f-3d2b7c9e1f00"
name = "ADT to archive"

[properties]
messageStorageMode = "PRODUCTION"

[source]
transportName = "TCP Listener"
responseVariable = "{response}"

[source.properties]
host = "0.0.0.0"
port = 6661

[[destinations]]
metaDataId = 1
name = "Archive"
transportName = "File Writer"

[destinations.properties]
directory = "{out}"
outputPattern = "${{message.messageId}}.hl7"
"""


@pytest.mark.slow
def test_a_users_own_channel_is_measured_as_it_is(tmp_path) -> None:
    """``--channel``: the user's channel file runs as written (its storage mode, its
    destinations), only its listener moved to a free local port; every ACK is checked in the
    store as for the built-in channel."""
    out = tmp_path / "archive"
    channel = tmp_path / "adt.toml"
    channel.write_text(
        OWN_CHANNEL.format(response="Auto-generate (Destinations completed)", out=out)
    )
    (result,) = bench("--channel", str(channel), "--messages", "60", "--warmup", "5")
    assert result["storage"] == "PRODUCTION" and result["errors"] == 0
    assert result["acknowledged"] == result["stored"] == 65 and result["lost"] == 0
    assert len(list(out.iterdir())) == 65  # its File Writer wrote them


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("TCP Listener", "File Reader"), "its source is a File Reader"),
        (("Auto-generate (Destinations completed)", "None"), "its source answers nothing"),
    ],
)
def test_a_channel_the_load_generator_cannot_drive_is_refused_at_once(
    tmp_path, change, expected
) -> None:
    channel = tmp_path / "adt.toml"
    text = OWN_CHANNEL.format(response="Auto-generate (Destinations completed)", out=tmp_path)
    channel.write_text(text.replace(*change))
    result = subprocess.run(
        [str(BIN / "pannier"), "bench", "--channel", str(channel)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"pannier bench: --channel {channel}: {expected}" in result.stderr


def test_a_channel_with_the_standard_set_is_refused(tmp_path) -> None:
    channel = tmp_path / "adt.toml"
    channel.write_text(
        OWN_CHANNEL.format(response="Auto-generate (Destinations completed)", out=tmp_path)
    )
    result = subprocess.run(
        [str(BIN / "pannier"), "bench", "--standard", "--channel", str(channel)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "--channel measures one channel" in result.stderr


def test_a_channel_that_fails_to_deploy_is_reported_with_the_engines_reason(tmp_path) -> None:
    """The engine runs on without a channel it cannot deploy; the bench says why at once
    rather than waiting out the start-up limit and dumping the log."""
    channel = tmp_path / "adt.toml"
    text = OWN_CHANNEL.format(response="Auto-generate (Destinations completed)", out=tmp_path)
    channel.write_text(
        text.replace(
            "[[destinations]]",
            '[[source.transformer.steps]]\nkind = "javascript"\nname = "Normalise"\n'
            'script = "msg"\n\n[[destinations]]',
        )
    )
    result = subprocess.run(
        [str(BIN / "pannier"), "bench", "--channel", str(channel), "--messages", "10"],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 1
    assert "engine: FAILED: RuntimeError: channel 'ADT to archive'" in result.stderr
    assert "failed to deploy" in result.stderr and "did not start" not in result.stderr


def test_the_standard_set_is_held_against_issue_7s_targets_by_median() -> None:
    """Throughput is a floor, latency and memory ceilings; each judged on the median of the
    scenario's runs, so one slow run does not fail a scenario and one fast run does not pass
    it."""
    from pannier.cli.bench import Result, target_lines

    def engine(throughput: float, p99: float = 5.0, peak: float = 90.0, lost: int = 0) -> Result:
        return Result(
            "engine", throughput=throughput, latency_ms={"p99": p99}, rss_peak_mib=peak, lost=lost
        )

    lines = target_lines(
        {
            "mysql DEVELOPMENT": [engine(990), engine(1_010), engine(1_400)],
            "sqlite DISABLED": [engine(4_500), engine(3_900), engine(3_800)],
            "mysql DEVELOPMENT at 300 msg/s": [engine(300, p99=9.3), engine(300, p99=70.0)],
            "idle, 10 channels": [Result("idle", rss_idle_mib=86.4)],
            "mysql (mysqlclient) DEVELOPMENT": [engine(10, peak=160.0, lost=1)],
        }
    )
    assert "sqlite DISABLED: 3,900 msg/s (target 4,000 msg/s or more) ✗" in lines
    assert "mysql DEVELOPMENT: 1,010 msg/s (target 1,000 msg/s or more) ✓" in lines
    assert "mysql DEVELOPMENT at 300 msg/s: p99 39.6 ms (target 50 ms or less) ✓" in lines
    assert "idle, 10 channels: 86.4 MiB idle (target 100 MiB or less) ✓" in lines
    assert "peak RSS of one engine under load: 160 MiB (target 150 MiB or less) ✗" in lines
    assert "acknowledged messages lost 1, duplicated 0 over 9 runs ✗" in lines
    assert not any(line.startswith("mysql (mysqlclient)") for line in lines)  # no target
