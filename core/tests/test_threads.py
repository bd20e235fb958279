"""pannier.OwnThread: calls handed over from trio run in one thread, in order, each caller
getting its own result or exception; a cancelled caller's call still runs to its end; the
thread ends after the calls before a stop, and a later call starts another."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

import pytest
import trio
from pannier import OwnThread


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


async def test_results_and_exceptions_come_back_to_their_callers() -> None:
    worker = OwnThread("test-own-thread-results")

    def fail(text: str) -> None:
        raise ValueError(text)

    assert await worker.run(sum, [1, 2, 3]) == 6
    with pytest.raises(ValueError, match="mine"):
        await worker.run(fail, "mine")
    assert await worker.run(str.upper, "still serving") == "STILL SERVING"
    await worker.stop()


async def test_calls_run_in_one_thread_in_the_order_handed_over() -> None:
    worker = OwnThread("test-own-thread-order")
    seen: list[tuple[int, int]] = []

    def record(n: int) -> int:
        seen.append((n, threading.get_ident()))
        return n * n

    results: dict[int, int] = {}

    async def call(n: int) -> None:
        results[n] = await worker.run(record, n)

    async with trio.open_nursery() as nursery:
        for n in range(50):
            nursery.start_soon(call, n)
            await trio.lowlevel.checkpoint()  # hand them over in a known order
    assert [n for n, _ in seen] == list(range(50))
    assert len({ident for _, ident in seen}) == 1 and seen[0][1] != threading.get_ident()
    assert results == {n: n * n for n in range(50)}
    await worker.stop()


async def test_a_cancelled_caller_waits_for_its_call_to_finish() -> None:
    worker = OwnThread("test-own-thread-cancel")
    release = threading.Event()
    finished = threading.Event()

    def slow() -> None:
        release.wait(5)
        finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run, slow)
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
        release.set()
    assert finished.is_set()  # the nursery could only end once the call had
    await worker.stop()


def _finishes_within(seconds: float, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` in a trio run of its own thread: a call left behind would wait forever
    (the wait is shielded), so the test fails on time rather than hang."""
    errors: list[BaseException] = []

    def main() -> None:
        try:
            trio.run(body)
        except BaseException as exc:
            errors.append(exc)

    runner = threading.Thread(target=main, daemon=True)
    runner.start()
    runner.join(seconds)
    assert not runner.is_alive(), "a call was left waiting"
    if errors:
        raise errors[0]


def test_stop_ends_the_thread_after_its_calls_and_a_later_call_starts_another() -> None:
    name = "test-own-thread-stop"
    worker = OwnThread(name)
    done: list[int] = []

    async def body() -> None:
        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(worker.run, done.append, n)
            await trio.sleep(0)
        await worker.stop()
        assert sorted(done) == list(range(5)) and _threads(name) == []
        await worker.stop()  # harmless when there is no thread
        worker.close()  # likewise
        assert await worker.run(len, "again") == 5  # a new thread
        worker.close()
        assert await worker.run(len, "after close") == 11  # done, not left behind
        await worker.stop()
        assert _threads(name) == []

    _finishes_within(10, body)


async def test_a_stop_that_gives_up_leaves_the_thread_to_finish() -> None:
    name = "test-own-thread-give-up"
    worker = OwnThread(name)
    release = threading.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run, release.wait, 5)
        await trio.sleep(0.05)
        with trio.move_on_after(0.1) as waited:
            await worker.stop()
        assert waited.cancelled_caught  # the stop did not hang on the blocked call
        release.set()
    with trio.fail_after(5):
        while _threads(name):
            await trio.sleep(0.01)
