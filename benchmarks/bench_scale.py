"""7. Scale: synthetic listings of 1,550 .. 100,000 constituents served over HTTP (each a valid
headers-only FITS file of one 2880-byte block, written directly as card images: the 121 real
calibration types with many issues each). For each size, in a fresh child process: the first
sync, a sync with no changes, a sync with 1% of the files changed (new SUBDATE, new mtime),
a cold CIF build (fetching the selected files) and a warm one, with peak RSS (VmHWM of
the child); and the astropy header scan of the same folder as the anchor for the CIF build."""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bench_common as bc

TITLE = "scale: 1,550 .. 100,000 listed constituents"

CHILD = """
import json, sys, time
from ccfcache import Cache
root, what, obs = sys.argv[1], sys.argv[2], sys.argv[3]
cache = Cache(root)
start = time.perf_counter()
if what == "sync":
    report = cache.sync()
    extra = {"read": report.read, "unchanged": report.unchanged}
else:  # a cold build (fetching the selected files, first imports), then a warm one
    result = cache.cif(obs, None, root + "/out.cif")
    middle = time.perf_counter()
    result = cache.cif(obs, None, root + "/out.cif")
    extra = {"rows": len(result.rows), "cold": middle - start}
    start = middle
seconds = time.perf_counter() - start
cache.close()
# VmHWM: this process's own peak (ru_maxrss would include the parent's RSS at fork time)
with open("/proc/self/status") as status:
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": seconds, "maxrss_mib": rss, **extra}))
"""

START = datetime(2000, 1, 1, tzinfo=UTC)
SPAN_S = 20 * 365 * 86400


def _card(key: str, value) -> str:
    if isinstance(value, bool):
        text = f"{key:<8}= {'T' if value else 'F':>20}"
    elif isinstance(value, int):
        text = f"{key:<8}= {value:>20}"
    else:
        quoted = "'" + str(value).replace("'", "''").ljust(8) + "'"
        text = f"{key:<8}= {quoted}"
    return text.ljust(80)[:80]


def header_bytes(scope: str, typeid: str, issue: int, valdate: str, subdate: str,
                 extseqid: str) -> bytes:
    name = f"{scope}_{typeid}_{issue:04d}.CCF"
    cards = [
        _card("SIMPLE", True), _card("BITPIX", 8), _card("NAXIS", 0), _card("EXTEND", True),
        _card("CREATOR", "deceit"), _card("DATE", subdate), _card("FILENAME", name),
        _card("TELESCOP", "XMM"), _card("SCOPE", scope), _card("TYPEID", typeid),
        _card("ISSUE", issue), _card("VALDATE", valdate), _card("EXTSEQU", "ANY"),
        _card("EXTSEQID", extseqid[:60]), _card("CATEGORY", "XMMCCF"),
        _card("SUBDATE", subdate), "END".ljust(80),
    ]
    return "".join(cards).ljust(2880).encode("ascii")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def make_listing(folder: Path, count: int) -> list[tuple[str, tuple]]:
    """`count` headers-only constituents over the 121 real types; returns (name, spec) pairs."""
    from ccfcache.demo.archive import CATALOGUE

    bc.drop_dir(folder)
    folder.mkdir(parents=True)
    types = list(CATALOGUE)
    per, extra = divmod(count, len(types))
    made = []
    for t, ctype in enumerate(types):
        n = per + (1 if t < extra else 0)
        for issue in range(1, n + 1):
            sub = START + timedelta(seconds=SPAN_S * issue // (n + 1))
            val = sub - timedelta(days=30)
            spec = (ctype.scope, ctype.typeid, issue, _iso(val), _iso(sub),
                    " ".join(ctype.extseqid))
            name = f"{ctype.scope}_{ctype.typeid}_{issue:04d}.CCF"
            path = folder / name
            path.write_bytes(header_bytes(*spec))
            stamp = sub.timestamp()
            os.utime(path, (stamp, stamp))
            made.append((name, spec))
    return made


def change_some(folder: Path, made: list, fraction: float, seed: int = 1) -> int:
    """Replace a fraction of the files with a later SUBDATE and a new mtime, each written
    beside it and renamed over it, as rsync and most publishers do (a rename changes the
    folder, which Apache's TrackModified validators follow; a rewrite in place would not)."""
    chosen = random.Random(seed).sample(made, max(1, int(len(made) * fraction)))
    now = time.time()
    for name, (scope, typeid, issue, val, _sub, ext) in chosen:
        path = folder / name
        new = folder / f".{name}.new"
        new.write_bytes(header_bytes(scope, typeid, issue, val, "2021-03-01T06:00:00", ext))
        os.utime(new, (now, now))
        os.replace(new, path)
    return len(chosen)


def server_not_modified(cache_dir: Path, url: str, repeat: int = 5) -> float:
    """The median time of the server's 304 alone: curl asking the listing with the validators
    the cache keeps (the server's share of a no-change sync)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{cache_dir / 'index.sqlite'}?mode=ro", uri=True)
    try:
        etag, modified = conn.execute("SELECT etag, last_modified FROM listing_validators "
                                      "WHERE source = ?", (url,)).fetchone()
    finally:
        conn.close()
    times = []
    for _ in range(repeat):
        _, proc = bc.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                          "-H", f"If-None-Match: {etag}", "-H", f"If-Modified-Since: {modified}",
                          url])
        code, seconds = proc.stdout.split()
        assert code == "304", proc.stdout
        times.append(float(seconds))
    return statistics.median(times)


def _child(cache_dir: Path, what: str) -> dict:
    _, proc = bc.run([bc.PYTHON, "-c", CHILD, str(cache_dir), what, bc.OBS_DATE],
                     env=bc.bench_env())
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(ctx) -> None:
    from ccfcache.demo.server import ArchiveServer

    opts = ctx.opts
    table = []
    base: dict[str, float] = {}
    for count in opts.scale_counts:
        folder = opts.workdir / f"synthetic-{count}" / "full"
        t_gen, made = bc.timed(lambda f=folder, c=count: make_listing(f, c))
        print(f"   {count} synthetic constituents written in {t_gen:.1f} s (not timed)",
              flush=True)
        # a folder changed within the last second has its listing's validators made from
        # every entry (the test server, as Apache, cannot trust its mtime yet): start after
        time.sleep(max(0.0, 1.1 - (time.time() - folder.stat().st_mtime)))
        with ArchiveServer({bc.FULL_PREFIX: folder}) as server:
            cache_dir = bc.new_cache_dir(opts, f"scale-{count}", [server.url(bc.FULL_PREFIX)])
            first = _child(cache_dir, "sync")
            same = _child(cache_dir, "sync")
            t_304 = server_not_modified(cache_dir, server.url(bc.FULL_PREFIX))
            changed = change_some(folder, made, 0.01)
            one = _child(cache_dir, "sync")
            assert one["read"] == changed, (one, changed)
            warm = _child(cache_dir, "cif")
            cold = {"seconds": warm["cold"], "maxrss_mib": warm["maxrss_mib"]}
        anal = bc.now_iso()
        t_scan, rows = bc.timed(lambda f=folder, a=anal: bc.scan_cif(f, bc.OBS_DATE, a))
        assert len(rows) == warm["rows"], (len(rows), warm)
        figures = {"first sync": first["seconds"], "sync, no change": same["seconds"],
                   "server 304 alone (curl)": t_304,
                   "sync, 1% changed": one["seconds"], "first cif (fetch)": cold["seconds"],
                   "cif, warm": warm["seconds"], "astropy scan": t_scan}
        if not base:
            base = dict(figures)
            base["count"] = count
        grow = {k: (f"{v:.2f} s" if v >= 0.1 else f"{v * 1000:.1f} ms")
                + (f" ({v / base[k]:.1f}x)" if count != base["count"] and base[k] else "")
                for k, v in figures.items()}
        rss_sync = max(first["maxrss_mib"], same["maxrss_mib"], one["maxrss_mib"])
        rss_cif = max(cold["maxrss_mib"], warm["maxrss_mib"])
        ctx.results.data.setdefault("scale", []).append(
            {"count": count, **figures, "rss_sync_mib": rss_sync, "rss_cif_mib": rss_cif})
        table.append({"constituents": count, **grow, "peak RSS sync (MiB)": f"{rss_sync:.0f}",
                      "peak RSS cif (MiB)": f"{rss_cif:.0f}"})
        ctx.results.add(bc.Row("7", f"{count} listed: warm CIF build ({warm['rows']} rows)",
                               warm["seconds"], "astropy scan + rule", t_scan, "s",
                               t_scan / warm["seconds"], "", None,
                               f"no-change sync {same['seconds']:.2f} s, 1% sync "
                               f"{one['seconds']:.2f} s"))
        bc.drop_dir(folder.parent)
    largest = ctx.results.data["scale"][-1]
    count = largest["count"]
    ctx.results.add(bc.Row("7", f"{count} listed: sync, no change", largest["sync, no change"],
                           "target", 1.0, "s", 1.0 / largest["sync, no change"], "< 1 s",
                           largest["sync, no change"] < 1.0,
                           f"of which the server's 304 (curl alone) "
                           f"{largest['server 304 alone (curl)'] * 1000:.1f} ms"))
    ctx.results.add(bc.Row("7", f"{count} listed: peak RSS of a sync", largest["rss_sync_mib"],
                           "target", 200.0, "MiB", 200.0 / largest["rss_sync_mib"], "< 200 MiB",
                           largest["rss_sync_mib"] < 200.0))
    ctx.results.extra["7. scale (growth vs the first size in brackets; timings inside a child "
                      "process, without interpreter start-up)"] = table


if __name__ == "__main__":
    from bench_all import main_single

    main_single(7)
