"""Run the ccfcache benchmarks side by side with what analysts use today; print one table of
ratios measured in the same run.

    python benchmarks/bench_all.py                       # quick run: sizes / 100 (~1.5 min)
    python benchmarks/bench_all.py --only 1,3            # some measurements only
    python benchmarks/bench_all.py --only 7,8 --plot     # and write docs/bench-*.png
    python benchmarks/bench_all.py --scale 1 --scale-counts 1550,10000,100000   # full run

1 cold start to a CIF vs rsync + header scan   2 warm CIF vs astropy header scan
3 fetch vs curl --parallel                      4 warm path hit vs pooch / astropy
5 verify vs cat / md5sum                        6 N concurrent cold CIFs vs astropy cache
7 scale: 1,550 .. 100,000 listed constituents (sync, 1% changed, cif, peak memory)
8 cold CIF over a wide-area network (shaping relay: RTT, bandwidth) vs rsync + header scan

Each bench_*.py also runs alone (same options). Nothing in tests/ uses these; no timing here is
a test. The archive is generated once per scale into --workdir (generation is not timed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

MODULES = {
    1: "bench_cold",
    2: "bench_warm_cif",
    3: "bench_fetch",
    4: "bench_path",
    5: "bench_verify",
    6: "bench_concurrent",
    7: "bench_scale",
    8: "bench_wan",
}


class Context:
    """What the measurements share: options, the archive, its server, a warm cache."""

    def __init__(self, opts: bc.Options) -> None:
        self.opts = opts
        opts.workdir.mkdir(parents=True, exist_ok=True)
        # astropy's download cache goes to a scratch folder (set before astropy is imported)
        self.xdg = opts.workdir / "xdg"
        bc.drop_dir(self.xdg)
        (self.xdg / "astropy").mkdir(parents=True)
        os.environ["XDG_CACHE_HOME"] = str(self.xdg)
        self._archive: bc.Archive | None = None
        self._server = None
        self._warm = None
        self.results = bc.Results()

    @property
    def archive(self) -> bc.Archive:
        if self._archive is None:
            self._archive = bc.ensure_archive(self.opts)
        return self._archive

    @property
    def server(self):
        if self._server is None:
            from ccfcache.demo.server import ArchiveServer

            self._server = ArchiveServer(bc.archive_mounts(self.archive)).start()
        return self._server

    @property
    def sources(self) -> list[str]:
        return [self.server.url(bc.FULL_PREFIX), self.server.url(bc.VALID_PREFIX)]

    def url(self, name: str) -> str:
        return self.server.url(bc.FULL_PREFIX) + name

    def warm_cache(self):
        """A cache that has synced and fetched the benchmark CIF's files (built once)."""
        if self._warm is None:
            from ccfcache import Cache

            root = bc.new_cache_dir(self.opts, "warm", self.sources)
            cache = Cache(root)
            result = cache.cif(bc.OBS_DATE, None, self.opts.workdir / "warm.cif")
            self._warm = (cache, result)
        return self._warm

    def close(self) -> None:
        if self._warm is not None:
            self._warm[0].close()
        if self._server is not None:
            self._server.stop()


def parse(argv: list[str] | None = None, *, only: bool = True) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    bc.add_common_arguments(parser)
    if only:
        parser.add_argument("--only", default="1,2,3,4,5,6,7,8",
                            help="comma-separated measurement numbers")
        parser.add_argument("--plot", action="store_true",
                            help="write PNG figures into docs/ (matplotlib, the bench extra)")
    return parser.parse_args(argv)


def run_benches(numbers: list[int], args: argparse.Namespace) -> bc.Results:
    import importlib

    ctx = Context(bc.options_from(args))
    meta = bc.machine()
    meta.update(scale=ctx.opts.scale, workdir=str(ctx.opts.workdir))
    print(f"ccfcache benchmarks, scale {ctx.opts.scale:g}, {meta['cpu']}, {meta['nproc']} CPUs",
          flush=True)
    start = time.perf_counter()
    try:
        for number in numbers:
            module = importlib.import_module(MODULES[number])
            print(f"\n== {number}. {module.TITLE}", flush=True)
            t0 = time.perf_counter()
            module.bench(ctx)
            print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    finally:
        ctx.close()
    meta["seconds"] = round(time.perf_counter() - start, 1)
    print(f"\nResults (ratio > 1: ccfcache better; scale {ctx.opts.scale:g}; "
          f"{meta['seconds']} s in all)\n")
    bc.print_table(ctx.results)
    if args.json:
        bc.save_json(ctx.results, args.json, meta)
    if getattr(args, "plot", False):
        import bench_plot

        bench_plot.plot_all(ctx.results.data, meta)
    return ctx.results


def main_single(number: int) -> None:
    """Entry point of one bench_*.py run alone."""
    run_benches([number], parse(only=False))


def main() -> None:
    args = parse()
    numbers = [int(x) for x in args.only.split(",") if x.strip()]
    run_benches(numbers, args)


if __name__ == "__main__":
    main()
