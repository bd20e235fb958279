"""The File Reader against real temporary directories, driven directly in trio."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from pannier import (
    ChannelStoppedError,
    ConnectorSetup,
    DispatchResult,
    RawMessage,
    Response,
    Status,
)
from pannier_file.reader import READER_DEFAULTS, FileReader, FileReaderConfigError, render


class Dispatcher:
    """Records every message and answers with ``respond(raw)`` (or raises ``fail(raw)``)."""

    def __init__(
        self,
        respond: Callable[[RawMessage], Response | None] | None = None,
        fail: Callable[[RawMessage], BaseException | None] | None = None,
    ) -> None:
        self.messages: list[RawMessage] = []
        self.respond = respond or (lambda raw: Response(Status.SENT, message="ok"))
        self.fail = fail

    async def dispatch(self, raw: RawMessage) -> DispatchResult:
        self.messages.append(raw)
        await trio.sleep(0)
        if self.fail is not None:
            error = self.fail(raw)
            if error is not None:
                raise error
        return DispatchResult(len(self.messages), self.respond(raw))

    @property
    def names(self) -> list[str]:
        return [m.source_map["originalFilename"] for m in self.messages]


def make_setup(
    tmp_path: Path,
    states: list[tuple[str, dict[str, Any]]] | None = None,
    should_poll: Callable[[], bool] = lambda: True,
    **props: Any,
) -> ConnectorSetup:
    properties = dict(READER_DEFAULTS)
    properties.update({"directory": "in", "pollingFrequency": 50, "fileAge": 0, "sortBy": "name"})
    properties.update(props)
    sink = states if states is not None else []
    return ConnectorSetup(
        channel_id="c1",
        channel_name="reader test",
        metadata_id=0,
        name="Source",
        properties=properties,
        report_state=lambda state, details: sink.append((state, dict(details))),
        base_directory=str(tmp_path),
        should_poll=should_poll,
    )


def put(directory: Path, name: str, content: str | bytes, mtime: float | None = None) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def indir(tmp_path: Path) -> Path:
    directory = tmp_path / "in"
    directory.mkdir()
    return directory


async def one_poll(reader: FileReader, dispatcher: Dispatcher) -> None:
    with trio.fail_after(5):
        await reader.poll(dispatcher)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_reads_file_moves_it_with_source_map(tmp_path: Path, indir: Path) -> None:
    path = put(indir, "a.hl7", "MSH|^~\\&|A\r")
    stat = path.stat()
    reader = FileReader(
        make_setup(
            tmp_path,
            afterProcessingAction="Move",
            moveToDirectory="done",
            moveToFileName="${originalFilename}.${message.messageId}.bak",
        )
    )
    dispatcher = Dispatcher()
    await one_poll(reader, dispatcher)
    [raw] = dispatcher.messages
    assert raw.content == "MSH|^~\\&|A\r"
    assert raw.source_map == {
        "originalFilename": "a.hl7",
        "fileDirectory": str(indir),
        "fileSize": stat.st_size,
        "fileLastModified": int(stat.st_mtime * 1000),
    }
    assert not path.exists()
    assert (tmp_path / "done" / "a.hl7.1.bak").read_bytes() == b"MSH|^~\\&|A\r"


async def test_delete_after_processing(tmp_path: Path, indir: Path) -> None:
    put(indir, "a.txt", "one")
    reader = FileReader(make_setup(tmp_path, afterProcessingAction="Delete"))
    dispatcher = Dispatcher()
    await one_poll(reader, dispatcher)
    await one_poll(reader, dispatcher)
    assert dispatcher.names == ["a.txt"]
    assert list(indir.iterdir()) == []


async def test_action_none_reads_the_same_file_again_as_mirth(tmp_path: Path, indir: Path) -> None:
    put(indir, "a.txt", "one")
    reader = FileReader(make_setup(tmp_path))
    dispatcher = Dispatcher()
    await one_poll(reader, dispatcher)
    await one_poll(reader, dispatcher)
    assert dispatcher.names == ["a.txt", "a.txt"]
    assert (indir / "a.txt").exists()


@pytest.mark.parametrize(
    ("sort_by", "expected"),
    [("name", ["a", "b", "c"]), ("size", ["c", "a", "b"]), ("date", ["b", "c", "a"])],
)
async def test_sort_order(tmp_path: Path, indir: Path, sort_by: str, expected: list[str]) -> None:
    now = time.time() - 100
    put(indir, "a", "xx", mtime=now + 3)
    put(indir, "b", "xxx", mtime=now + 1)
    put(indir, "c", "x", mtime=now + 2)
    reader = FileReader(make_setup(tmp_path, sortBy=sort_by, afterProcessingAction="Delete"))
    dispatcher = Dispatcher()
    await one_poll(reader, dispatcher)
    assert dispatcher.names == expected


async def test_glob_filter_with_several_patterns_and_dot_files(tmp_path: Path, indir: Path) -> None:
    for name in ("a.hl7", "b.txt", "c.csv", ".hidden.hl7"):
        put(indir, name, name)
    reader = FileReader(make_setup(tmp_path, fileFilter="*.hl7, *.txt", sortBy="name"))
    dispatcher = Dispatcher()
    await one_poll(reader, dispatcher)
    assert dispatcher.names == ["a.hl7", "b.txt"]

    shown = FileReader(make_setup(tmp_path, fileFilter="*.hl7", ignoreDot=False, sortBy="name"))
    dispatcher = Dispatcher()
    await one_poll(shown, dispatcher)
    assert dispatcher.names == [".hidden.hl7", "a.hl7"]


async def test_regex_filter_matches_whole_name(tmp_path: Path, indir: Path) -> None:
    for name in ("adt_1.hl7", "adt_2.hl7", "xadt_3.hl7", "adt_4.hl7.tmp"):
        put(indir, name, name)
    reader = FileReader(make_setup(tmp_path, fileFilter=r"adt_\d+\.hl7", regex=True, sortBy="name"))
    dispatcher = Dispatcher()
    await one_poll(reader, dispatcher)
    assert dispatcher.names == ["adt_1.hl7", "adt_2.hl7"]


async def test_directory_recursion(tmp_path: Path, indir: Path) -> None:
    put(indir, "top.txt", "t")
    put(indir / "sub", "deep.txt", "d")
    put(indir / ".git", "skip.txt", "s")
    flat = Dispatcher()
    await one_poll(FileReader(make_setup(tmp_path)), flat)
    assert flat.names == ["top.txt"]
    deep = Dispatcher()
    await one_poll(FileReader(make_setup(tmp_path, directoryRecursion=True, sortBy="name")), deep)
    assert sorted(deep.names) == ["deep.txt", "top.txt"]
    [sub] = [m for m in deep.messages if m.source_map["originalFilename"] == "deep.txt"]
    assert sub.source_map["fileDirectory"] == str(indir / "sub")


async def test_file_age_skips_young_files(tmp_path: Path, indir: Path) -> None:
    put(indir, "old.txt", "o", mtime=time.time() - 10)
    put(indir, "young.txt", "y")
    dispatcher = Dispatcher()
    await one_poll(FileReader(make_setup(tmp_path, fileAge=5000)), dispatcher)
    assert dispatcher.names == ["old.txt"]
    unchecked = Dispatcher()
    await one_poll(
        FileReader(make_setup(tmp_path, fileAge=5000, checkFileAge=False, sortBy="name")),
        unchecked,
    )
    assert unchecked.names == ["old.txt", "young.txt"]


async def test_binary_is_base64_and_charset_decodes(tmp_path: Path, indir: Path) -> None:
    put(indir, "b.bin", b"\x00\xff\x10caf\xe9")
    binary = Dispatcher()
    await one_poll(FileReader(make_setup(tmp_path, binary=True)), binary)
    assert binary.messages[0].content == base64.b64encode(b"\x00\xff\x10caf\xe9").decode()
    latin = Dispatcher()
    await one_poll(FileReader(make_setup(tmp_path, charsetEncoding="ISO-8859-1")), latin)
    assert latin.messages[0].content == "\x00\xff\x10café"


async def test_error_response_action_moves_to_error_directory(tmp_path: Path, indir: Path) -> None:
    put(indir, "bad.txt", "bad")
    put(indir, "good.txt", "good", mtime=time.time() - 10 + 1)

    def respond(raw: RawMessage) -> Response:
        status = Status.ERROR if raw.content == "bad" else Status.SENT
        return Response(status, message="x")

    reader = FileReader(
        make_setup(
            tmp_path,
            afterProcessingAction="Move",
            moveToDirectory="done",
            errorResponseAction="Move",
            errorMoveToDirectory="errors",
            errorMoveToFileName="${originalFilename}.err",
        )
    )
    await one_poll(reader, Dispatcher(respond=respond))
    assert (tmp_path / "errors" / "bad.txt.err").read_text() == "bad"
    assert (tmp_path / "done" / "good.txt").read_text() == "good"
    assert list(indir.iterdir()) == []


async def test_error_response_defaults_to_after_processing_action(
    tmp_path: Path, indir: Path
) -> None:
    put(indir, "bad.txt", "bad")
    reader = FileReader(make_setup(tmp_path, afterProcessingAction="Delete"))
    await one_poll(reader, Dispatcher(respond=lambda raw: Response(Status.ERROR)))
    assert list(indir.iterdir()) == []


async def test_dispatch_failure_applies_error_reading_action(tmp_path: Path, indir: Path) -> None:
    put(indir, "a.txt", "a")
    put(indir, "b.txt", "b", mtime=time.time() - 10 + 1)
    reader = FileReader(
        make_setup(
            tmp_path,
            afterProcessingAction="Delete",
            errorReadingAction="Move",
            errorMoveToDirectory="errors",
        )
    )
    dispatcher = Dispatcher(fail=lambda raw: RuntimeError("boom") if raw.content == "a" else None)
    await one_poll(reader, dispatcher)
    assert dispatcher.names == ["a.txt", "b.txt"], "a failure does not stop the poll"
    assert (tmp_path / "errors" / "a.txt").read_text() == "a"
    assert list(indir.iterdir()) == []


async def test_channel_stopping_leaves_files_in_place(tmp_path: Path, indir: Path) -> None:
    put(indir, "a.txt", "a")
    put(indir, "b.txt", "b", mtime=time.time() - 10 + 1)
    reader = FileReader(make_setup(tmp_path, afterProcessingAction="Delete"))
    dispatcher = Dispatcher(fail=lambda raw: ChannelStoppedError("stopping"))
    await one_poll(reader, dispatcher)
    assert dispatcher.names == ["a.txt"], "the poll ends at the first refusal"
    assert sorted(p.name for p in indir.iterdir()) == ["a.txt", "b.txt"]


async def test_vanished_and_unreadable_files_are_skipped(
    tmp_path: Path, indir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(indir, "a.txt", "a")
    put(indir, "gone.txt", "g", mtime=time.time() - 10 + 1)
    put(indir, "locked.txt", "l", mtime=time.time() - 10 + 2)
    put(indir, "z.txt", "z", mtime=time.time() - 10 + 3)
    original = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "gone.txt":
            self.unlink()
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    reader = FileReader(make_setup(tmp_path, afterProcessingAction="Delete"))
    dispatcher = Dispatcher()
    await one_poll(reader, dispatcher)
    assert dispatcher.names == ["a.txt", "z.txt"]
    assert sorted(p.name for p in indir.iterdir()) == ["locked.txt"]


async def test_missing_directory_is_logged_not_fatal(tmp_path: Path) -> None:
    reader = FileReader(make_setup(tmp_path, directory="nowhere"))
    dispatcher = Dispatcher()
    await one_poll(reader, dispatcher)
    assert dispatcher.messages == []


async def test_run_polls_after_an_interval_and_reports_states(tmp_path: Path, indir: Path) -> None:
    states: list[tuple[str, dict[str, Any]]] = []
    reader = FileReader(
        make_setup(tmp_path, states, pollingFrequency=200, afterProcessingAction="Delete")
    )
    put(indir, "a.txt", "a")
    dispatcher = Dispatcher()
    async with trio.open_nursery() as nursery:
        started = trio.current_time()
        await nursery.start(reader.run, dispatcher)
        await wait_until(lambda: len(dispatcher.messages) == 1)
        assert trio.current_time() - started >= 0.19, "pollOnStart false: first poll waits"
        put(indir, "b.txt", "b")
        await wait_until(lambda: len(dispatcher.messages) == 2)
        nursery.cancel_scope.cancel()
    assert dispatcher.names == ["a.txt", "b.txt"]
    names = [s for s, _ in states]
    assert names[0] == "idle"
    assert {"polling", "reading", "idle"} <= set(names)
    assert ("reading", {"file": str(indir / "a.txt")}) in states


async def test_poll_on_start(tmp_path: Path, indir: Path) -> None:
    reader = FileReader(make_setup(tmp_path, pollingFrequency=60000, pollOnStart=True))
    put(indir, "a.txt", "a")
    dispatcher = Dispatcher()
    async with trio.open_nursery() as nursery:
        await nursery.start(reader.run, dispatcher)
        await wait_until(lambda: len(dispatcher.messages) == 1)
        nursery.cancel_scope.cancel()


async def test_should_poll_false_means_no_poll(tmp_path: Path, indir: Path) -> None:
    asked: list[bool] = []

    def should_poll() -> bool:
        asked.append(False)
        return False

    reader = FileReader(make_setup(tmp_path, should_poll=should_poll, pollOnStart=True))
    put(indir, "a.txt", "a")
    dispatcher = Dispatcher()
    async with trio.open_nursery() as nursery:
        await nursery.start(reader.run, dispatcher)
        await wait_until(lambda: len(asked) >= 4)
        nursery.cancel_scope.cancel()
    assert dispatcher.messages == []
    assert reader.polls == 0
    assert (indir / "a.txt").exists()


async def test_should_poll_raising_skips_the_poll(tmp_path: Path, indir: Path) -> None:
    def should_poll() -> bool:
        raise RuntimeError("lease store down")

    reader = FileReader(make_setup(tmp_path, should_poll=should_poll, pollOnStart=True))
    put(indir, "a.txt", "a")
    async with trio.open_nursery() as nursery:
        await nursery.start(reader.run, Dispatcher())
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert reader.polls == 0


async def test_cancellation_while_dispatching_stops_promptly(tmp_path: Path, indir: Path) -> None:
    class Hanging(Dispatcher):
        async def dispatch(self, raw: RawMessage) -> DispatchResult:
            self.messages.append(raw)
            await trio.sleep_forever()
            raise AssertionError

    put(indir, "a.txt", "a")
    reader = FileReader(make_setup(tmp_path, pollOnStart=True, afterProcessingAction="Delete"))
    dispatcher = Hanging()
    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(reader.run, dispatcher)
            await wait_until(lambda: len(dispatcher.messages) == 1)
            nursery.cancel_scope.cancel()
    assert (indir / "a.txt").exists()


@pytest.mark.parametrize(
    "props",
    [
        {"directory": ""},
        {"sortBy": "colour"},
        {"afterProcessingAction": "Shred"},
        {"afterProcessingAction": "After Processing Action"},
        {"afterProcessingAction": "Move"},
        {"errorReadingAction": "Move"},
        {"regex": True, "fileFilter": "("},
        {"charsetEncoding": "no-such-charset"},
        {"pollingFrequency": 0},
        {"fileAge": -1},
    ],
)
def test_bad_configuration_fails_at_deploy(tmp_path: Path, props: dict[str, Any]) -> None:
    with pytest.raises(FileReaderConfigError):
        FileReader(make_setup(tmp_path, **props))


def test_mirth_enum_spellings_accepted(tmp_path: Path) -> None:
    reader = FileReader(
        make_setup(
            tmp_path,
            afterProcessingAction="Delete",
            errorResponseAction="AFTER_PROCESSING",
            errorReadingAction="NONE",
            regex="false",
            binary="true",
        )
    )
    assert (reader.after_action, reader.binary, reader.regex) == ("DELETE", True, False)


def test_render_leaves_unknown_variables() -> None:
    assert render("${originalFilename}-${nope}", {"originalFilename": "a"}) == "a-${nope}"
