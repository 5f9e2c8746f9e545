"""`sync`: read every source's listing, reconcile it with the index, and read the headers of
new or changed constituents (Range requests, concurrently) without downloading the files."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import xxhash

from .errors import CcfCacheError, InvalidHeader, ListingError
from .headers import parse_header
from .index import HEADER_COLUMNS, Index
from .listing import Listing, ListingEntry
from .progress import NullProgress, Progress
from .reconcile import SyncPlan, check_withdrawal_safety, plan_sync
from .sources import Head, Source


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
    failures: list[str] = field(default_factory=list)
    dry_run: bool = False
    refused: str | None = None  # why a real sync would stop (dry runs only)
    plan_to_read: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def fetch_listings(sources: list[Source]) -> dict[str, Listing]:
    """Every source's listing; any failure or empty listing stops the sync before changes."""
    listings: dict[str, Listing] = {}
    for source in sources:
        listing = source.listing()
        if not listing.entries:
            raise ListingError(
                f"listing {source.url} holds no constituents; refusing to treat that as the "
                "truth (nothing changed)"
            )
        listings[source.url] = listing
    return listings


def _version_fields(name: str, head: Head) -> dict:
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


def read_heads(
    to_read: list[tuple[str, ListingEntry]],
    sources: dict[str, Source],
    *,
    workers: int,
    progress: Progress,
) -> tuple[list[tuple[str, ListingEntry, Head]], list[str]]:
    """Read the headers of `to_read` concurrently; return successes and failure messages."""
    done: list[tuple[str, ListingEntry, Head]] = []
    failures: list[str] = []
    progress.start("reading headers", len(to_read))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {
            pool.submit(sources[src].read_head, entry.name): (src, entry) for src, entry in to_read
        }
        for future in as_completed(futures):
            src, entry = futures[future]
            try:
                done.append((src, entry, future.result()))
            except CcfCacheError as exc:
                failures.append(str(exc))
            progress.advance()
    progress.finish()
    return done, failures


def apply_sync(index: Index, plan: SyncPlan, heads: list[tuple[str, ListingEntry, Head]],
               listings: dict[str, Listing], report: SyncReport) -> None:
    """Write the outcome of a sync into the index in one short transaction."""
    now = time.time()
    prepared = [(src, entry, head, _version_fields(entry.name, head)) for src, entry, head in heads]
    with index.write() as db:
        for src, entry, head, fields in prepared:
            existing = index.query(
                "SELECT id FROM versions WHERE name = ? AND size = ? AND header_digest = ?",
                (fields["name"], fields["size"], fields["header_digest"]),
            )
            if existing:
                version_id = existing[0]["id"]
            else:
                version_id = db["versions"].insert(
                    {**fields, "first_seen": now, "xxh3": None, "md5": None}
                ).last_pk
                report.new_versions.append(entry.name)
                if fields["header_error"]:
                    report.header_errors.append(fields["header_error"])
            db["listings"].upsert(
                {
                    "source": src, "name": entry.name, "size_hint": entry.size_hint,
                    "mtime": entry.mtime, "size": head.size, "etag": head.etag,
                    "last_modified": head.last_modified, "version_id": version_id,
                    "seen_at": now,
                },
                pk=("source", "name"),
            )  # fmt: skip
            db["constituents"].upsert(
                {"name": entry.name, "scope": fields["scope"], "typeid": fields["typeid"],
                 "issue": fields["issue"], "last_seen": now, "withdrawn_at": None},
                pk="name",
            )
            db.execute(
                "UPDATE constituents SET first_seen = ? WHERE name = ? AND first_seen IS NULL",
                (now, entry.name),
            )
        for src, name in plan.dropped:
            db.execute("DELETE FROM listings WHERE source = ? AND name = ?", (src, name))
        for name in plan.withdrawn:
            db.execute("UPDATE constituents SET withdrawn_at = ? WHERE name = ?", (now, name))
        # a withdrawn name listed again comes back only once its header was read (a listing
        # row points to a version); until then it stays withdrawn and is retried next sync
        read_names = {entry.name for _, entry, _ in heads}
        report.reappeared = [name for name in plan.reappeared if name in read_names]
        for name in report.reappeared:
            db.execute("UPDATE constituents SET withdrawn_at = NULL WHERE name = ?", (name,))
        listed = {name for listing in listings.values() for name in listing.entries}
        db.conn.executemany(
            "UPDATE constituents SET last_seen = ? WHERE name = ?", [(now, n) for n in listed]
        )
        for url, listing in listings.items():
            db["sources"].upsert(
                {"url": url, "listed_at": now, "listed_count": len(listing.entries)}, pk="url"
            )
            db.execute("UPDATE sources SET added_at = ? WHERE url = ? AND added_at IS NULL",
                       (now, url))


def sync(
    index: Index,
    sources: list[Source],
    *,
    workers: int = 8,
    dry_run: bool = False,
    max_delete: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> SyncReport:
    """Reconcile the index with the sources; see the module docstring."""
    progress = progress or NullProgress()
    listings = fetch_listings(sources)
    urls = set(listings)
    known = {
        (row["source"], row["name"]): row
        for row in index.query("SELECT source, name, size, size_hint, mtime, version_id "
                               "FROM listings")
    }
    # rows of sources no longer configured are dropped like names a source stopped listing
    known_rows = {key: row for key, row in known.items() if key[0] in urls}
    states = index.query("SELECT name, withdrawn_at FROM constituents")
    active = [r["name"] for r in states if r["withdrawn_at"] is None]
    withdrawn = [r["name"] for r in states if r["withdrawn_at"] is not None]
    plan = plan_sync(listings, known_rows, active, withdrawn)
    plan.dropped += [key for key in known if key[0] not in urls]
    report = SyncReport(
        sources={url: len(lst.entries) for url, lst in listings.items()},
        rejected={url: lst.rejected for url, lst in listings.items() if lst.rejected},
        unchanged=plan.unchanged,
        withdrawn=plan.withdrawn,
        reappeared=plan.reappeared,
        dry_run=dry_run,
        plan_to_read=sorted({entry.name for _, entry in plan.to_read}),
    )
    refusal = check_withdrawal_safety(plan, len(active), max_delete=max_delete, force=force)
    if refusal and dry_run:
        report.refused = refusal  # a dry run shows what would change, and that it would stop
        return report
    if refusal:
        raise ListingError(refusal + " (nothing changed)")
    if dry_run:
        return report
    by_url = {source.url: source for source in sources}
    heads, failures = read_heads(plan.to_read, by_url, workers=workers, progress=progress)
    report.read = len(heads)
    report.failures = failures
    apply_sync(index, plan, heads, listings, report)
    return report
