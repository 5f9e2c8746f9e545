"""Mirrors: several sources serving the same archive are one archive with several routes.

Which route to try first is a pure decision (`rank_routes`) from what this process saw of
each route (`RouteBook`): routes that failed recently wait out a cool-down (growing with
consecutive failures) behind the healthy ones; among healthy routes a clearly faster one
(recent download throughput, 1.5x or more) goes first; the rest take turns by name, which
spreads header reads and downloads over the routes. `alike` and `group_routes` decide which
listing entries (of mirrors, or of one host's two folders) are the same file, so its header
is read once.

The bytes are never trusted to the route: a download must match the header read at sync and
the content hash when known (fetcher.py), or the next route is tried.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from .listing import ListingEntry

EWMA_WEIGHT = 0.3  # weight of the newest throughput sample
FASTER = 1.5  # a route this much faster than another goes first
MAX_COOLDOWN_S = 300.0


@dataclass(frozen=True)
class RouteState:
    """What this process saw of one route."""

    throughput: float | None = None  # bytes/s, exponentially weighted over recent downloads
    failures: int = 0  # consecutive failures
    failed_at: float | None = None  # time.time() of the last failure


def cooldown(failures: int) -> float:
    """Seconds a route that failed `failures` times in a row waits behind healthy ones."""
    return 0.0 if failures <= 0 else min(2.0 ** (failures - 1) * 5.0, MAX_COOLDOWN_S)


def rank_routes(urls: Sequence[str], states: Mapping[str, RouteState], now: float,
                key: str = "") -> list[str]:
    """The order in which to try `urls` for the file `key` (pure)."""
    if len(urls) <= 1:
        return list(urls)
    turn = zlib.crc32(key.encode()) % len(urls)
    rotated = list(urls[turn:]) + list(urls[:turn])  # equal routes take turns by name

    def state(url: str) -> RouteState:
        return states.get(url, RouteState())

    def cooling(url: str) -> bool:
        s = state(url)
        return s.failed_at is not None and now - s.failed_at < cooldown(s.failures)

    healthy = [u for u in rotated if not cooling(u)]
    waiting = sorted((u for u in rotated if cooling(u)),
                     key=lambda u: (state(u).failures, state(u).failed_at or 0.0))
    known = [t for t in (state(u).throughput for u in healthy) if t]
    if known:
        best = max(known)
        # clearly slower routes go after the ones within FASTER of the best (stable order)
        healthy.sort(key=lambda u: (state(u).throughput or best) * FASTER < best)
    return healthy + waiting


class RouteBook:
    """Route states of this process, shared by every worker (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, RouteState] = {}

    def snapshot(self) -> dict[str, RouteState]:
        with self._lock:
            return dict(self._states)

    def success(self, url: str, size: int = 0, seconds: float = 0.0) -> None:
        """A read or download worked (a download of `size` bytes in `seconds` updates the
        throughput; small ones say little about it and only clear the failures)."""
        with self._lock:
            old = self._states.get(url, RouteState())
            rate = old.throughput
            if size >= 256 * 1024 and seconds > 0:
                sample = size / seconds
                rate = sample if rate is None else (1 - EWMA_WEIGHT) * rate + EWMA_WEIGHT * sample
            self._states[url] = RouteState(rate, 0, None)

    def failure(self, url: str, now: float) -> None:
        with self._lock:
            old = self._states.get(url, RouteState())
            self._states[url] = replace(old, failures=old.failures + 1, failed_at=now)

    def clear(self) -> None:
        with self._lock:
            self._states.clear()


BOOK = RouteBook()  # one per process: every Cache and worker learns from the same routes


def alike(a: ListingEntry, b: ListingEntry) -> bool:
    """True when two listings most likely show the same file: equal exact sizes, or an exact
    size that the other listing's rounded size shows ('82K'), or equal rounded sizes with the
    same date. A wrong guess costs one more request: the download is checked against the
    header read, and falls back to the route that header came from."""
    if a.size is not None and b.size is not None:
        return a.size == b.size
    if a.size is not None or b.size is not None:
        exact, other = (a, b) if a.size is not None else (b, a)
        hint = other.size_hint
        return hint is not None and abs(hint - (exact.size or 0)) <= max(hint * 0.06, 112)
    return (a.size_hint is not None and a.size_hint == b.size_hint and a.mtime is not None
            and a.mtime == b.mtime)


def group_routes(to_read: Sequence[tuple[str, ListingEntry]],
                 ) -> list[list[tuple[str, ListingEntry]]]:
    """Group (source, entry) pairs whose header one read can serve: the same name listed
    alike by several sources, on other hosts (mirrors) or on the same one (ESA's full and
    valid folders list 131 of a cold CIF's names both: read once, not twice). Entries that
    differ stay apart. Order follows `to_read` (pure)."""
    groups: list[list[tuple[str, ListingEntry]]] = []
    by_name: dict[str, list[int]] = {}
    for src, entry in to_read:
        for index in by_name.get(entry.name, []):
            group = groups[index]
            if all(alike(e, entry) for _, e in group):
                group.append((src, entry))
                break
        else:
            by_name.setdefault(entry.name, []).append(len(groups))
            groups.append([(src, entry)])
    return groups
