"""Work split into pieces that any idle lane of the pipeline may run.

Interface::

    work = SharedWork(poll_s)
    work.map(function, items, size) -> list of function(piece), one per piece, in order
    work.help_one() -> bool           # run one waiting piece of anybody's, if any
    work.wait(ready, timeout) -> None # sleep until ready() or new pieces or notify()
    work.notify() -> None             # wake the waiting lanes (something they wait on changed)

A lane with a large piece of work (the crops of a batch holding a group photo, the images of
a batch) calls `SharedWork.map`: the items are cut into pieces of ``size``, the pieces are
offered to every lane, and the caller runs its own pieces until none is left, then helps
with other lanes' pieces until the pieces others took are done. Idle lanes (no input left,
or waiting for a free slot) call `SharedWork.help_one`. The oldest offered work goes first,
so the batch the caller is waiting for is finished first. Only for models that several
threads may call at once (``concurrent``): the pieces of one call run in parallel.

An exception raised by a piece is raised by `SharedWork.map` to its caller, whichever lane
ran the piece.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["SharedWork"]


class _Sliceable(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, part: slice, /) -> Any: ...  # the same type as self


S = TypeVar("S", bound=_Sliceable)  # the work: a list, an array
R = TypeVar("R")  # the result of one piece


class _Job(Generic[S, R]):
    """The pieces of one `SharedWork.map` call."""

    __slots__ = ("done", "error", "function", "outputs", "pending", "pieces")

    def __init__(self, function: Callable[[S], R], pieces: list[S]) -> None:
        self.function = function
        self.pieces = pieces
        self.pending = deque(range(len(pieces)))
        self.outputs: list[R | None] = [None] * len(pieces)
        self.done = 0
        self.error: BaseException | None = None


class SharedWork:
    """Pieces of work offered to every lane (module docstring).

    Args:
        poll_s: longest sleep in seconds of a waiting lane before it looks again (a guard
            against a missed wake-up; waits normally end on a notification).
    """

    def __init__(self, poll_s: float) -> None:
        self._poll_s = poll_s
        self._changed = threading.Condition()
        self._jobs: deque[_Job[Any, Any]] = deque()

    def map(self, function: Callable[[S], R], items: S, size: int) -> list[R]:
        """``[function(piece) for piece in pieces of items]``, pieces run by any lane.

        Args:
            function: called with a slice of ``items`` (non-empty); must be safe
                to call from several threads at once.
            items: the work (a list, an array...); cut into consecutive pieces of ``size``
                (the last smaller).
            size: items per piece, at least 1.

        Raises:
            Whatever a piece raised (the first one seen); the other pieces still end first.
        """
        pieces = [items[start : start + size] for start in range(0, len(items), max(1, size))]
        if len(pieces) <= 1:
            return [function(piece) for piece in pieces]
        job: _Job[S, R] = _Job(function, pieces)
        shared: _Job[Any, Any] = job
        with self._changed:
            self._jobs.append(shared)
            self._changed.notify_all()
        while True:
            with self._changed:
                if job.done == len(pieces):
                    break
                task = self._take(shared)
                if task is None:
                    self._changed.wait(self._poll_s)
                    continue
            self._run(*task)
        if job.error is not None:
            raise job.error
        return [output for output in job.outputs]  # type: ignore[misc]

    def help_one(self) -> bool:
        """Run one waiting piece of any lane's work; false when there was none."""
        with self._changed:
            task = self._take(None)
        if task is None:
            return False
        self._run(*task)
        return True

    def wait(self, ready: Callable[[], bool], timeout: float | None = None) -> None:
        """Sleep until ``ready()`` is true, a piece is offered, `notify` is called or
        ``timeout`` (default ``poll_s``) seconds have passed."""
        with self._changed:
            if ready() or any(job.pending for job in self._jobs):
                return
            self._changed.wait(self._poll_s if timeout is None else timeout)

    def notify(self) -> None:
        """Wake every lane sleeping in `wait` or `map` (call after changing what a
        ``ready`` looks at)."""
        with self._changed:
            self._changed.notify_all()

    def _take(self, prefer: _Job[Any, Any] | None) -> tuple[_Job[Any, Any], int] | None:
        """The next piece to run: ``prefer``'s own first, then the oldest offered. Called
        with the condition held."""
        if prefer is not None and prefer.pending:
            return prefer, prefer.pending.popleft()
        while self._jobs and not self._jobs[0].pending:
            self._jobs.popleft()  # every piece taken: nothing more to offer
        for job in self._jobs:
            if job.pending:
                return job, job.pending.popleft()
        return None

    def _run(self, job: _Job[Any, Any], index: int) -> None:
        output: object = None
        error: BaseException | None = None
        try:
            output = job.function(job.pieces[index])
        except BaseException as exc:  # handed to the job's owner, who raises it
            error = exc
        with self._changed:
            job.outputs[index] = output
            if error is not None and job.error is None:
                job.error = error
            job.done += 1
            self._changed.notify_all()
