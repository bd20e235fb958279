"""``pannier.run_polls``: the polling loop every polling source (File Reader, Database Reader,
third-party readers) runs, on trio's mock clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing
from pannier import ConnectorSetup, run_polls


def setup(should_poll: Callable[[], bool] = lambda: True) -> ConnectorSetup:
    return ConnectorSetup(
        channel_id="c1",
        channel_name="polling test",
        metadata_id=0,
        name="Source",
        properties={},
        report_state=lambda state, details: None,
        should_poll=should_poll,
    )


async def polls_during(
    seconds: float, connector: ConnectorSetup, on_start: bool, fail_first: int = 0
) -> list[float]:
    """The clock times at which ``poll`` ran within ``seconds`` (interval 1 s)."""
    times: list[float] = []

    async def poll() -> None:
        times.append(trio.current_time())
        if len(times) <= fail_first:
            raise RuntimeError("the directory is away")

    with trio.move_on_after(seconds):
        await run_polls(connector, poll, interval=1.0, on_start=on_start)
    return times


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_first_poll_waits_one_interval_unless_on_start(
    mock_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    waited = await polls_during(3.5, setup(), on_start=False)
    assert [round(t - start, 3) for t in waited] == [1.0, 2.0, 3.0]
    start = trio.current_time()
    at_once = await polls_during(3.5, setup(), on_start=True)
    assert [round(t - start, 3) for t in at_once] == [0.0, 1.0, 2.0, 3.0]


async def test_a_failing_poll_does_not_stop_polling(
    mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    times = await polls_during(4.5, setup(), on_start=True, fail_first=2)
    assert len(times) == 5
    failures = [r for r in caplog.records if "poll failed" in r.getMessage()]
    assert len(failures) == 2 and "polling test" in failures[0].getMessage()


async def test_polls_are_skipped_while_another_node_polls(
    mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    answers = iter([False, True, "raise", True])

    def should_poll() -> bool:
        answer = next(answers, False)
        if answer == "raise":
            raise RuntimeError("lease table unreachable")
        return bool(answer)

    start = trio.current_time()
    times = await polls_during(3.5, setup(should_poll), on_start=True)
    assert [round(t - start, 3) for t in times] == [1.0, 3.0]
    assert any("should_poll() raised" in r.getMessage() for r in caplog.records)
