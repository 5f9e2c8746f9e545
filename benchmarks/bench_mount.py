"""`ccfcache mount` against a local rsync mirror: a cifbuild-like header scan of every file
(astropy `fits.getheader`) and reading every file a CIF selects, through the mount and
through the mirror.

    python benchmarks/bench_mount.py [--scale 100] [--workdir /tmp/ccfbench] [--repeat 3]

Needs FUSE (Debian's fuse3, /dev/fuse, root or FUSE permission), `pip install -e '.[mount]'`
and Debian's rsync. The archive is served by the test server in its own process on 127.0.0.1
(so "cold" means a download over loopback, not a wide-area network); the mirror is pulled
once with rsync from a local daemon. Figures: wall time, files and bytes the mount stored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import bench_common as bc


def read_files(folder: Path, names: list[str]) -> int:
    """Read every named file whole (md5, as a checksum pass would); total bytes."""
    total = 0
    for name in names:
        digest = hashlib.md5(usedforsecurity=False)
        with open(folder / name, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
    return total


def stored(cache_dir: Path) -> tuple[int, int]:
    """(files, bytes) in the cache's blob store."""
    files = [p for p in (cache_dir / "blobs").glob("*/*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def wait_mounted(point: Path, proc: subprocess.Popen, log: Path) -> None:
    from ccfcache.mount import mounted_at

    deadline = time.monotonic() + 60
    while mounted_at(point) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the mount did not start: {log.read_text()[-500:]}")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bc.add_common_arguments(parser)
    args = parser.parse_args()
    opts = bc.options_from(args)
    from ccfcache.mount import fuse_problem

    problem = fuse_problem()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    archive = bc.ensure_archive(opts)
    work = opts.workdir / "mount-bench"
    bc.drop_dir(work)
    work.mkdir(parents=True)
    rows: list[tuple[str, float, float, str]] = []
    with bc.serve_in_child(archive) as urls, bc.rsync_daemon(archive, work) as rsync_url:
        mirror = work / "mirror"
        pull_s, pulled = bc.rsync_pull(rsync_url + "/XMM_CCF", mirror)
        cache_dir = bc.new_cache_dir(opts, "mount-bench", urls)
        sync_s, _ = bc.run([bc.CCFCACHE, "sync", "--cache-dir", str(cache_dir)])
        headers = sum(p.stat().st_size for p in (cache_dir / "headers").glob("*/*"))
        point = work / "ccf"
        log = work / "mount.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([bc.CCFCACHE, "mount", str(point), "--cache-dir",
                                     str(cache_dir)], stdout=out, stderr=out)
        try:
            wait_mounted(point, proc, log)
            n = len(os.listdir(point))
            # 1. header scan of every file: the first pass through the mount reads the kept
            # headers from disk; later passes are best-of-N like the mirror's
            first_scan, _ = bc.timed(lambda: bc.scan_headers(point))
            after_scan = stored(cache_dir)
            bc.scan_headers(mirror)  # page cache warm for the mirror too
            scan_mount = bc.best_of(lambda: bc.scan_headers(point), opts.repeat)
            scan_mirror = bc.best_of(lambda: bc.scan_headers(mirror), opts.repeat)
            rows.append((f"header scan of {n} files, first pass", first_scan, scan_mirror,
                         f"mount stored {after_scan[0]} files"))
            rows.append((f"header scan of {n} files, best of {opts.repeat}", scan_mount,
                         scan_mirror, ""))
            # 2. a CIF's files read whole
            names = [r["name"] for r in bc.cif_names(cache_dir)]
            cold_s, size = bc.timed(lambda: read_files(point, names))
            after_cif = stored(cache_dir)
            read_files(mirror, names)
            warm_mount = bc.best_of(lambda: read_files(point, names), opts.repeat)
            warm_mirror = bc.best_of(lambda: read_files(mirror, names), opts.repeat)
            rows.append((f"read a CIF's {len(names)} files ({bc.human_bytes(size)}), cold",
                         cold_s, warm_mirror, f"mount downloaded and stored "
                         f"{after_cif[0] - after_scan[0]} files, "
                         f"{bc.human_bytes(after_cif[1] - after_scan[1])}"))
            rows.append((f"read a CIF's {len(names)} files, stored, best of {opts.repeat}",
                         warm_mount, warm_mirror, ""))
        finally:
            subprocess.run([bc.CCFCACHE, "umount", "--lazy", str(point)], check=False)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    meta = bc.machine()
    print(f"\nscale {opts.scale:g}: {len(archive.files('full'))} constituents, "
          f"{bc.human_bytes(archive.bytes('full'))}; {meta['cpu']}, {meta['nproc']} cores, "
          f"{meta['date']}")
    print(f"rsync mirror pull: {pull_s:.1f} s, {bc.human_bytes(pulled)}; ccfcache sync: "
          f"{sync_s:.1f} s, headers kept {bc.human_bytes(headers)}")
    print("| what | mount | rsync mirror (best of N, page cache warm) | note |\n|---|---|---|---|")
    for what, ours, anchor, note in rows:
        print(f"| {what} | {bc.fmt(ours, 's')} | {bc.fmt(anchor, 's')} | {note} |")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "pull_s": pull_s,
                                         "sync_s": sync_s}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
