"""2. Warm CIF build from the index (in-process `Cache.cif`, files already stored) vs a
cifbuild-like scan of every header in a local mirror with astropy (`fits.getheader` per file,
then the selection rule), which is what cifbuild does each time. Target: >= 100x."""

from __future__ import annotations

import bench_common as bc

TITLE = "warm CIF build vs astropy header scan of a mirror"


def bench(ctx) -> None:
    cache, first = ctx.warm_cache()
    out = ctx.opts.workdir / "warm.cif"
    ours = bc.best_of(lambda: cache.cif(bc.OBS_DATE, None, out), ctx.opts.repeat)
    mirror = ctx.archive.full  # a local mirror holds the same files
    anal = bc.now_iso()
    bc.scan_cif(mirror, bc.OBS_DATE, anal)  # page cache warm for the anchor too
    scan = bc.best_of(lambda: bc.scan_cif(mirror, bc.OBS_DATE, anal), max(2, ctx.opts.repeat // 2))
    n = len(ctx.archive.files("full"))
    ctx.results.add(bc.Row("2", f"warm CIF build ({len(first.rows)} rows)", ours,
                           f"astropy scan of {n} headers + rule", scan, "s", scan / ours,
                           ">= 100x", scan / ours >= 100, "in-process, page cache warm"))


if __name__ == "__main__":
    from bench_all import main_single

    main_single(2)
