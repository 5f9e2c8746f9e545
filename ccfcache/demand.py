"""Read the headers a CIF needs, and only those, on an index whose sync stopped after the
listings (`sync(headers=False)`: a cold `ccfcache cif` does not wait for 1,761 header reads).

cifbuild's rule takes, per (SCOPE, TYPEID), the highest ISSUE among the valid constituents.
A name says its scope, type and issue (`SCOPE_TYPEID_IIII.CCF`), so a type's names can be
walked by issue from the highest down, reading headers until the first valid one: the names
below it cannot win. `Walk` decides what to read (pure); `read_on_demand` reads it (all types
at once, as many reads in flight as sync keeps, `sync.InFlight`) and records each header
as a sync would. The selection itself is then made as always, from the index.

The walk trusts the names as far as the headers confirm them: a header whose ISSUE differs
from its name's makes the walk read every header of that type; one whose SCOPE or TYPEID
differs (it would take part in another type) makes it read every header. Unreadable headers
and constituents of another category are not valid: the walk goes on below them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from .errors import CcfCacheError, InvalidName
from .listing import ListingEntry
from .names import parse_name
from .select import _blank, _unusable, is_candidate

Group = tuple[str, str]

UNREAD, READING, VALID, INVALID, FAILED = "unread", "reading", "valid", "invalid", "failed"


@dataclass(frozen=True)
class Rule:
    """The dates and category a CIF is selected for (normalised dates)."""

    obs: str
    anal: str
    category: str = "XMMCCF"
    ignore_category: bool = False

    def valid(self, row: Mapping[str, Any]) -> bool:
        """Whether one version is a candidate of its type for these dates (cifbuild's rule)."""
        if _unusable(row) is not None:
            return False
        if not self.ignore_category and (  # as the candidate query and the rule both test
                row.get("category") != self.category
                or str(row.get("category") or "").strip() != self.category.strip()):
            return False
        return is_candidate(row, self.obs, self.anal)


@dataclass
class _Name:
    name: str
    group: Group
    issue: int
    unread: int = 0  # its listing rows whose header is not read
    reading: int = 0
    valid: bool = False
    failed: str | None = None


@dataclass
class Walk:
    """Which unread headers a selection needs (pure: fed with what is read).

    `names`: every name listed now; `unread`: name -> how many of its listing rows have no
    header read; `versions`: the versions read of listed names (header keywords); `rule`:
    the dates; `groups`: the types to decide (default: all)."""

    rule: Rule
    groups: dict[Group, list[_Name]] = field(default_factory=dict)
    by_name: dict[str, _Name] = field(default_factory=dict)
    everything: bool = False  # a header named another type: every header is needed
    whole: set[Group] = field(default_factory=set)  # types whose every header is needed
    wanted_groups: set[Group] | None = None
    _memo: dict[Group, list[_Name]] = field(default_factory=dict)  # `_needed`, per type


    @classmethod
    def plan(cls, names: Iterable[str], unread: Mapping[str, int],
             versions: Iterable[Mapping[str, Any]], rule: Rule, *,
             groups: Iterable[Group] | None = None) -> Walk:
        walk = cls(rule=rule, wanted_groups=set(groups) if groups is not None else None)
        for name in names:
            try:
                parts = parse_name(name)
            except InvalidName:
                continue
            entry = _Name(name, (parts.scope, parts.typeid), parts.issue, unread.get(name, 0))
            walk.by_name[name] = entry
            walk.groups.setdefault(entry.group, []).append(entry)
        for members in walk.groups.values():
            members.sort(key=lambda n: n.issue, reverse=True)
        for version in versions:
            walk._learn(version)
        return walk

    def _learn(self, version: Mapping[str, Any]) -> None:
        entry = self.by_name.get(str(version.get("name")))
        if entry is None:
            return
        self._memo.pop(entry.group, None)
        if version.get("header_error") is None and (
                (version.get("scope"), version.get("typeid")) != entry.group):
            self.everything = True  # it takes part in another type: nothing can be skipped
            self._memo.clear()
        elif version.get("header_error") is None and version.get("issue") != entry.issue:
            self.whole.add(entry.group)
        if self.rule.valid(version):
            entry.valid = True

    def record(self, name: str, versions: Iterable[Mapping[str, Any]]) -> None:
        """One listing row of `name` was read: the version fields of its header."""
        entry = self.by_name[name]
        entry.reading -= 1
        entry.unread -= 1
        self._memo.pop(entry.group, None)
        for version in versions:
            self._learn(version)

    def failed(self, name: str, message: str) -> None:
        """A read of `name` failed: the walk cannot decide its type without it."""
        entry = self.by_name[name]
        entry.reading -= 1
        entry.failed = message
        self._memo.pop(entry.group, None)

    def count_reads(self, reads: Mapping[str, int]) -> None:
        """How many reads each unread name needs (a read serves a group of routes)."""
        for name, entry in self.by_name.items():
            entry.unread = reads.get(name, 0) if entry.unread else 0
        self._memo.clear()

    def start(self, name: str) -> None:
        """A read of one listing row of `name` starts."""
        entry = self.by_name[name]
        entry.reading += 1
        self._memo.pop(entry.group, None)

    def _needed(self, group: Group) -> list[_Name]:
        """The names of `group` whose headers the selection still needs, highest issue
        first (those being read included); kept until one of the type's names changes (the
        read loop asks after every read: recomputing every type each time was O(names))."""
        found = self._memo.get(group)
        if found is None:
            found = self._memo[group] = self._compute_needed(group)
        return found

    def _compute_needed(self, group: Group) -> list[_Name]:
        if self.wanted_groups is not None and group not in self.wanted_groups \
                and not self.everything:
            return []
        out = []
        whole = self.everything or group in self.whole
        for entry in self.groups[group]:
            if entry.unread or entry.reading:
                out.append(entry)
            if entry.valid and not whole:
                break  # a valid issue: the names below it cannot win
        return out

    def to_read(self) -> list[str]:
        """Names with headers to read now (one entry per unread listing row not yet being
        read), each type's highest issues first, the types interleaved."""
        ranked: list[tuple[int, str]] = []
        for group in self.groups:
            rank = 0
            for entry in self._needed(group):
                if entry.failed is not None:
                    continue
                for _ in range(entry.unread - entry.reading):
                    ranked.append((rank, entry.name))
                    rank += 1
                rank += entry.reading
        ranked.sort()
        return [name for _, name in ranked]

    def resolved(self) -> set[Group]:
        """The types whose selection the headers read so far decide."""
        return {group for group in self.groups if not self._needed(group)}

    def failures(self) -> dict[str, str]:
        """Names whose header the selection needs and could not be read."""
        return {entry.name: entry.failed for group in self.groups
                for entry in self._needed(group) if entry.failed is not None}


@dataclass
class Outline:
    """What `Walk.plan` knows before it is given dates: each type's listed names, highest
    issue first, with how many of their listing rows are unread and the versions read of
    them. Made once while the index does not change (`Index.remembered`), it answers for any
    dates whether a selection needs a header read (`needs_reading`), as a new walk would."""

    # per type, each name's unread count and the dates of its usable versions read:
    # (category, valdate, subdate, evaldate or None when open-ended), what `Rule.valid` tests
    groups: dict[Group, list[tuple[int, list[tuple[Any, Any, Any, Any]]]]]
    everything: bool
    whole: set[Group]

    @classmethod
    def of(cls, names: Iterable[str], unread: Mapping[str, int],
           versions: Iterable[Mapping[str, Any]]) -> Outline:
        walk = Walk.plan(names, unread, (), Rule("", ""))  # names grouped and ranked
        read: dict[str, list[Mapping[str, Any]]] = {}
        for version in versions:
            walk._learn(version)  # (types whose headers contradict their names)
            if str(version.get("name")) in walk.by_name:
                read.setdefault(str(version.get("name")), []).append(version)
        return cls({group: [(entry.unread, _dated(read.get(entry.name, [])))
                             for entry in members]
                    for group, members in walk.groups.items()}, walk.everything,
                   set(walk.whole))

    def needs_reading(self, rule: Rule, groups: Iterable[Group] | None = None) -> bool:
        """`bool(Walk.plan(names, unread, versions, rule, groups=groups).to_read())`."""
        wanted = set(groups) if groups is not None else None
        obs, anal, category, anything = (rule.obs, rule.anal, rule.category,
                                         rule.ignore_category)
        for group, members in self.groups.items():
            if wanted is not None and group not in wanted and not self.everything:
                continue
            whole = self.everything or group in self.whole
            for unread, dated in members:
                if unread:
                    return True
                if not whole and any(  # `Rule.valid`, on the dates kept (a warm build's walk)
                        (anything or kind == category) and valdate <= obs
                        and subdate <= anal and (end is None or end >= obs)
                        for kind, valdate, subdate, end in dated):
                    break  # a valid issue: the names below it cannot win
        return False


def _dated(versions: list[Mapping[str, Any]]) -> list[tuple[Any, Any, Any, Any]]:
    """What `Rule.valid` reads of each version it can find valid: the category, VALDATE,
    SUBDATE and the end of validity (None when open-ended); unusable versions left out."""
    return [(row.get("category"), row["valdate"], row["subdate"],
             None if _blank(row.get("evaldate")) else row.get("evaldate"))
            for row in versions if _unusable(row) is None]


def read_on_demand(
    walk: Walk,
    unread: Iterable[Any],
    read_one: Callable[[list[tuple[str, ListingEntry]]], tuple[list[Any], float]],
    record: Callable[[list[Any]], object],
    *,
    workers: int,
    cap: int,
    on_resolved: Callable[[set[Group]], object] | None = None,
    advance: Callable[[int], object] | None = None,
    flush_s: float = 0.25,
) -> int:
    """Read the listing rows `walk` asks for (`unread`: the index's `ListingUnread` rows),
    `read_one` a group of routes at a time with as many in flight as `InFlight` allows;
    `record` commits read headers, after which `on_resolved` receives the types newly
    decided. Returns the reads done; raises CcfCacheError naming a header the selection needs
    that could not be read.

    Recording runs on a thread of its own, one batch at a time and in order, while this loop
    goes on starting reads: a commit waits for the index (downloads commit too) and an fsync,
    and `on_resolved` selects from the index; done here, they held up the next header reads
    (a profile of a cold CIF: 15 commits, 1.5 s of 6). A batch goes as soon as the recorder
    is free and a type was newly decided (with `on_resolved`), or after BATCH_SECONDS or
    BATCH_HEADERS reads, and at the end; `flush_s` is how often the loop looks."""
    from .routes import group_routes
    from .sync import BATCH_HEADERS, BATCH_SECONDS, InFlight

    pairs: dict[str, list[tuple[str, ListingEntry]]] = {}
    for row in unread:
        pairs.setdefault(row.name, []).append((row.source, ListingEntry(
            name=row.name, href=row.href or row.name, size=row.size, size_hint=row.size_hint,
            mtime=row.mtime)))
    queues = {name: group_routes(found) for name, found in pairs.items()}
    walk.count_reads({name: len(queue) for name, queue in queues.items()})
    # downloads run meanwhile (`on_resolved`): their bytes slow the reads, not the server
    control = InFlight(workers, max(workers, cap), latency=on_resolved is None)
    pending: list[Any] = []
    done = 0
    flushed = time.monotonic()
    announced: set[Group] = set()
    recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ccfcache-record")
    recording: list[Future[None]] = []
    stopping = False

    def record_then_announce(batch: list[Any], fresh: set[Group]) -> None:
        if batch:
            record(batch)
        if fresh and on_resolved is not None and not stopping:
            on_resolved(fresh)

    def settle(*, wait_all: bool) -> bool:
        """Raise a recording's error; True when the recorder is free."""
        while recording and (wait_all or recording[0].done()):
            recording.pop(0).result()
        return not recording

    def flush() -> None:
        nonlocal pending, flushed
        fresh: set[Group] = set()
        if on_resolved is not None:
            fresh = walk.resolved() - announced
            announced.update(fresh)
        if pending or fresh:
            recording.append(recorder.submit(record_then_announce, pending, fresh))
        pending = []
        flushed = time.monotonic()

    pool = ThreadPoolExecutor(max_workers=control.cap)
    running: dict[Future[Any], str] = {}
    try:
        while True:
            if len(running) < control.limit:
                for name in walk.to_read():
                    if len(running) >= control.limit:
                        break
                    queue = queues.get(name)
                    if not queue:
                        continue
                    walk.start(name)
                    running[pool.submit(read_one, queue.pop(0))] = name
            if not running:
                break
            finished, _ = wait(running, timeout=flush_s, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                try:
                    results, latency = future.result()
                except CcfCacheError as exc:
                    walk.failed(name, str(exc))
                    control.record(None)
                else:
                    done += 1
                    pending.extend(results)
                    walk.record(name, [r[3] for r in results])
                    control.record(latency)
                if advance is not None:
                    advance(1)
            free = settle(wait_all=False)
            waited = time.monotonic() - flushed
            if len(pending) >= BATCH_HEADERS or (free and (
                    (pending and waited >= BATCH_SECONDS)
                    or (on_resolved is not None and walk.resolved() - announced))):
                flush()
        flush()
        settle(wait_all=True)
    except BaseException:
        stopping = True  # no more downloads started; what was read is kept (as a sync keeps it)
        pool.shutdown(wait=False, cancel_futures=True)
        recorder.shutdown(wait=True)
        if pending:
            record(pending)
        raise
    finally:
        recorder.shutdown(wait=True)
    pool.shutdown(wait=True)
    missing = walk.failures()
    if missing:
        name, message = next(iter(sorted(missing.items())))
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CcfCacheError(f"cannot read the header of {name}{more}, which the selection "
                            f"needs: {message}; nothing was written, try again")
    return done
