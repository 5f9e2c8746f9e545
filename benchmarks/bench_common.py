"""Shared set-up for the benchmarks: the synthetic archive (real file count, scaled sizes),
the HTTP server, a local rsync daemon, a cifbuild-like astropy scan, timing and tables.

Nothing here is imported by tests/; the benchmarks only use ccfcache's public API, its CLI and
the demo archive generator (whose private `_Spec`/`_build` make the extra old issues).
Run everything with `python benchmarks/bench_all.py` (see its --help).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CCFCACHE = str(BIN / "ccfcache")
PYTHON = sys.executable

FULL_PREFIX = "/pub/ccf/constituents/"
VALID_PREFIX = "/pub/ccf/valid_constituents/"
TARGET_COUNT = 1550  # constituents in the real full archive
TARGET_BYTES = 4_300_000_000  # bytes of the real full archive (ccf-spec.md)
OBS_DATE = "2015-06-01T00:00:00"  # the observation every benchmark builds a CIF for
FORMAT_VERSION = 4  # bump to regenerate cached archives


# -- options ----------------------------------------------------------------------------------
@dataclass
class Options:
    scale: float = 100.0
    workdir: Path = Path("/tmp/ccfbench")
    repeat: int = 5
    concurrency: tuple[int, ...] = (1, 4)
    scale_counts: tuple[int, ...] = (1550, 3000)
    workers: int = 8
    wan_scale: float = 10.0
    wan_profiles: tuple[str, ...] = ("laptop-ESA", "transatlantic", "cloud-S3")
    wan_baseline: str | None = None  # another ccfcache executable, measured side by side
    wan_servers: tuple[str, ...] = ("test",)  # the HTTP servers of the wide-area benchmark


def add_common_arguments(parser) -> None:
    parser.add_argument("--scale", type=float, default=100.0,
                        help="divide the real file sizes by this (1 = real sizes, ~4.7 GB; "
                        "default 100 for a quick run)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ccfbench"),
                        help="where archives (kept between runs), mirrors and caches go")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of the fast timings")
    parser.add_argument("--concurrency", default="1,4",
                        help="process counts for the concurrent-CIF benchmark (full run: 1,4,16)")
    parser.add_argument("--scale-counts", default="1550,3000",
                        help="listing sizes for the scale benchmark (full run: 1550,10000,100000)")
    parser.add_argument("--wan-scale", type=float, default=10.0,
                        help="archive scale of the wide-area benchmark (default 10: ~1-2 min "
                        "per profile)")
    parser.add_argument("--wan-profiles", default="laptop-ESA,transatlantic,cloud-S3",
                        help="network profiles of the wide-area benchmark")
    parser.add_argument("--wan-baseline", default=None, metavar="CCFCACHE",
                        help="also time this ccfcache executable's cold CIF in each profile "
                        "(e.g. an older checkout's venv/bin/ccfcache): before/after in one run")
    parser.add_argument("--wan-server", default="test",
                        help="HTTP server(s) of the wide-area benchmark, comma-separated: "
                        "'test' (the project's Python test server) and/or 'nginx' (Debian's, "
                        "a C server like ESA's Apache and the rsync daemon)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")


def options_from(args) -> Options:
    return Options(
        scale=args.scale, workdir=args.workdir, repeat=args.repeat,
        concurrency=tuple(int(x) for x in str(args.concurrency).split(",") if x),
        scale_counts=tuple(int(x) for x in str(args.scale_counts).split(",") if x),
        wan_scale=args.wan_scale,
        wan_profiles=tuple(x for x in str(args.wan_profiles).split(",") if x),
        wan_baseline=getattr(args, "wan_baseline", None),
        wan_servers=tuple(x for x in str(getattr(args, "wan_server", "test")).split(",") if x),
    )


# -- results ----------------------------------------------------------------------------------
@dataclass
class Row:
    """One measured comparison: ccfcache's figure against an anchor's, in the same run."""

    bench: str
    what: str
    ours: float
    anchor_name: str
    anchor: float
    unit: str
    ratio: float | None  # > 1 means ccfcache is better, as the target is phrased
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # tables that are not ratios
    data: dict[str, Any] = field(default_factory=dict)  # raw figures for the plots (not printed)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print("  " + format_row(row), flush=True)
        return row


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.1f} us"
        if value < 1:
            return f"{value * 1e3:.1f} ms"
        return f"{value:.2f} s"
    if unit == "B":
        return human_bytes(value)
    if unit == "MB/s":
        return f"{value:.0f} MB/s"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    return f"{value:g} {unit}".strip()


def human_bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(value)


def format_row(row: Row) -> str:
    ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
    met = {True: "met", False: "MISSED", None: ""}[row.met]
    return (f"[{row.bench}] {row.what}: ccfcache {fmt(row.ours, row.unit)} vs {row.anchor_name} "
            f"{fmt(row.anchor, row.unit)} -> {ratio} {row.target} {met} {row.note}").rstrip()


def print_table(results: Results, out=sys.stdout) -> None:
    headers = ["#", "measurement", "ccfcache", "anchor", "anchor value", "ratio", "target", ""]
    lines = []
    for r in results.rows:
        lines.append([r.bench, r.what, fmt(r.ours, r.unit), r.anchor_name, fmt(r.anchor, r.unit),
                      "" if r.ratio is None else f"{r.ratio:.2f}x", r.target,
                      {True: "met", False: "MISSED", None: ""}[r.met]])
    widths = [max(len(h), *(len(x[i]) for x in lines)) if lines else len(h)
              for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
          file=out)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)
    for line in lines:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |",
              file=out)
    for title, table in results.extra.items():
        print(f"\n{title}", file=out)
        if table:
            keys = list(table[0])
            print("| " + " | ".join(keys) + " |", file=out)
            print("|" + "|".join("---" for _ in keys) + "|", file=out)
            for entry in table:
                print("| " + " | ".join(str(entry[k]) for k in keys) + " |", file=out)


def save_json(results: Results, path: Path, meta: dict) -> None:
    data = {"meta": meta, "rows": [r.__dict__ for r in results.rows], "extra": results.extra,
            "data": results.data}
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")


# -- timing -----------------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def best_of(fn: Callable[[], Any], repeat: int, inner: int = 1) -> float:
    """The best time of `repeat` runs of `inner` calls, per call."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return min(times)


def median_of(fn: Callable[[], Any], repeat: int) -> float:
    return statistics.median(timed(fn)[0] for _ in range(repeat))


def run(args: list[str], *, env: dict | None = None, check: bool = True,
        capture: bool = True, cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Run a command, returning its wall time and result."""
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, cwd=cwd, text=True,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE if capture else subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args[:6]))}... failed ({proc.returncode}):\n"
                           f"{proc.stdout}\n{proc.stderr}")
    return elapsed, proc


def bench_env(**extra: str) -> dict[str, str]:
    # no CCFCACHE_* leaking in; bytecode caching on, as on an analyst's machine (a sandbox
    # may set PYTHONDONTWRITEBYTECODE, which makes every start-up recompile ccfcache)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CCFCACHE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drop_dir(path: Path) -> None:
    """Remove a folder tree even when it holds read-only blobs."""
    if not path.exists():
        return
    for root, dirs, _files in os.walk(path):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, d), 0o755)
    shutil.rmtree(path, ignore_errors=True)


# -- the archive ------------------------------------------------------------------------------
@dataclass
class Archive:
    root: Path
    scale: float

    @property
    def full(self) -> Path:
        return self.root / "full"

    @property
    def valid(self) -> Path:
        return self.root / "valid"

    def files(self, which: str = "full") -> list[Path]:
        return sorted(p for p in (self.root / which).iterdir() if p.suffix == ".CCF")

    def bytes(self, which: str = "full") -> int:
        return sum(p.stat().st_size for p in self.files(which))


def _extra_issues(count: int, seed: int, scale: float, extra_bytes: int) -> list:
    """Older, superseded issues, so that the archive holds as many constituents (1,550) and
    bytes (4.3 GB at scale 1) as the real one: the generator writes only 1-5 issues per type.
    Issues of mid-size types (1-70 MB) first, until `extra_bytes` is reached; then small
    types for the remaining count."""
    from ccfcache.demo import archive as gen

    rng = random.Random(seed)
    full = gen._plan(seed, scale, 1, None)[0]
    small, middle = [], []
    for ctype in gen.CATALOGUE:
        key = (ctype.scope, ctype.typeid)
        if ctype.size > 70_000_000 or key in gen.TIME_SLICED or key == ("XRT3", "XAREAEF"):
            continue
        specs = [s for s in full[key] if s.category == "XMMCCF"]
        lowest = min(s.issue for s in specs)
        first = min(specs, key=lambda s: s.issue)
        slots = [(ctype, first, issue) for issue in range(1, lowest)]
        (middle if ctype.size > 1_000_000 else small).extend(slots)
    rng.shuffle(middle)
    chosen, added = [], 0
    for slot in middle:
        if added >= extra_bytes or len(chosen) >= count:
            break
        chosen.append(slot)
        added += int(slot[0].size / scale * 0.8)
    chosen += rng.sample(small, min(count - len(chosen), len(small)))
    out = []
    for ctype, first, issue in chosen:
        first_sub = gen._parse(first.subdate)
        start = datetime(1997, 6, 1, tzinfo=UTC)
        span = max(1, int((first_sub - start).total_seconds()) - 86400)
        sub = start + timedelta(seconds=int(span * issue / max(1, first.issue)))
        created = sub - timedelta(days=2)
        out.append(gen._Spec(
            scope=ctype.scope, typeid=ctype.typeid, issue=issue, valdate=first.valdate,
            evaldate=None, subdate=gen._fmt(sub), date=gen._fmt(created) + ".000",
            category="XMMCCF", creator=first.creator, extseqid=ctype.extseqid,
            target_size=max(gen.MIN_SIZE, int(ctype.size / scale * rng.uniform(0.6, 1.0))),
            header_blocks=2, n_modifications=rng.randint(0, 3),
        ))
    return out


def ensure_archive(opts: Options, seed: int = 0) -> Archive:
    """The archive for this scale: generated once into the workdir, then reused."""
    from ccfcache.demo import archive as gen

    root = opts.workdir / f"archive-s{opts.scale:g}"
    marker = root / "ready.json"
    if marker.exists() and json.loads(marker.read_text()).get("format") == FORMAT_VERSION:
        return Archive(root, opts.scale)
    drop_dir(root)
    print(f"generating the archive at scale {opts.scale:g} into {root} (not timed)...",
          flush=True)
    start = time.perf_counter()
    manifest = gen.generate_archive(root, seed=seed, scale=opts.scale, version=1)
    have = len(manifest.full_names())
    missing_bytes = int(TARGET_BYTES / opts.scale) - sum(
        p.stat().st_size for p in (root / "full").iterdir() if p.suffix == ".CCF")
    for spec in _extra_issues(TARGET_COUNT - have, seed, opts.scale, max(0, missing_bytes)):
        gen._write(root / "full" / spec.name, gen._build(spec, seed), spec.subdate)
    archive = Archive(root, opts.scale)
    marker.write_text(json.dumps({"format": FORMAT_VERSION, "scale": opts.scale,
                                  "full": len(archive.files("full")),
                                  "valid": len(archive.files("valid"))}))
    print(f"  {len(archive.files('full'))} constituents, {human_bytes(archive.bytes('full'))}; "
          f"valid {len(archive.files('valid'))}, {human_bytes(archive.bytes('valid'))} "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    return archive


@contextlib.contextmanager
def serve(mounts: dict[str, Path]) -> Iterator[Any]:
    from ccfcache.demo.server import ArchiveServer

    server = ArchiveServer(mounts).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def serve_in_child(archive: Archive) -> Iterator[list[str]]:
    """The archive served by `python -m ccfcache.demo.server` in its own process, as ESA's
    server runs apart from the client (an in-process server thread would share the client's
    GIL); yields the full and valid URLs. No request counters: for throughput only."""
    proc = subprocess.Popen([PYTHON, "-m", "ccfcache.demo.server", "--root", str(archive.root)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        urls = [proc.stdout.readline().strip() for _ in range(2)]
        if not all(u.startswith("http") for u in urls):
            raise RuntimeError(f"the server process did not start: {urls}")
        yield sorted(urls, key=lambda u: VALID_PREFIX in u)  # full first
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def nginx_in_child(archive: Archive, workdir: Path) -> Iterator[list[str]]:
    """The archive served by Debian's nginx (plain HTTP, autoindex, Range and ETag as nginx
    gives them, one worker process as the test server has one interpreter) at ESA's paths;
    yields the full and valid URLs."""
    if shutil.which("nginx") is None:
        raise RuntimeError("nginx is not installed (apt-get install -y nginx)")
    root = workdir / "nginx"
    drop_dir(root)
    (root / "logs").mkdir(parents=True)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""  # the worker must read the archive
    (root / "nginx.conf").write_text(f"""{user}
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location {FULL_PREFIX} {{ alias {archive.full}/; autoindex on; }}
    location {VALID_PREFIX} {{ alias {archive.valid}/; autoindex on; }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-p", str(root), "-c", str(root / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("nginx did not start")
        if proc.poll() is not None:
            raise RuntimeError("nginx did not start: "
                               + (root / "logs" / "error.log").read_text()[:300])
        yield [f"http://127.0.0.1:{port}{FULL_PREFIX}", f"http://127.0.0.1:{port}{VALID_PREFIX}"]
    finally:
        proc.terminate()
        proc.wait(10)


def archive_mounts(archive: Archive) -> dict[str, Path]:
    return {FULL_PREFIX: archive.full, VALID_PREFIX: archive.valid}


def download_bytes(server, *, exclude_headers: bool = True) -> dict[str, int]:
    """Per base name: how many whole-body GETs the server answered (Range-less or open-ended
    resumes; header reads are bounded `bytes=a-b` ranges)."""
    counts: dict[str, int] = {}
    for method, path, rng in server.request_log:
        if method != "GET" or path.endswith("/"):
            continue
        if rng is not None and not rng.rstrip().endswith("-"):
            continue
        base = path.rpartition("/")[2]
        counts[base] = counts.get(base, 0) + 1
    return counts


def traffic(server) -> dict[str, int]:
    """Body bytes by kind: listings, header reads (bounded ranges), file downloads."""
    kinds = {"listing": 0, "headers": 0, "files": 0}
    with server._lock:  # the demo server's own counters, by path
        per_path = {p: c.bytes for p, c in server._counts.items()}
    ranged = {p for m, p, r in server.request_log if r and not r.rstrip().endswith("-")}
    whole = {p for m, p, r in server.request_log if m == "GET" and (r is None or r.endswith("-"))}
    for path, size in per_path.items():
        if path.endswith("/"):
            kinds["listing"] += size
        elif path in ranged and path not in whole:
            kinds["headers"] += size
        else:
            kinds["files"] += size
    return kinds


# -- rsync daemon -----------------------------------------------------------------------------
@contextlib.contextmanager
def rsync_daemon(archive: Archive, workdir: Path) -> Iterator[str]:
    """A Debian rsync daemon on 127.0.0.1 with ESA's module names; yields rsync://host:port."""
    if shutil.which("rsync") is None:
        raise RuntimeError("rsync is not installed (apt-get install -y rsync)")
    port = free_port()
    conf = workdir / "rsyncd.conf"
    conf.write_text(
        f"pid file = {workdir}/rsyncd.pid\nuse chroot = no\nread only = yes\n"
        f"address = 127.0.0.1\nlog file = {workdir}/rsyncd.log\n"
        f"[XMM_CCF]\n  path = {archive.full}\n  comment = all constituents\n"
        f"[XMM_VALID_CCF]\n  path = {archive.valid}\n  comment = the valid set\n"
    )
    (workdir / "rsyncd.pid").unlink(missing_ok=True)
    proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}",
                             f"--port={port}", "--address=127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the rsync daemon did not start")
        yield f"rsync://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def rsync_pull(url: str, dest: Path) -> tuple[float, int]:
    """rsync -a a module into `dest`; (seconds, bytes received over the wire)."""
    dest.mkdir(parents=True, exist_ok=True)
    elapsed, proc = run(["rsync", "-a", "--delete", "--stats", url + "/", str(dest) + "/"])
    received = 0
    for line in proc.stdout.splitlines():
        if line.startswith("Total bytes received:"):
            received = int(line.split(":")[1].strip().replace(",", ""))
    return elapsed, received


# -- cifbuild-like scan -----------------------------------------------------------------------
def scan_headers(folder: Path) -> list[dict]:
    """What cifbuild does each time: open every constituent's primary header with astropy."""
    from astropy.io import fits

    rows = []
    for path in sorted(folder.iterdir()):
        if path.suffix.upper() != ".CCF":
            continue
        h = fits.getheader(path, 0)
        rows.append({
            "name": path.name, "scope": str(h.get("SCOPE", "")).strip(),
            "typeid": str(h.get("TYPEID", "")).strip(), "issue": int(h.get("ISSUE", 0)),
            "valdate": str(h.get("VALDATE", ""))[:19], "evaldate": (
                str(h["EVALDATE"])[:19] if "EVALDATE" in h else None),
            "subdate": str(h.get("SUBDATE", ""))[:19],
            "category": str(h.get("CATEGORY", "")).strip(),
            "size": path.stat().st_size,
        })
    return rows


def cifbuild_rule(rows: list[dict], obs: str, anal: str, category: str = "XMMCCF") -> list[dict]:
    best: dict[tuple[str, str], dict] = {}
    for r in rows:
        if r["category"] != category:
            continue
        if not (r["valdate"] <= obs and r["subdate"] <= anal
                and (r["evaldate"] is None or r["evaldate"] >= obs)):
            continue
        key = (r["scope"], r["typeid"])
        if key not in best or r["issue"] > best[key]["issue"]:
            best[key] = r
    return [best[k] for k in sorted(best)]


def scan_cif(folder: Path, obs: str, anal: str) -> list[dict]:
    return cifbuild_rule(scan_headers(folder), obs, anal)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


# -- caches -----------------------------------------------------------------------------------
def new_cache_dir(opts: Options, label: str, sources: list[str]) -> Path:
    """An empty cache folder whose config names the sources (no index, no blobs yet)."""
    path = opts.workdir / "caches" / label
    drop_dir(path)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"sources": sources}) + "\n")
    return path


def cif_names(cache_dir: Path, obs: str = OBS_DATE) -> list[Any]:
    """The rows of the CIF ccfcache selects (after a sync), without fetching."""
    from ccfcache import Cache
    from ccfcache.select import select_constituents

    with Cache(cache_dir) as cache:
        if not cache._synced_once():
            cache.sync()
        anal = now_iso()
        rows = cache.index.candidates_for(obs, anal, category="XMMCCF",
                                          ignore_category=False, historical=False)
        return select_constituents(rows, obs, anal).rows


def machine() -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    cpu = [line.split(":", 1)[1].strip() for line in out(["lscpu"]).splitlines()
           if line.startswith("Model name")]
    return {"cpu": cpu[0] if cpu else "", "nproc": out(["nproc"]),
            "mem": out(["free", "-h"]).splitlines()[1] if out(["free", "-h"]) else "",
            "python": sys.version.split()[0], "date": now_iso() + "Z",
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b)
