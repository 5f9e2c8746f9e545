"""Exactly the bytes a CALINDEX names: for each row (FNAME, MD5, FSIZE) of a CIF, an event
list's or PPS product's CALINDEX, or a Master Index File, the stored content with that MD5 and
size (under any name), else the content a source lists now under that name, fetched and kept
only if its MD5 matches. Rows nothing can serve are reported with name, MD5 and SUBDATE.

This is "give me the calibration this event list was made with": a mirror that follows the
server cannot, once a file changed in place there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cif import CifData, read_cif

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .fetcher import Fetcher
    from .index import Index
    from .rows import Version
    from .store import BlobStore


@dataclass(frozen=True)
class Unserved:
    """A CALINDEX row no stored content and no source can serve."""

    name: str
    md5: str
    subdate: str
    reason: str


@dataclass
class ExactFetch:
    """The outcome of materialising a CALINDEX: matched contents in row order, and the rest."""

    cif: CifData
    rows: list[dict[str, Any]] = field(default_factory=list)  # name, xxh3, md5, size, id (version)
    paths: dict[str, Path] = field(default_factory=dict)  # name -> blob
    unserved: list[Unserved] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unserved

    def as_dict(self) -> dict[str, Any]:
        return {
            "cif": str(self.cif.path), "rows": len(self.cif.rows),
            "paths": {name: str(path) for name, path in self.paths.items()},
            "unserved": [u.__dict__ for u in self.unserved],
        }


def _matches(version: Version, row: Mapping[str, Any]) -> bool:
    return bool(version.md5 == row["md5"] and int(version.size) == row["size"])


def materialise(index: Index, store: BlobStore, make_fetcher: Callable[[], Fetcher],
                cif_path: str | os.PathLike[str], *,
                ensure_synced: Callable[[], None] | None = None) -> ExactFetch:
    """Make every row's content local, matched by MD5 and FSIZE; see the module docstring.
    `ensure_synced()` runs before the sources' contents are looked at (when some row is not
    stored). Raises InvalidCif for a file without a usable CALINDEX."""
    data = read_cif(Path(cif_path).expanduser().absolute())
    result = ExactFetch(cif=data)
    wanted = [row for row in data.rows if row["md5"]]
    for row in data.rows:
        if not row["md5"]:
            result.unserved.append(Unserved(row["name"], "", row["subdate"],
                                            "the row has no MD5"))
    stored: dict[str, list[Version]] = {}
    for content in index.contents_by_md5(sorted({r["md5"] for r in wanted})):
        stored.setdefault(str(content.md5), []).append(content)
    chosen: dict[int, Version] = {}  # row number -> version
    to_fetch: dict[int, dict[str, Any]] = {}  # row number -> CALINDEX row
    for number, row in enumerate(data.rows):
        if not row["md5"]:
            continue
        local = [v for v in stored.get(row["md5"], []) if _matches(v, row)
                 and v.xxh3 is not None and store.has(v.xxh3, int(v.size))]
        local.sort(key=lambda v: (v.name != row["name"], -v.id))
        if local:
            chosen[number] = local[0]
        else:
            to_fetch[number] = row
    if to_fetch:
        if ensure_synced is not None:
            ensure_synced()
        names = sorted({row["name"] for row in to_fetch.values()})
        listed: dict[str, list[Version]] = {}
        for version in index.listed_versions_named(names):
            listed.setdefault(version.name, []).append(version)
        plan: dict[int, Version] = {}
        for number, row in to_fetch.items():
            # a listed content with this MD5, else one whose MD5 is unknown until fetched
            fits = [v for v in listed.get(row["name"], [])
                    if int(v.size) == row["size"] and v.md5 in (None, row["md5"])
                    and not v.header_error]
            fits.sort(key=lambda v: (v.md5 != row["md5"], -v.id))
            if fits:
                plan[number] = fits[0]
            else:
                result.unserved.append(_unserved(row, listed.get(row["name"], [])))
        unique = {v.id: v for v in plan.values()}
        _, failures = make_fetcher().fetch_many(list(unique.values()), exact=True)
        for number, version in plan.items():
            row = data.rows[number]
            if version.id in failures:
                result.unserved.append(Unserved(row["name"], row["md5"], row["subdate"],
                                                failures[version.id]))
                continue
            fresh = index.version(version.id)
            if _matches(fresh, row):
                chosen[number] = fresh
            else:
                result.unserved.append(Unserved(
                    row["name"], row["md5"], row["subdate"],
                    f"the sources' current bytes have MD5 {fresh.md5}"))
    for number in sorted(chosen):
        row, version = data.rows[number], chosen[number]
        assert version.xxh3 is not None  # stored or just fetched: its content is known
        entry = {"name": row["name"], "xxh3": version.xxh3, "md5": version.md5,
                 "size": int(version.size), "id": version.id}
        result.rows.append(entry)
        result.paths[row["name"]] = store.path(version.xxh3)
    result.unserved.sort(key=lambda u: u.name)
    return result


def _unserved(row: Mapping[str, Any], listed: list[Version]) -> Unserved:
    if not listed:
        reason = "no source lists this name and no stored content has this MD5"
    else:
        sizes = sorted({int(v.size) for v in listed})
        reason = (f"no stored content has this MD5; the sources list {row['name']} with "
                  f"{'/'.join(map(str, sizes))} bytes, not {row['size']}")
    return Unserved(row["name"], row["md5"], row["subdate"], reason)


def unserved_message(result: ExactFetch) -> str:
    """One line naming what could not be served, for an error."""
    names = ", ".join(u.name for u in result.unserved[:5])
    more = ", ..." if len(result.unserved) > 5 else ""
    return (f"{result.cif.path}: {len(result.unserved)} of {len(result.cif.rows)} rows cannot be "
            f"served by MD5 ({names}{more}); `ccfcache fetch --cif` lists them")


__all__ = ["ExactFetch", "Unserved", "materialise", "unserved_message"]
