"""One cache folder shared by many processes (and pretend hosts) against the real test server:
each content is downloaded once, every process succeeds, the cache verifies clean; shared
permissions, the read-only site cache under a personal overlay, the format file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from ccfcache import Cache, CacheError
from ccfcache.cif import read_cif
from ccfcache.config import write_config_file
from ccfcache.demo.archive import Manifest
from ccfcache.demo.server import ArchiveServer, esa_mounts
from ccfcache.layout import FORMAT_FILE, Layout

DATES = [("2000-06-01", "2024-01-01"), ("2021-03-10T00:21:11", "2024-01-01"),
         ("2021-03-10T00:21:11", "2005-01-01")]
# pre-import the CLI, then wait for the start signal, so that every process hits the cold
# cache at the same moment; then run exactly what the `ccfcache` console script runs
_RUNNER = (
    "import os, sys, time\n"
    "import ccfcache.cli, ccfcache.build, ccfcache.cif, ccfcache.sync\n"
    "go = os.environ['CCFTEST_GO']\n"
    "while not os.path.exists(go):\n"
    "    time.sleep(0.005)\n"
    "from ccfcache.entry import main\n"
    "main()\n"
)


def _can_unshare_uts() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    try:
        done = subprocess.run(["unshare", "--uts", "sh", "-c", "hostname ccf-probe && hostname"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare --uts failed: {exc}"
    if done.returncode != 0 or done.stdout.strip() != "ccf-probe":
        return f"unshare --uts not permitted here: {done.stderr.strip()[:100]}"
    return None


UTS_SKIP = _can_unshare_uts()


def command(args: list[str], host: str | None = None) -> list[str]:
    """A ccfcache command line; with `host`, run in its own UTS namespace with that hostname
    (same network namespace: the test server listens on 127.0.0.1 of this one)."""
    cmd = [sys.executable, "-c", _RUNNER, *args]
    if host is None:
        return cmd
    return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host, *cmd]


def run_all(jobs: list[list[str]], env: dict[str, str], go: Path,
            timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """Start every job, release them together, wait for all."""
    procs = [subprocess.Popen(job, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for job in jobs]
    go.touch()
    done = []
    for job, proc in zip(jobs, procs, strict=True):
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(job, proc.returncode, out, err))
    return done


def cold_cache(root: Path, source_urls: list[str], **config) -> Path:
    """A cache folder holding only its config (no index, no blobs)."""
    root.mkdir(parents=True)
    write_config_file(root, {"sources": source_urls, **config})
    return root


def base_env(root: Path | None, go: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCFCACHE_")}
    if root is not None:
        env["CCFCACHE_DIR"] = str(root)
    env.update(CCFCACHE_WORKERS="4", CCFTEST_GO=str(go), **extra)
    return env


def full_gets(server) -> Counter:
    """Whole-body downloads per file name (no Range header); header reads at sync use closed
    ranges `bytes=a-b` and are checked to be only that."""
    counts: Counter = Counter()
    for method, path, range_header in server.request_log:
        if method != "GET" or not path.endswith(".CCF"):
            continue
        name = path.rsplit("/", 1)[1]
        if range_header is None:
            counts[name] += 1
        else:
            first, _, last = range_header.removeprefix("bytes=").partition("-")
            assert first.isdigit() and last.isdigit(), f"a resumed download: {range_header}"
    return counts


def verify_clean(root: Path) -> int:
    """`ccfcache verify` passes, every blob hashes to its name and is read-only, no partial
    download or lock is left, the index is intact. Returns the blob count."""
    layout = Layout(root)
    blobs = [p for p in layout.blobs.rglob("*") if p.is_file()]
    done = subprocess.run([sys.executable, "-c", "from ccfcache.entry import main; main()",
                           "verify", "--cache-dir", str(root)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for blob in blobs:
        assert xxhash.xxh3_128_hexdigest(blob.read_bytes()) == blob.name, blob
        assert stat.S_IMODE(blob.stat().st_mode) == 0o444, blob
    assert list(layout.tmp.glob("*.part")) == []
    assert list(layout.locks.iterdir()) == []
    conn = sqlite3.connect(f"file:{layout.db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {r[0] for r in conn.execute("SELECT xxh3 FROM blobs")}
    finally:
        conn.close()
    assert stored == {b.name for b in blobs}
    return len(blobs)


def stored_contents(root: Path) -> Counter:
    """Distinct stored contents per name, from the index."""
    conn = sqlite3.connect(f"file:{Layout(root).db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, count(DISTINCT xxh3) FROM versions "
                            "WHERE xxh3 IS NOT NULL GROUP BY name").fetchall()
    finally:
        conn.close()
    return Counter(dict(rows))


def many_jobs(tmp_path: Path, names: list[str], hosts: list[str | None]) -> list[list[str]]:
    """16+ concurrent commands: cif for three date pairs, sync, fetch; `hosts` cycles."""
    jobs = []
    for i in range(9):
        obs, anal = DATES[i % 3]
        jobs.append(["cif", "--obs-date", obs, "--analysis-date", anal,
                     "-o", str(tmp_path / f"out{i}.cif")])
    jobs += [["sync"]] * 4
    jobs += [["fetch", *names[i::3]] for i in range(3)]
    return [command(job, hosts[i % len(hosts)]) for i, job in enumerate(jobs)]


def check_outcome(done, root: Path, server, archive: Manifest, tmp_path: Path) -> None:
    failed = [(d.args[-8:], d.returncode, d.stderr[-600:]) for d in done if d.returncode]
    assert failed == []
    for line in "".join(d.stderr for d in done).splitlines():
        assert "database is locked" not in line and "Traceback" not in line, line
    gets = full_gets(server)
    assert gets, "nothing was downloaded"
    contents = stored_contents(root)
    assert dict(gets) == dict(contents)  # one whole-body GET per stored content, no more
    assert set(gets.values()) == {1}
    for i in range(9):
        data = read_cif(tmp_path / f"out{i}.cif")
        for row in data.rows:
            assert row["md5"] == archive.entries[row["name"]].md5
            assert gets[row["name"]] == 1
    assert verify_clean(root) == sum(contents.values())


# processes in their own UTS namespace with their own hostname, where the machine allows it;
# not their own network namespace: the test server listens on this namespace's 127.0.0.1
HOSTS = [None] if UTS_SKIP else [None, "ccf-node-a", "ccf-node-b", "ccf-node-c"]


def test_sixteen_processes_on_a_cold_cache(tmp_path, server, source_urls, archive: Manifest):
    """9 `cif` (three date pairs), 4 `sync`, 3 `fetch` and a `prune` start together on an
    empty cache, spread over four hostnames (so both lock rules, pid check and heartbeat, are in
    play): all exit 0, each content is downloaded exactly once, the cache verifies clean."""
    if UTS_SKIP:
        print(f"all processes on one host: {UTS_SKIP}")
    root = cold_cache(tmp_path / "cache", source_urls)
    go = tmp_path / "go"
    jobs = many_jobs(tmp_path, archive.full_names()[::4], HOSTS)
    assert len(jobs) >= 16
    # the default prune (withdrawn, superseded, old temporaries) runs among them
    jobs.insert(8, command(["prune"], "ccf-node-d" if HOSTS[1:] else None))
    done = run_all(jobs, base_env(root, go), go)
    check_outcome(done, root, server, archive, tmp_path)
    assert json.loads((root / FORMAT_FILE).read_text())["lock_protocol"] == 1


def _header_reads(server) -> Counter:
    """Bounded Range GETs (header reads) per path."""
    return Counter(path for method, path, rng in server.request_log
                   if method == "GET" and rng is not None and not rng.endswith("-"))


def test_cold_cifs_read_each_header_once(tmp_path, server, source_urls, archive: Manifest):
    """Six `cif` processes start together on a never-synced cache: one lists the sources
    (first-sync lock) and one reads the headers the CIF needs (headers lock), the others wait
    for it and find them read: no header is read twice."""
    go = tmp_path / "go"
    obs, anal = DATES[1]

    def cif(i: int) -> list[str]:
        return command(["cif", "--obs-date", obs, "--analysis-date", anal,
                        "-o", str(tmp_path / f"c{i}.cif")])

    solo = run_all([cif(99)], base_env(cold_cache(tmp_path / "solo", source_urls), go), go)
    assert solo[0].returncode == 0, solo[0].stderr
    one_cif = _header_reads(server)
    assert 0 < len(one_cif) < len(archive.full_names()) + len(archive.valid_names())
    server.reset_counts()
    go.unlink()
    root = cold_cache(tmp_path / "cache", source_urls)
    jobs = [cif(i) for i in range(6)]
    done = run_all(jobs, base_env(root, go), go)
    assert [d.returncode for d in done] == [0] * 6, [d.stderr[-300:] for d in done]
    firsts = Counter(path for method, path, rng in server.request_log
                     if method == "GET" and rng is not None and rng.startswith("bytes=0-")
                     and not rng.endswith("-"))
    assert max(firsts.values()) == 1  # no header read twice (speculative reads may differ)
    assert len(firsts) < len(archive.full_names()) + len(archive.valid_names())
    assert list(Layout(root).locks.iterdir()) == []


# -- hosts in their own network namespaces ------------------------------------------------------
def _can_make_netns() -> str | None:
    if UTS_SKIP:
        return UTS_SKIP
    if shutil.which("ip") is None:
        return "no ip(8) (iproute2) on this machine"
    probe = f"ccfprobe{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"ip netns add not permitted here: {done.stderr.strip()[:100]}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


NETNS_SKIP = _can_make_netns()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def network_hosts(count: int) -> Iterator[list[str]]:
    """`count` network namespaces, each joined to this one by a veth pair (10.77.i.1 here,
    10.77.i.2 there, default route back here): test hosts with their own network stack, all
    made and removed by the test. The server is reached at 10.77.0.1 from everywhere."""
    tag = os.getpid() % 100000
    made: list[str] = []
    try:
        for i in range(count):
            ns, here, there = f"ccf{tag}h{i}", f"ccf{tag}v{i}", f"ccf{tag}p{i}"
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("link", "add", here, "type", "veth", "peer", "name", there)
            _ip("link", "set", there, "netns", ns)
            _ip("addr", "add", f"10.77.{i}.1/24", "dev", here)
            _ip("link", "set", here, "up")
            _ip("-n", ns, "addr", "add", f"10.77.{i}.2/24", "dev", there)
            _ip("-n", ns, "link", "set", there, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", f"10.77.{i}.1")
        yield made
    finally:
        for ns in made:  # deleting a namespace deletes its veth end, and so the pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def in_netns(job: list[str], ns: str | None) -> list[str]:
    return job if ns is None else ["ip", "netns", "exec", ns, *job]


@pytest.mark.skipif(NETNS_SKIP is not None, reason=NETNS_SKIP or "")
def test_hosts_in_their_own_network_namespaces(tmp_path, archive: Manifest):
    """17 processes on a cold cache, two thirds of them on two test hosts that have their own
    network namespace (veth to this one) and host name, the rest here under other host names:
    every process exits 0, each content is downloaded once, the cache verifies clean, and the
    server saw requests from each host's own address."""
    with network_hosts(2) as hosts, ArchiveServer(esa_mounts(archive.root),
                                                  host="10.77.0.1") as server:
        urls = [server.url("/pub/ccf/constituents/"),
                server.url("/pub/ccf/valid_constituents/")]
        root = cold_cache(tmp_path / "cache", urls)
        go = tmp_path / "go"
        jobs = many_jobs(tmp_path, archive.full_names()[::4], HOSTS)
        jobs.insert(8, command(["prune"], "ccf-node-d"))
        placed = [in_netns(job, [hosts[0], hosts[1], None][i % 3])
                  for i, job in enumerate(jobs)]
        done = run_all(placed, base_env(root, go), go)
        check_outcome(done, root, server, archive, tmp_path)
        seen = server.clients
    assert {"10.77.0.2", "10.77.1.2"} <= set(seen), seen  # the two namespaced hosts
    assert "10.77.0.1" in seen, seen  # and this one


# -- host death ---------------------------------------------------------------------------------
def _lock_name(cache: Cache, name: str) -> Path:
    from ccfcache.fetcher import content_key

    write_config_file(cache.root, {"sources": cache.settings.sources})  # for the subprocess
    version = cache.current_version(name)
    return cache.layout.locks / f"{content_key(version)}.lock"


def _foreign_lock(path: Path, host: str, heartbeat: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": 1, "started": heartbeat, "token": "x"}))
    os.utime(path, (heartbeat, heartbeat))


def test_dead_host_lock_is_broken_after_ttl(tmp_path, synced, server, archive: Manifest):
    """A host died holding a lock (heartbeat long stale): the next fetch breaks it and
    downloads once."""
    name = archive.full_names()[3]
    lock = _lock_name(synced, name)
    _foreign_lock(lock, "ccf-dead-host", time.time() - 3600)
    go = tmp_path / "go"
    done = run_all([command(["fetch", name])], base_env(synced.root, go), go)
    assert done[0].returncode == 0, done[0].stderr
    assert full_gets(server)[name] == 1
    assert not lock.exists()


def test_live_foreign_lock_blocks_until_its_heartbeat_stops(tmp_path, synced, server,
                                                             archive: Manifest):
    """Another host holds the lock and keeps its heartbeat: the fetcher waits (no download);
    once the heartbeat stops, it breaks the lock after the TTL and downloads once."""
    name = archive.full_names()[5]
    lock = _lock_name(synced, name)
    _foreign_lock(lock, "ccf-other-host", time.time())
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.1):
            os.utime(lock)

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    go = tmp_path / "go"
    go.touch()
    proc = subprocess.Popen(command(["fetch", name]),
                            env=base_env(synced.root, go, CCFCACHE_LOCK_TTL="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the fetcher has started waiting once it has looked at the lock; give it several
        # TTLs of a fresh heartbeat: it must neither download nor break the lock
        for _ in range(20):
            time.sleep(0.1)
            assert proc.poll() is None, proc.communicate()
            assert full_gets(server)[name] == 0
        assert json.loads(lock.read_text())["host"] == "ccf-other-host"
    finally:
        stop.set()
        beater.join()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert full_gets(server)[name] == 1
    assert not lock.exists()


# -- shared permissions -------------------------------------------------------------------------
def _cli(args: list[str], env: dict[str, str] | None = None, **kwargs):
    return subprocess.run([sys.executable, "-c", "from ccfcache.entry import main; main()",
                           *args], capture_output=True, text=True, timeout=120,
                          env=env, **kwargs)


def _group() -> str:
    import grp

    for name in ("users", "nogroup"):
        try:
            grp.getgrnam(name)
            return name
        except KeyError:
            continue
    pytest.skip("no group 'users' or 'nogroup' to chgrp to")


def test_init_shared_sets_group_setgid_and_modes(tmp_path, server, source_urls):
    import grp

    group = _group()
    gid = grp.getgrnam(group).gr_gid
    root = tmp_path / "site"
    done = _cli(["init", "--shared", "--group", group, "--cache-dir", str(root), "--json"])
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["shared"] is True and summary["group"] == group
    config = json.loads((root / "config.json").read_text())
    assert config["shared"] is True and config["group"] == group
    layout = Layout(root)
    for folder in layout.folders():
        st = folder.stat()
        assert stat.S_IMODE(st.st_mode) == 0o2775, folder
        assert st.st_gid == gid, folder
    assert stat.S_IMODE(layout.db.stat().st_mode) == 0o664
    # a later writer honours it: files it creates are group-writable, blobs read-only
    old = os.umask(0o077)
    try:
        with Cache(root, sources=source_urls, workers=2) as cache:
            cache.sync()
            path = cache.path(cache.ls()[0]["name"])
            cache.cif(*DATES[0], tmp_path / "a.cif")
            view = next(layout.views.iterdir())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert path.stat().st_gid == gid  # setgid folders hand their group down
    for folder in (path.parent, view):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o2775, folder
        assert folder.stat().st_gid == gid
    assert stat.S_IMODE(layout.db.stat().st_mode) == 0o664
    assert stat.S_IMODE((root / "config.json").stat().st_mode) == 0o664
    layout.db.unlink()  # an index made anew (as `doctor` does) is group-writable again
    old = os.umask(0o022)
    try:
        with Cache(root) as cache:
            cache.index  # noqa: B018
    finally:
        os.umask(old)
    assert stat.S_IMODE(layout.db.stat().st_mode) == 0o664


def test_init_group_needs_shared(tmp_path):
    done = _cli(["init", "--group", "users", "--cache-dir", str(tmp_path / "c")])
    assert done.returncode == 1
    assert done.stderr.strip() == "ccfcache: error: --group only makes sense with --shared"


# -- format file --------------------------------------------------------------------------------
def test_incompatible_format_is_refused_before_sqlite(synced, tmp_path):
    layout = synced.layout
    record = json.loads(layout.format_file.read_text())
    assert record["format_version"] == 1 and record["lock_protocol"] == 1
    name = synced.ls()[0]["name"]
    synced.path(name)
    layout.format_file.chmod(0o644)
    layout.format_file.write_text(json.dumps({"format_version": 2, "lock_protocol": 3,
                                              "written_by": "ccfcache 9.0"}))
    layout.db.write_bytes(b"not sqlite at all")  # the refusal must not need the index
    with pytest.raises(CacheError, match="storage format 2 and lock protocol 3") as caught:
        with Cache(synced.root) as other:
            other.index  # noqa: B018
    assert "\n" not in str(caught.value) and "ccfcache 9.0" in str(caught.value)
    done = _cli(["path", name], env={**os.environ, "CCFCACHE_DIR": str(synced.root)})
    assert done.returncode == 1
    assert "storage format 2" in done.stderr and len(done.stderr.strip().splitlines()) == 1


# -- read-only cache and overlay ----------------------------------------------------------------
def _can_mount_ro() -> str | None:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "no unshare(1)/mount(8) here"
    probe = Path(tempfile.mkdtemp(prefix="ccfro-"))
    try:
        done = subprocess.run(["unshare", "--mount", "sh", "-c", _RO_SCRIPT + " && exec touch "
                               f"{probe}/x", str(probe)], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare --mount failed: {exc}"
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    if "Read-only file system" not in done.stderr:
        return f"cannot make a read-only bind mount here: {done.stderr.strip()[:100]}"
    return None


# a private mount namespace where $0 is a read-only bind mount of itself (like an NFS export
# mounted ro, and unlike chmod, which root would ignore)
_RO_SCRIPT = 'mount --make-rprivate / && mount --bind "$0" "$0" && mount -o remount,bind,ro "$0"'
RO_SKIP = _can_mount_ro()


def _readonly(folder: Path, args: list[str]) -> list[str]:
    """The ccfcache command `args` run where `folder` is a read-only file system."""
    return ["unshare", "--mount", "sh", "-c", _RO_SCRIPT + ' && shift && exec "$@"',
            str(folder), "-", sys.executable, "-c", "from ccfcache.entry import main; main()",
            *args]


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.skipif(RO_SKIP is not None, reason=RO_SKIP or "")
def test_readonly_cache_and_personal_overlay(tmp_path, server, source_urls, archive: Manifest):
    """A site cache on a read-only file system: `path` of a stored name works (with a note
    from the full CLI), a fetch fails with one line naming the folder; as a site under a
    personal overlay, stored names come from the site, misses are fetched into the personal
    cache, and a CIF takes contents from both."""
    site = tmp_path / "site"
    names = archive.full_names()
    with Cache(site, sources=source_urls, workers=2) as cache:
        cache.sync()
        cache.cif(*DATES[1], tmp_path / "site.cif")
        in_site = {r["name"] for r in cache.ls() if r["local"]}
        stored = sorted(in_site)[0]
        site_path = cache.path(stored)
        write_config_file(site, {"sources": cache.settings.sources})
    assert in_site
    missing = next(n for n in names if n not in in_site)
    server.reset_counts()
    env = base_env(None, tmp_path / "go")

    # the site cache alone, read-only: the warm path and the full CLI (with a note) work
    done = _run(_readonly(site, ["path", stored, "--cache-dir", str(site)]), env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(site_path)
    done = _run(_readonly(site, ["ls", "--cache-dir", str(site), "--json"]), env)
    assert done.returncode == 0, done.stderr
    assert "is not writable for you; using it read-only" in done.stderr
    assert {r["name"] for r in json.loads(done.stdout) if r["local"]} == in_site
    done = _run(_readonly(site, ["fetch", missing, "--cache-dir", str(site)]), env)
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(f"ccfcache: error: cannot fetch {missing}: the cache folder")
    assert str(site) in message and "CCFCACHE_SITE_DIR" in message
    assert full_gets(server) == Counter()

    # the site under a personal overlay (the site still read-only)
    personal = tmp_path / "personal"
    env.update(CCFCACHE_SITE_DIR=str(site), CCFCACHE_DIR=str(personal))
    done = _run(_readonly(site, ["path", stored]), env)  # warm path: no personal index yet
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(site_path)
    assert not personal.exists()
    done = _run(_readonly(site, ["path", missing]), env)
    assert done.returncode == 0, done.stderr
    fetched = Path(done.stdout.strip())
    assert personal in fetched.parents
    assert full_gets(server) == Counter({missing: 1})  # sources came from the site's config
    out = tmp_path / "both.cif"
    done = _run(_readonly(site, ["cif", "--obs-date", DATES[0][0], "--analysis-date",
                                 DATES[0][1], "-o", str(out), "--json"]), env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    view = Path(result["view_dir"])
    assert personal in view.parents
    targets = {row["name"]: (view / row["name"]).resolve() for row in result["rows"]}
    from_site = {n for n, t in targets.items() if site in t.parents}
    assert from_site and from_site < set(targets)  # both caches served this CIF
    for name, target in targets.items():
        assert xxhash.xxh3_128_hexdigest(target.read_bytes()) == target.name
        assert (name in from_site) == (name in in_site)
    # nothing the site holds was downloaded again; the site was not written
    assert not set(full_gets(server)) & in_site
    assert not (site / "locks").exists() or list((site / "locks").iterdir()) == []


def test_index_without_byte_range_locks(tmp_path, server, source_urls, archive: Manifest):
    """NFS shim: every process uses SQLite's unix-dotfile VFS (what a `nolock` mount needs: no
    fcntl locks, only an O_EXCL lock entry): concurrent CIF builds and syncs on a cold cache
    still succeed with one download per content."""
    root = cold_cache(tmp_path / "cache", source_urls)
    go = tmp_path / "go"
    jobs = [command(["cif", "--obs-date", DATES[i % 2][0], "--analysis-date", DATES[i % 2][1],
                     "-o", str(tmp_path / f"out{i}.cif")]) for i in range(4)]
    jobs += [command(["sync"])] * 2
    done = run_all(jobs, base_env(root, go, CCFCACHE_SQLITE_VFS="unix-dotfile"), go)
    assert [(d.returncode, d.stderr[-300:]) for d in done if d.returncode] == []
    gets = full_gets(server)
    assert gets and set(gets.values()) == {1}
    assert dict(gets) == dict(stored_contents(root))
    assert not (root / "index.sqlite.lock").exists()
    for i in range(4):
        assert read_cif(tmp_path / f"out{i}.cif").rows
