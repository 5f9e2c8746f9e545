"""Build a CIF from the index: query candidates, apply the cifbuild rule, fetch only what is
selected, make the per-CIF view folder, write the CIF, and record it (for pinning and `cifs`)."""

from __future__ import annotations

import functools
import getpass
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from .dates import resolve_date
from .errors import CacheError, SelectionError
from .handover import ensure_whole, view_is_whole
from .select import Selection, select_constituents

if TYPE_CHECKING:
    from .cache import Cache

# The rule itself is select.select_constituents (pure); this query only narrows its input to
# the rows that decide its answer, seeking through the (scope, typeid, issue) index instead of
# reading every version: per group, the valid rows of the highest valid issue (all of them:
# ties are for the rule), every row with an unreadable header (the rule warns about each), and
# one row of each group that has rows but no valid one (the rule warns about the group).
# A version is "live" when it is listed now (or, historical, stored), its name is not
# withdrawn and it is of the category; "valid" adds the dates.
_LIVE = """NOT EXISTS (SELECT 1 FROM constituents c WHERE c.name = {v}.name
                   AND c.withdrawn_at IS NOT NULL)
  AND {which}
  AND (:any_category OR {v}.category = :category OR {v}.header_error IS NOT NULL)"""
_VALID = """{v}.header_error IS NULL AND {v}.valdate <= :obs AND {v}.subdate <= :anal
  AND ({v}.evaldate IS NULL OR TRIM({v}.evaldate) = '' OR {v}.evaldate >= :obs)
  AND {live}"""
_CANDIDATES_SQL = """
WITH tops AS (
  SELECT g.scope, g.typeid, (
    SELECT v.issue FROM versions v WHERE v.scope = g.scope AND v.typeid = g.typeid AND {valid_v}
    ORDER BY v.issue DESC LIMIT 1) AS top
  FROM (SELECT DISTINCT scope, typeid FROM versions) g)
SELECT v.* FROM tops t JOIN versions v
  ON v.scope = t.scope AND v.typeid = t.typeid AND v.issue = t.top
  WHERE {valid_v}
UNION ALL
SELECT v.* FROM versions v WHERE v.header_error IS NOT NULL AND {live_v}
UNION ALL
SELECT v.* FROM tops t JOIN versions v ON v.id = (
  SELECT MIN(w.id) FROM versions w
  WHERE w.scope = t.scope AND w.typeid = t.typeid AND w.header_error IS NULL AND {live_w})
  WHERE t.top IS NULL
"""
_CURRENT = "EXISTS (SELECT 1 FROM listings l WHERE l.version_id = {v}.id)"
_HISTORICAL = f"({_CURRENT} OR {{v}}.xxh3 IN (SELECT xxh3 FROM blobs))"


@functools.cache
def _candidates_sql(historical: bool) -> str:
    def live(v: str) -> str:
        which = (_HISTORICAL if historical else _CURRENT).format(v=v)
        return _LIVE.format(v=v, which=which)

    return _CANDIDATES_SQL.format(valid_v=_VALID.format(v="v", live=live("v")),
                                  live_v=live("v"), live_w=live("w"))


@dataclass
class CifResult:
    """A CIF that was built: where it is, its rows, and the environment SAS needs."""

    path: Path
    rows: list[dict]
    obs_date: str
    analysis_date: str
    category: str
    view_dir: Path
    cif_id: int
    warnings: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """SAS_CCF and SAS_CCFPATH for this CIF."""
        return {"SAS_CCF": str(self.path), "SAS_CCFPATH": str(self.view_dir)}

    def as_dict(self) -> dict[str, Any]:
        keys = ("name", "scope", "typeid", "issue", "valdate", "evaldate", "subdate", "size",
                "md5", "xxh3", "id")
        return {
            "path": str(self.path), "obs_date": self.obs_date,
            "analysis_date": self.analysis_date, "category": self.category,
            "view_dir": str(self.view_dir), "cif_id": self.cif_id, "env": self.env,
            "warnings": self.warnings,
            "rows": [{("content_id" if k == "id" else k): r.get(k) for k in keys}
                     for r in self.rows],
        }  # fmt: skip


def candidate_rows(cache: Cache, obs: str, anal: str, *, category: str,
                   ignore_category: bool, historical: bool) -> list[dict]:
    """The index rows that can decide the selection (SQL narrows; the pure rule decides)."""
    sql = _candidates_sql(historical)
    return cache.index.query(sql, {"obs": obs, "anal": anal, "category": category,
                                   "any_category": 1 if ignore_category else 0})


def select_rows(cache: Cache, obs: str, anal: str, *, category: str = "XMMCCF",
                ignore_category: bool = False, historical: bool = False) -> Selection:
    """The rows `ccfcache cif` selects for these (normalised) dates, before any fetch."""
    rows = candidate_rows(cache, obs, anal, category=category, ignore_category=ignore_category,
                          historical=historical)
    return select_constituents(rows, obs, anal, category=category,
                               ignore_category=ignore_category)


def view_key(rows: list[dict]) -> str:
    """A stable name for the view of a set of contents."""
    text = "\n".join(f"{r['name']} {r['xxh3']}" for r in sorted(rows, key=lambda r: r["name"]))
    return xxhash.xxh3_64_hexdigest(text.encode())


def make_view(cache: Cache, rows: list[dict]) -> Path:
    """A folder holding exactly these contents under their names, as relative links into
    the blob store (valid on every host that mounts the cache), created atomically; an
    existing view with dangling links is replaced (atomically too)."""
    views = cache.layout.views
    final = views / view_key(rows)
    if final.is_dir() and view_is_whole(final):
        return final
    staging = views / f".tmp-{uuid.uuid4().hex}"
    try:
        staging.mkdir(parents=True)
        try:
            for row in rows:
                target = os.path.relpath(cache.store.path(row["xxh3"]), final)
                os.symlink(target, staging / row["name"])
            try:
                os.rename(staging, final)
            except OSError:
                if not final.is_dir():
                    raise
                if not view_is_whole(final):  # a broken view: swap the new one in
                    old = views / f".tmp-{uuid.uuid4().hex}"
                    os.rename(final, old)
                    os.rename(staging, final)
                    _remove_links(old)
        finally:
            _remove_links(staging)
    except OSError as exc:
        raise CacheError(f"cannot make the view {final}: {exc.strerror or exc} "
                         f"({exc.filename}); check the space and permissions of {views}"
                         ) from exc
    return final


def _remove_links(folder: Path) -> None:
    """Remove a staging or replaced view folder of links (absent: nothing to do)."""
    if not folder.exists():
        return
    for link in folder.iterdir():
        link.unlink()
    folder.rmdir()


def build_cif(
    cache: Cache,
    obs_date: str | None,
    analysis_date: str | None = None,
    out: str | os.PathLike[str] | None = None,
    *,
    category: str = "XMMCCF",
    ignore_category: bool = False,
    historical: bool = False,
    fullpath: bool = False,
    pin: bool = False,
    parameters: dict[str, str] | None = None,
    now: datetime | None = None,
) -> CifResult:
    """Select, fetch, link and write a CIF; nothing is written when a selected file is missing."""
    from .cif import write_cif

    obs = resolve_date(obs_date, now=now)
    anal = resolve_date(analysis_date, now=now)
    cache.ensure_synced()
    selection = select_rows(cache, obs, anal, category=category,
                            ignore_category=ignore_category, historical=historical)
    if not selection.rows:
        raise SelectionError(
            f"no constituent is valid for observation date {obs} and analysis date {anal}"
        )
    paths, failures = cache.fetcher().fetch_many(selection.rows)
    if failures:
        names = sorted(r["name"] for r in selection.rows if r["id"] in failures)
        first = next(iter(failures.values()))
        raise SelectionError(
            f"{len(names)} selected constituents could not be fetched ({', '.join(names[:5])}"
            f"{', ...' if len(names) > 5 else ''}): {first}; no CIF written"
        )
    chosen = selection.rows
    if not all(r["xxh3"] and r["md5"] for r in chosen):  # some were fetched just now
        fresh = {r["id"]: r for r in cache.index.query(
            f"SELECT * FROM versions WHERE id IN ({','.join('?' * len(chosen))})",
            tuple(r["id"] for r in chosen))}
        chosen = [fresh[r["id"]] for r in chosen]
    view = make_view(cache, chosen)
    ensure_whole(cache, chosen, view, "CIF")
    target = Path(out) if out else cache.layout.cifs / f"ccf-{obs}-{anal}-{view.name}.cif"
    target = target.expanduser().absolute()
    params = {"calindexset": str(target), "fullpath": "yes" if fullpath else "no",
              "withobservationdate": "yes", "observationdate": obs, "analysisdate": anal,
              "category": category, "ignorecategory": "yes" if ignore_category else "no"}
    params.update(parameters or {})
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_cif(target, chosen, obs_date=obs, analysis_date=anal, category=category,
                  parameters=params, fullpath_dir=str(view) if fullpath else None, now=now,
                  warnings=selection.warnings)
    except OSError as exc:
        raise SelectionError(f"cannot write the CIF {target}: {exc.strerror or exc}") from exc
    cif_id = record_cif(cache, target, obs, anal, category, historical, chosen, view, pin,
                        anal_is_now=analysis_date is None)
    return CifResult(target, chosen, obs, anal, category, view, cif_id, selection.warnings)


RECORD_AGAIN_S = 600.0  # an unchanged CIF built "now" is recorded again after this long


def record_cif(cache: Cache, path: Path, obs: str, anal: str, category: str, historical: bool,
               rows: list[dict], view: Path, pin: bool, *, anal_is_now: bool = False) -> int:
    """Record a CIF in the index (replacing an older record of the same path). A rebuild that
    changes nothing (same rows, view, dates, pin) writes nothing: no write transaction on a
    warm build. A CIF built for analysis date "now" counts as unchanged for RECORD_AGAIN_S."""
    summary = [{"name": r["name"], "version_id": r["id"], "xxh3": r["xxh3"], "md5": r["md5"],
                "size": r["size"]} for r in rows]
    text = json.dumps(summary)
    recorded = cache.index.query(
        "SELECT id, obs_date, analysis_date, category, historical, rows, view_dir, pinned, "
        "created_at FROM cifs WHERE path = ?", (str(path),))
    if recorded:
        old = recorded[0]
        same = (old["obs_date"], old["category"], old["historical"], old["rows"],
                old["view_dir"], old["pinned"]) == (obs, category, int(historical), text,
                                                    str(view), int(pin))
        fresh = (old["analysis_date"] == anal or (
            anal_is_now and (old["created_at"] or 0) >= time.time() - RECORD_AGAIN_S))
        if same and fresh:
            return int(old["id"])
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    with cache.index.write() as db:
        db.execute("DELETE FROM cifs WHERE path = ?", (str(path),))
        return db["cifs"].insert({
            "path": str(path), "obs_date": obs, "analysis_date": anal, "category": category,
            "historical": int(historical), "created_at": time.time(),
            "host": socket.gethostname(), "user": user, "rows": text,
            "view_dir": str(view), "pinned": int(pin),
        }).last_pk  # fmt: skip


def env_for_cif(cache: Cache, cif_path: str | os.PathLike[str]) -> dict[str, str]:
    """SAS_CCF/SAS_CCFPATH for any CALINDEX: a CIF this cache recorded (its view), or any
    file with a CALINDEX extension (SAS's CIF, an event list, a PPS product, gzip or not)
    whose rows the cache serves by MD5 and FSIZE (fetched if needed: see ccfcache.exact)."""
    path = Path(cif_path).expanduser().absolute()
    recorded = cache.index.query("SELECT view_dir FROM cifs WHERE path = ?", (str(path),))
    if recorded and view_is_whole(Path(recorded[0]["view_dir"])):
        return {"SAS_CCF": str(path), "SAS_CCFPATH": recorded[0]["view_dir"]}
    view = exact_view(cache, path)[1]
    return {"SAS_CCF": str(path), "SAS_CCFPATH": str(view)}


def exact_view(cache: Cache, path: Path) -> tuple[Any, Path]:
    """Materialise a CALINDEX exactly and make its view; SelectionError if a row cannot be
    served."""
    from .exact import materialise, unserved_message

    result = materialise(cache, path)
    if not result.complete:
        raise SelectionError(unserved_message(result))
    view = make_view(cache, result.rows)
    ensure_whole(cache, result.rows, view, str(path))
    return result, view


def record_calindex(cache: Cache, cif_path: str | os.PathLike[str], *, pin: bool) -> int:
    """Record any CALINDEX file as a CIF of this cache (its exact contents, a view), so that
    `pin` keeps them from prune; returns the record's id."""
    path = Path(cif_path).expanduser().absolute()
    result, view = exact_view(cache, path)
    data = result.cif
    return record_cif(cache, path, data.obs_date or "", data.analysis_date or "",
                      data.category or "", True, result.rows, view, pin)


def list_cifs(cache: Cache) -> list[dict]:
    """The CIFs recorded in the index, newest first."""
    rows = cache.index.query("SELECT * FROM cifs ORDER BY created_at DESC")
    for row in rows:
        row["rows"] = len(json.loads(row["rows"]))
        row["exists"] = Path(row["path"]).exists()
    return rows


__all__ = ["CifResult", "build_cif", "env_for_cif", "list_cifs"]
