"""6. N processes (1, 4, 16) building the same CIF at once on one cold cache: downloads per
content (whole-file GETs counted by the server; header Range reads are not downloads), bytes
of file bodies sent, wall time; vs N processes each calling astropy's
`download_file(url, cache=True)` on the CIF's URLs with one shared astropy cache."""

from __future__ import annotations

import json
import subprocess
import time

import bench_common as bc

TITLE = "N concurrent cold CIF builds vs astropy's download cache"

ASTROPY_CHILD = """
import json, sys
from astropy.utils.data import download_file
for url in json.load(open(sys.argv[1])):
    download_file(url, cache=True)
"""


def _wait_all(procs: list[subprocess.Popen]) -> None:
    failed = []
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            failed.append(err.decode()[-500:])
    if failed:
        raise RuntimeError(f"{len(failed)} processes failed: {failed[0]}")


def _count(server, names: list[str]) -> tuple[float, int, int]:
    """Mean and max whole-file downloads per content, and all bytes the server sent
    (listings, header reads and files)."""
    per = bc.download_bytes(server)
    downloads = [per.get(n, 0) for n in names]
    return sum(downloads) / len(names), max(downloads), server.total_bytes()


def bench(ctx) -> None:
    opts, server = ctx.opts, ctx.server
    _, first = ctx.warm_cache()
    names = [r["name"] for r in first.rows]
    total = sum(int(r["size"]) for r in first.rows)
    urls = opts.workdir / "cif-urls.json"
    urls.write_text(json.dumps([ctx.url(n) for n in names]))
    table = []
    for n in opts.concurrency:
        cache_dir = bc.new_cache_dir(opts, f"conc-{n}", ctx.sources)
        server.reset_counts()
        env = bc.bench_env()
        start = time.perf_counter()
        procs = [subprocess.Popen([bc.CCFCACHE, "cif", "--obs-date", bc.OBS_DATE, "-o",
                                   str(opts.workdir / f"conc-{n}-{i}.cif"), "--cache-dir",
                                   str(cache_dir)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for i in range(n)]
        _wait_all(procs)
        t_ours = time.perf_counter() - start
        mean, most, body = _count(server, names)
        heads = sum(1 for m, p, r in server.request_log if r and not r.endswith("-"))

        xdg = opts.workdir / f"xdg-conc-{n}"
        bc.drop_dir(xdg)
        bc.drop_dir(cache_dir)
        (xdg / "astropy").mkdir(parents=True)
        server.reset_counts()
        env_a = bc.bench_env(XDG_CACHE_HOME=str(xdg))
        start = time.perf_counter()
        procs = [subprocess.Popen([bc.PYTHON, "-c", ASTROPY_CHILD, str(urls)], env=env_a,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(n)]
        _wait_all(procs)
        t_astro = time.perf_counter() - start
        a_mean, a_most, a_body = _count(server, names)
        table.append({
            "N": n, "ccfcache downloads/content (mean, max)": f"{mean:.2f}, {most}",
            "ccfcache bytes sent / CIF bytes": f"{body / total:.2f}",
            "ccfcache header reads": heads, "ccfcache wall": f"{t_ours:.2f} s",
            "astropy downloads/content (mean, max)": f"{a_mean:.2f}, {a_most}",
            "astropy bytes / CIF bytes": f"{a_body / total:.2f}",
            "astropy wall": f"{t_astro:.2f} s",
        })
        ctx.results.add(bc.Row("6", f"N={n} cold CIFs: all bytes sent", body, "astropy cache",
                               a_body, "B", a_body / body, "1 download per content",
                               most <= 1, f"max {most} downloads/content vs astropy {a_most}"))
        ctx.results.add(bc.Row("6", f"N={n} cold CIFs: wall time", t_ours, "astropy cache",
                               t_astro, "s", t_astro / t_ours, "", None,
                               "ccfcache also lists + reads headers (sync)"))
        bc.drop_dir(xdg)
        bc.drop_dir(cache_dir)
    ctx.results.extra[f"6. concurrent cold CIF builds ({len(names)} files, "
                      f"{bc.human_bytes(total)})"] = table


if __name__ == "__main__":
    from bench_all import main_single

    main_single(6)
