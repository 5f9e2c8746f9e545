"""Stopping downloads at once (Ctrl-C): one event per process that every download checks
between chunks and every wait checks between polls, set by `stop_downloads`. The CLI's SIGINT
handler calls it, releases the process's locks and exits; `Fetcher` calls it when
KeyboardInterrupt reaches a program using the API, after cancelling the queued downloads, and
each stopped download releases its own lock as it ends (a download blocked in a read keeps its
lock until the read returns or times out: two writers never share a partial). A download
stopped this way keeps its partial file and validators: the next run resumes it."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from typing import Any

_EVENT = threading.Event()
_ACTIVE = 0
_GUARD = threading.Lock()


class Cancelled(Exception):  # noqa: N818 (not an error of the cache: the user said stop)
    """Raised in a download thread once the downloads of this process were cancelled."""


def cancelled() -> bool:
    """Whether this process's downloads were told to stop."""
    return _EVENT.is_set()


def check(what: str) -> None:
    """Raise Cancelled when this process's downloads were told to stop."""
    if _EVENT.is_set():
        raise Cancelled(f"{what}: interrupted")


def pause(seconds: float) -> None:
    """Sleep, waking at once (Cancelled) when the downloads are cancelled."""
    if _EVENT.wait(seconds):
        raise Cancelled("interrupted")


@contextmanager
def downloading() -> Iterator[None]:
    """A batch of downloads: the first batch after a cancellation starts afresh."""
    global _ACTIVE
    with _GUARD:
        if _ACTIVE == 0:
            _EVENT.clear()
        _ACTIVE += 1
    try:
        yield
    finally:
        with _GUARD:
            _ACTIVE -= 1


STOP_WAIT_S = 1.0  # how long running downloads are given to stop before locks are released


def stop_downloads(running: Iterable[Future[Any]] = (), *, within: float = STOP_WAIT_S
                   ) -> None:
    """Tell every download of this process to stop, and give the `running` ones up to
    `within` seconds to do so (each stops before writing its next chunk and releases its
    lock)."""
    _EVENT.set()
    running = list(running)
    if running:
        wait(running, timeout=within)
