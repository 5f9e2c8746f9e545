"""5. `verify` throughput over the blobs of one CIF: `Cache.verify(full=True)`
in-process and `ccfcache verify --full` vs `cat` of the same blobs to /dev/null (the read limit)
and `md5sum`, page cache warm. Target: >= 0.8x of cat."""

from __future__ import annotations

import subprocess

import bench_common as bc

TITLE = "verify vs cat / md5sum"


def bench(ctx) -> None:
    opts = ctx.opts
    cache, _ = ctx.warm_cache()
    blobs = sorted(str(p) for p in (cache.root / "blobs").rglob("*") if p.is_file())
    total = sum(bc.os.path.getsize(p) for p in blobs)
    devnull = subprocess.DEVNULL

    def cat() -> None:
        subprocess.run(["cat", *blobs], stdout=devnull, check=True)

    def md5sum() -> None:
        subprocess.run(["md5sum", *blobs], stdout=devnull, check=True)

    cat()  # page cache warm
    t_cat = bc.best_of(cat, opts.repeat)
    t_md5 = bc.best_of(md5sum, opts.repeat)
    report = cache.verify(full=True)
    assert report.ok and report.hashed == len(blobs), report.as_dict()
    t_lib = bc.best_of(lambda: cache.verify(full=True), opts.repeat)
    args = [bc.CCFCACHE, "verify", "--full", "--cache-dir", str(cache.root)]
    t_cli = bc.best_of(lambda: bc.run(args, env=bc.bench_env()), max(3, opts.repeat // 2))
    mbps = lambda t: total / t / 1e6  # noqa: E731
    what = f"{len(blobs)} blobs, {bc.human_bytes(total)}"
    ctx.results.add(bc.Row("5", f"Cache.verify(full=True) in-process, {what}", mbps(t_lib), "cat",
                           mbps(t_cat), "MB/s", t_cat / t_lib, ">= 0.8x", t_cat / t_lib >= 0.8))
    ctx.results.add(bc.Row("5", "Cache.verify(full=True) in-process", mbps(t_lib), "md5sum",
                           mbps(t_md5), "MB/s", t_md5 / t_lib, "", None))
    ctx.results.add(bc.Row("5", "`ccfcache verify --full` (new process)", mbps(t_cli), "cat",
                           mbps(t_cat), "MB/s", t_cat / t_cli, ">= 0.8x", t_cat / t_cli >= 0.8,
                           f"{t_cli * 1e3:.0f} ms incl. start-up vs {t_cat * 1e3:.0f} ms"))


if __name__ == "__main__":
    from bench_all import main_single

    main_single(5)
