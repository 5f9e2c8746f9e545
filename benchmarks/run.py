"""Benchmarks of ccfcache side by side with what analysts use today (rsync + cifbuild's header
scan, curl, pooch, astropy's download cache, cat/md5sum), measured in the same run.

    python benchmarks/run.py                 # quick run (sizes / 100, 10k-name listing)
    python benchmarks/run.py --scale 1 --names 100000   # real sizes, 100k names (long)
    python benchmarks/run.py --only 2,4      # some sections only

Prints Markdown tables (copy them into docs/benchmarks.md). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import (  # noqa: E402
    ANAL,
    FULL,
    OBS,
    VALID,
    folder_bytes,
    header_scan_cif,
    mb,
    print_table,
    rsync_daemon,
    rsync_pull,
    timed,
)

from ccfcache import Cache  # noqa: E402
from ccfcache.demo.archive import generate_archive  # noqa: E402
from ccfcache.demo.server import ArchiveServer, esa_mounts  # noqa: E402

CLI = [sys.executable, "-c", "from ccfcache.entry import main; main()"]


def sources(server: ArchiveServer) -> list[str]:
    return [server.url(FULL), server.url(VALID)]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


# -- 1. cold start to a usable CIF ------------------------------------------------------------
def cold_start(ctx) -> None:
    server, work, root = ctx["server"], ctx["work"], ctx["root"]
    server.reset_counts()
    cache = Cache(work / "cold", sources=sources(server))
    seconds, result = timed(lambda: cache.cif(OBS, ANAL, work / "cold.cif"))
    ours = server.total_bytes()
    rows = [["ccfcache sync + cif (cold)", mb(ours), f"{seconds:.2f} s", "1.00x", "1.00x"]]
    with rsync_daemon(root, work) as url:
        if url is None:
            print("rsync not installed: apt-get install rsync (section 1 anchors skipped)")
        for module, label in (("XMM_VALID_CCF", "valid set"), ("XMM_CCF", "full archive")):
            if url is None:
                continue
            dest = work / f"mirror-{module}"
            start = time.perf_counter()
            got = rsync_pull(f"{url}/{module}", dest)
            header_scan_cif(dest)
            spent = time.perf_counter() - start
            rows.append([f"rsync {label} + header scan", mb(got), f"{spent:.2f} s",
                         ratio(ours, got), ratio(seconds, spent)])
    cache.close()
    print_table("1. Cold start to a usable CIF (targets: <= 0.5x valid-set bytes, <= 0.33x full)",
                ["method", "bytes", "time", "ccfcache bytes ratio", "ccfcache time ratio"], rows)
    ctx["cif_rows"] = result.rows


# -- 2. warm CIF build vs cifbuild-like header scan ---------------------------------------------
def warm_cif(ctx) -> None:
    work, root = ctx["work"], ctx["root"]
    cache = Cache(work / "cold", sources=sources(ctx["server"]))
    cache.cif(OBS, ANAL, work / "warm.cif")
    ours, _ = timed(lambda: cache.cif(OBS, ANAL, work / "warm.cif"), repeat=5)
    scan, count = timed(lambda: header_scan_cif(root / "full"), repeat=2)
    n = len(list((root / "full").glob("*.CCF")))
    print_table("2. Warm CIF build (target: >= 100x faster than a header scan)",
                ["method", "time", "speed-up"],
                [["ccfcache cif, warm, in-process", f"{ours * 1000:.1f} ms", f"{scan / ours:.0f}x"],
                 [f"astropy header scan of {n} files + rule", f"{scan * 1000:.0f} ms", "1x"]])
    cache.close()


# -- 3. fetch throughput vs curl --parallel -----------------------------------------------------
def fetch_throughput(ctx) -> None:
    server, work, rows = ctx["server"], ctx["work"], ctx["cif_rows"]
    names = [r["name"] for r in rows]
    total = sum(int(r["size"]) for r in rows)
    cache = Cache(work / "fetch", sources=sources(server))
    cache.sync()
    ours, _ = timed(lambda: cache.fetch(names))
    cache.close()
    out = work / "curl"
    out.mkdir()
    urls = [server.url(FULL) + n for n in names]
    args = ["curl", "-s", "--parallel", "--parallel-max", "8"]
    for url in urls:
        args += ["-o", str(out / url.rsplit("/", 1)[1]), url]
    curl, _ = timed(lambda: subprocess.run(args, check=True))
    assert folder_bytes(out) == total
    print_table("3. Fetch throughput of one CIF's files (target: >= 0.9x curl)",
                ["method", "time", "throughput", "vs curl"],
                [["ccfcache fetch (8 workers)", f"{ours:.2f} s", f"{total / ours / 1e6:.0f} MB/s",
                  f"{curl / ours:.2f}x"],
                 ["curl --parallel (8)", f"{curl:.2f} s", f"{total / curl / 1e6:.0f} MB/s",
                  "1.00x"]])


# -- 4. warm path hit vs pooch and astropy ------------------------------------------------------
def warm_path(ctx) -> None:
    server, work = ctx["server"], ctx["work"]
    name = "XRT3_XAREAEF_0012.CCF"
    url = server.url(FULL) + name
    cache = Cache(work / "cold")
    cache.path(name)
    n = 200
    ours, _ = timed(lambda: [cache.path(name) for _ in range(n)], repeat=3)
    rows = [["Cache.path (in-process)", f"{ours / n * 1e6:.0f} us", "1.00x"]]
    (work / "xdg").mkdir(exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(work / "xdg")
    try:
        import pooch

        pooch.get_logger().setLevel("WARNING")
        pooch.retrieve(url, known_hash=None, path=work / "pooch", fname=name, progressbar=False)
        t_pooch, _ = timed(lambda: [pooch.retrieve(url, known_hash=None, path=work / "pooch",
                                                   fname=name) for _ in range(n)], repeat=3)
        rows.append(["pooch.retrieve hit", f"{t_pooch / n * 1e6:.0f} us", ratio(t_pooch, ours)])
    except ImportError:
        print("pooch not installed: pip install pooch (anchor skipped)")
    from astropy.utils.data import download_file

    download_file(url, cache=True)
    t_astro, _ = timed(lambda: [download_file(url, cache=True) for _ in range(n)], repeat=3)
    rows.append(["astropy download_file(cache=True) hit", f"{t_astro / n * 1e6:.0f} us",
                 ratio(t_astro, ours)])
    env = {**os.environ, "CCFCACHE_DIR": str(work / "cold")}
    cmd, _ = timed(lambda: subprocess.run([*CLI, "path", name], env=env, check=True,
                                          capture_output=True), repeat=5)
    pooch_cmd = [sys.executable, "-c", f"import pooch; pooch.retrieve({url!r}, known_hash=None,"
                 f" path={str(work / 'pooch')!r}, fname={name!r})"]
    t_pc, _ = timed(lambda: subprocess.run(pooch_cmd, check=True, capture_output=True), repeat=5)
    astro_cmd = [sys.executable, "-c", "from astropy.utils.data import download_file; "
                 f"download_file({url!r}, cache=True)"]
    t_ac, _ = timed(lambda: subprocess.run(astro_cmd, env=os.environ, check=True,
                                           capture_output=True), repeat=5)
    rows += [["`ccfcache path` (new process)", f"{cmd * 1000:.0f} ms", "1.00x (commands)"],
             ["`python -c pooch.retrieve` (new process)", f"{t_pc * 1000:.0f} ms",
              ratio(t_pc, cmd)],
             ["`python -c download_file` (new process)", f"{t_ac * 1000:.0f} ms",
              ratio(t_ac, cmd)]]
    cache.close()
    print_table("4. Warm hit of one file (target: >= 5x faster than pooch and astropy)",
                ["method", "time per hit", "ccfcache is faster by"], rows)


# -- 5. verify vs cat and md5sum ----------------------------------------------------------------
def verify_speed(ctx) -> None:
    work = ctx["work"]
    root = work / "cold"
    blobs = [str(p) for p in (root / "blobs").rglob("*") if p.is_file()]
    total = sum(os.path.getsize(p) for p in blobs)
    from ccfcache.verify import verify

    with Cache(root) as cache:
        inproc, report = timed(lambda: verify(cache, full=True), repeat=3)
    assert not report.problems
    ours, _ = timed(lambda: subprocess.run([*CLI, "verify", "--full", "--cache-dir", str(root)],
                                           check=True, capture_output=True), repeat=3)
    cat, _ = timed(lambda: subprocess.run(["cat", *blobs], stdout=subprocess.DEVNULL,
                                          check=True), repeat=3)
    md5, _ = timed(lambda: subprocess.run(["md5sum", *blobs], stdout=subprocess.DEVNULL,
                                          check=True), repeat=3)
    print_table(f"5. verify --full over {len(blobs)} blobs, {mb(total)}, page cache warm "
                "(target: >= 0.8x cat)", ["method", "time", "throughput", "vs cat"],
                [[name, f"{t:.3f} s", f"{total / t / 1e6:,.0f} MB/s", f"{cat / t:.2f}x"]
                 for name, t in (("verify(full=True), in-process", inproc),
                                 ("`ccfcache verify --full` (new process)", ours),
                                 ("cat > /dev/null", cat),
                                 ("md5sum", md5))])


# -- 6. N concurrent processes on a cold cache --------------------------------------------------
def concurrent(ctx) -> None:
    server, work = ctx["server"], ctx["work"]
    names = [r["name"] for r in ctx["cif_rows"]]
    rows = []
    for n in (1, 4, 16):
        root = work / f"conc{n}"
        Cache(root, sources=sources(server)).sync()
        server.reset_counts()
        env = {**os.environ, "CCFCACHE_DIR": str(root)}
        start = time.perf_counter()
        procs = [subprocess.Popen([*CLI, "cif", "--obs-date", OBS, "--analysis-date", ANAL, "-o",
                                   str(work / f"c{n}-{i}.cif")], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for i in range(n)]
        codes = [p.wait() for p in procs]
        spent = time.perf_counter() - start
        gets = [server.counts(name).gets for name in names]
        rows.append([f"ccfcache cif x{n}", f"{spent:.2f} s", f"{max(gets)}",
                     f"{sum(gets) / len(gets):.2f}", f"{codes.count(0)}/{n}"])
        # the same with astropy's download cache (each process downloads the CIF's URLs)
        server.reset_counts()
        urls = [server.url(FULL) + name for name in names]
        script = ("import sys; from astropy.utils.data import download_file\n"
                  "for u in sys.argv[1:]: download_file(u, cache=True)")
        aenv = {**os.environ, "XDG_CACHE_HOME": str(work / f"astro{n}")}
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", script, *urls], env=aenv,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(n)]
        acodes = [p.wait() for p in procs]
        aspent = time.perf_counter() - start
        agets = [server.counts(name).gets for name in names]
        rows.append([f"astropy download_file x{n}", f"{aspent:.2f} s", f"{max(agets)}",
                     f"{sum(agets) / len(agets):.2f}", f"{acodes.count(0)}/{n}"])
    print_table("6. N processes building the same CIF on a cold cache (after one sync)",
                ["method", "wall time", "max downloads of a file", "mean downloads per file",
                 "exited 0"], rows)


# -- 7. scale: a listing of many names ----------------------------------------------------------
def write_header_only_archive(folder: Path, count: int, seed: int = 0) -> None:
    """`count` minimal valid constituents (one header block + one data block) written fast."""
    import random

    from ccfcache.names import SCOPES

    rng = random.Random(seed)
    folder.mkdir(parents=True)
    per_type = 10
    for i in range(count):
        scope = SCOPES[i % len(SCOPES)]
        typeid = f"T{(i // per_type) // len(SCOPES):05d}"
        issue = (i // len(SCOPES)) % per_type + 1
        name = f"{scope}_{typeid}_{issue:04d}.CCF"
        valdate = f"{2000 + issue}-01-01T00:00:00"
        subdate = f"{2000 + issue}-06-01T00:00:{rng.randrange(60):02d}"
        cards = [("SIMPLE", "T"), ("BITPIX", "8"), ("NAXIS", "0"), ("EXTEND", "T"),
                 ("TELESCOP", "'XMM'"), ("SCOPE", f"'{scope}'"), ("TYPEID", f"'{typeid}'"),
                 ("ISSUE", str(issue)), ("VALDATE", f"'{valdate}'"), ("SUBDATE", f"'{subdate}'"),
                 ("DATE", f"'{subdate}.000'"), ("CATEGORY", "'XMMCCF'"), ("EXTSEQU", "'ANY'"),
                 ("EXTSEQID", "'NONE'"), ("CREATOR", "'bench'")]
        text = "".join(f"{k:<8}= {v:>20}".ljust(80) for k, v in cards) + "END".ljust(80)
        data = text.encode().ljust(2880, b" ") + bytes(2880)
        (folder / name).write_bytes(data)


def scale(ctx) -> None:
    work, count = ctx["work"], ctx["names"]
    rows = []
    for n in sorted({1550, count}):
        folder = work / f"names{n}" / "full"
        write_header_only_archive(folder, n)
        with ArchiveServer({FULL: folder}) as server:
            server.start()
            url = server.url(FULL)
            root = work / f"scale{n}"
            cold, _ = timed(lambda url=url, root=root: Cache(root, sources=[url]).sync())
            nochange, _ = timed(lambda url=url, root=root: Cache(root, sources=[url]).sync())
            changed = sorted(folder.iterdir())[:: 100]
            for path in changed:  # 1% touched: new dates, new header bytes
                data = bytearray(path.read_bytes())
                data[2879] = ord(" ")
                path.write_bytes(bytes(data).replace(b"'bench'", b"'bench2'"))
                os.utime(path, (time.time() + 120, time.time() + 120))
            one, _ = timed(lambda url=url, root=root: Cache(root, sources=[url]).sync())
            build, _ = timed(lambda root=root: Cache(root).cif("2015-01-01", "2020-01-01",
                                                              root / "x.cif"), repeat=1)
            mem = peak_memory([*CLI, "cif", "--obs-date", "2015-01-01", "--analysis-date",
                               "2020-01-01", "-o", str(root / "y.cif")], root)
            mem_sync = peak_memory([*CLI, "sync"], root)
        rows.append([f"{n:,}", f"{cold:.1f} s", f"{nochange:.2f} s", f"{one:.2f} s",
                     f"{build:.2f} s", f"{mem_sync / 1024:.0f} MB", f"{mem / 1024:.0f} MB"])
    print_table("7. Scale: listings of many names (header-only files)",
                ["names", "first sync", "sync, no change", "sync, 1% changed", "cif build",
                 "peak RSS sync", "peak RSS cif"], rows)


def peak_memory(cmd: list[str], root: Path) -> int:
    """Peak resident set (KB) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(cmd, env={**os.environ, "CCFCACHE_DIR": str(root)}, check=True,
                   capture_output=True)
    return max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


SECTIONS = {1: cold_start, 2: warm_cif, 3: fetch_throughput, 4: warm_path, 5: verify_speed,
            6: concurrent, 7: scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=100.0, help="divide real sizes by this")
    parser.add_argument("--names", type=int, default=10000, help="names in the scale test")
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="sections, e.g. 2,4")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    only = [int(x) for x in args.only.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ccfcache-bench-"))
    print(f"# ccfcache benchmarks, {time.strftime('%Y-%m-%d')}, {platform.node()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, scale 1/{args.scale:g}")
    root = work / "archive"
    start = time.perf_counter()
    manifest = generate_archive(root, seed=0, scale=args.scale)
    full = [e for e in manifest.entries.values() if e.in_full]
    print(f"archive: {len(full)} constituents, {mb(sum(e.size for e in full))} full, "
          f"{mb(sum(e.size for e in full if e.in_valid))} valid set "
          f"(generated in {time.perf_counter() - start:.0f} s, not measured)")
    with ArchiveServer(esa_mounts(root)) as server:
        server.start()
        ctx = {"server": server, "work": work, "root": root, "names": args.names}
        if any(i in only for i in (3, 6)) and 1 not in only:
            only = [1, *only]
        for number in only:
            SECTIONS[number](ctx)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"workdir": str(work)}) if args.workdir else "")


if __name__ == "__main__":
    main()
