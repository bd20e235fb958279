"""Private database servers for the reliability suite: a PostgreSQL or MariaDB instance of its
own, in a temporary folder, on a free port, that a test may stop and restart under load without
touching the shared servers other tests use.

The binaries are the machine's (``/usr/lib/postgresql/*/bin``, ``mariadb-install-db`` and
``mariadbd``); when they are missing the caller skips (or, with
``PANNIER_TEST_REQUIRE_SERVICES=1``, fails). Run as root, the servers run as the ``postgres`` /
``mysql`` system users, as their packages do.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa


class ServerUnavailable(Exception):
    """The binaries for a private server are not installed, or it would not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user(user: str) -> list[str]:
    """Command prefix running as ``user`` when we are root (servers refuse to run as root)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", user, "--"]


def _owned_folder(prefix: str, user: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    return folder


def wait_until_reachable(url: str, timeout: float = 60) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        engine.dispose()


class PrivatePostgres:
    """``initdb`` + ``pg_ctl`` in a temporary folder; ``restart()`` is ``pg_ctl restart -m
    fast``, what ``pg_ctlcluster ... restart`` does."""

    name = "PostgreSQL"

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise ServerUnavailable("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1]).parent
        self.folder = _owned_folder("pannier-pg-", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [*_as_user("postgres"), str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise ServerUnavailable(f"{tool} failed: {result.stderr.strip() or result.stdout}")

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl",
            action,
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "log"),
            "-w",
            "-o",
            options,
            *extra,
        )

    def start(self) -> None:
        self._ctl("start")
        wait_until_reachable(self.url)

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")

    def remove(self) -> None:
        with contextlib.suppress(ServerUnavailable):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivateMariaDB:
    """``mariadb-install-db`` + ``mariadbd`` in a temporary folder (no grant checks: it only
    listens on 127.0.0.1 for this test); ``restart()`` stops it with SIGTERM, as
    ``start-stop-daemon --stop`` does, and starts it again."""

    name = "MariaDB"

    def __init__(self) -> None:
        installer, server = shutil.which("mariadb-install-db"), shutil.which("mariadbd")
        server = server or ("/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None)
        if not installer or not server:
            raise ServerUnavailable("mariadb-install-db or mariadbd is not installed")
        self.server = server
        self.folder = _owned_folder("pannier-maria-", "mysql")
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"mysql+pymysql://root@127.0.0.1:{self.port}/mysql"
        self.process: subprocess.Popen[bytes] | None = None
        result = subprocess.run(
            [
                *_as_user("mysql"),
                installer,
                "--no-defaults",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            raise ServerUnavailable(f"mariadb-install-db failed: {result.stderr.strip()}")

    def start(self) -> None:
        log = (self.folder / "log").open("ab")
        self.process = subprocess.Popen(
            [
                *_as_user("mysql"),
                self.server,
                "--no-defaults",
                f"--datadir={self.data}",
                f"--port={self.port}",
                f"--socket={self.folder / 'sock'}",
                "--bind-address=127.0.0.1",
                "--skip-grant-tables",
                "--skip-name-resolve",
                f"--pid-file={self.folder / 'pid'}",
                "--innodb-buffer-pool-size=64M",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until_reachable(self.url)

    def stop(self) -> None:
        pid_file = self.folder / "pid"
        if pid_file.exists():  # the server itself (runuser stays as its parent)
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server; its URL."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    finally:
        admin.dispose()
    return sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
