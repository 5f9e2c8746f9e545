"""3. Fetch throughput: `ccfcache fetch` of one CIF's files (synced index, empty store) vs
`curl --parallel --parallel-max 8` of the same URLs, both from the same local server (run in
its own process, as ESA's is), with the same number of connections (ccfcache's default
workers = 8). ccfcache also hashes every byte (xxh3 + MD5) and fsyncs each file before
publishing it; curl does neither, so `curl` followed by `sync` is shown too. Target: >= 0.9x
curl.

Each measurement is repeated (interleaved: every round runs each of them once, each ccfcache
run into a fresh copy of one synced cache folder) and the median is kept: one run of a
second's length on a shared machine is mostly noise."""

from __future__ import annotations

import bench_common as bc

TITLE = "fetch throughput vs curl --parallel"


ROUNDS = 3  # (capped by --repeat)


def bench(ctx) -> None:
    import shutil
    import statistics

    opts = ctx.opts
    _, first = ctx.warm_cache()
    names = [r["name"] for r in first.rows]
    total = sum(int(r["size"]) for r in first.rows)
    env = bc.bench_env()
    rounds = max(1, min(ROUNDS, opts.repeat))
    times: dict[str, list[float]] = {}
    with bc.serve_in_child(ctx.archive) as sources:
        synced = bc.new_cache_dir(opts, "fetch-synced", sources)  # synced once, copied
        bc.run([bc.CCFCACHE, "sync", "--cache-dir", str(synced)], env=env)

        def fresh(label: str):
            path = opts.workdir / "caches" / label
            bc.drop_dir(path)
            shutil.copytree(synced, path)
            bc.run(["sync"])  # the copy's bytes are not the measured run's to write
            return path

        from ccfcache import Cache

        out = opts.workdir / "curl"
        config = opts.workdir / "curl.conf"
        config.write_text("".join(f'url = "{sources[0]}{n}"\noutput = "{out / n}"\n'
                                  for n in names))
        curl = ["curl", "-s", "-f", "--parallel", "--parallel-max", str(opts.workers),
                "-K", str(config)]
        commands = {
            "curl": curl,
            "curl+sync": ["sh", "-c", '"$@" && sync', "sh", *curl],
            # the same work as ccfcache: curl, then the MD5 of every file and a sync
            "curl+md5sum+sync": ["sh", "-c", '"$@" && md5sum -- "$0"/* >/dev/null && sync',
                                 str(out), *curl],
        }
        for _ in range(rounds):
            # ccfcache fetch (a new process, like an analyst's shell)
            cli_dir = fresh("fetch-cli")
            t, _ = bc.run([bc.CCFCACHE, "fetch", "--cache-dir", str(cli_dir), *names], env=env)
            times.setdefault("cli", []).append(t)
            bc.drop_dir(cli_dir)

            # Cache.fetch in-process (no interpreter start-up; the sources opened by a sync)
            lib_dir = fresh("fetch-lib")
            with Cache(lib_dir) as cache:
                cache.sync()
                t, _ = bc.timed(lambda: cache.fetch(names))  # noqa: B023
            times.setdefault("lib", []).append(t)
            bc.drop_dir(lib_dir)

            for label, command in commands.items():
                bc.drop_dir(out)
                out.mkdir(parents=True)
                bc.run(["sync"])
                t, _ = bc.run(command)
                times.setdefault(label, []).append(t)
                if label != "curl+md5sum+sync":
                    got = sum((out / n).stat().st_size for n in names)
                    assert got == total, (got, total)
            bc.drop_dir(out)
        bc.drop_dir(synced)
    t_cli, t_lib = statistics.median(times["cli"]), statistics.median(times["lib"])
    timings = {label: statistics.median(times[label]) for label in commands}
    ctx.results.extra[f"3. fetch runs ({rounds} interleaved rounds, seconds)"] = [
        {"run": label, "times": ", ".join(f"{x:.3f}" for x in runs),
         "median": f"{statistics.median(runs):.3f}"} for label, runs in times.items()]

    mbps = lambda t: total / t / 1e6  # noqa: E731
    t_curl = timings["curl"]
    anchor = f"curl --parallel-max {opts.workers}"
    ctx.results.add(bc.Row("3", f"`ccfcache fetch` {len(names)} files, "
                           f"{bc.human_bytes(total)}", mbps(t_cli), anchor, mbps(t_curl), "MB/s",
                           t_curl / t_cli, ">= 0.9x", t_curl / t_cli >= 0.9,
                           f"{t_cli:.2f} s vs {t_curl:.2f} s, incl. start-up; median of {rounds}"))
    ctx.results.add(bc.Row("3", "Cache.fetch in-process, same files", mbps(t_lib), anchor,
                           mbps(t_curl), "MB/s", t_curl / t_lib, ">= 0.9x",
                           t_curl / t_lib >= 0.9, f"{t_lib:.2f} s, median of {rounds}"))
    t_synced = timings["curl+sync"]
    ctx.results.add(bc.Row("3", "Cache.fetch in-process (fsynced)", mbps(t_lib),
                           f"{anchor} + sync", mbps(t_synced), "MB/s", t_synced / t_lib, "",
                           None, "both with the bytes on disk"))
    t_same = timings["curl+md5sum+sync"]
    ctx.results.add(bc.Row("3", "Cache.fetch in-process (hashed, fsynced)", mbps(t_lib),
                           f"{anchor} + md5sum + sync", mbps(t_same), "MB/s", t_same / t_lib,
                           "", None, "the same work: bytes on disk and their MD5"))


if __name__ == "__main__":
    from bench_all import main_single

    main_single(3)
