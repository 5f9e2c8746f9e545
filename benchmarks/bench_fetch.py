"""3. Fetch throughput: `ccfcache fetch` of one CIF's files (synced index, empty store) vs
`curl --parallel --parallel-max 8` of the same URLs, both from the same local server, with the
same number of connections (ccfcache's default workers = 8). Target: >= 0.9x curl."""

from __future__ import annotations

import bench_common as bc

TITLE = "fetch throughput vs curl --parallel"


def bench(ctx) -> None:
    opts = ctx.opts
    _, first = ctx.warm_cache()
    names = [r["name"] for r in first.rows]
    total = sum(int(r["size"]) for r in first.rows)
    env = bc.bench_env()

    # ccfcache fetch (a new process, like an analyst's shell)
    cli_dir = bc.new_cache_dir(opts, "fetch-cli", ctx.sources)
    bc.run([bc.CCFCACHE, "sync", "--cache-dir", str(cli_dir)], env=env)
    t_cli, _ = bc.run([bc.CCFCACHE, "fetch", "--cache-dir", str(cli_dir), *names], env=env)

    # Cache.fetch in-process (no interpreter start-up)
    from ccfcache import Cache

    lib_dir = bc.new_cache_dir(opts, "fetch-lib", ctx.sources)
    with Cache(lib_dir) as cache:
        cache.sync()
        t_lib, _ = bc.timed(lambda: cache.fetch(names))

    # curl --parallel
    out = opts.workdir / "curl"
    bc.drop_dir(out)
    out.mkdir(parents=True)
    config = opts.workdir / "curl.conf"
    config.write_text("".join(f'url = "{ctx.url(n)}"\noutput = "{out / n}"\n' for n in names))
    t_curl, _ = bc.run(["curl", "-s", "-f", "--parallel", "--parallel-max", str(opts.workers),
                        "-K", str(config)])
    got = sum((out / n).stat().st_size for n in names)
    assert got == total, (got, total)

    mbps = lambda t: total / t / 1e6  # noqa: E731
    anchor = f"curl --parallel-max {opts.workers}"
    ctx.results.add(bc.Row("3", f"`ccfcache fetch` {len(names)} files, "
                           f"{bc.human_bytes(total)}", mbps(t_cli), anchor, mbps(t_curl), "MB/s",
                           t_curl / t_cli, ">= 0.9x", t_curl / t_cli >= 0.9,
                           f"{t_cli:.2f} s vs {t_curl:.2f} s, incl. start-up"))
    ctx.results.add(bc.Row("3", "Cache.fetch in-process, same files", mbps(t_lib), anchor,
                           mbps(t_curl), "MB/s", t_curl / t_lib, ">= 0.9x",
                           t_curl / t_lib >= 0.9, f"{t_lib:.2f} s"))


if __name__ == "__main__":
    from bench_all import main_single

    main_single(3)
