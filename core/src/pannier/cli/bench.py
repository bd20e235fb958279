"""``pannier bench``: end-to-end throughput, ACK latency and memory of a real engine.

Each scenario starts ``pannier run`` in a subprocess with a generated configuration and channel
(TCP Listener in MLLP mode -> HL7 v2 source transformer with one mapper step -> File Writer,
``Auto-generate (Destinations completed)``), drives it with a built-in trio MLLP load generator
(N messages over C persistent connections, closed loop or at an offered rate), and reports
messages/s, ACK latency percentiles, errors and the engine's peak RSS. Afterwards it checks the
database (or, with storage DISABLED, the written files): every acknowledged message present
exactly once. The engine runs in its own process so that the load generator does not share its
interpreter, as in production; the numbers are the engine's, measured from outside.

``--channel FILE`` runs the user's own channel instead (TOML or Mirth XML; its listener moved
to a free local port, everything else as written), with ``--sample FILE`` as the message.

``--scenario echo`` measures a bare trio MLLP ACK server driven the same way: the ceiling of
this machine for this client. ``--scenario idle`` deploys ``--channels`` channels and reports
the engine's resident memory at rest.

The kernel cannot import the MLLP plugin, so the few lines of MLLP framing the generator and the
echo server need are here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio

from pannier.extensions import CliCommand
from pannier.model.channel import Channel
from pannier.model.mirth_xml import channel_to_toml

START, END = b"\x0b", b"\x1c\x0d"
SERVERS = {
    "mysql": "mysql+pymysql://root@127.0.0.1:3306/",
    "postgres": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
}
STORAGE_MODES = ("DEVELOPMENT", "PRODUCTION", "RAW", "METADATA", "DISABLED")
CONTROL_ID = re.compile(rb"\|(P[BW]\d{10})\|")
LISTENING = re.compile(r"TCP Listener of channel (.+) listening on [^\s]+:(\d+)")

#: The standard set run by ``make bench``: (label, arguments).
STANDARD: list[tuple[str, list[str]]] = [
    ("echo", ["--scenario", "echo"]),
    *[
        (f"{db} {mode}", ["--database", db, "--storage", mode])
        for db in ("sqlite", "mysql", "postgres")
        for mode in ("PRODUCTION", "DEVELOPMENT")
    ],
    ("sqlite DISABLED", ["--database", "sqlite", "--storage", "DISABLED"]),
    (
        "sqlite DISABLED, 2 workers",
        ["--database", "sqlite", "--storage", "DISABLED", "--workers", "2"],
    ),
    (
        "mysql DEVELOPMENT at 300 msg/s",
        ["--database", "mysql", "--storage", "DEVELOPMENT", "--rate", "300", "--messages", "3000"],
    ),
    ("idle, 10 channels", ["--scenario", "idle", "--channels", "10"]),
]
if importlib.util.find_spec("MySQLdb") is not None:  # pannier[mysqlclient] installed
    _MYSQLCLIENT = ["--database", "mysql", "--mysql-driver", "mysqldb", "--storage", "DEVELOPMENT"]
    STANDARD[-1:-1] = [
        ("mysql (mysqlclient) DEVELOPMENT", _MYSQLCLIENT),
        (
            "mysql (mysqlclient) DEVELOPMENT at 300 msg/s",
            [*_MYSQLCLIENT, "--rate", "300", "--messages", "3000"],
        ),
    ]

#: Issue 7's targets for the standard set on the 2-core reference machine, database on the same
#: machine (bench/RESULTS.md): label -> (measure, bound). ``msg/s`` is a floor, the others
#: ceilings. Elsewhere they are a scale to read one's own numbers against, not a verdict.
TARGETS: dict[str, tuple[str, float]] = {
    "sqlite PRODUCTION": ("msg/s", 1500),
    "sqlite DEVELOPMENT": ("msg/s", 1200),
    "sqlite DISABLED": ("msg/s", 4000),
    "mysql PRODUCTION": ("msg/s", 1200),
    "mysql DEVELOPMENT": ("msg/s", 1000),
    "postgres PRODUCTION": ("msg/s", 1200),
    "postgres DEVELOPMENT": ("msg/s", 1000),
    "mysql DEVELOPMENT at 300 msg/s": ("ms p99", 50),
    "idle, 10 channels": ("MiB idle", 100),
}
PEAK_RSS_TARGET_MIB = 150
"""One engine process under load."""


#: The 10-segment ADT the targets are measured with (synthetic; shipped with pannier-core).
SAMPLE = Path(__file__).resolve().with_name("bench_sample.hl7")


@dataclass
class Result:
    """What one scenario measured."""

    scenario: str
    database: str = ""
    storage: str = ""
    connections: int = 0
    messages: int = 0
    rate: float = 0.0
    seconds: float = 0.0
    throughput: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    acknowledged: int = 0
    stored: int | None = None
    lost: int | None = None
    duplicated: int | None = None
    rows: int | None = None
    rss_idle_mib: float | None = None
    rss_peak_mib: float | None = None
    engine_cpu: float | None = None
    workers: int = 1
    cpu_ms_per_message: dict[str, float] = field(default_factory=dict)
    """Where the machine's CPU went, per timed message: ``engine``, ``database`` (the local
    server's processes, when it runs here) and ``load`` (the load generator)."""
    machine_busy: float | None = None
    """Share of all CPUs busy during the timed run (every process, the kernel's too)."""
    notes: list[str] = field(default_factory=list)

    def where(self) -> str:
        """What ran: ``mysql DEVELOPMENT, 2 workers, 8 conn, offered 300 msg/s``."""
        where = "bare echo" if self.scenario == "echo" else f"{self.database} {self.storage}"
        if self.workers > 1:
            where += f", {self.workers} workers"
        offered = f", offered {self.rate:g} msg/s" if self.rate else ""
        return f"{where}, {self.connections} conn{offered}"

    def line(self) -> str:
        if self.scenario == "idle":
            return f"idle: {self.notes[0]}, RSS {self.rss_idle_mib:.1f} MiB"
        lat = self.latency_ms
        text = (
            f"{self.where()}: {self.throughput:,.0f} msg/s, "
            f"ACK p50 {lat.get('p50', 0):.1f} / p90 {lat.get('p90', 0):.1f} / "
            f"p99 {lat.get('p99', 0):.1f} / max {lat.get('max', 0):.1f} ms, "
            f"errors {self.errors}"
        )
        if self.engine_cpu is not None:
            text += f", engine CPU {self.engine_cpu:.0%}"  # of one core; summed over workers
        if self.cpu_ms_per_message:
            parts = " / ".join(f"{k} {v:.2f}" for k, v in self.cpu_ms_per_message.items())
            text += f", CPU ms/msg {parts}"
        if self.machine_busy is not None:
            text += f", machine {self.machine_busy:.0%} busy"
        if self.rss_idle_mib is not None and self.rss_peak_mib is not None:
            text += f", RSS idle {self.rss_idle_mib:.0f} / peak {self.rss_peak_mib:.0f} MiB"
        elif self.rss_peak_mib is not None:
            text += f", server RSS peak {self.rss_peak_mib:.0f} MiB"
        if self.stored is not None:
            text += (
                f"; acknowledged (with warm-up) {self.acknowledged}, stored {self.stored}, "
                f"lost {self.lost}, duplicated {self.duplicated}"
                + (f", D_M rows {self.rows}" if self.rows else "")
            )
        return text


def summarise_runs(runs: list[Result]) -> dict[str, Any]:
    """The repeated runs of one scenario in a few numbers: throughput's median and range,
    the median p99 latency, engine CPU per message and peak RSS, and every run's losses.

    One run is one sample of a machine whose speed can drift by a fifth within minutes (a
    virtual machine's neighbours): the median of runs spread over the whole set is the figure
    to compare, and the range says how far to trust it."""
    first = runs[0]
    summary: dict[str, Any] = {"scenario": first.scenario, "runs": len(runs)}
    if first.scenario == "idle":
        rss = [r.rss_idle_mib or 0.0 for r in runs]
        summary.update(
            where=first.notes[0] if first.notes else "",
            rss_idle_mib_median=statistics.median(rss),
            rss_idle_mib_min=min(rss),
            rss_idle_mib_max=max(rss),
        )
        return summary
    throughput = [r.throughput for r in runs]
    summary.update(
        where=first.where(),
        throughput_median=statistics.median(throughput),
        throughput_min=min(throughput),
        throughput_max=max(throughput),
        p99_ms_median=statistics.median(r.latency_ms.get("p99", 0.0) for r in runs),
        lost=sum(r.lost or 0 for r in runs),
        duplicated=sum(r.duplicated or 0 for r in runs),
    )
    engine = [r.cpu_ms_per_message["engine"] for r in runs if "engine" in r.cpu_ms_per_message]
    if engine:
        summary["engine_cpu_ms_median"] = statistics.median(engine)
    peaks = [r.rss_peak_mib for r in runs if r.rss_peak_mib is not None]
    if peaks:
        summary["rss_peak_mib_max"] = max(peaks)
    return summary


def target_lines(by_label: dict[str, list[Result]]) -> list[str]:
    """Each measured scenario that has a target (:data:`TARGETS`) against it: the median of
    its runs, the bound, and whether it holds; then peak memory and losses over every run."""
    lines = []
    for label, (measure, bound) in TARGETS.items():
        runs = by_label.get(label)
        if not runs:
            continue
        if measure == "msg/s":
            value = statistics.median(r.throughput for r in runs)
            held, wanted = value >= bound, f"{bound:,.0f} msg/s or more"
            shown = f"{value:,.0f} msg/s"
        elif measure == "ms p99":
            value = statistics.median(r.latency_ms.get("p99", math.inf) for r in runs)
            held, wanted, shown = value <= bound, f"{bound:g} ms or less", f"p99 {value:.1f} ms"
        else:
            value = statistics.median(r.rss_idle_mib or math.inf for r in runs)
            held, wanted = value <= bound, f"{bound:g} MiB or less"
            shown = f"{value:.1f} MiB idle"
        lines.append(f"{label}: {shown} (target {wanted}) {'✓' if held else '✗'}")
    engines = [r for group in by_label.values() for r in group if r.scenario == "engine"]
    single = [r.rss_peak_mib for r in engines if r.workers == 1 and r.rss_peak_mib is not None]
    if single:
        peak = max(single)
        held = peak <= PEAK_RSS_TARGET_MIB
        lines.append(
            f"peak RSS of one engine under load: {peak:.0f} MiB "
            f"(target {PEAK_RSS_TARGET_MIB} MiB or less) {'✓' if held else '✗'}"
        )
    if engines:
        lost = sum(r.lost or 0 for r in engines)
        duplicated = sum(r.duplicated or 0 for r in engines)
        clean = lost == 0 and duplicated == 0
        lines.append(
            f"acknowledged messages lost {lost}, duplicated {duplicated} over "
            f"{len(engines)} runs {'✓' if clean else '✗'}"
        )
    return lines


def summary_line(summary: dict[str, Any]) -> str:
    runs = summary["runs"]
    if summary["scenario"] == "idle":
        return (
            f"idle: {summary['where']}, RSS median {summary['rss_idle_mib_median']:.1f} MiB "
            f"({summary['rss_idle_mib_min']:.1f}-{summary['rss_idle_mib_max']:.1f}; {runs} runs)"
        )
    text = (
        f"{summary['where']}: median {summary['throughput_median']:,.0f} msg/s "
        f"({summary['throughput_min']:,.0f}-{summary['throughput_max']:,.0f}; {runs} runs), "
        f"ACK p99 median {summary['p99_ms_median']:.1f} ms"
    )
    if "engine_cpu_ms_median" in summary:
        text += f", engine CPU median {summary['engine_cpu_ms_median']:.2f} ms/msg"
    if "rss_peak_mib_max" in summary:
        text += f", RSS peak max {summary['rss_peak_mib_max']:.0f} MiB"
    if summary["scenario"] == "engine":
        text += f"; lost {summary['lost']}, duplicated {summary['duplicated']}"
    return text


# --- MLLP -------------------------------------------------------------------------------------


async def read_frame(stream: trio.abc.ReceiveStream, buffer: bytearray) -> bytes:
    """The next MLLP payload from ``stream`` (bytes left over stay in ``buffer``)."""
    while True:
        end = buffer.find(END)
        if end >= 0:
            start = buffer.find(START, 0, end)
            payload = bytes(buffer[start + 1 : end])
            del buffer[: end + len(END)]
            return payload
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError("the server closed the connection")
        buffer += data


def make_ack(message: bytes) -> bytes:
    """A minimal HL7 AA acknowledgement echoing MSH-10 (what the echo server answers)."""
    msh = message.split(b"\r", 1)[0].split(b"|")
    control = msh[9] if len(msh) > 9 else b""
    return b"MSH|^~\\&|ECHO||||||ACK|" + control + b"|P|2.5.1\rMSA|AA|" + control + b"\r"


async def serve_echo(port: int) -> None:
    """A bare trio MLLP server answering each frame with an ACK (the ceiling scenario)."""

    async def handle(stream: trio.SocketStream) -> None:
        buffer = bytearray()
        try:
            while True:
                payload = await read_frame(stream, buffer)
                await stream.send_all(START + make_ack(payload) + END)
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    await trio.serve_tcp(handle, port, host="127.0.0.1")


@dataclass
class Load:
    """What the load generator saw."""

    latencies: list[float] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


ACK_WAIT_SECONDS = 60
"""How long a connection of the load generator waits for an answer before it gives up."""


async def drive(port: int, frames: list[tuple[str, bytes]], connections: int, rate: float) -> Load:
    """Send ``frames`` over ``connections`` persistent connections; closed loop (each
    connection sends its next message when the previous one is acknowledged) or, with
    ``rate``, open loop: message i is due at i/rate seconds and its latency counts from then,
    so a stalled engine cannot hide its delay (no coordinated omission)."""
    load = Load()
    started = trio.current_time()

    async def client(index: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        buffer = bytearray()
        async with stream:
            for i in range(index, len(frames), connections):
                control, frame = frames[i]
                due = started + i / rate if rate else trio.current_time()
                if rate:
                    await trio.sleep_until(due)
                try:
                    await stream.send_all(frame)
                    with trio.fail_after(ACK_WAIT_SECONDS):
                        ack = await read_frame(stream, buffer)
                except trio.TooSlowError:
                    load.errors.append(f"{control}: no answer within {ACK_WAIT_SECONDS} s")
                    return
                except (EOFError, OSError, trio.BrokenResourceError) as exc:
                    load.errors.append(f"{control}: {type(exc).__name__}: {exc}")
                    return
                load.latencies.append(trio.current_time() - due)
                if b"MSA|AA|" + control.encode() in ack:
                    load.acknowledged.append(control)
                else:
                    load.errors.append(f"{control}: {ack[:200]!r}")

    async with trio.open_nursery() as nursery:
        for index in range(connections):
            nursery.start_soon(client, index)
    load.seconds = trio.current_time() - started
    return load


class BenchInputError(ValueError):
    """A file given to the bench (``--sample``, ``--channel``) cannot be used as it is; the
    text says why."""


def read_sample(path: str | Path) -> bytes:
    """The HL7 v2 message of ``path`` as the load generator sends it: segments separated by CR
    whatever line ends the file was saved with (an editor's LF or CRLF), one CR at the end.
    Raises :class:`BenchInputError` when it is not a message whose MSH-10 can carry the
    generator's control ids (every acknowledged message is looked up by it afterwards)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BenchInputError(f"--sample {path}: {exc.strerror or exc}") from None
    text = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").strip(b"\r \t") + b"\r"
    if not text.startswith(b"MSH|"):
        raise BenchInputError(
            f"--sample {path}: expected an HL7 v2 message starting with 'MSH|', found {text[:20]!r}"
        )
    if len(text.split(b"\r", 1)[0].split(b"|")) < 12:
        raise BenchInputError(
            f"--sample {path}: the MSH segment stops before MSH-12 (the version); the load "
            "generator writes its control ids into MSH-10"
        )
    return text


def make_frames(
    template: bytes, prefix: int, count: int, tag: str = "PB"
) -> list[tuple[str, bytes]]:
    """``count`` framed copies of ``template`` (:func:`read_sample`), each with its own MSH-10
    control id."""
    header, separator, rest = template.partition(b"\r")
    fields = header.split(b"|")
    frames = []
    for i in range(count):
        control = f"{tag}{prefix:04d}{i:06d}"
        fields[9] = control.encode()
        frames.append((control, START + b"|".join(fields) + separator + rest + END))
    return frames


def channel_for_bench(path: str | Path, connections: int, port: int = 0) -> Channel:
    """The user's channel (TOML channel file or Mirth XML) made ready to be driven: its TCP
    Listener bound to 127.0.0.1 on ``port`` (0: one the engine picks, read from its log), with
    room for the generator's connections. Raises :class:`BenchInputError` when the load
    generator cannot drive it: a source other than a TCP Listener, no response to wait for, a
    source queue, TLS, or frames other than MLLP's."""
    from pannier.cli.channel_commands import read_channel
    from pannier.properties import get_bool, get_int

    try:
        channel = read_channel(path)
    except Exception as exc:  # the reader's own message names the file and the key
        raise BenchInputError(f"--channel {path}: {exc}") from None
    source = channel.source
    props = source.properties
    if source.transportName != "TCP Listener":
        raise BenchInputError(
            f"--channel {path}: its source is a {source.transportName}; the load generator "
            "sends MLLP to a TCP Listener"
        )
    if source.source.responseVariable == "None":
        raise BenchInputError(
            f"--channel {path}: its source answers nothing (responseVariable = None); the "
            "load generator waits for an ACK after each message"
        )
    if not source.source.respondAfterProcessing:
        raise BenchInputError(
            f"--channel {path}: its source queue is on (respondAfterProcessing = false): the "
            "ACKs would come before processing, and the bench would measure receiving only"
        )
    framing = (
        str(props.get("startOfMessageBytes", "0B")).upper(),
        str(props.get("endOfMessageBytes", "1C0D")).upper(),
    )
    if framing != ("0B", "1C0D"):
        raise BenchInputError(
            f"--channel {path}: its listener frames messages with {framing[0]} ... "
            f"{framing[1]}; the load generator frames MLLP (0B ... 1C0D)"
        )
    if get_bool(props, "tlsEnabled", False):
        raise BenchInputError(
            f"--channel {path}: its listener uses TLS; the load generator does not"
        )
    source.properties = {
        **props,
        "host": "127.0.0.1",
        "port": port,
        "maxConnections": max(get_int(props, "maxConnections", 10), connections),
    }
    return channel


# --- the engine under test ------------------------------------------------------------------


CHANNEL = """\
id = "{id}"
name = "{name}"

[properties]
messageStorageMode = "{storage}"

[source]
transportName = "TCP Listener"
inboundDataType = "HL7V2"
responseVariable = "Auto-generate (Destinations completed)"
processingThreads = {threads}

[source.properties]
host = "127.0.0.1"
port = {port}
maxConnections = 64

[[source.transformer.steps]]
kind = "mapper"
variable = "mrn"
mapping = "PID.3.1"
scope = "channel"

[[destinations]]
metaDataId = 1
name = "Write file"
transportName = "File Writer"

[destinations.properties]
directory = "{out}"
outputPattern = "${{message.messageId}}-${{mrn}}.hl7"
outputAppend = false
"""


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a ``--workers`` engine is a supervisor and its workers)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found += process_tree(int(child))
    return found


@contextmanager
def off_engine_cpus(pid: int) -> Iterator[None]:
    """The load generator stands for senders on other machines: while it drives an engine
    pinned with ``--cpu-affinity``, keep this process off the engine's CPUs (when others
    remain). The CPUs it had are restored afterwards, so the next engine it starts may use
    them all again."""
    if not hasattr(os, "sched_getaffinity"):
        yield
        return
    mine = os.sched_getaffinity(0)
    engine_cpus: set[int] = set()
    for each in process_tree(pid):
        engine_cpus |= os.sched_getaffinity(each)
    others = mine - engine_cpus
    if engine_cpus and others and engine_cpus != mine:
        os.sched_setaffinity(0, others)
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)


def _stat_ticks(stat: str) -> int:
    """User + system CPU clock ticks in a /proc/PID/stat text."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its descendants used so far (/proc/PID/stat)."""
    total = sum(_stat_ticks(Path(f"/proc/{each}/stat").read_text()) for each in process_tree(pid))
    return total / os.sysconf("SC_CLK_TCK")


#: Process names of the database servers whose CPU a run on this machine reports.
SERVER_PROCESSES = {"mysql": ("mariadbd", "mysqld"), "postgres": ("postgres",)}


def server_cpu_seconds(database: str) -> float | None:
    """CPU seconds used so far by the local server processes of ``database`` (None when
    none runs on this machine, or for SQLite, which runs inside the engine)."""
    names = SERVER_PROCESSES.get(database)
    if not names:
        return None
    total, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        if text[text.index("(") + 1 : text.rindex(")")] in names:
            total += _stat_ticks(text)
            found = True
    return total / os.sysconf("SC_CLK_TCK") if found else None


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    """Resident memory (``VmRSS``) or its peak (``VmHWM``) in MiB, from /proc: of the process
    and its descendants together (peaks are summed, an upper bound of the joint peak)."""
    total = 0
    for each in process_tree(pid):
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                total += int(line.split()[1])
    if not total:
        raise RuntimeError(f"no {key} in /proc/{pid}/status")
    return total / 1024


class EngineProcess:
    """``pannier run`` in a subprocess, in a temporary folder, logging to a file."""

    def __init__(
        self,
        folder: Path,
        url: str,
        storage: str,
        channels: int,
        threads: int,
        out: Path,
        workers: int = 1,
        cpu_affinity: str = "",
        channel: Channel | None = None,
    ) -> None:
        self.folder = folder
        self.workers = workers
        self.out = out
        self.out.mkdir(exist_ok=True)
        (folder / "channels").mkdir()
        self.ids = []
        if channel is not None:  # the user's own (channel_for_bench), instead of generated ones
            self.ids.append(channel.id)
            (folder / "channels" / "c0.toml").write_text(channel_to_toml(channel))
            channels = 0
        for n in range(channels):
            channel_id = str(uuid.uuid4())
            self.ids.append(channel_id)
            (folder / "channels" / f"c{n}.toml").write_text(
                CHANNEL.format(
                    id=channel_id,
                    name=f"bench {n}",
                    storage=storage,
                    threads=threads,
                    out=self.out / f"c{n}",
                    port=_free_port() if workers > 1 else 0,  # workers share a fixed port
                )
            )
        (folder / "pannier.toml").write_text(
            f'[server]\ndata_dir = "var"\ncpu_affinity = "{cpu_affinity}"\n'
            f"[database]\nurl = {json.dumps(url)}\n"
            '[channels]\npaths = ["channels/*.toml"]\n[logging]\nlevel = "INFO"\n'
            "[api]\nenabled = false\n"  # not on the measured path; frees port 8080
        )
        self.log = folder / "engine.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, expected: int, timeout: float = 120) -> dict[str, int]:
        """Start and wait until ``expected`` listeners are bound; their ports by name."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "pannier.cli.main", "run", "-c", "pannier.toml"),
                    *("--workers", str(self.workers)),
                ],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if not k.startswith("PANNIER_")},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            ports = {m[1]: int(m[2]) for m in LISTENING.finditer(text)}
            if len(ports) >= expected and (self.workers == 1 or "workers running" in text):
                return ports
            failed = [line for line in text.splitlines() if "failed to deploy" in line]
            if failed:  # the engine runs on without the channel: no listener will come
                self.kill()
                raise RuntimeError(failed[0].split("pannier.engine: ", 1)[-1])
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the engine did not start; its log:\n{self.log.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def database(kind: str, folder: Path, server: str | None) -> Iterator[str]:
    """A fresh database for one run: a SQLite file, or a new database on a server (dropped
    afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'pannier.db'}"
        return
    base = sa.engine.make_url(server or SERVERS[kind])
    name = f"pannier_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgres" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
        admin.dispose()


SERVER_NAMES = {
    "mysql": ("MariaDB/MySQL", "--mysql-url"),
    "postgres": ("PostgreSQL", "--postgres-url"),
}


def unreachable_servers(args: argparse.Namespace) -> dict[str, str]:
    """The database servers of the standard set that cannot be reached, each with why (the
    server, the option that names it, the driver's answer): their scenarios are skipped, each
    said once, so that ``make bench`` on a machine with SQLite alone measures what it can."""
    missing = {}
    for kind, url in (("mysql", args.mysql_url), ("postgres", args.postgres_url)):
        name, option = SERVER_NAMES[kind]
        where = url
        try:
            target = sa.engine.make_url(url)
            where = f"{target.host or 'localhost'}:{target.port or 'its default port'}"
            probe = sa.create_engine(
                target, poolclass=sa.NullPool, connect_args={"connect_timeout": 5}
            )
            try:
                with probe.connect():
                    pass
            finally:
                probe.dispose()
        except Exception as exc:  # refused, unknown host, bad credentials, no driver
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            missing[kind] = f"cannot reach the {name} server at {where} ({option}): {reason}"
    return missing


def verify(
    url: str,
    channel_id: str,
    out: Path,
    storage: str,
    acknowledged: list[str],
    notes: list[str] | None = None,
) -> dict[str, int]:
    """Count each acknowledged control id in the stored RAW content (or, storage DISABLED,
    in the written files): ``stored``, ``lost``, ``duplicated`` and the ``D_M`` rows. With
    several workers, ``notes`` gets how many messages each server id stored."""
    found: Counter[str] = Counter()
    rows = 0
    per_server: list[int] = []
    if storage in ("DISABLED", "METADATA"):
        for path in out.iterdir():
            found.update(m.decode() for m in CONTROL_ID.findall(path.read_bytes()))
    else:
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                n = conn.execute(
                    sa.text("SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS WHERE CHANNEL_ID = :c"),
                    {"c": channel_id},
                ).scalar_one()
                rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM D_M{n}")).scalar_one()
                per_server = sorted(
                    int(count)
                    for count in conn.execute(
                        sa.text(f"SELECT COUNT(*) FROM D_M{n} GROUP BY SERVER_ID")
                    ).scalars()
                )
                raw = conn.execute(
                    sa.text(
                        f"SELECT CONTENT FROM D_MC{n} WHERE METADATA_ID = 0 AND CONTENT_TYPE = 1"
                    )
                ).scalars()
                for content in raw:
                    found.update(m.decode() for m in CONTROL_ID.findall(content.encode()))
        finally:
            engine.dispose()
    acked = set(acknowledged)
    if notes is not None and len(per_server) > 1:
        spread = ", ".join(str(count) for count in reversed(per_server))
        notes.append(f"messages per worker (server id): {spread}")
    return {
        "stored": sum(1 for c in acked if found[c] >= 1),
        "lost": sum(1 for c in acked if found[c] == 0),
        "duplicated": sum(1 for c in acked if found[c] > 1),
        "rows": rows,
    }


def summarise(result: Result, load: Load, total: int) -> None:
    latencies = sorted(load.latencies)
    result.seconds = load.seconds
    result.throughput = len(load.acknowledged) / load.seconds if load.seconds else 0.0
    result.acknowledged = len(load.acknowledged)
    result.errors = total - len(load.acknowledged)  # answered otherwise, or not at all
    if len(latencies) >= 2:
        q = statistics.quantiles(latencies, n=100, method="inclusive")
        result.latency_ms = {
            "p50": q[49] * 1000,
            "p90": q[89] * 1000,
            "p99": q[98] * 1000,
            "max": latencies[-1] * 1000,
        }
    for error in load.errors[:5]:
        result.notes.append(f"error: {error}")


def run_scenario(args: argparse.Namespace) -> Result:
    template = read_sample(args.sample)
    frames = make_frames(template, os.getpid() % 10000, args.messages)
    warmup = make_frames(template, os.getpid() % 10000, args.warmup, tag="PW")
    result = Result(
        args.scenario,
        connections=args.connections,
        messages=args.messages,
        rate=args.rate,
    )
    if args.scenario == "echo":
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "pannier.cli.bench", "--echo-server", str(port)]
        )
        try:
            _wait_for_port(port)
            trio.run(drive, port, warmup, args.connections, 0.0)
            load = trio.run(drive, port, frames, args.connections, args.rate)
            result.rss_peak_mib = rss_mib(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait()
        summarise(result, load, len(frames))
        return result

    channel = None
    if args.channel:  # several workers share one fixed port, as for the built-in channel
        port = _free_port() if args.workers > 1 else 0
        channel = channel_for_bench(args.channel, args.connections, port)
    storage: str = args.storage or (
        channel.properties.messageStorageMode.name if channel is not None else "DEVELOPMENT"
    )
    result.database, result.storage = args.database, storage
    mysql_url = args.mysql_url
    if args.mysql_driver:
        scheme, _, rest = mysql_url.partition("://")
        mysql_url = f"{scheme.split('+')[0]}+{args.mysql_driver}://{rest}"
    if args.database == "mysql" and "+mysqldb" in mysql_url:
        result.database = "mysql (mysqlclient)"
    with tempfile.TemporaryDirectory(prefix="pannier-bench-") as tmp:
        folder = Path(tmp)
        server = mysql_url if args.database == "mysql" else args.postgres_url
        with database(args.database, folder, server) as url:
            channels = args.channels if args.scenario == "idle" else 1
            out = Path(tempfile.mkdtemp(dir=args.out_dir)) if args.out_dir else folder / "out"
            engine = EngineProcess(
                folder,
                url,
                storage,
                channels,
                args.threads,
                out,
                args.workers,
                args.cpu_affinity,
                channel,
            )
            result.workers = args.workers
            cleanup = ExitStack()
            try:
                ports = engine.start(channels)
                if args.scenario == "idle":
                    time.sleep(args.settle)
                    result.rss_idle_mib = rss_mib(engine.pid)
                    result.notes.append(f"{len(ports)} channels deployed on {args.database}")
                    return result
                port = ports[channel.name if channel is not None else "bench 0"]
                time.sleep(0.5)
                result.rss_idle_mib = rss_mib(engine.pid)
                cleanup.enter_context(off_engine_cpus(engine.pid))
                warmed = trio.run(drive, port, warmup, args.connections, 0.0)
                for error in warmed.errors[:5]:
                    result.notes.append(f"error in the warm-up: {error}")
                if args.profile:
                    profiler = subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "--pid",
                            str(engine.pid),
                            "--output",
                            args.profile,
                            "--format",
                            {".json": "speedscope", ".svg": "flamegraph"}.get(
                                Path(args.profile).suffix, "raw"
                            ),
                            "--rate",
                            os.environ.get("PANNIER_BENCH_RATE", "100"),
                            "--threads",
                            *(["--gil"] if os.environ.get("PANNIER_BENCH_GIL") else []),
                        ],
                    )
                    time.sleep(1.0)
                cpu_before = cpu_seconds(engine.pid)
                server_before = server_cpu_seconds(args.database)
                own_before, machine_before = own_cpu_seconds(), machine_jiffies()
                load = trio.run(drive, port, frames, args.connections, args.rate)
                engine_seconds = cpu_seconds(engine.pid) - cpu_before
                result.engine_cpu = engine_seconds / load.seconds
                timed = max(len(load.latencies), 1)
                budget = {"engine": engine_seconds}
                server_after = server_cpu_seconds(args.database)
                if server_before is not None and server_after is not None:
                    budget["database"] = server_after - server_before
                budget["load"] = own_cpu_seconds() - own_before
                result.cpu_ms_per_message = {k: v * 1000 / timed for k, v in budget.items()}
                busy_after, total_after = machine_jiffies()
                total = total_after - machine_before[1]
                busy = busy_after - machine_before[0]
                result.machine_busy = busy / total if total else None
                result.rss_peak_mib = rss_mib(engine.pid, "VmHWM")
                if args.profile:
                    profiler.send_signal(signal.SIGINT)
                    profiler.wait()
            finally:
                cleanup.close()
                engine.stop()
                if args.out_dir and args.scenario == "idle":
                    shutil.rmtree(out, ignore_errors=True)
            summarise(result, load, len(frames))
            acked = load.acknowledged + warmed.acknowledged
            if channel is not None and storage in ("DISABLED", "METADATA"):
                # Nothing of the messages is stored, and the channel's destinations are its
                # own: there is nothing here to count them in.
                result.acknowledged = len(acked)
                result.notes.append(
                    f"not verified: with storage {storage} no content is stored to find the "
                    "acknowledged messages in"
                )
                return result
            counts = verify(url, engine.ids[0], engine.out / "c0", storage, acked, result.notes)
            result.acknowledged = len(acked)
            result.stored, result.lost = counts["stored"], counts["lost"]
            result.duplicated, result.rows = counts["duplicated"], counts["rows"]
            if args.out_dir:
                shutil.rmtree(out, ignore_errors=True)
            if counts["lost"] or counts["duplicated"]:
                result.notes.append("VERIFICATION FAILED: acknowledged messages lost/duplicated")
            if counts["rows"] and not load.errors and counts["rows"] != len(set(acked)):
                result.notes.append(
                    f"VERIFICATION FAILED: {counts['rows']} D_M rows for {len(set(acked))} "
                    "acknowledged messages"
                )
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


# --- the report ---------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def commit() -> str:
    root = Path(__file__).resolve().parents[4]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}" if head else "unknown"


def append_results(
    path: Path,
    command: str,
    results: list[Result],
    title: str,
    summaries: list[dict[str, Any]] | None = None,
    skipped: list[str] | None = None,
    targets: list[str] | None = None,
) -> None:
    lines = [
        "",
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {title}",
        "",
        f"- Machine: {machine()}",
        f"- Commit: {commit()}",
        f"- Command: `{command}`",
        "",
    ]
    if skipped:
        lines += ["Not run:", "", *[f"- {line}" for line in skipped], ""]
    if targets:
        lines += ["Against issue 7's targets (2-core reference machine), medians:", ""]
        lines += [*[f"- {line}" for line in targets], ""]
    if summaries:
        lines += ["Medians of the runs:", "", "```", *map(summary_line, summaries), "```", ""]
        lines += ["Every run, in the order run:", ""]
    lines += [
        "```",
        *[r.line() for r in results],
        *[
            f"  {r.scenario} {r.database} {r.storage}: {note}"
            for r in results
            for note in r.notes
            if r.scenario != "idle"
        ],
        "```",
    ]
    with path.open("a") as file:
        file.write("\n".join(lines) + "\n")


def _number(kind: type[int] | type[float], least: float) -> Any:
    """An argparse type: a number of ``kind`` no smaller than ``least``, refused with a message
    saying what was expected (``--connections 0`` would otherwise run and report every message
    lost)."""
    noun = "a whole number" if kind is int else "a number"

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < least:
            raise argparse.ArgumentTypeError(f"expected {noun} of {least:g} or more, not {text!r}")
        return value

    return convert


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        choices=("engine", "echo", "idle"),
        default="engine",
        help="engine (default): the MLLP -> transformer -> File Writer channel; echo: a bare "
        "trio MLLP ACK server (the ceiling); idle: RSS of an engine with --channels channels",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "mysql", "postgres"),
        default="sqlite",
        help="message store (a fresh database is created and dropped)",
    )
    parser.add_argument("--mysql-url", default=SERVERS["mysql"], help="MariaDB/MySQL server URL")
    parser.add_argument(
        "--mysql-driver",
        choices=["pymysql", "mysqldb"],
        help="the MariaDB/MySQL driver (default: the URL's); mysqldb is pannier[mysqlclient]",
    )
    parser.add_argument("--postgres-url", default=SERVERS["postgres"], help="PostgreSQL server URL")
    parser.add_argument(
        "--storage",
        choices=STORAGE_MODES,
        help="the channel's message storage (default: DEVELOPMENT; with --channel, the "
        "channel's own)",
    )
    parser.add_argument(
        "--channel",
        metavar="FILE",
        help="measure this channel (a TOML channel file or a Mirth channel XML) instead of the "
        "built-in one; its source must be a TCP Listener that answers with an ACK (it is bound "
        "to 127.0.0.1 on a free port), and its destinations send for real: point them at test "
        "systems",
    )
    parser.add_argument(
        "--messages", type=_number(int, 1), default=5000, help="messages to send (timed)"
    )
    parser.add_argument(
        "--warmup", type=_number(int, 0), default=200, help="messages sent before timing"
    )
    parser.add_argument(
        "--connections", type=_number(int, 1), default=8, help="persistent connections"
    )
    parser.add_argument(
        "--rate",
        type=_number(float, 0),
        default=0.0,
        help="offered msg/s (open loop); 0: closed loop",
    )
    parser.add_argument(
        "--threads", type=_number(int, 1), default=8, help="the channel's processingThreads"
    )
    parser.add_argument(
        "--channels", type=_number(int, 0), default=10, help="channels (idle scenario)"
    )
    parser.add_argument(
        "--cpu-affinity",
        default="",
        metavar="SETTING",
        help="the engine's server.cpu_affinity: empty (default), auto, or CPUs such as 1,0",
    )
    parser.add_argument(
        "--workers",
        type=_number(int, 1),
        default=1,
        help="engine processes sharing the listener (pannier run --workers); CPU and RSS "
        "are summed over them",
    )
    parser.add_argument(
        "--settle", type=_number(float, 0), default=3.0, help="idle: seconds before sampling"
    )
    parser.add_argument(
        "--out-dir",
        help="parent folder of the File Writer's output (default: the run's temporary folder); "
        "/dev/shm takes the disk's file-creation cost out of the measurement",
    )
    parser.add_argument(
        "--sample",
        default=str(SAMPLE),
        help="the HL7 v2 message to send (each copy gets its own MSH-10); default: a 10-segment "
        "ADT^A01",
    )
    parser.add_argument(
        "--profile",
        help="record a py-spy profile of the engine to this file (.txt collapsed stacks, .svg, "
        ".json); PANNIER_BENCH_RATE sets samples/s (100), PANNIER_BENCH_GIL=1 samples only the "
        "thread holding the GIL",
    )
    parser.add_argument(
        "--standard",
        action="store_true",
        help="run the standard scenario set (make bench) instead of one scenario",
    )
    parser.add_argument(
        "--repeat",
        type=_number(int, 1),
        default=1,
        help="run the scenario (or the standard set, round after round) this many times and "
        "report each one's median and range too",
    )
    parser.add_argument("--results", help="append the results to this Markdown file")
    parser.add_argument("--json", action="store_true", help="print each result as JSON too")


def _path_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the folders the run writes to, if anything."""
    if args.out_dir and not Path(args.out_dir).is_dir():
        return f"--out-dir {args.out_dir}: expected an existing folder"
    if args.results:
        folder = Path(args.results).parent
        if not folder.is_dir():
            return f"--results {args.results}: the folder {folder} does not exist"
        if not os.access(folder, os.W_OK):
            return f"--results {args.results}: the folder {folder} is not writable"
    return None


def _run(args: argparse.Namespace) -> int:
    command = "pannier bench " + " ".join(sys.argv[2:])
    try:
        read_sample(args.sample)
    except BenchInputError as exc:
        print(f"pannier bench: {exc}", file=sys.stderr)
        return 2
    if args.channel:
        if args.standard or args.scenario != "engine":
            print(
                "pannier bench: --channel measures one channel (the engine scenario); the "
                "standard set and the echo and idle scenarios use the built-in one",
                file=sys.stderr,
            )
            return 2
        try:
            channel_for_bench(args.channel, args.connections)
        except BenchInputError as exc:
            print(f"pannier bench: {exc}", file=sys.stderr)
            return 2
    problem = _path_problem(args)
    if problem:  # said now, not after minutes of measuring
        print(f"pannier bench: {problem}", file=sys.stderr)
        return 2
    runs = [(args.scenario, [])] if not args.standard else STANDARD
    parser = argparse.ArgumentParser()
    _configure(parser)
    results = []
    by_label: dict[str, list[Result]] = {}
    failed = False
    unreachable = unreachable_servers(args) if args.standard else {}
    skipped: list[str] = []
    # Round after round through the whole set: each scenario's runs are spread over the time
    # the set takes, so a slow spell of the machine does not fall on one scenario alone.
    for _round in range(args.repeat):
        for label, extra in runs:
            run_args = parser.parse_args([*sys.argv[2:], *extra]) if args.standard else args
            if args.standard:
                run_args.standard = False
            if run_args.scenario != "echo" and run_args.database in unreachable:
                if _round == 0:
                    skipped.append(f"{label}: skipped: {unreachable[run_args.database]}")
                    print(skipped[-1], file=sys.stderr)
                continue
            try:
                result = run_scenario(run_args)
            except Exception as exc:  # one unreachable server does not end the whole set
                print(f"{label}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
                failed = True
                continue
            results.append(result)
            by_label.setdefault(label, []).append(result)
            print(result.line(), flush=True)
            for note in result.notes:
                if result.scenario != "idle":
                    print(f"  {note}")
            if args.json:
                print(json.dumps(asdict(result)))
            failed = failed or any(note.startswith("VERIFICATION") for note in result.notes)
    summaries = [summarise_runs(group) for group in by_label.values()] if args.repeat > 1 else []
    if summaries:
        print("medians:")
        for summary in summaries:
            print(f"  {summary_line(summary)}")
            if args.json:
                print(json.dumps({"summary": summary}))
    targets = target_lines(by_label) if args.standard else []
    if targets:
        print("against issue 7's targets (2-core reference machine):")
        for line in targets:
            print(f"  {line}")
    if args.results and results:
        title = "pannier bench, standard set" if args.standard else "pannier bench"
        append_results(Path(args.results), command, results, title, summaries, skipped, targets)
    return 1 if failed else 0


BENCH_COMMAND = CliCommand(
    "bench",
    "measure an engine end to end: msg/s, ACK latency, RSS, stored rows verified",
    _configure,
    _run,
)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--echo-server":
        trio.run(serve_echo, int(sys.argv[2]))
