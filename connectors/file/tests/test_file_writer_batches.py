"""The File Writer writes through its own thread: sends made together each get their own
outcome, a cancelled send's file is still written, and stopping the destination ends the
thread after the files handed over (a restarted channel gets a new one)."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path
from typing import Any

import trio
from pannier import ConnectorSetup, Response, SendRequest, Status
from pannier_file.writer import DEFAULTS, FileWriter


def writer(tmp_path: Path) -> FileWriter:
    return FileWriter(
        ConnectorSetup(
            channel_id="c1",
            channel_name="writer test",
            metadata_id=1,
            name="Write",
            properties=dict(DEFAULTS),
            report_state=lambda state, details: None,
            base_directory=str(tmp_path),
        )
    )


def request(message_id: int, **properties: Any) -> SendRequest:
    props = {**DEFAULTS, "directory": "out", "template": f"message {message_id}", **properties}
    return SendRequest("c1", message_id, 1, f"message {message_id}", props)


async def test_concurrent_sends_each_get_their_own_outcome(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "taken.txt").write_text("already here")
    connector = writer(tmp_path)
    results: dict[int, Any] = {}

    async def send(message_id: int, **properties: Any) -> None:
        try:
            results[message_id] = await connector.send(request(message_id, **properties))
        except ValueError as exc:  # what the kernel stores as the destination's ERROR
            results[message_id] = Response(Status.ERROR, error=str(exc))

    async with trio.open_nursery() as nursery:
        for message_id in range(1, 21):
            nursery.start_soon(partial(send, message_id, outputPattern=f"{message_id}.txt"))
        nursery.start_soon(
            partial(send, 99, outputPattern="taken.txt", errorOnExists=True, outputAppend=False)
        )
        nursery.start_soon(partial(send, 98, outputPattern="x.txt", directory="out/\0bad"))

    for message_id in range(1, 21):
        assert results[message_id].status == Status.SENT
        assert (tmp_path / "out" / f"{message_id}.txt").read_text() == f"message {message_id}"
    assert results[99].status == Status.QUEUED and "taken.txt" in results[99].error
    assert results[98].status == Status.ERROR  # a NUL in a path: a bad request, not retried
    assert (tmp_path / "out" / "taken.txt").read_text() == "already here"


async def test_sends_cancelled_together_finish_their_writes_and_return(tmp_path: Path) -> None:
    """Once a send has handed its file over it is written, even if the sending task is
    cancelled (a thread cannot be stopped halfway); and no send is left waiting."""
    connector = writer(tmp_path)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for message_id in range(1, 9):
                nursery.start_soon(
                    partial(connector.send, request(message_id, outputPattern=f"{message_id}.txt"))
                )
            nursery.cancel_scope.cancel()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{n}.txt" for n in range(1, 9)
    )


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pannier-file-writer"]


async def test_stopping_ends_the_thread_after_its_files_and_a_restart_writes_again(
    tmp_path: Path,
) -> None:
    connector = writer(tmp_path)
    before = len(_writer_threads())
    async with trio.open_nursery() as nursery:
        for message_id in range(1, 6):
            nursery.start_soon(
                partial(connector.send, request(message_id, outputPattern=f"{message_id}.txt"))
            )
    assert len(_writer_threads()) == before + 1
    with trio.fail_after(10):
        await connector.stop()
    assert len(_writer_threads()) == before
    assert len(list((tmp_path / "out").iterdir())) == 5
    await connector.stop()  # stopping twice is harmless
    with trio.fail_after(10):  # the channel started again: a new thread takes the write
        response = await connector.send(request(6, outputPattern="6.txt"))
    assert response.status == Status.SENT
    assert (tmp_path / "out" / "6.txt").read_text() == "message 6"
    with trio.fail_after(10):
        await connector.stop()
    assert len(_writer_threads()) == before
