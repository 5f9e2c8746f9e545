"""The one retry policy of every transport: which failures are retried, how long to wait
(exponential backoff with jitter, or the server's Retry-After, capped), and a per-host gate
shared by every worker of the process (a concurrency cap, and a pause after a 429/503).

Pure decisions (`retry_after_seconds`, `Policy.delay`) are kept apart from the waiting.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

MAX_RETRY_AFTER_S = 60.0  # a Retry-After longer than this is capped
DEFAULT_HOST_CONNECTIONS = 32  # requests in flight per host, all workers of a process (the
# default of Settings.host_connections, which the Cache passes)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def retry_after_seconds(value: str | None, *, now: float | None = None,
                        cap: float = MAX_RETRY_AFTER_S) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP-date), capped to
    `cap`; None when absent or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment is None or moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)


@dataclass(frozen=True)
class Policy:
    """How often and how patiently a request is tried again."""

    retries: int = 4  # tries after the first
    backoff: float = 0.5  # base delay in seconds, doubled per attempt, with jitter
    max_retry_after: float = MAX_RETRY_AFTER_S

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try `attempt + 1` (attempt counts from 0)."""
        delay: float = self.backoff * (2 ** min(attempt, 16)) * (0.5 + random.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay


class HostGate:
    """Shared by every request to one host in this process: at most `limit` in flight, and
    none before `paused_until` (set when the server asked to wait with 429/503)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._in_flight = 0
        self._free = threading.Condition()
        self._lock = threading.Lock()
        self.paused_until = 0.0
        self.peak = 0  # the most requests seen in flight at once

    def pause(self, seconds: float) -> None:
        """Hold back every worker's next request to this host for `seconds`."""
        with self._lock:
            self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    def wait_turn(self) -> None:
        """Sleep while the host asked to be left alone."""
        while True:
            with self._lock:
                left = self.paused_until - time.monotonic()
            if left <= 0:
                return
            time.sleep(left)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """One of the host's request slots, after any pause it asked for."""
        self.wait_turn()
        with self._free:
            while self._in_flight >= self.limit:
                self._free.wait()
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
        try:
            yield
        finally:
            with self._free:
                self._in_flight -= 1
                self._free.notify()

    def set_limit(self, limit: int) -> None:
        """A new cap (the last Cache opened in the process sets it)."""
        with self._free:
            self.limit = max(1, limit)
            self._free.notify_all()


_GATES: dict[tuple[str, int], HostGate] = {}
_GATES_LOCK = threading.Lock()


def host_limit() -> int:
    """The per-host concurrency cap: $CCFCACHE_HOST_CONNECTIONS, else the default."""
    from .config import env

    value = env("CCFCACHE_HOST_CONNECTIONS") or ""
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_HOST_CONNECTIONS


def gate_for(host: str, port: int | None, limit: int | None = None) -> HostGate:
    """The process-wide gate of one host (created on first use)."""
    key = (host.lower(), port or 0)
    with _GATES_LOCK:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = HostGate(limit or host_limit())
        elif limit:
            gate.set_limit(limit)
        return gate


def sleep_before_retry(policy: Policy, attempt: int, retry_after: float | None = None,
                       gate: HostGate | None = None,
                       sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait before the next try; a server's Retry-After also pauses the host's other workers.
    `sleep` waits (a download passes one that an interrupt ends: `cancel.pause`)."""
    delay = policy.delay(attempt, retry_after)
    if gate is not None and retry_after is not None:
        gate.pause(min(retry_after, policy.max_retry_after))
    sleep(delay)
