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

import os
from pathlib import Path
from typing import Any

from pannier import (
    ConnectorSetup,
    DestinationConnector,
    OwnThread,
    Response,
    SendRequest,
    Status,
)

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


class FileWriter(DestinationConnector):
    def __init__(self, setup: ConnectorSetup) -> None:
        self.setup = setup
        self.base = Path(setup.base_directory)
        self.base_text = str(self.base)
        "".encode(_encoding(str(setup.properties["charsetEncoding"])))  # fail at deploy
        # Its own thread (pannier.OwnThread): a hand-off per file costs far less than
        # trio.to_thread's, and a hung file system holds up this destination alone.
        self._thread = OwnThread("pannier-file-writer")

    async def stop(self) -> None:
        await self._thread.stop()

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
            await self._thread.run(
                _write,
                path,
                data,
                bool(properties["outputAppend"]),
                bool(properties["errorOnExists"]),
                bool(properties["temporary"]),
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
