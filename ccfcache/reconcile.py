"""Compare the sources' listings with the index and decide what a sync must do (pure).

The listing is the truth, judged across all sources together: a name is withdrawn only when
no configured source lists it (the valid set legitimately lacks old constituents). A listing
that would withdraw too much looks broken, and `check_withdrawal_safety` says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .listing import Listing, ListingEntry

MAX_WITHDRAW_FRACTION = 0.05
MAX_WITHDRAW_NAMES = 50


@dataclass
class SyncPlan:
    """What a sync will change."""

    to_read: list[tuple[str, ListingEntry]] = field(default_factory=list)  # new or changed
    unchanged: int = 0
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (source, name) not listed now
    withdrawn: list[str] = field(default_factory=list)  # names no source lists any more
    reappeared: list[str] = field(default_factory=list)  # withdrawn names listed again
    listed_names: int = 0
    unchanged_sources: dict[str, int] = field(default_factory=dict)  # 304: url -> rows listed


def entry_changed(entry: ListingEntry, known: Mapping[str, object]) -> bool:
    """True when a listing entry differs from what the index recorded for it. An entry that
    shows neither a size nor a date (python's http.server, Apache without FancyIndexing) is
    always read again: its listing could not show that the file changed in place."""
    if known.get("version_id") is None:
        return True
    if entry.size is None and entry.size_hint is None and entry.mtime is None:
        return True
    if known.get("header_error"):  # e.g. an HTML error page read during a maintenance window:
        return True  # read again at every sync until it is a FITS header (one Range request)
    if entry.size is not None and entry.size != known.get("size"):
        return True
    if entry.size is None and entry.size_hint != known.get("size_hint"):
        return True
    return entry.mtime != known.get("mtime")


def plan_sync(
    listings: Mapping[str, Listing],
    known: Mapping[tuple[str, str], Mapping[str, object]],
    active_names: Iterable[str],
    withdrawn_names: Iterable[str],
) -> SyncPlan:
    """Diff fresh listings against the index.

    `known` maps (source, name) to the stored listing row (size, size_hint, mtime,
    version_id, and the version's header_error when its header could not be read);
    `active_names` are names not yet withdrawn; `withdrawn_names` are the rest.
    Only sources present in `listings` are judged; rows of other sources are left alone.
    """
    plan = SyncPlan()
    listed: set[str] = set()
    for source, listing in listings.items():
        for name, entry in listing.entries.items():
            listed.add(name)
            row = known.get((source, name))
            if row is None or entry_changed(entry, row):
                plan.to_read.append((source, entry))
            else:
                plan.unchanged += 1
    for source, name in known:
        if source in listings and name not in listings[source].entries:
            plan.dropped.append((source, name))
    still_listed_elsewhere = {name for (source, name) in known if source not in listings}
    plan.withdrawn = sorted(set(active_names) - listed - still_listed_elsewhere)
    plan.reappeared = sorted(set(withdrawn_names) & listed)
    plan.listed_names = len(listed)
    return plan


def check_withdrawal_safety(
    plan: SyncPlan,
    active_count: int,
    *,
    max_delete: int | None = None,
    force: bool = False,
) -> str | None:
    """A one-line reason to refuse this sync, or None when it is safe to apply."""
    count = len(plan.withdrawn)
    if force or count == 0:
        return None
    if max_delete is not None:
        if count <= max_delete:
            return None
        return (
            f"the listings would withdraw {count} constituents, "
            f"more than --max-delete {max_delete}"
        )
    limit = min(MAX_WITHDRAW_NAMES, int(active_count * MAX_WITHDRAW_FRACTION))
    if count > limit:
        return (
            f"the listings would withdraw {count} of {active_count} constituents "
            f"(limit {limit}: 5% or 50 names); the listing may be broken. "
            "Check the source, then use --max-delete N or --force"
        )
    return None
