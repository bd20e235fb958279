"""The "File Reader" source: polls a local directory and hands each file to the channel.

Mirth's ``FileReceiverProperties`` (``host`` is called ``directory`` here, as in the File
Writer); every property with its default is described in ``docs/connectors/file.md``.

Each poll (only when ``setup.should_poll()`` says this node should poll) lists the matching
files, sorts them, and processes them one at a time, in order: read the file in a worker thread,
dispatch it, wait for the result, then apply the after-processing action (or an error action).
A file that vanishes or cannot be read is logged and skipped; nothing a file does stops the
connector.
"""

from __future__ import annotations

import base64
import codecs
import fnmatch
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio
from pannier import (
    ChannelStoppedError,
    ConnectorSetup,
    Dispatcher,
    RawMessage,
    SourceConnector,
    Status,
    run_polls,
)

LOG = logging.getLogger("pannier.file")

READER_MIRTH_CLASS = "com.mirth.connect.connectors.file.FileReceiverProperties"

# Mirth's FileAction names, as its channel XML stores them; the UI's labels are accepted too.
ACTION_NONE = "NONE"
ACTION_MOVE = "MOVE"
ACTION_DELETE = "DELETE"
ACTION_AFTER_PROCESSING = "AFTER_PROCESSING"

READER_DEFAULTS: dict[str, Any] = {
    # FileReceiverProperties (Mirth's ``host``)
    "directory": "",
    "fileFilter": "*",
    "regex": False,
    "directoryRecursion": False,
    "ignoreDot": True,
    "checkFileAge": True,
    "fileAge": 1000,
    "sortBy": "date",
    "afterProcessingAction": ACTION_NONE,
    "moveToDirectory": "",
    "moveToFileName": "",
    "errorReadingAction": ACTION_NONE,
    "errorResponseAction": ACTION_AFTER_PROCESSING,
    "errorMoveToDirectory": "",
    "errorMoveToFileName": "",
    "binary": False,
    "charsetEncoding": "DEFAULT_ENCODING",
    # pollConnectorProperties (INTERVAL polling only)
    "pollingFrequency": 5000,
    "pollOnStart": False,
    # sourceConnectorProperties: read by the kernel (response selection), not here.
    "responseVariable": "None",
}

_ACTIONS = {
    "none": ACTION_NONE,
    "move": ACTION_MOVE,
    "delete": ACTION_DELETE,
    "after processing action": ACTION_AFTER_PROCESSING,
    "after_processing": ACTION_AFTER_PROCESSING,
    "after processing": ACTION_AFTER_PROCESSING,
}
_SORTS = ("date", "name", "size")
_TEMPLATE = re.compile(r"\$\{([^}]*)\}")


class FileReaderConfigError(ValueError):
    """A File Reader property has a value the connector cannot use (raised at deploy)."""


def _action(props: Mapping[str, Any], key: str, *, allow_after: bool = False) -> str:
    text = str(props.get(key, READER_DEFAULTS[key])).strip()
    action = _ACTIONS.get(text.lower())
    if action is None or (action == ACTION_AFTER_PROCESSING and not allow_after):
        allowed = "NONE, MOVE, DELETE" + (", AFTER_PROCESSING" if allow_after else "")
        raise FileReaderConfigError(f"File Reader: {key} = {text!r}; expected one of {allowed}")
    return action


def _int(props: Mapping[str, Any], key: str, minimum: int) -> int:
    value = props.get(key, READER_DEFAULTS[key])
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise FileReaderConfigError(f"File Reader: {key} = {value!r} is not a number") from None
    if number < minimum:
        raise FileReaderConfigError(f"File Reader: {key} = {number} must be >= {minimum}")
    return number


def _bool(props: Mapping[str, Any], key: str) -> bool:
    value = props.get(key, READER_DEFAULTS[key])
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _encoding(name: str) -> str:
    name = name.strip()
    encoding = "utf-8" if name in ("", "DEFAULT_ENCODING") else name
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise FileReaderConfigError(f"File Reader: unknown charsetEncoding {name!r}") from None
    return encoding


@dataclass(frozen=True)
class FoundFile:
    path: Path
    size: int
    modified: float  # seconds since the epoch


def render(template: str, values: Mapping[str, Any]) -> str:
    """Replace ``${name}`` with ``values[name]``; unknown names are left as they are (Mirth)."""

    def one(match: re.Match[str]) -> str:
        key = match.group(1).strip()
        return str(values[key]) if key in values else match.group(0)

    return _TEMPLATE.sub(one, template)


class FileReader(SourceConnector):
    """Polls ``directory`` every ``pollingFrequency`` ms and dispatches each matching file."""

    def __init__(self, setup: ConnectorSetup) -> None:
        props = setup.properties
        self._setup = setup
        base = Path(setup.base_directory)
        directory = str(props.get("directory", "")).strip()
        if not directory:
            raise FileReaderConfigError("File Reader: directory is required")
        self.directory = base / directory
        pattern = str(props.get("fileFilter", "*"))
        self.regex = _bool(props, "regex")
        self._matches: Callable[[str], bool]
        if self.regex:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise FileReaderConfigError(
                    f"File Reader: fileFilter {pattern!r} is not a valid regex: {exc}"
                ) from None
            self._matches = lambda name: compiled.fullmatch(name) is not None
        else:
            # Mirth's WildcardFileFilter: several globs separated by commas.
            globs = [g for g in (p.strip() for p in pattern.split(",")) if g] or ["*"]
            self._matches = lambda name: any(fnmatch.fnmatchcase(name, g) for g in globs)
        self.recursive = _bool(props, "directoryRecursion")
        self.ignore_dot = _bool(props, "ignoreDot")
        self.check_file_age = _bool(props, "checkFileAge")
        self.file_age = _int(props, "fileAge", 0) / 1000
        self.sort_by = str(props.get("sortBy", "date")).strip().lower()
        if self.sort_by not in _SORTS:
            raise FileReaderConfigError(
                f"File Reader: sortBy = {self.sort_by!r}; expected one of {', '.join(_SORTS)}"
            )
        self.after_action = _action(props, "afterProcessingAction")
        self.move_to_directory = str(props.get("moveToDirectory", ""))
        self.move_to_file_name = str(props.get("moveToFileName", ""))
        self.error_reading_action = _action(props, "errorReadingAction")
        self.error_response_action = _action(props, "errorResponseAction", allow_after=True)
        self.error_move_to_directory = str(props.get("errorMoveToDirectory", ""))
        self.error_move_to_file_name = str(props.get("errorMoveToFileName", ""))
        self.binary = _bool(props, "binary")
        self.charset = _encoding(str(props.get("charsetEncoding", "DEFAULT_ENCODING")))
        self.polling_frequency = _int(props, "pollingFrequency", 1) / 1000
        self.poll_on_start = _bool(props, "pollOnStart")
        self._base = base
        for action, directory_key, value in (
            (self.after_action, "moveToDirectory", self.move_to_directory),
            (self.error_reading_action, "errorMoveToDirectory", self.error_move_to_directory),
            (self.error_response_action, "errorMoveToDirectory", self.error_move_to_directory),
        ):
            if action == ACTION_MOVE and not value.strip():
                raise FileReaderConfigError(f"File Reader: Move needs {directory_key}")
        if self.after_action == ACTION_NONE:
            LOG.warning(
                "File Reader of channel %s: afterProcessingAction is None, so every poll reads "
                "the same files again (as Mirth does); use Move or Delete",
                setup.channel_name,
            )
        self.polls = 0
        """How many polls ran (for tests and diagnostics)."""

    # -- state reporting ----------------------------------------------------------------------

    def _report(self, state: str, **details: Any) -> None:
        self._setup.report_state(state, details)

    # -- the connector ------------------------------------------------------------------------

    async def run(
        self,
        dispatcher: Dispatcher,
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        LOG.info(
            "File Reader of channel %s polling %s every %s ms",
            self._setup.channel_name,
            self.directory,
            int(self.polling_frequency * 1000),
        )
        self._report("idle")
        task_status.started(str(self.directory))
        try:
            await run_polls(
                self._setup,
                partial(self.poll, dispatcher),
                interval=self.polling_frequency,
                on_start=self.poll_on_start,
                who="File Reader",
            )
        finally:
            LOG.info("File Reader of channel %s stopped", self._setup.channel_name)

    async def poll(self, dispatcher: Dispatcher) -> None:
        """One poll: list, sort, and process every matching file in order."""
        self.polls += 1
        self._report("polling", directory=str(self.directory))
        try:
            try:
                files = await trio.to_thread.run_sync(self._list)
            except OSError as exc:
                LOG.error("File Reader: cannot list %s: %s", self.directory, exc)
                return
            for found in files:
                if not await self._process(found, dispatcher):
                    return
        finally:
            self._report("idle")

    # -- listing (worker thread) --------------------------------------------------------------

    def _list(self) -> list[FoundFile]:
        now = time.time()
        found: list[FoundFile] = []
        for path in self._walk(self.directory):
            if not self._matches(path.name):
                continue
            try:
                stat = path.stat()
            except OSError:
                continue  # gone already
            if self.check_file_age and now - stat.st_mtime < self.file_age:
                continue
            found.append(FoundFile(path, stat.st_size, stat.st_mtime))
        if self.sort_by == "name":
            found.sort(key=lambda f: str(f.path))
        elif self.sort_by == "size":
            found.sort(key=lambda f: (f.size, str(f.path)))
        else:
            found.sort(key=lambda f: (f.modified, str(f.path)))
        return found

    def _walk(self, directory: Path) -> list[Path]:
        files: list[Path] = []
        with os.scandir(directory) as entries:
            for entry in entries:
                if self.ignore_dot and entry.name.startswith("."):
                    continue
                try:
                    if entry.is_file():
                        files.append(Path(entry.path))
                    elif self.recursive and entry.is_dir(follow_symlinks=False):
                        files.extend(self._walk(Path(entry.path)))
                except OSError as exc:
                    LOG.warning("File Reader: skipping %s: %s", entry.path, exc)
                    continue
        return files

    # -- one file -----------------------------------------------------------------------------

    async def _process(self, found: FoundFile, dispatcher: Dispatcher) -> bool:
        """Read, dispatch and finish one file; False when the channel is stopping."""
        path = found.path
        source_map: dict[str, Any] = {
            "originalFilename": path.name,
            "fileDirectory": str(path.parent),
            "fileSize": found.size,
            "fileLastModified": int(found.modified * 1000),
        }
        self._report("reading", file=str(path))
        try:
            data = await trio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            LOG.info("File Reader: %s vanished before it was read; skipped", path)
            return True
        except OSError as exc:
            LOG.error("File Reader: cannot read %s: %s", path, exc)
            await self._finish(path, self.error_reading_action, error=True, values=source_map)
            return True
        if self.binary:
            content = base64.b64encode(data).decode("ascii")
        else:
            content = data.decode(self.charset, "replace")  # as Java's new String(bytes, cs)
        try:
            result = await dispatcher.dispatch(RawMessage(content, dict(source_map)))
        except ChannelStoppedError:
            LOG.info("File Reader: channel stopping; %s left in place", path)
            return False
        except Exception as exc:
            LOG.error("File Reader: processing %s failed: %s", path, exc)
            await self._finish(path, self.error_reading_action, error=True, values=source_map)
            return True
        values = dict(source_map)
        if result.message_id is not None:
            values["message.messageId"] = result.message_id
        response = result.response
        if (
            response is not None
            and response.status == Status.ERROR
            and self.error_response_action != ACTION_AFTER_PROCESSING
        ):
            await self._finish(path, self.error_response_action, error=True, values=values)
        else:
            await self._finish(path, self.after_action, error=False, values=values)
        return True

    async def _finish(
        self, path: Path, action: str, *, error: bool, values: dict[str, Any]
    ) -> None:
        if action == ACTION_NONE:
            return
        if action == ACTION_DELETE:
            target: Path | None = None
        else:
            directory = self.error_move_to_directory if error else self.move_to_directory
            name_template = self.error_move_to_file_name if error else self.move_to_file_name
            name = render(name_template, values).strip() or path.name
            target = self._base / render(directory, values) / name
        try:
            await trio.to_thread.run_sync(_apply, path, target)
        except OSError as exc:
            what = "delete" if target is None else f"move to {target}"
            LOG.error("File Reader: cannot %s %s: %s", what, path, exc)


def _apply(path: Path, target: Path | None) -> None:
    if target is None:
        path.unlink()
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, target)  # Mirth replaces an existing file of that name
    except OSError:
        shutil.move(str(path), str(target))  # another file system
