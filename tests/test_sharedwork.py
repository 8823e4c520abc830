"""`facekit._sharedwork.SharedWork`: pieces of one call run by other threads, results in
order, errors raised to the caller. Synthetic work (the mechanism only; the pipeline's use
of it on real models is in test_pipeline)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from facekit._sharedwork import SharedWork


def _helper(work: SharedWork, stop: threading.Event, ran: list[int]) -> threading.Thread:
    def loop() -> None:
        while not stop.is_set():
            if work.help_one():
                ran.append(1)
            else:
                work.wait(stop.is_set, 0.01)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_pieces_keep_their_order_and_other_threads_run_some() -> None:
    work = SharedWork(0.01)
    stop = threading.Event()
    ran: list[int] = []
    helper = _helper(work, stop, ran)
    threads: set[str] = set()
    meeting = threading.Barrier(2, timeout=10)

    def piece(items: Sequence[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        if len(threads) == 1 or meeting.n_waiting:  # the first piece waits for a helper
            meeting.wait()
        return [item * 10 for item in items]

    try:
        parts = work.map(piece, list(range(23)), 5)
    finally:
        stop.set()
        work.notify()
        helper.join(5)
    assert parts == [[i * 10 for i in range(s, min(s + 5, 23))] for s in range(0, 23, 5)]
    assert len(threads) == 2
    assert ran


def test_one_piece_runs_in_the_caller_and_nothing_is_offered() -> None:
    work = SharedWork(0.01)
    assert work.map(lambda items: sum(items), [1, 2, 3], 3) == [6]
    assert work.map(lambda items: sum(items), [], 3) == []
    assert not work.help_one()


def test_a_failing_piece_is_raised_to_the_caller_after_the_others_end() -> None:
    work = SharedWork(0.01)
    stop = threading.Event()
    helper = _helper(work, stop, [])
    seen: list[int] = []

    def piece(items: Sequence[int]) -> int:
        seen.extend(items)
        if 4 in items:
            raise ValueError("piece 4 failed")
        return len(items)

    try:
        with pytest.raises(ValueError, match="piece 4"):
            work.map(piece, list(range(8)), 2)
    finally:
        stop.set()
        work.notify()
        helper.join(5)
    assert sorted(seen) == list(range(8))  # every piece ran
    assert not work.help_one()  # nothing left behind
