"""Commands that look after a cache: `prune`, `verify`, `doctor`, `pin`, `unpin`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from ..errors import CcfCacheError
from .common import CacheDir, JsonFlag, human, open_cache, print_json, usage_error

_HASH = re.compile(r"[0-9a-f]{32}")  # an xxh3 in a problem: named by constituent


def prune(
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Also remove contents not used for DURATION (30d)."),
    ] = None,
    max_size: Annotated[
        str | None,
        typer.Option("--max-size", help="Evict least recently used contents until the store "
                     "fits SIZE (2G)."),
    ] = None,
    grace: Annotated[
        str, typer.Option("--grace", help="Temporary files younger than this are kept.")
    ] = "1d",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would go.")] = False,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Remove withdrawn, superseded or unused contents not pinned by a CIF, old temporaries."""
    from ..units import parse_duration, parse_size

    try:
        age = parse_duration(older_than) if older_than is not None else None
        size = parse_size(max_size) if max_size is not None else None
        grace_s = parse_duration(grace)
    except CcfCacheError as exc:
        usage_error(str(exc))
    from ..prune_report import describe

    with open_cache(cache_dir, progress=False, create=False) as cache:
        plan = cache.prune(older_than=age, max_size=size, grace=grace_s, dry_run=dry_run)
        report = describe(cache.index, plan)
    if as_json:
        print_json({**plan.as_dict(), **report.as_dict()})
        return
    verb = "would free" if dry_run else "freed"
    reasons: dict[str, int] = {}
    for item in plan.blobs:
        reasons[item.reason] = reasons.get(item.reason, 0) + 1
    detail = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    typer.echo(f"{verb} {human(plan.bytes)} in {plan.files} files: {len(plan.blobs)} contents"
               f"{f' ({detail})' if detail else ''}, {len(plan.tmp)} temporary files")
    if plan.locks or plan.views:
        prefix = "would remove" if dry_run else "removed"
        typer.echo(f"{prefix} {len(plan.locks)} stale locks, {len(plan.views)} unused views")
    if plan.kept_pinned:
        typer.echo(f"kept {plan.kept_pinned} contents pinned by CIFs")
    if plan.kept_leased:
        typer.echo(f"kept {plan.kept_leased} contents of CIFs being built now (leases)")
    if plan.busy:
        typer.echo(f"kept {plan.busy} contents another process is fetching now")
    typer.echo(f"store: {human(plan.store_bytes)} -> {human(plan.store_bytes_after)}")
    action = "would remove" if dry_run else "removed"
    for item in report.removed:
        names = ", ".join(item.names) or f"(content {item.xxh3}, no name)"
        typer.echo(f"{action}: {names} ({item.reason}, {human(item.size)})")
    for cif_record in report.cifs:
        lost, loses = cif_record.names, "would lose" if dry_run else "lost"
        typer.echo(f"CIF {cif_record.id} {cif_record.path} {loses}"
                   f" {len(lost)} files ({', '.join(lost[:5])}{', ...' if len(lost) > 5 else ''})"
                   f": `ccfcache env --cif {cif_record.path}` fetches them again")
    if plan.over_budget:
        typer.echo(f"warning: pinned and current contents exceed --max-size {max_size}",
                   err=True)


def verify(
    quick: Annotated[
        bool, typer.Option("--quick", help="Check sizes and view links only (no re-hash).")
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Re-hash every blob (the default; kept for scripts).")
    ] = False,
    sample: Annotated[
        float | None, typer.Option("--sample", help="Re-hash a random PCT percent of blobs.")
    ] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Re-fetch missing or corrupt contents.")
    ] = False,
    cif: Annotated[
        Path | None, typer.Option("--cif", help="Check this CIF's rows (MD5, FSIZE) instead.")
    ] = None,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-hash every blob (--quick: sizes and links only); exit 1 if anything is wrong."""
    if quick and (full or sample is not None):
        usage_error("--quick checks no hashes: give it without --full or --sample")
    full = not quick and sample is None
    with open_cache(cache_dir, progress=False, create=False) as cache:
        if cif is not None:
            report = cache.verify_cif(cif)
        else:
            report = cache.verify(full=full, sample=sample, repair=repair)
        # problems are named by constituent, not by hash alone
        hashes = [p.what for p in report.problems if _HASH.fullmatch(p.what)]
        names = cache.index.names_of_contents(hashes) if hashes else {}
    if as_json:
        data = report.as_dict()
        for problem in data["problems"]:
            problem["names"] = names.get(problem["what"], [])
        print_json(data)
    else:
        for problem in report.problems:
            named = ", ".join(names.get(problem.what, []))
            typer.echo(f"{problem.kind}: {named} (content {problem.what}): {problem.detail}"
                       f"{' (repaired)' if problem.repaired else ''}" if named else str(problem))
        what = f"{report.blobs} rows" if cif is not None else (
            f"{report.blobs} contents, {report.links} view links")
        hashed = f", hashed {report.hashed} ({human(report.hashed_bytes)})" if report.hashed \
            else ""
        wrong = sum(not p.repaired for p in report.problems)
        fixed = len(report.problems) - wrong
        typer.echo(f"checked {what}{hashed}: {wrong} problems"
                   + (f", {fixed} repaired" if fixed else ""))
    if not report.ok:
        raise typer.Exit(1)


def doctor(
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Rebuild the index even if it looks sound.")
    ] = False,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Check the index; rebuild a missing or corrupt one from a sync and the blobs on disk."""
    with open_cache(cache_dir, create=False) as cache:
        report = cache.doctor(rebuild=rebuild)
    if as_json:
        print_json(report.as_dict())
    else:
        typer.echo(f"index integrity: {report.integrity}")
        if report.rolled_back:
            typer.echo("rolled back an interrupted write (kept the index)")
        for path in report.moved_to:
            typer.echo(f"moved aside: {path}")
        if report.rebuilt:
            listed = ", ".join(f"{url}: {n}" for url, n in (report.sync or {}).items())
            typer.echo(f"rebuilt the index; sync: {listed or report.sync_error}")
        typer.echo(f"blobs re-attached: {report.attached} listed, {report.recovered} no longer "
                   f"listed ({human(report.attached_bytes)}); {report.blob_files} on disk")
        if report.cifs_kept:
            typer.echo(f"kept {report.cifs_kept} CIF records and their pins")
        elif report.rebuilt:
            typer.echo("note: CIF records and pins are not recovered; pin CIFs again")
        for problem in report.problems:
            typer.echo(f"problem: {problem}", err=True)
        if report.sync_error:
            typer.echo(f"ccfcache: error: {report.sync_error}", err=True)
    if not report.ok:
        raise typer.Exit(1)


def _pin(cif: str, cache_dir: Path | None, as_json: bool, pinned: bool) -> None:
    with open_cache(cache_dir, progress=False, create=False) as cache:
        record = cache.pin(cif) if pinned else cache.unpin(cif)
    if as_json:
        print_json({"id": record.id, "path": record.path, "pinned": record.pinned})
    else:
        typer.echo(f"{'pinned' if pinned else 'unpinned'} CIF {record.id}: {record.path}")


def pin(
    cif: Annotated[str, typer.Argument(
        help="A recorded CIF (path or id, see `cifs`), or any file with a CALINDEX "
        "(recorded with its exact contents).")],
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Keep a CIF's contents (and its view) from prune."""
    _pin(cif, cache_dir, as_json, True)


def unpin(
    cif: Annotated[str, typer.Argument(help="A recorded CIF: its path or id (see `cifs`).")],
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Let prune remove a CIF's contents again."""
    _pin(cif, cache_dir, as_json, False)
