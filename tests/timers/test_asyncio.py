"""AsyncioTimers: callbacks on the loop, in due order; thread-safe scheduling; close cancels."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cra.timers import AsyncioTimers, TimerBackend, TimersClosedError

WAIT = 5.0


def test_it_needs_a_running_loop_or_an_explicit_one() -> None:
    with pytest.raises(RuntimeError, match="running event loop"):
        AsyncioTimers()
    loop = asyncio.new_event_loop()
    try:
        assert AsyncioTimers(loop).loop is loop
    finally:
        loop.close()


def test_a_timer_fires_on_the_loop() -> None:
    async def main() -> tuple[bool, bool]:
        timers = AsyncioTimers()
        assert isinstance(timers, TimerBackend)
        fired = asyncio.Event()
        on_loop: list[bool] = []

        def callback() -> None:
            on_loop.append(asyncio.get_running_loop() is timers.loop)
            fired.set()

        timers.schedule_once(0.01, callback)
        await asyncio.wait_for(fired.wait(), WAIT)
        timers.close()
        return on_loop == [True], timers.stats()["fired"] == 1

    assert asyncio.run(main()) == (True, True)


def test_due_order_and_ties_in_scheduling_order() -> None:
    async def main() -> list[str]:
        ran: list[str] = []
        done = asyncio.Event()
        async with AsyncioTimers() as timers:

            def record(label: str) -> None:
                ran.append(label)
                if len(ran) == 4:
                    done.set()

            timers.schedule_once(0.03, lambda: record("c"))
            timers.schedule_once(0.01, lambda: record("a1"))
            timers.schedule_once(0.02, lambda: record("b"))
            timers.schedule_once(0.01, lambda: record("a2"))
            await asyncio.wait_for(done.wait(), WAIT)
        return ran

    assert asyncio.run(main()) == ["a1", "a2", "b", "c"]


def test_scheduling_and_cancelling_from_another_thread() -> None:
    async def main() -> tuple[bool, list[str]]:
        loop = asyncio.get_running_loop()
        timers = AsyncioTimers()
        fired = asyncio.Event()
        threads: list[str] = []

        def callback() -> None:
            threads.append(threading.current_thread().name)
            fired.set()

        cancelled = await loop.run_in_executor(
            None, lambda: timers.cancel(timers.schedule_once(60, lambda: threads.append("never")))
        )
        await loop.run_in_executor(None, lambda: timers.schedule_once(0.01, callback))
        await asyncio.wait_for(fired.wait(), WAIT)
        timers.close()
        return cancelled, threads

    cancelled, threads = asyncio.run(main())
    assert cancelled is True
    assert threads == [threading.main_thread().name]


def test_a_repeating_timer_keeps_its_grid_and_can_cancel_itself() -> None:
    async def main() -> tuple[int, bool]:
        timers = AsyncioTimers()
        runs: list[int] = []
        done = asyncio.Event()
        timer_id = ""

        def tick() -> None:
            runs.append(1)
            if len(runs) == 3:
                timers.cancel(timer_id)
                done.set()

        timer_id = timers.schedule_repeating(0.01, tick)
        await asyncio.wait_for(done.wait(), WAIT)
        timers.close()
        return len(runs), timers.cancel(timer_id)

    assert asyncio.run(main()) == (3, False)


def test_errors_are_counted_and_close_cancels_everything() -> None:
    async def main() -> dict[str, int]:
        timers = AsyncioTimers()
        after = asyncio.Event()

        def boom() -> None:
            raise ValueError("boom")

        timers.schedule_once(0.01, boom)
        timers.schedule_once(0.02, after.set)
        timers.schedule_once(60, lambda: None)
        await asyncio.wait_for(after.wait(), WAIT)
        timers.close()
        timers.close()
        with pytest.raises(TimersClosedError):
            timers.schedule_once(1, lambda: None)
        return timers.stats()

    stats = asyncio.run(main())
    assert (stats["errors"], stats["fired"], stats["scheduled"], stats["cancelled"]) == (1, 2, 0, 1)


def test_close_from_another_thread() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        timers = AsyncioTimers()
        ran: list[str] = []
        timers.schedule_once(0.05, lambda: ran.append("never"))
        await loop.run_in_executor(None, timers.close)
        await asyncio.sleep(0)  # let the loop process the cancel it was handed
        return ran

    assert asyncio.run(main()) == []
