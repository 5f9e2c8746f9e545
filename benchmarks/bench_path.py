"""4. Warm hit for one file: `Cache.path(name)` in-process and the `ccfcache path` command vs
`pooch.retrieve(url, known_hash=None)` and `astropy.utils.data.download_file(url, cache=True)`
hits on the same file (in-process, and each as a new `python -c` process). Target: >= 5x
faster than both. astropy's cache is a scratch folder (XDG_CACHE_HOME)."""

from __future__ import annotations

import statistics

import bench_common as bc

TITLE = "warm path hit vs pooch / astropy download cache"
NAME = "XRT3_XAREAEF_0012.CCF"


def _per_call(fn, repeat: int, inner: int = 200) -> float:
    fn()
    return bc.best_of(fn, repeat, inner)


def _command(args: list[str], env: dict, repeat: int) -> float:
    bc.run(args, env=env)
    return statistics.median(bc.run(args, env=env)[0] for _ in range(max(5, repeat)))


def bench(ctx) -> None:
    import pooch
    from astropy.utils.data import download_file

    opts = ctx.opts
    cache, _ = ctx.warm_cache()
    url = ctx.url(NAME)
    pooch_dir = opts.workdir / "pooch"
    bc.drop_dir(pooch_dir)
    pooch.get_logger().setLevel("WARNING")

    ours = _per_call(lambda: cache.path(NAME), opts.repeat)
    t_pooch = _per_call(lambda: pooch.retrieve(url, known_hash=None, fname=NAME, path=pooch_dir,
                                               progressbar=False), opts.repeat)
    t_astro = _per_call(lambda: download_file(url, cache=True), opts.repeat)
    for label, anchor in (("pooch.retrieve hit", t_pooch),
                          ("astropy download_file hit", t_astro)):
        ctx.results.add(bc.Row("4", "Cache.path hit (in-process)", ours, label, anchor, "s",
                               anchor / ours, ">= 5x", anchor / ours >= 5))

    env = bc.bench_env(CCFCACHE_DIR=str(cache.root), XDG_CACHE_HOME=str(ctx.xdg))
    c_ours = _command([bc.CCFCACHE, "path", NAME], env, opts.repeat)
    c_pooch = _command([bc.PYTHON, "-c", f"import pooch; pooch.retrieve({url!r}, known_hash=None, "
                        f"fname={NAME!r}, path={str(pooch_dir)!r}, progressbar=False)"],
                       env, opts.repeat)
    c_astro = _command([bc.PYTHON, "-c", "from astropy.utils.data import download_file; "
                        f"download_file({url!r}, cache=True)"], env, opts.repeat)
    c_python = _command([bc.PYTHON, "-c", "pass"], env, opts.repeat)
    for label, anchor in (("python -c pooch.retrieve", c_pooch),
                          ("python -c download_file", c_astro)):
        ctx.results.add(bc.Row("4", "`ccfcache path` (new process)", c_ours, label, anchor, "s",
                               anchor / c_ours, ">= 5x", anchor / c_ours >= 5,
                               f"bare `python -c pass` takes {c_python * 1e3:.0f} ms"))


if __name__ == "__main__":
    from bench_all import main_single

    main_single(4)
