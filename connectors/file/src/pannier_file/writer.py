"""The "File Writer" destination: writes each message to a file named by a template.

Properties (Mirth's ``FileDispatcherProperties``; ``host`` is called ``directory`` here):

* ``directory`` — where files go; relative paths are relative to the config file's folder.
* ``outputPattern`` — the file name, with ``${...}`` templates. Mirth's default is empty;
  Pannier's is ``${message.messageId}.txt`` so that messages never land in one file by
  accident.
* ``outputAppend`` — append to an existing file instead of replacing it (Mirth default: true).
* ``errorOnExists`` — fail when the file exists (and ``outputAppend`` is false).
* ``temporary`` — write to a temporary file and rename it into place, so readers never see
  a half-written file.
* ``charsetEncoding`` — text encoding (``DEFAULT_ENCODING`` means UTF-8).
* ``template`` — what to write (default ``${message.encodedData}``, the encoded message).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from pannier import ConnectorSetup, DestinationConnector, Response, SendRequest, Status

DEFAULTS: dict[str, Any] = {
    "directory": "",
    "outputPattern": "${message.messageId}.txt",
    "outputAppend": True,
    "errorOnExists": False,
    "temporary": False,
    "charsetEncoding": "DEFAULT_ENCODING",
    "template": "${message.encodedData}",
}
TEMPLATED = frozenset({"directory", "outputPattern", "template"})


def _encoding(name: str) -> str:
    return "utf-8" if name in ("", "DEFAULT_ENCODING") else name


@dataclass
class _Write:
    path: str
    data: bytes
    append: bool
    error_on_exists: bool
    temporary: bool
    error: Exception | None = None
    """What writing this file raised (an OSError is a failed delivery; anything else, such
    as a NUL in the path, a bad request)."""
    done: trio.Event = field(default_factory=trio.Event)


class _FileThread:
    """The destination's own thread, writing files in the order they are handed over; each
    sender is woken through its trio token once its file is written, and gets its own
    outcome.

    Why not ``trio.to_thread`` for each write, or for each batch of writes arriving
    together (as before): trio's thread hand-off (limiter, thread cache, result delivery)
    and the batch ahead to wait for made up most of the File Writer's cost. Measured, this
    thread against batches (pairs, bench/RESULTS.md): storage DISABLED 2,266 -> 3,033 msg/s
    and engine CPU 0.43 -> 0.33 ms per message; SQLite DEVELOPMENT 966 -> 1,183 msg/s.

    One thread per destination, so a slow or hung file system holds up that destination
    alone. It starts with the first write and ends at :meth:`stop` (channel stop), after
    the files handed over before it."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[trio.lowlevel.TrioToken, _Write] | None]
        self._jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        """Held to hand a job over and by the thread deciding to end, so no job is left
        behind an ending thread."""

    async def write(self, job: _Write) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pannier-file-writer", daemon=True
                )
                self._thread.start()
            self._jobs.put((trio.lowlevel.current_trio_token(), job))
        # The file is written whatever becomes of this task (a thread cannot be stopped
        # halfway): wait for it, shielded, as a plain to_thread call would.
        with trio.CancelScope(shield=True):
            await job.done.wait()
        if job.error is not None:
            raise job.error

    def _run(self) -> None:
        stopping = False
        while True:
            if stopping:
                with self._lock:  # a write now either is in the queue or starts a thread
                    if self._jobs.empty():
                        self._thread = None
                        return
            item = self._jobs.get()
            if item is None:
                stopping = True  # after the files already handed over
                continue
            token, job = item
            try:
                _write(job.path, job.data, job.append, job.error_on_exists, job.temporary)
            except Exception as exc:  # each write's failure is its own
                job.error = exc
            # If the run that was waiting has ended, there is nobody to wake.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(job.done.set)

    async def stop(self) -> None:
        """End the thread once the files handed over so far are written. A caller that
        gives up waiting (the channel's stop has a time limit; a file system may hang)
        leaves the thread to end by itself."""
        thread = self._thread
        if thread is not None:
            self._jobs.put(None)
            await trio.to_thread.run_sync(thread.join, abandon_on_cancel=True)


class FileWriter(DestinationConnector):
    def __init__(self, setup: ConnectorSetup) -> None:
        self.setup = setup
        self.base = Path(setup.base_directory)
        self.base_text = str(self.base)
        "".encode(_encoding(str(setup.properties["charsetEncoding"])))  # fail at deploy
        self._writes = _FileThread()

    async def stop(self) -> None:
        await self._writes.stop()

    async def send(self, request: SendRequest) -> Response:
        properties = request.properties
        name = str(properties["outputPattern"])
        if not _plain_file_name(name):
            return Response(
                Status.ERROR,
                error=f"File Writer: output file name {name!r} must "
                f"be a plain file name (no directories)",
            )
        # Strings, not pathlib: this runs for every message (pathlib's parsing was ~3% of
        # the engine's CPU in the MLLP -> File Writer benchmark).
        path = os.path.join(self.base_text, str(properties["directory"]), name)
        template = str(properties["template"])
        content = template if template else request.encoded
        data = (
            content.encode(_encoding(str(properties["charsetEncoding"])))
            if isinstance(content, str)
            else content
        )
        self.setup.report_state("sending", {"file": path})
        try:
            await self._writes.write(
                _Write(
                    path,
                    data,
                    bool(properties["outputAppend"]),
                    bool(properties["errorOnExists"]),
                    bool(properties["temporary"]),
                )
            )
        except OSError as exc:
            # QUEUED, as Mirth's dispatchers answer a failed delivery: a queued destination
            # retries it, an unqueued one records it as an error.
            return Response(
                Status.QUEUED, error=f"File Writer: cannot write {path}: {exc.strerror or exc}"
            )
        finally:
            self.setup.report_state("idle", {})
        return Response(Status.SENT, status_message=f"File successfully written: {path}")


def _plain_file_name(name: str) -> bool:
    """A file name with no directory part (``Path(name).name == name``, minus ``..``)."""
    if not name or name in (".", "..") or os.sep in name:
        return False
    return not (os.altsep and os.altsep in name)


def _write(name: str, data: bytes, append: bool, error_on_exists: bool, temporary: bool) -> None:
    path = Path(name) if temporary or error_on_exists else None
    if path is not None and error_on_exists and not append and path.exists():
        raise FileExistsError(17, "file already exists", name)
    if path is None:
        # The directory usually exists: try first, create it only when the open says it
        # is missing (one system call per file instead of two).
        try:
            with open(name, "ab" if append else "wb") as handle:
                handle.write(data)
            return
        except FileNotFoundError:
            path = Path(name)
            if path.parent.is_dir():
                raise
    path.parent.mkdir(parents=True, exist_ok=True)
    if temporary:
        tmp = path.with_name(f".{path.name}.tmp")
        existing = path.read_bytes() if append and path.exists() else b""
        with open(tmp, "wb") as handle:
            handle.write(existing + data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return
    with open(path, "ab" if append else "wb") as handle:
        handle.write(data)
