"""`sync`: read every source's listing, reconcile it with the index, and read the headers of
new or changed constituents (Range requests, concurrently) without downloading the files."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import xxhash

from .errors import CcfCacheError, InvalidHeader, ListingError
from .headers import parse_header
from .index import HEADER_COLUMNS, Index
from .listing import Listing, ListingEntry
from .progress import NullProgress, Progress
from .reconcile import SyncPlan, check_withdrawal_safety, plan_sync
from .routes import BOOK, RouteBook, group_routes, rank_routes
from .rows import ListingUnread, ListingWrite
from .sources import Source
from .transport import Head, ListingValidators, NotModified

# headers read are committed in batches (an interrupted sync keeps them): this many, or after
# this many seconds, whichever comes first
BATCH_HEADERS = 500
BATCH_SECONDS = 2.0


@dataclass
class SyncReport:
    """What a sync did (or, with dry_run, would do)."""

    sources: dict[str, int] = field(default_factory=dict)  # url -> constituents listed
    rejected: dict[str, list[str]] = field(default_factory=dict)  # url -> non-constituents
    read: int = 0
    unchanged: int = 0
    new_versions: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    reappeared: list[str] = field(default_factory=list)
    header_errors: list[str] = field(default_factory=list)
    unread: int = 0  # listed entries whose header was left to read (`headers=False`)
    failures: list[str] = field(default_factory=list)
    dry_run: bool = False
    refused: str | None = None  # why a real sync would stop (dry runs only)
    plan_to_read: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def fetch_listings(sources: list[Source], index: Index | None = None,
                   ) -> tuple[dict[str, Listing], set[str]]:
    """Every source's listing, and the sources whose listing did not change since the last
    complete sync (a conditional GET answered 304: their listing is None here and is taken
    from the index). Any failure or empty listing stops the sync before changes. The sources
    are asked at once (ESA's two folders: one round trip of waiting instead of two, and one
    page is parsed while the other arrives); the first error in source order is raised."""
    known = {source.url: index.listing_validators(source.url) if index is not None else None
             for source in sources}

    def one(source: Source) -> Listing | NotModified:
        validators = known[source.url]
        # (a transport that keeps no validators is always asked plainly)
        return source.listing(ListingValidators(*validators)) if validators \
            else source.listing()

    if len(sources) > 1:
        with ThreadPoolExecutor(max_workers=len(sources),
                                thread_name_prefix="ccfcache-listing") as pool:
            futures = [pool.submit(one, source) for source in sources]
            answers = [future.result() for future in futures]
    else:
        answers = [one(source) for source in sources]
    listings: dict[str, Listing] = {}
    unchanged: set[str] = set()
    for source, listing in zip(sources, answers, strict=True):
        if isinstance(listing, NotModified):
            unchanged.add(source.url)
            continue
        if not listing.entries:
            raise ListingError(
                f"listing {source.url} holds no constituents; refusing to treat that as the "
                "truth (nothing changed)"
            )
        listings[source.url] = listing
    return listings, unchanged


def plan_from_index(index: Index, listings: dict[str, Listing],
                    not_modified: set[str]) -> SyncPlan:
    """The sync plan. A listing that changed is compared with the index's rows of its source
    (`plan_sync`, pure); a source whose listing did not change (304) is judged in SQL without
    loading its rows (100,000 rows took seconds in Python): only its rows whose header is
    unread or unreadable, or whose listing shows neither size nor date, are read again."""
    changed = sorted(listings)
    known = {(row.source, row.name): row for row in index.known_listings(changed)}
    withdrawn_names = index.withdrawn_names()
    # active names that no 304 source lists: withdrawn unless a changed listing lists them
    # (rows of a source no longer configured do not count)
    counts = index.listing_counts(sorted(not_modified))
    candidates = index.active_unlisted_by(sorted(not_modified), counts)
    plan = plan_sync(listings, known, candidates, withdrawn_names)
    stale = index.stale_listings(sorted(not_modified))
    plan.to_read += [(row.source, ListingEntry(name=row.name, href=row.href or row.name,
                                               size=row.size, size_hint=row.size_hint,
                                               mtime=row.mtime)) for row in stale]
    plan.unchanged += sum(counts.values()) - len(stale)
    plan.unchanged_sources = counts
    plan.reappeared = sorted(set(plan.reappeared)
                             | set(index.withdrawn_listed_by(sorted(not_modified))))
    # rows of sources no longer configured are dropped like names a source stopped listing
    plan.dropped += index.listings_outside(changed + sorted(not_modified))
    return plan


def _version_fields(name: str, head: Head) -> dict[str, Any]:
    """The versions-table fields for a header just read (header_error set when unreadable)."""
    try:
        keys = parse_header(head.data, name)
        fields = {k: keys.get(k) for k in HEADER_COLUMNS}
        fields["header_digest"] = keys["header_digest"]
        fields["header_size"] = keys["header_size"]
        fields["header_error"] = None
    except InvalidHeader as exc:
        from .names import parse_name

        parts = parse_name(name)
        fields = {k: None for k in HEADER_COLUMNS}
        fields.update(scope=parts.scope, typeid=parts.typeid, issue=parts.issue)
        fields["header_digest"] = "bad-" + xxhash.xxh3_128_hexdigest(head.data)
        fields["header_size"] = len(head.data)
        fields["header_error"] = str(exc)
    fields["name"] = name
    fields["size"] = head.size
    return fields


def _median(values: list[float]) -> float:
    """The median, as `statistics.median` gives it (the mean of the two middle values of an
    even count), without importing statistics and fractions on every command's start."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


class InFlight:
    """How many header reads to keep in flight: a decision from latencies only (pure).

    Header reads are latency-bound: over a wide-area network each waits a round trip, so the
    count in flight sets the pace. Start at `start`; after each window of `limit` reads,
    double while the median latency stays within 1.5x of the first window's (the server keeps
    up), halve when it grows past 3x or a read failed (the server or this machine is
    saturated), never above `cap` (the per-host connection cap) nor below 1.

    With `latency` False, latency is not taken as a sign (only failures halve): a cold CIF
    downloads while it still reads headers, and its own downloads queue in front of the
    header reads on the way back (a header read took 20-50 ms, then 100-290 ms, on the
    30 ms relay profile); halving then only slowed the reads (to 3-8 a second, against ~100
    before the downloads), which decided the last types late and left the link idle."""

    def __init__(self, start: int, cap: int, *, latency: bool = True) -> None:
        self.cap = max(1, cap)
        self.latency = latency
        self.limit = max(1, min(start, self.cap))
        self.baseline: float | None = None
        self._window: list[float] = []
        self._failed = 0

    def record(self, seconds: float | None) -> None:
        """One read done: its latency, or None when it failed."""
        if seconds is None:
            self._failed += 1
        else:
            self._window.append(seconds if self.latency else 0.0)
        if len(self._window) + self._failed < self.limit:
            return
        median = _median(self._window) if self._window else None
        baseline = self.baseline
        if baseline is None and median is not None:
            self.baseline = baseline = median
        if self._failed or (median is not None and baseline is not None
                            and median > 3 * baseline):
            self.limit = max(1, self.limit // 2)
        elif median is not None and baseline is not None and median <= 1.5 * baseline:
            self.limit = min(self.cap, self.limit * 2)
        self._window, self._failed = [], 0


Read = tuple[str, ListingEntry, Head, dict[str, Any]]  # (source, entry, head, version fields)


def read_group(group: list[tuple[str, ListingEntry]], sources: Mapping[str, Source],
               book: RouteBook, keep_header: Callable[[bytes], object] | None,
               ) -> tuple[list[Read], float]:
    """Read one header that serves a group of (source, entry) pairs (`group_routes`), from
    the route ranked first, falling back to the next on an error; return the pairs with the
    header's version fields, and the latency of the read that answered."""
    entries = dict(group)
    name = group[0][1].name
    failure: CcfCacheError | None = None
    for src in rank_routes(list(entries), book.snapshot(), time.time(), name):
        start = time.perf_counter()
        try:
            head = sources[src].read_head(entries[src].href)  # as the server spells it
        except CcfCacheError as exc:
            book.failure(src, time.time())
            failure = exc
            continue
        latency = time.perf_counter() - start
        book.success(src)
        fields = _version_fields(name, head)
        if keep_header is not None and fields["header_error"] is None:
            try:
                keep_header(head.data[: fields["header_size"]])
            except CcfCacheError:
                pass  # the mount reads such a header again with one Range request
        # the header bytes are not kept once parsed (100,000 held ~300 MB until apply)
        head = replace(head, data=b"")
        shared = replace(head, etag=None, last_modified=None)  # validators are per route
        return [(src, entries[src], head, fields)] + [
            (other, entry, shared, fields) for other, entry in group if other != src
        ], latency
    assert failure is not None
    raise failure


def read_heads(
    to_read: list[tuple[str, ListingEntry]],
    sources: dict[str, Source],
    *,
    workers: int,
    progress: Progress,
    cap: int | None = None,
    keep_header: Callable[[bytes], object] | None = None,
    on_batch: (Callable[[list[tuple[str, ListingEntry, Head, dict[str, Any]]]], object]
               | None) = None,
    book: RouteBook | None = None,
) -> tuple[list[tuple[str, ListingEntry, Head, dict[str, Any]]], list[str]]:
    """Read and parse the headers of `to_read` concurrently (parsing in the workers overlaps
    with other reads in flight); return (source, entry, head, version fields) and failures.
    `workers` reads start in flight, growing up to `cap` while latency allows (`InFlight`).
    A name that mirrors on other hosts list alike is read once, from the route ranked first
    (`routes.py`), falling back to the next on an error; its other listings share the header.
    `keep_header` receives each readable primary header's bytes (the store keeps them for
    the mount's header reads); failing to keep one does not fail the sync. `on_batch`
    receives the headers read so far every BATCH_HEADERS reads or BATCH_SECONDS (and the
    rest at the end), so that an interrupted sync keeps what it has read; with it, the
    headers are handed to it only (the list returned is empty)."""
    book = book or BOOK

    def read(group: list[tuple[str, ListingEntry]]
             ) -> tuple[list[tuple[str, ListingEntry, Head, dict[str, Any]]], float]:
        return read_group(group, sources, book, keep_header)

    done: list[tuple[str, ListingEntry, Head, dict[str, Any]]] = []
    pending: list[tuple[str, ListingEntry, Head, dict[str, Any]]] = []
    flushed = time.monotonic()
    failures: list[str] = []
    control = InFlight(workers, max(workers, cap or workers))
    todo = iter(group_routes(to_read))
    progress.start("reading headers", len(to_read))
    with ThreadPoolExecutor(max_workers=control.cap) as pool:
        running: dict[Future[Any], list[tuple[str, ListingEntry]]] = {}
        while True:
            while len(running) < control.limit:
                item = next(todo, None)
                if item is None:
                    break
                running[pool.submit(read, item)] = item
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                group = running.pop(future)
                try:
                    results, latency = future.result()
                except CcfCacheError as exc:
                    failures.append(str(exc))
                    control.record(None)
                else:
                    if on_batch is None:  # else the batches hold them (100,000 held ~250 MB)
                        done.extend(results)
                    pending.extend(results)
                    control.record(latency)
                progress.advance(len(group))
            if on_batch is not None and pending and (
                    len(pending) >= BATCH_HEADERS
                    or time.monotonic() - flushed >= BATCH_SECONDS):
                on_batch(pending)
                pending, flushed = [], time.monotonic()
    if on_batch is not None and pending:
        on_batch(pending)
    progress.finish()
    return done, failures


def _unread(source: str, entry: ListingEntry) -> ListingUnread:
    from .names import parse_name_once

    parts = parse_name_once(entry.name)
    return ListingUnread(source, entry.name, entry.size_hint, entry.mtime, entry.size,
                         entry.href, parts.scope, parts.typeid, parts.issue)


def apply_sync(index: Index, plan: SyncPlan,
               heads: list[tuple[str, ListingEntry, Head, dict[str, Any]]],
               listings: dict[str, Listing], report: SyncReport,
               not_modified: AbstractSet[str] = frozenset(),
               read_names: set[str] | None = None,
               unread: list[ListingUnread] | None = None) -> None:
    """Write the outcome of a sync into the index in one short transaction (`heads`: those
    not recorded yet; `read_names`: every name whose header this sync read; `unread`: the
    entries a listings-only sync leaves to read)."""
    writes = _writes(heads)
    listed = {name for listing in listings.values() for name in listing.entries}
    # a listing is asked for conditionally next time only when every row of it is in the
    # index now (a failed header read must be retried by the next sync)
    complete = not report.failures
    validators = {url: (listing.etag, listing.last_modified) if complete else (None, None)
                  for url, listing in listings.items() if url not in not_modified}
    new = index.apply_sync(
        writes, dropped=plan.dropped, withdrawn=plan.withdrawn, listed=listed,
        source_counts={**{url: len(listing.entries) for url, listing in listings.items()},
                       **plan.unchanged_sources},
        now=time.time(), validators=validators, unread=unread or ())
    report.new_versions.extend(v.name for v in new)
    report.header_errors.extend(v.header_error for v in new if v.header_error)
    # a withdrawn name listed again comes back only once its header was read (a listing
    # row points to a version); until then it stays withdrawn and is retried next sync
    read_names = (read_names or set()) | {entry.name for _, entry, _, _ in heads}
    report.reappeared = [name for name in plan.reappeared if name in read_names]


def _writes(heads: list[tuple[str, ListingEntry, Head, dict[str, Any]]]) -> list[ListingWrite]:
    return [ListingWrite(src, entry.name, entry.size_hint, entry.mtime, head.size, head.etag,
                         head.last_modified, fields, entry.href)
            for src, entry, head, fields in heads]


def record_heads(index: Index, heads: list[tuple[str, ListingEntry, Head, dict[str, Any]]],
                 report: SyncReport) -> None:
    """Commit a batch of headers just read (their versions, listing rows and names), so that
    an interrupted sync keeps them and the next one reads only the rest (`apply_sync` writes
    them again at the end: recording a header is idempotent)."""
    new = index.apply_sync(_writes(heads), dropped=[], withdrawn=[], listed=set(),
                           source_counts={}, now=time.time())
    report.new_versions.extend(v.name for v in new)
    report.header_errors.extend(v.header_error for v in new if v.header_error)


def sync(
    index: Index,
    sources: list[Source],
    *,
    workers: int = 8,
    header_cap: int | None = None,
    dry_run: bool = False,
    max_delete: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
    keep_header: Callable[[bytes], object] | None = None,
    headers: bool = True,
) -> SyncReport:
    """Reconcile the index with the sources; see the module docstring. With `headers`
    False the sync stops after the listings: the entries it would read are recorded as
    listed with their header not read yet (`Index.unread_listings`), for a CIF to read only
    the headers it needs (`ccfcache.demand`) and the next full sync to read the rest."""
    progress = progress or NullProgress()
    listings, not_modified = fetch_listings(sources, index)
    plan = plan_from_index(index, listings, not_modified)
    report = SyncReport(
        sources={**{url: len(lst.entries) for url, lst in listings.items()},
                 **plan.unchanged_sources},
        rejected={url: lst.rejected for url, lst in listings.items() if lst.rejected},
        unchanged=plan.unchanged,
        withdrawn=plan.withdrawn,
        reappeared=plan.reappeared,
        dry_run=dry_run,
        plan_to_read=sorted({entry.name for _, entry in plan.to_read}),
    )
    refusal = check_withdrawal_safety(plan, index.active_count(), max_delete=max_delete,
                                      force=force)
    if refusal and dry_run:
        report.refused = refusal  # a dry run shows what would change, and that it would stop
        return report
    if refusal:
        raise ListingError(refusal + " (nothing changed)")
    if dry_run:
        return report
    if not headers:
        unread = [_unread(src, entry) for src, entry in plan.to_read]
        report.unread = len(unread)
        apply_sync(index, plan, [], listings, report, not_modified, unread=unread)
        return report
    by_url = {source.url: source for source in sources}
    read_names: set[str] = set()

    def on_batch(batch: list[tuple[str, ListingEntry, Head, dict[str, Any]]]) -> None:
        record_heads(index, batch, report)  # committed now: not kept until the end
        report.read += len(batch)
        read_names.update(entry.name for _, entry, _, _ in batch)

    heads, failures = read_heads(plan.to_read, by_url, workers=workers, progress=progress,
                                 cap=header_cap, keep_header=keep_header, on_batch=on_batch)
    report.failures = failures
    apply_sync(index, plan, heads, listings, report, not_modified, read_names)
    return report
