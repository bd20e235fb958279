"""End-to-end throughput of the example channel on the embedded SQLite store.

Starts an engine in-process with the example channel (TCP Listener in MLLP mode -> File
Writer, DEVELOPMENT storage), drives it with N messages over C concurrent MLLP connections,
and prints messages/s and ACK latency percentiles. A benchmark, not a test: results are
recorded by hand in bench/RESULTS.md with the command, machine and commit.

    .venv/bin/python bench/run.py [--messages 2000] [--connections 1,8] [--threads 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import trio
from pannier.config import load_config
from pannier.engine import Engine
from pannier_mllp import send_mllp

ROOT = Path(__file__).resolve().parents[1]


def channel(threads: int) -> str:
    text = (ROOT / "examples" / "channels" / "adt-to-file.toml").read_text()
    text = text.replace("port = 6661", "port = 0").replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
    text = text.replace('directory = "../var/out"', 'directory = "out"')
    return text.replace(
        'responseVariable = "Auto-generate (Destinations completed)"',
        'responseVariable = "Auto-generate (Destinations completed)"\n'
        f"processingThreads = {threads}",
    )


async def drive(port: int, message: bytes, total: int, connections: int) -> list[float]:
    latencies: list[float] = []
    per_connection = total // connections

    async def client() -> None:
        for _ in range(per_connection):
            started = time.perf_counter()
            (ack,) = await send_mllp("127.0.0.1", port, [message], timeout=30)
            latencies.append(time.perf_counter() - started)
            if b"MSA|AA" not in ack:
                raise RuntimeError(f"not acknowledged: {ack!r}")

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(client)
    return latencies


async def main(args: argparse.Namespace) -> None:
    message = (ROOT / "tests" / "fixtures" / "hl7" / "adt_a01.hl7").read_bytes()
    for connections in args.connections:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "channels").mkdir()
            (folder / "channels" / "adt.toml").write_text(channel(args.threads))
            (folder / "pannier.toml").write_text(
                '[server]\ndata_dir = "var"\n[channels]\npaths = ["channels/*.toml"]\n'
                '[logging]\nlevel = "WARNING"\n'
            )
            engine = Engine(load_config(folder / "pannier.toml", environ={}))
            async with trio.open_nursery() as nursery:
                await nursery.start(engine.run)
                (deployed,) = engine.channels.values()
                port = deployed.bound[1]
                await drive(port, message, min(100, args.messages), connections)  # warm up
                started = time.perf_counter()
                latencies = await drive(port, message, args.messages, connections)
                elapsed = time.perf_counter() - started
                nursery.cancel_scope.cancel()
            latencies.sort()
            q = statistics.quantiles(latencies, n=100)
            print(
                f"sqlite DEVELOPMENT, {connections} connection(s), {len(latencies)} messages "
                f"(new connection per message): {len(latencies) / elapsed:,.0f} msg/s, "
                f"ACK latency p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, "
                f"max {latencies[-1] * 1000:.1f} ms"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument(
        "--connections", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8]
    )
    parser.add_argument("--threads", type=int, default=8, help="the channel's processingThreads")
    trio.run(main, parser.parse_args())
