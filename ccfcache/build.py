"""Build a CIF from the index: query candidates, apply the cifbuild rule, fetch only what is
selected, make the per-CIF view folder, write the CIF, and record it (for pinning and `cifs`)."""

from __future__ import annotations

import functools
import json
import operator
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from .dates import resolve_date
from .errors import CacheError, SelectionError
from .handover import hand_over, view_is_whole, whole_view
from .leases import Lease
from .select import Ranking, Selection, select_constituents

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from .exact import ExactFetch
    from .fetcher import Fetcher
    from .index import Index, PendingCif
    from .rows import CifEntry, Version
    from .store import BlobStore

@dataclass
class CifResult:
    """A CIF that was built: where it is, its rows, the environment SAS needs, and `cif_id`,
    its record in the index (`ccfcache cifs`, `pin`)."""

    path: Path
    rows: list[Version]
    obs_date: str
    analysis_date: str
    category: str
    view_dir: Path
    _record: int | Callable[[], int] = field(repr=False)  # the id, or what commits it
    warnings: list[str] = field(default_factory=list)

    @property
    def cif_id(self) -> int:
        """The id of this CIF's record; asking commits an unpinned build's record still
        queued (`Index.record_cif_soon`)."""
        if not isinstance(self._record, int):
            self._record = self._record()
        return self._record

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


def select_rows(index: Index, obs: str, anal: str, *, category: str = "XMMCCF",
                ignore_category: bool = False, historical: bool = False) -> Selection:
    """The rows `ccfcache cif` selects for these (normalised) dates, before any fetch.

    The first selection at a generation of the index asks SQL for the rows that can decide
    it (`Index.candidates_for`: a new process builds one CIF). From the second on, every
    version that can take part is ranked once (`select.Ranking`), remembered until the index
    changes, and each selection, whatever its dates, is a walk down the ranks."""
    ranking = index.remembered(
        ("ranking", category, ignore_category, historical),
        lambda: Ranking.of(index.live_versions(category=category,
                                               ignore_category=ignore_category,
                                               historical=historical),
                           category=category, ignore_category=ignore_category), after=2)
    if ranking is not None:
        return ranking.select(obs, anal)
    rows = index.candidates_for(obs, anal, category=category, ignore_category=ignore_category,
                                historical=historical)
    return select_constituents(rows, obs, anal, category=category,
                               ignore_category=ignore_category)


def view_key(rows: Sequence[Mapping[str, Any]]) -> str:
    """A stable name for the view of a set of contents."""
    text = "\n".join(f"{r['name']} {r['xxh3']}" for r in sorted(rows, key=lambda r: r["name"]))
    return xxhash.xxh3_64_hexdigest(text.encode())


def make_view(store: BlobStore, rows: Sequence[Mapping[str, Any]]) -> Path:
    """A folder holding exactly these contents under their names, as relative links into
    the blob store (valid on every host that mounts the cache), created atomically; an
    existing view that is not whole has its wrong or missing links replaced one by one, each
    atomically (never the folder: another process may be handing it out; a link whose blob
    is missing is right, and is whole again once the blob is fetched)."""
    return _make_view(store, rows)[0]


def _make_view(store: BlobStore, rows: Sequence[Mapping[str, Any]]) -> tuple[Path, bool]:
    """`make_view`, and whether the view was found whole just now (every link resolves)."""
    views = store.layout.views
    final = views / view_key(rows)
    if final.is_dir() and view_is_whole(final):
        return final, True
    if final.is_dir() and not final.is_symlink():
        _repair_view(store, rows, final)
        return final, False
    staging = views / f".tmp-{uuid.uuid4().hex}"
    try:
        staging.mkdir(parents=True)
        try:
            for row in rows:
                assert row["xxh3"] is not None, "a view holds stored contents only"
                target = os.path.relpath(store.path(row["xxh3"]), final)
                os.symlink(target, staging / row["name"])
            try:
                os.rename(staging, final)
            except OSError:
                if not final.is_dir():
                    raise
                if not view_is_whole(final):  # made meanwhile by another process
                    _repair_view(store, rows, final)
        finally:
            _remove_links(staging)
    except OSError as exc:
        raise CacheError(f"cannot make the view {final}: {exc.strerror or exc} "
                         f"({exc.filename}); check the space and permissions of {views}"
                         ) from exc
    return final, False


def _repair_view(store: BlobStore, rows: Sequence[Mapping[str, Any]], final: Path) -> None:
    """Replace the links of `final` that do not point where `rows` say (each by a rename)."""
    try:
        for row in rows:
            link = final / row["name"]
            target = os.path.relpath(store.path(row["xxh3"]), final)
            try:
                if os.readlink(link) == target:
                    continue
            except OSError:
                pass
            spare = final / f".tmp-{uuid.uuid4().hex}"
            os.symlink(target, spare)
            os.replace(spare, link)
    except OSError as exc:
        raise CacheError(f"cannot repair the view {final}: {exc.strerror or exc} "
                         f"({exc.filename}); check the space and permissions of {final}"
                         ) from exc


def _remove_links(folder: Path) -> None:
    """Remove a staging or replaced view folder of links (absent: nothing to do)."""
    if not folder.exists():
        return
    for link in folder.iterdir():
        link.unlink()
    folder.rmdir()


def build_cif(
    index: Index,
    store: BlobStore,
    make_fetcher: Callable[[], Fetcher],
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
    """Select, fetch, link and write a CIF; nothing is written when a selected file is missing.
    The index is used as it is (`Cache.cif` syncs a cache that never synced first).
    `make_fetcher` is called only when a selected content is not stored (a warm build
    imports no download machinery)."""
    obs = resolve_date(obs_date, now=now)
    anal = resolve_date(analysis_date, now=now)
    selection = select_rows(index, obs, anal, category=category,
                            ignore_category=ignore_category, historical=historical)
    if not selection.rows:
        raise SelectionError(
            f"no constituent is valid for observation date {obs} and analysis date {anal}"
        )
    chosen: list[Version] = selection.rows
    with Lease(store.layout.locks) as lease:  # until this build returns: prune keeps them
        lease.hold(r.xxh3 for r in chosen)  # those stored already, while the rest is fetched
        return _build_leased(index, store, make_fetcher, lease, selection, chosen, obs, anal,
                             out,
                             category=category, ignore_category=ignore_category,
                             historical=historical, fullpath=fullpath, pin=pin,
                             parameters=parameters, now=now,
                             anal_is_now=analysis_date is None)


def _build_leased(index: Index, store: BlobStore, make_fetcher: Callable[[], Fetcher],
                  lease: Lease,
                  selection: Selection, chosen: list[Version], obs: str, anal: str,
                  out: str | os.PathLike[str] | None, *, category: str,
                  ignore_category: bool, historical: bool, fullpath: bool, pin: bool,
                  parameters: dict[str, str] | None, now: datetime | None,
                  anal_is_now: bool) -> CifResult:
    """The part of `build_cif` done under the lease on the chosen contents."""
    from .cif import write_cif

    fetchers: list[Fetcher] = []
    view = whole_view(store.layout.views / view_key(chosen), chosen, lease)
    if view is not None:  # a warm build: every content stored and linked (a stat per row)
        index.touch_used(chosen)
    elif all(v.xxh3 and v.md5 and store.locate(v.xxh3, v.size) is not None for v in chosen):
        index.touch_used(chosen)  # all stored: no fetcher, no download module imported
    else:
        fetchers = [make_fetcher()]
        failures = fetchers[0].fetch_missing(chosen)
        if failures:
            names = sorted(r.name for r in chosen if r.id in failures)
            first = next(iter(failures.values()))
            raise SelectionError(
                f"{len(names)} selected constituents could not be fetched "
                f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}): {first}; "
                "no CIF written")
        chosen = fetchers[0].refreshed(chosen)  # with the hashes of what was fetched just now

    def fetcher() -> Fetcher:
        if not fetchers:
            fetchers.append(make_fetcher())
        return fetchers[0]

    if view is None:
        view = hand_over(index, fetcher, chosen, lambda: _make_view(store, chosen), "CIF",
                         lease)
    target = Path(out) if out else store.layout.cifs / f"ccf-{obs}-{anal}-{view.name}.cif"
    target = target.expanduser().absolute()
    params = {"calindexset": str(target), "fullpath": "yes" if fullpath else "no",
              "withobservationdate": "yes", "observationdate": obs, "analysisdate": anal,
              "category": category, "ignorecategory": "yes" if ignore_category else "no"}
    params.update(parameters or {})
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_cif(target, chosen, obs_date=obs, analysis_date=anal, category=category,
                  parameters=params, fullpath_dir=str(view) if fullpath else None, now=now,
                  warnings=selection.warnings,
                  records=None if fullpath else _records(index, chosen, selection.warnings))
    except OSError as exc:
        raise SelectionError(f"cannot write the CIF {target}: {exc.strerror or exc}") from exc
    recorded = record_cif(index, target, obs, anal, category, historical, chosen, view, pin,
                          anal_is_now=anal_is_now)
    cif_id = recorded if isinstance(recorded, int) else functools.partial(index.cif_id, recorded)
    return CifResult(target, chosen, obs, anal, category, view, cif_id, selection.warnings)


def _records(index: Index, rows: list[Version], warnings: list[str]) -> list[bytes]:
    """The CALINDEX records of `rows` (`cif.row_records`), each made once per version while
    the index does not change (`Index.remembered`): a pipeline's CIFs share most rows. A
    batch with a value cut to fit its column (a warning) is made, and said, at every build."""
    from .cif import row_records

    made = index.remembered("cif records", dict[int, bytes])
    if made is None:  # (not asked twice yet)
        return row_records(rows, None, warnings)
    missing = [row for row in rows if row.id not in made]
    if missing:
        cut: list[str] = []
        try:
            fresh = row_records(missing, None, cut)
        except SelectionError:  # (said with the row's number in this CIF)
            return row_records(rows, None, warnings)
        if cut:
            warnings.extend(cut)
            known = dict(zip((row.id for row in missing), fresh, strict=True))
            return [made.get(row.id) or known[row.id] for row in rows]
        made.update(zip((row.id for row in missing), fresh, strict=True))
    return [made[row.id] for row in rows]


RECORD_AGAIN_S = 600.0  # an unchanged CIF built "now" is recorded again after this long
# a CIF record's rows: these keys, from these fields
_SUMMARY_KEYS = ("name", "version_id", "xxh3", "md5", "size")
_SUMMARY_FIELDS = ("name", "id", "xxh3", "md5", "size")


def _summary_values(rows: Sequence[Mapping[str, Any]]) -> Callable[[Any], tuple[Any, ...]]:
    """What reads a record's values from each of `rows`: the attributes of typed rows (the
    index's dataclasses, read at C speed), else the mapping's keys."""
    typed = all(set(_SUMMARY_FIELDS) <= getattr(kind, "__dataclass_fields__", {}).keys()
                for kind in {type(row) for row in rows})
    return (operator.attrgetter if typed else operator.itemgetter)(*_SUMMARY_FIELDS)


def record_cif(index: Index, path: Path, obs: str, anal: str, category: str, historical: bool,
               rows: Sequence[Mapping[str, Any]], view: Path, pin: bool, *,
               anal_is_now: bool = False) -> int | PendingCif:
    """Record a CIF in the index (replacing an older record of the same path): a pinned one
    committed before this returns (its id), an unpinned one queued, committed within a second
    (`Index.record_cif_soon`: prune needs no unpinned record). A rebuild that changes nothing
    (same rows, view, dates, pin) writes nothing: no write transaction on a warm build. A CIF
    built for analysis date "now" counts as unchanged for RECORD_AGAIN_S."""
    text = json.dumps([dict(zip(_SUMMARY_KEYS, values, strict=True))
                       for values in map(_summary_values(rows), rows)])
    queued = index.queued_cif(str(path))
    old = queued.record if queued is not None else index.cif_by_path(str(path))
    if old is not None:
        same = (old.obs_date, old.category, old.historical, old.rows,
                old.view_dir, old.pinned) == (obs, category, int(historical), text,
                                              str(view), int(pin))
        fresh = (old.analysis_date == anal or (
            anal_is_now and (old.created_at or 0) >= time.time() - RECORD_AGAIN_S))
        if same and fresh:
            return queued if queued is not None else old.id
    if pin:
        return index.record_cif(
            path=str(path), obs_date=obs, analysis_date=anal, category=category,
            historical=historical, created_at=time.time(), host=_host(), user=_user(),
            rows_json=text, view_dir=str(view), pinned=True)
    return index.record_cif_soon(
        path=str(path), obs_date=obs, analysis_date=anal, category=category,
        historical=historical, created_at=time.time(), host=_host(), user=_user(),
        rows_json=text, view_dir=str(view))


@functools.cache
def _host() -> str:
    import socket

    return socket.gethostname()


@functools.cache
def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def env_for_cif(index: Index, store: BlobStore, make_fetcher: Callable[[], Fetcher],
                cif_path: str | os.PathLike[str], *,
                ensure_synced: Callable[[], None] | None = None) -> dict[str, str]:
    """SAS_CCF/SAS_CCFPATH for any CALINDEX: a CIF this cache recorded (its view), or any
    file with a CALINDEX extension (SAS's CIF, an event list, a PPS product, gzip or not)
    whose rows the cache serves by MD5 and FSIZE (fetched if needed: see ccfcache.exact)."""
    path = Path(cif_path).expanduser().absolute()
    recorded = index.cif_by_path(str(path))
    if recorded is not None and recorded.view_dir and view_is_whole(Path(recorded.view_dir)):
        return {"SAS_CCF": str(path), "SAS_CCFPATH": recorded.view_dir}
    view = exact_view(index, store, make_fetcher, path, ensure_synced=ensure_synced)[1]
    return {"SAS_CCF": str(path), "SAS_CCFPATH": str(view)}


def exact_view(index: Index, store: BlobStore, make_fetcher: Callable[[], Fetcher], path: Path,
               *, ensure_synced: Callable[[], None] | None = None) -> tuple[ExactFetch, Path]:
    """Materialise a CALINDEX exactly and make its view; SelectionError if a row cannot be
    served."""
    from .exact import materialise, unserved_message

    result = materialise(index, store, make_fetcher, path, ensure_synced=ensure_synced)
    if not result.complete:
        raise SelectionError(unserved_message(result))
    with Lease(store.layout.locks) as lease:
        view = hand_over(index, make_fetcher, result.rows,
                         lambda: _make_view(store, result.rows), str(path), lease)
    return result, view


def record_calindex(index: Index, store: BlobStore, make_fetcher: Callable[[], Fetcher],
                    cif_path: str | os.PathLike[str], *, pin: bool,
                    ensure_synced: Callable[[], None] | None = None) -> int:
    """Record any CALINDEX file as a CIF of this cache (its exact contents, a view), so that
    `pin` keeps them from prune; returns the record's id."""
    path = Path(cif_path).expanduser().absolute()
    result, view = exact_view(index, store, make_fetcher, path, ensure_synced=ensure_synced)
    data = result.cif
    recorded = record_cif(index, path, data.obs_date or "", data.analysis_date or "",
                          data.category or "", True, result.rows, view, pin)
    return recorded if isinstance(recorded, int) else index.cif_id(recorded)


def list_cifs(index: Index) -> list[CifEntry]:
    """The CIFs recorded in the index, newest first (`rows` counted, `exists` checked)."""
    from .rows import CifEntry

    return [CifEntry(**{**record.as_dict(), "rows": len(json.loads(record.rows or "[]")),
                        "exists": Path(record.path).exists()})
            for record in index.cifs()]


__all__ = ["CifResult", "build_cif", "env_for_cif", "list_cifs"]
