"""Schema-driven fuzzing of the API: schemathesis against the served /api/openapi.json.

``make fuzz`` runs :func:`main` (``python -m tests.api.fuzz [EXAMPLES] [--quick]``: a fresh
engine on a free port, then schemathesis); the test suite runs a short one the same way
(tests/api/test_fuzz_api.py). The only check is Schemathesis'
``not_a_server_error``: whatever it sends, the API answers 2xx/4xx, never 5xx.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trio

FUZZ_USER = "fuzzer"
FUZZ_PASSWORD = "fuzz-password"


async def run_schemathesis(
    url: str, max_examples: int, workdir: Path, *, quick: bool = False
) -> tuple[int, str]:
    """Run schemathesis against the API at ``url`` from ``workdir`` (it keeps a cache
    there); (exit code, output). ``quick``: the fuzzing phase only, one worker."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/api/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(max_examples),
        "--header",
        "X-Requested-With: schemathesis",
        "--auth",
        f"{FUZZ_USER}:{FUZZ_PASSWORD}",
        "--seed",
        "1",
        "--no-shrink",
        "--warnings",
        "off",
        "--request-timeout",
        "60",
    ]
    if quick:
        command += ["--phases", "fuzzing", "--workers", "1"]
    result = await trio.run_process(
        command, capture_stdout=True, stderr=-2, check=False, cwd=str(workdir)
    )
    return result.returncode, result.stdout.decode("utf-8", "replace")


async def add_fuzz_user(engine: object) -> None:
    """An admin the fuzzer logs in as (so lock-outs it provokes never hit ``admin``)."""
    from pannier.api import accounts
    from pannier.api.auth import hash_password

    store = engine.store  # type: ignore[attr-defined]
    hashed = await trio.to_thread.run_sync(hash_password, FUZZ_PASSWORD)
    await store.run_sync(accounts.create_user, store, FUZZ_USER, hashed, "admin", {})


CHANNEL = """
id = "aaaaaaaa-0000-4000-8000-00000000000f"
name = "Fuzz target"
[source]
transportName = "Channel Reader"
inboundDataType = "RAW"
[[destinations]]
metaDataId = 1
name = "Nowhere"
transportName = "Channel Writer"
inboundDataType = "RAW"
outboundDataType = "RAW"
[destinations.properties]
channelId = "none"
"""


def main(max_examples: int = 30, quick: bool = False) -> int:
    from pannier.config import load_config
    from pannier.engine import Engine

    async def fuzz() -> int:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            (root / "channels").mkdir()
            (root / "channels" / "fuzz.toml").write_text(CHANNEL, encoding="utf-8")
            (root / "pannier.toml").write_text(
                '[channels]\npaths = ["channels/*.toml"]\n[api]\nport = 0\n'
                "login_rate_per_minute = 100000\n",
                encoding="utf-8",
            )
            engine = Engine(load_config(root / "pannier.toml", environ={}), serve_api=True)
            async with trio.open_nursery() as nursery:
                await nursery.start(engine.run)
                await add_fuzz_user(engine)
                assert engine.api_address is not None
                code, output = await run_schemathesis(
                    engine.api_address, max_examples, root, quick=quick
                )
                print(output)
                engine.request_stop()
            return code

    return trio.run(fuzz)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 30, quick="--quick" in sys.argv[2:]))
