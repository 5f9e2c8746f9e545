"""Master Index Files (MIF): the CIF format listing every constituent of the archive, as
`cifbuild masterindex=yes` writes one. Export the index as a MIF (`ccfcache mif`), and seed an
index from a MIF without reading any header (`ccfcache sync --mif`).

A MIF lets real `cifbuild withmasterindexset=yes masterindexset=ccf.mif` build CIFs without
any constituent at hand; `ccfcache fetch --cif ccf.cif` then brings exactly their bytes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cif import CifData, cif_bytes, read_cif
from .dates import normalise_date, resolve_date
from .errors import CcfCacheError, InvalidCif, InvalidName, UsageError
from .index import MIF_DIGEST_PREFIX
from .rows import SeedVersion
from .select import preference_key

if TYPE_CHECKING:
    from .config import Settings
    from .index import Index
    from .sources import Source


MAX_MIF_BYTES = 256 << 20  # 764 bytes a row: the real archive (~1,550 rows) is ~1.2 MB


@dataclass
class MifWritten:
    """A MIF that was written: where, how many rows, and rows whose MD5 is not known yet."""

    path: Path
    rows: list[dict[str, Any]]
    analysis_date: str | None
    without_md5: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "rows": len(self.rows),
                "analysis_date": self.analysis_date, "without_md5": self.without_md5}


def mif_versions(versions: Iterable[Mapping[str, Any]], analysis_date: str | None = None,
                 *, category: str = "XMMCCF") -> list[Mapping[str, Any]]:
    """The constituents a MIF lists, one version per name (pure).

    Without an analysis date: the contents the sources list now. With one: the archive as of
    that date, i.e. for each name the content (listed now, or superseded but still stored)
    with the greatest SUBDATE not after it. Withdrawn names, unreadable headers and other
    categories are left out. Sorted by (SCOPE, TYPEID, ISSUE), as cifbuild groups them.
    `versions` carry the `listed`, `stored` and `withdrawn` flags of
    `Index.versions_with_state`."""
    best: dict[str, tuple[tuple[Any, ...], Mapping[str, Any]]] = {}
    for version in versions:
        if version.get("withdrawn") or version.get("header_error"):
            continue
        if str(version.get("category") or "").strip() != category:
            continue
        if analysis_date is None:
            if not version.get("listed"):
                continue
        elif not (version.get("listed") or version.get("stored")) \
                or not version.get("subdate") or version["subdate"] > analysis_date:
            continue
        key = preference_key(version)
        current = best.get(version["name"])
        if current is None or key > current[0]:
            best[version["name"]] = (key, version)
    chosen = [entry[1] for entry in best.values()]
    chosen.sort(key=lambda v: (v["scope"], v["typeid"], int(v["issue"]), v["name"]))
    return chosen


def mif_bytes(index: Index, analysis_date: str | None = None, *, category: str = "XMMCCF",
              calindexset: str = "ccf.mif", now: datetime | None = None,
              ) -> tuple[bytes, list[dict[str, Any]]]:
    """The bytes of the index as a MIF, and its rows (see `mif_versions`): for a file system
    that shows one (the mount) as well as for `write_mif`. FNAME holds bare names; MD5 is empty
    for a content never fetched. OBSVDATE and ANALDATE hold the analysis date (now when none
    is given)."""
    anal = normalise_date(analysis_date) if analysis_date is not None else None
    rows = [dict(v) for v in mif_versions(index.versions_with_state(), anal, category=category)]
    for row in rows:
        row["md5"] = row.get("md5") or ""
    stamp = anal or resolve_date("now", now=now)
    params = {"calindexset": calindexset, "masterindex": "yes", "fullpath": "no",
              "analysisdate": anal or "now", "category": category}
    data = cif_bytes(rows, obs_date=stamp, analysis_date=stamp, category=category,
                     parameters=params, now=now)
    return data, rows


def write_mif(index: Index, out: str | os.PathLike[str], analysis_date: str | None = None,
              *, category: str = "XMMCCF", now: datetime | None = None) -> MifWritten:
    """Write the index as a MIF at `out` (atomically): see `mif_bytes`; rows without an MD5
    are listed in `without_md5` (`Cache.mif` fetches those first)."""
    from .cif import _write_atomically

    target = Path(out).expanduser().absolute()
    data, rows = mif_bytes(index, analysis_date, category=category, calindexset=str(target),
                           now=now)
    try:
        _write_atomically(target, data)
    except OSError as error:
        raise UsageError(f"cannot write the MIF {target}: {error.strerror or error}") from None
    anal = normalise_date(analysis_date) if analysis_date is not None else None
    return MifWritten(target, rows, anal, sorted(r["name"] for r in rows if not r["md5"]))


# -- import -------------------------------------------------------------------------------------
@dataclass
class MifSeeded:
    """What `sync --mif` recorded."""

    mif: str
    rows: int
    added: int = 0
    listed: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # rows that cannot be used, with why
    unlisted: list[str] = field(default_factory=list)  # names no configured source lists

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _version_row(row: Mapping[str, Any], category: str) -> SeedVersion:
    """A versions-table row for a MIF row (raises CcfCacheError for an unusable one)."""
    from .names import parse_name

    parsed = parse_name(row["name"])
    if not row.get("md5") or len(row["md5"]) != 32:
        raise UsageError("no MD5")
    if int(row["size"]) <= 0:
        raise UsageError(f"FSIZE {row['size']}")
    md5 = str(row["md5"]).lower()
    valdate, subdate = normalise_date(row["valdate"]), normalise_date(row["subdate"])
    evaldate = normalise_date(row["evaldate"]) if row.get("evaldate") else None
    date = normalise_date(row["date"]) if row.get("date") else None
    scope, typeid = row.get("scope"), row.get("typeid")
    if not scope or not typeid:
        raise UsageError("no SCOPE or TYPEID")
    return SeedVersion(
        name=parsed.name, size=int(row["size"]), md5=md5,
        header_digest=MIF_DIGEST_PREFIX + md5, scope=scope, typeid=typeid,
        issue=row.get("issue"), telescop=row.get("telescop"), valdate=valdate,
        subdate=subdate, evaldate=evaldate, date=date, category=category,
        extsequ=row.get("extsequ"), extseqid=row.get("extseqid"), creator=row.get("creator"),
        header_size=0,
    )


def read_mif(settings: Settings, location: str) -> CifData:
    """A MIF from a file or an http(s) URL (downloaded through the transports)."""
    if not location.startswith(("http://", "https://")):
        return read_cif(location)
    from .sources import open_source

    folder, _, name = location.rpartition("/")
    if not name:
        raise UsageError(f"{location} names a folder, not a MIF")
    s = settings
    transport = open_source(folder + "/", timeout=s.timeout, retries=s.retries,
                            backoff=s.backoff)
    try:
        with tempfile.TemporaryDirectory(prefix="ccfcache-mif-") as scratch:
            copy = Path(scratch) / "mif.fits"
            stream = transport.open_range(name, 0, None)
            try:
                with open(copy, "wb") as handle:
                    for chunk in stream.chunks():
                        handle.write(chunk)
                        if handle.tell() > MAX_MIF_BYTES:
                            raise UsageError(f"{location} is larger than {MAX_MIF_BYTES} bytes:"
                                             " not a Master Index File")
            finally:
                stream.close()
            data = read_cif(copy)
            data.path = None
            return data
    finally:
        transport.close()


def seed_from_mif(index: Index, settings: Settings, sources: list[Source],
                  location: str) -> MifSeeded:
    """Record every usable MIF row as a version (keywords, FSIZE, MD5; no header read) and
    list it under each configured source whose listing (read now: one request, no headers)
    has the name with that size. Fetched bytes are then checked against the MD5."""
    from .sync import fetch_listings

    data = read_mif(settings, location)
    category = data.category or "XMMCCF"
    report = MifSeeded(mif=location, rows=len(data.rows))
    versions: list[SeedVersion] = []
    for row in data.rows:
        try:
            versions.append(_version_row(row, category))
        except (CcfCacheError, InvalidName, ValueError, TypeError, KeyError) as exc:
            report.skipped.append(f"{row.get('name') or '(unnamed row)'}: {exc}")
    if not versions:
        raise InvalidCif(f"{location}: no usable row (a MIF lists constituents with MD5)")
    listings = fetch_listings(sources)[0] if sources else {}  # unconditional: no index
    listed: dict[str, list[tuple[str, Any]]] = {}
    for url, listing in listings.items():
        report.sources[url] = len(listing.entries)
        for version in versions:
            entry = listing.entries.get(version.name)
            if entry is not None and entry.size in (None, version.size):
                listed.setdefault(version.name, []).append((url, entry))
    report.unlisted = sorted(v.name for v in versions if v.name not in listed)
    report.added, report.listed = index.seed_versions(versions, listed, report.sources)
    return report


__all__ = ["MifSeeded", "MifWritten", "mif_bytes", "mif_versions", "read_mif", "seed_from_mif",
           "write_mif"]
