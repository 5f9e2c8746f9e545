"""The hand-over to SAS is whole: before a command hands out a SAS_CCFPATH, every row of its
CIF resolves in the view folder. A link whose blob was removed (by `prune`, perhaps while the
CIF was being built) is served again by downloading the content; what cannot be had is an
error naming the rows, never a view with dangling links."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SelectionError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from .fetcher import Fetcher
    from .index import Index
    from .leases import Lease
    from .rows import Version

REFETCH_ROUNDS = 3  # a prune running alongside may remove what was just fetched again


def dangling_links(view: Path, names: list[str] | None = None) -> list[str]:
    """Names in `view` (or of `names`) whose link does not lead to a file."""
    if names is None:
        try:
            names = sorted(os.listdir(view))
        except OSError:
            return []
    folder = os.fspath(view)  # (one string join per name: pathlib's was most of this)
    return [name for name in names if not os.path.isfile(os.path.join(folder, name))]


def view_is_whole(view: Path, names: list[str] | None = None) -> bool:
    """True when `view` is a folder and every link in it (or every one of `names`) resolves."""
    return view.is_dir() and not dangling_links(view, names)


def whole_view(view: Path, rows: Sequence[Version], lease: Lease) -> Path | None:
    """`view`, when it can be handed out as it is: the lease holds every content of `rows`,
    no prune is in progress (`hand_over`'s order), and each row's link in `view` leads to a
    file of the row's size, so its content is stored and linked (one stat per row, through
    the link: a warm build stated each blob, then each link to it). None when a content has
    no hash yet or a link is missing, dangling or of another size: the caller then fetches
    what is missing and makes the view (`hand_over`)."""
    from .leases import wait_for_prune

    if not all(row.xxh3 and row.md5 for row in rows):
        return None
    lease.hold(row.xxh3 for row in rows)
    if lease.active:
        wait_for_prune(lease.path.parent)
    folder = os.fspath(view)
    join, stat = os.path.join, os.stat
    try:
        for row in rows:
            if stat(join(folder, row.name)).st_size != row.size:
                return None
    except OSError:  # (no view yet, a link dangling: the caller's path says what is wrong)
        return None
    return view


def hand_over(index: Index, make_fetcher: Callable[[], Fetcher],
              rows: Sequence[Mapping[str, Any]], make_view: Callable[[], tuple[Path, bool]],
              what: str, lease: Lease) -> Path:
    """The last step before a view is handed out: the lease names every content of `rows`,
    a prune in progress (which may have read the leases before) is waited for, then the view
    is made (again, if that prune removed it; `make_view` says whether it found it whole just
    now) and whole (`ensure_whole`): from then on until the lease is released, no prune
    removes its contents or the view. Returns the view."""
    from .leases import wait_for_prune

    lease.hold(row["xxh3"] for row in rows)
    if lease.active:
        wait_for_prune(lease.path.parent)
    view, whole = make_view()
    if not whole:  # (a view just found whole is not checked twice)
        ensure_whole(index, make_fetcher, rows, view, what)
    return view


def ensure_whole(index: Index, make_fetcher: Callable[[], Fetcher],
                 rows: Sequence[Mapping[str, Any]], view: Path, what: str) -> None:
    """Download again the contents of `rows` whose links in `view` dangle, until none does;
    a SelectionError naming the rows (and why) when they cannot be served."""
    by_name = {row["name"]: row for row in rows}
    for _ in range(REFETCH_ROUNDS):
        broken = dangling_links(view, list(by_name))
        if not broken:
            return
        versions = [index.version(by_name[name]["id"]) for name in broken]
        _, failures = make_fetcher().fetch_many(versions)
        if failures:
            names = sorted(name for name in broken if by_name[name]["id"] in failures)
            raise SelectionError(
                f"{what}: {len(names)} rows cannot be served ({', '.join(names[:5])}"
                f"{', ...' if len(names) > 5 else ''}): {next(iter(failures.values()))}")
    broken = dangling_links(view, list(by_name))
    if broken:
        raise SelectionError(
            f"{what}: {len(broken)} rows lost their files again while being served "
            f"({', '.join(broken[:5])}); is a prune with a small --max-size running? "
            "pin the CIF (`ccfcache pin`) or run the command again")
