"""`ccfcache mount`: a real FUSE mount (libfuse3 through mfusepy) of a cache synced from the
local test server, read by real programs (ls, md5sum, astropy, CFITSIO through fitsio,
Debian's fitsverify). Skipped, with the reason, where FUSE cannot be used."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from ccfcache.mount import (
    Entry,
    check_mount_point,
    fuse_problem,
    mounted_at,
    pick_entries,
    plan_read,
    served_time_ns,
)

CCFCACHE = [sys.executable, "-c", "from ccfcache.entry import main; main()"]
OBS, ANAL = "2021-03-10T00:21:11", "2021-03-25T09:56:39"
HANG_S = 120  # a read still blocked after this long is a hang (not a speed assertion)

needs_fuse = pytest.mark.skipif(fuse_problem() is not None,
                                reason=f"no FUSE mount possible here: {fuse_problem()}")


def ccfcache(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CCFCACHE, *args], capture_output=True, text=True, timeout=300,
                          env=env, check=False)


def served_file(archive, name: str) -> Path:
    """The server's own file for `name` (the full archive, else the valid one)."""
    for folder in ("full", "valid"):
        path = Path(archive.root) / folder / name
        if path.is_file():
            return path
    raise AssertionError(f"{name} is not in the archive")


class Mounted:
    """A `ccfcache mount` process and its mount point."""

    def __init__(self, cache_dir: Path, point: Path, *args: str,
                 env: dict | None = None) -> None:
        self.cache_dir, self.point = cache_dir, point
        self.log = cache_dir.parent / f"mount-{point.name}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*CCFCACHE, "mount", str(point), "--cache-dir", str(cache_dir), *args],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 60
        while mounted_at(point) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the mount did not come up: {self.text()}")
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def names(self) -> list[str]:
        return sorted(os.listdir(self.point))

    def stop(self) -> None:
        if mounted_at(self.point) is not None:
            subprocess.run(["fusermount3", "-u", "-z", str(self.point)], check=False,
                           capture_output=True)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def mount(synced, tmp_path: Path) -> Iterator:
    """Start mounts of the synced cache (retries=1: an outage is reported in seconds)."""
    started: list[Mounted] = []

    def start(*args: str, point: Path | None = None, env: dict | None = None) -> Mounted:
        env = {"CCFCACHE_RETRIES": "1", **(env or {})}
        mounted = Mounted(synced.root, point or tmp_path / f"ccf{len(started)}", *args,
                          env=env)
        started.append(mounted)
        return mounted

    yield start
    for mounted in started:
        mounted.stop()


def blob_count(root: Path) -> int:
    return sum(1 for _ in (root / "blobs").glob("*/*"))


def read_all(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


# -- pure decisions (no FUSE needed) ------------------------------------------------------------
def test_plan_read_serves_header_reads_without_the_content():
    assert plan_read(0, 2880, 20160, 5760, stored=False) == "header"
    assert plan_read(2880, 2880, 20160, 5760, stored=False) == "header"
    assert plan_read(2880, 2881, 20160, 5760, stored=False) == "fetch"  # crosses the END block
    assert plan_read(5760, 64, 20160, 5760, stored=False) == "fetch"
    assert plan_read(0, 100000, 4000, 5760, stored=False) == "header"  # the file is all header
    assert plan_read(0, 2880, 20160, 0, stored=False) == "fetch"  # unreadable header: none kept
    assert plan_read(5760, 64, 20160, 5760, stored=True) == "blob"
    assert plan_read(20160, 64, 20160, 5760, stored=False) == "eof"


def test_pick_entries_keeps_the_first_row_of_each_name():
    rows = [
        {"id": 2, "name": "A_B_0001.CCF", "size": 10, "served_at": "2020-01-02T00:00:00"},
        {"id": 1, "name": "A_B_0001.CCF", "size": 9, "served_at": "2019-01-01T00:00:00"},
        {"id": 3, "name": "A_C_0001.CCF", "size": 5, "served_at": None,
         "subdate": "2001-01-01T00:00:00"},
    ]
    entries = pick_entries(rows)
    assert [e.version["id"] for e in entries.values()] == [2, 3]
    assert entries["A_B_0001.CCF"].mtime_ns == served_time_ns("2020-01-02T00:00:00")
    assert entries["A_C_0001.CCF"].mtime_ns == 978307200 * 10**9
    assert Entry("x", 1, 0, {"header_size": 5760, "header_error": "bad"}).header_size == 0


def test_mountinfo_parsing_finds_the_visible_mount():
    info = ("36 25 0:32 / /tmp/a\\040b rw,relatime - fuse.ccfcache ccfcache rw\n"
            "37 25 0:33 / /tmp/c rw,relatime shared:1 - ext4 /dev/x rw\n")
    assert mounted_at(Path("/tmp/a b"), info) == "fuse.ccfcache"
    assert mounted_at(Path("/tmp/c"), info) == "ext4"
    assert mounted_at(Path("/tmp/d"), info) is None


def test_mount_point_must_be_an_empty_folder(tmp_path: Path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(Exception, match="is not empty"):
        check_mount_point(tmp_path / "full")
    (tmp_path / "file").write_text("x")
    with pytest.raises(Exception, match="not a folder"):
        check_mount_point(tmp_path / "file")
    assert check_mount_point(tmp_path / "new" / "ccf").is_dir()  # created


def test_sync_keeps_every_readable_primary_header(synced, archive):
    rows = synced.index.current_versions()
    assert rows
    for row in rows:
        if row["header_error"]:
            continue
        kept = synced.store.header(row["header_digest"])
        assert kept is not None, row["name"]
        assert len(kept) == row["header_size"]
        assert kept == read_all(served_file(archive, row["name"]))[: row["header_size"]]
        assert xxhash.xxh3_128_hexdigest(kept) == row["header_digest"]


def test_a_damaged_kept_header_counts_as_absent(synced):
    row = next(r for r in synced.index.current_versions() if not r["header_error"])
    path = synced.layout.header_path(row["header_digest"])
    os.chmod(path, 0o644)
    path.write_bytes(b"SIMPLE  =" + b" " * 100)
    assert synced.store.header(row["header_digest"]) is None


def test_core_package_does_not_import_the_fuse_binding():
    code = ("import sys, ccfcache, ccfcache.cli, ccfcache.cache, ccfcache.mount; "
            "print('mfusepy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# -- through a real mount ------------------------------------------------------------------------
@needs_fuse
def test_ls_shows_every_listed_constituent_with_sizes_and_server_dates(mount, synced, archive):
    mounted = mount()
    listed = sorted({r["name"] for r in synced.index.current_versions()})
    assert mounted.names() == listed
    out = subprocess.run(["ls", "-l", "--time-style=+%s", str(mounted.point)],
                         capture_output=True, text=True, check=True).stdout
    shown = {line.split()[-1]: line.split() for line in out.splitlines()[1:]}
    for name in listed:
        served = served_file(archive, name).stat()
        fields = shown[name]
        assert fields[0] == "-r--r--r--"
        assert int(fields[4]) == served.st_size, name
        assert int(fields[5]) == int(served.st_mtime), name  # the server's Last-Modified
    assert blob_count(synced.root) == 0


@needs_fuse
def test_a_header_scan_of_every_file_downloads_nothing(mount, synced, server, archive):
    import fitsio
    from astropy.io import fits

    mounted = mount()
    for name in mounted.names():
        header = fits.getheader(mounted.point / name)  # astropy
        original = fits.getheader(served_file(archive, name))
        assert header["SUBDATE"] == original["SUBDATE"]
        cfitsio = fitsio.read_header(str(mounted.point / name), ext=0)  # CFITSIO (no server)
        assert cfitsio["TYPEID"] == original["TYPEID"]
    assert server.total_requests() == 0  # every header read came from what sync kept
    assert blob_count(synced.root) == 0


@needs_fuse
def test_headers_sync_did_not_keep_are_read_with_range_requests_only(mount, synced, server):
    from astropy.io import fits

    shutil.rmtree(synced.layout.headers)  # a cache synced before headers were kept
    mounted = mount()
    for name in mounted.names():
        fits.getheader(mounted.point / name)
    sizes = {r["name"]: r["header_size"] for r in synced.index.current_versions()}
    log = server.request_log
    assert log and all(rng is not None for _, _, rng in log)  # no whole-file GET
    for _, path, rng in log:  # each Range starts inside the primary header
        assert int(rng.removeprefix("bytes=").split("-")[0]) < sizes[path.rpartition("/")[2]]
    assert blob_count(synced.root) == 0
    server.reset_counts()
    for name in mounted.names()[:5]:  # kept now: no second request
        fits.getheader(mounted.point / name)
    assert server.total_requests() == 0


@needs_fuse
def test_reading_a_cifs_files_downloads_exactly_those_once(mount, synced, server, archive,
                                                          tmp_path):
    from ccfcache import Cache

    with Cache(tmp_path / "other", sources=synced.settings.sources) as other:
        chosen = sorted(row["name"] for row in other.cif(OBS, ANAL).rows)
    server.reset_counts()
    mounted = mount()
    expected = {name: hashlib.md5(read_all(served_file(archive, name))).hexdigest()
                for name in chosen}
    errors: list[str] = []

    def reader(seed: int) -> None:
        order = list(chosen)
        random.Random(seed).shuffle(order)
        for name in order:
            digest = hashlib.md5(read_all(mounted.point / name)).hexdigest()
            if digest != expected[name]:
                errors.append(f"{name}: {digest}")

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_S)
    assert not any(t.is_alive() for t in threads), "readers hang"
    assert errors == []
    for name in mounted.names():
        assert server.counts(name).gets == (1 if name in chosen else 0), name
        if name in chosen:
            assert server.bytes_sent(name) == served_file(archive, name).stat().st_size
    assert blob_count(synced.root) == len(set(expected.values()))


@needs_fuse
def test_md5sum_through_the_mount_equals_the_servers(mount, archive):
    mounted = mount()
    names = mounted.names()
    biggest = max(names, key=lambda n: served_file(archive, n).stat().st_size)
    for name in {biggest, names[0]}:
        out = subprocess.run(["md5sum", str(mounted.point / name)], capture_output=True,
                             text=True, check=True).stdout.split()[0]
        assert out == hashlib.md5(read_all(served_file(archive, name))).hexdigest()
    # read again: now from the stored blob (page cache), same bytes
    assert read_all(mounted.point / biggest) == read_all(served_file(archive, biggest))


@needs_fuse
@pytest.mark.skipif(shutil.which("fitsverify") is None,
                    reason="Debian's fitsverify is not installed (apt-get install fitsverify)")
def test_fitsverify_passes_on_a_mounted_file(mount, archive):
    mounted = mount()
    name = "XRT3_XAREAEF_0012.CCF"
    through = subprocess.run(["fitsverify", str(mounted.point / name)], capture_output=True,
                             text=True, check=False).stdout
    direct = subprocess.run(["fitsverify", str(served_file(archive, name))],
                            capture_output=True, text=True, check=False).stdout
    assert "0 error(s)" in through
    summary = [line for line in through.splitlines() if "Verification found" in line]
    assert summary and summary == [line for line in direct.splitlines()
                                   if "Verification found" in line]


_FITSIO_DIGEST = """
import hashlib, sys, fitsio
with fitsio.FITS(sys.argv[1]) as fits:
    print(len(fits))
    for hdu in fits[1:]:
        print(hdu.get_extname(), hashlib.md5(hdu.read().tobytes()).hexdigest())
"""


@needs_fuse
def test_cfitsio_reads_a_mounted_file(mount, archive):
    pytest.importorskip("fitsio", reason="fitsio (CFITSIO) is in the test extra")
    mounted = mount()
    name = "XRT3_XAREAEF_0012.CCF"

    def digest(path: Path) -> list[str]:
        # in its own process: fitsio holds the GIL while CFITSIO reads, which would stall
        # this process's test server while the mount downloads from it
        return subprocess.run([sys.executable, "-c", _FITSIO_DIGEST, str(path)],
                              capture_output=True, text=True, check=True,
                              timeout=HANG_S).stdout.splitlines()

    through = digest(mounted.point / name)
    assert int(through[0]) > 1, mounted.text()
    assert through == digest(served_file(archive, name))


@needs_fuse
def test_a_server_outage_is_eio_with_one_log_line_and_the_mount_recovers(mount, synced,
                                                                        server, archive):
    from astropy.io import fits

    mounted = mount()
    name = "XRT3_XAREAEF_0012.CCF"
    server.stop()
    try:
        with pytest.raises(OSError) as failed:
            read_all(mounted.point / name)
        assert failed.value.errno == 5  # EIO
        lines = [line for line in mounted.text().splitlines() if name in line]
        assert len(lines) == 1 and "download of" in lines[0], lines
        assert "Traceback" not in mounted.text()
        fits.getheader(mounted.point / name)  # headers and the listing still work
        assert name in mounted.names()
    finally:
        server.start()
    assert read_all(mounted.point / name) == read_all(served_file(archive, name))


@needs_fuse
def test_a_stalled_download_fails_after_the_deadline(mount, server, archive):
    name = "XRT3_XAREAEF_0012.CCF"
    server.set_fault("slow", name=name, on="file", delay=30)
    mounted = mount("--deadline", "2")
    outcome: list[BaseException | bytes] = []
    reader = threading.Thread(target=lambda: outcome.append(_try_read(mounted.point / name)))
    reader.start()
    reader.join(HANG_S)
    assert not reader.is_alive(), "the read hangs"
    assert isinstance(outcome[0], OSError) and outcome[0].errno == 5
    assert "fetch deadline" in mounted.text()
    server.clear_faults()


def _try_read(path: Path) -> BaseException | bytes:
    try:
        return read_all(path)
    except OSError as exc:
        return exc


@needs_fuse
def test_analysis_date_shows_the_archive_as_of_that_date(mount, synced):
    when = "2005-01-01T00:00:00"
    mounted = mount("--analysis-date", when)
    rows = synced.index.current_versions()
    expected = sorted({r["name"] for r in rows if r["subdate"] and r["subdate"] <= when})
    assert 0 < len(expected) < len({r["name"] for r in rows})
    assert mounted.names() == expected


@needs_fuse
def test_kill_9_leaves_a_sound_cache_and_a_recoverable_mount_point(mount, synced, server,
                                                                  archive):
    name = "XRT3_XAREAEF_0012.CCF"
    server.set_fault("slow", name=name, on="file", delay=0.5)
    mounted = mount()
    reader = threading.Thread(target=_try_read, args=(mounted.point / name,), daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while server.bytes_sent(name) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.bytes_sent(name) > 0  # the download is under way
    mounted.proc.send_signal(signal.SIGKILL)
    mounted.proc.wait()
    reader.join(HANG_S)
    assert not reader.is_alive()
    refused = ccfcache("mount", str(mounted.point), "--cache-dir", str(synced.root))
    assert refused.returncode == 1 and "umount --lazy" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    done = ccfcache("umount", "--lazy", str(mounted.point))
    assert done.returncode == 0, done.stderr
    assert mounted_at(mounted.point) is None
    verify = ccfcache("verify", "--cache-dir", str(synced.root))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    server.clear_faults()
    again = mount(point=mounted.point)  # the same folder mounts again; the fetch resumes
    assert read_all(again.point / name) == read_all(served_file(archive, name))


@needs_fuse
def test_mount_refuses_a_mounted_or_non_empty_folder_and_umount_stops_it(mount, synced,
                                                                        tmp_path):
    mounted = mount()
    again = ccfcache("mount", str(mounted.point), "--cache-dir", str(synced.root))
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"ccfcache: error: {mounted.point} is already mounted (fuse.ccfcache): run "
        f"`ccfcache umount {mounted.point}` first (`ccfcache umount --lazy {mounted.point}` "
        "if its process was killed), or choose another folder"]
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    refused = ccfcache("mount", str(full), "--cache-dir", str(synced.root))
    assert refused.returncode == 1 and "is not empty" in refused.stderr
    assert (full / "notes.txt").read_text() == "mine"
    done = ccfcache("umount", str(mounted.point))
    assert done.returncode == 0, done.stderr
    assert mounted.proc.wait(timeout=60) == 0
    assert mounted_at(mounted.point) is None
    missing = ccfcache("umount", str(mounted.point))
    assert missing.returncode == 1 and "is not mounted" in missing.stderr


@needs_fuse
def test_sigterm_unmounts_and_background_detaches(mount, synced, tmp_path):
    mounted = mount()
    mounted.proc.send_signal(signal.SIGTERM)
    assert mounted.proc.wait(timeout=60) == 0
    assert mounted_at(mounted.point) is None
    point = tmp_path / "bg"
    started = ccfcache("mount", str(point), "--background", "--cache-dir", str(synced.root))
    try:
        assert started.returncode == 0, started.stderr
        assert mounted_at(point) == "fuse.ccfcache"
        assert sorted(os.listdir(point)) == sorted(
            {r["name"] for r in synced.index.current_versions()})
    finally:
        stopped = ccfcache("umount", str(point))
    assert stopped.returncode == 0, stopped.stderr


@needs_fuse
def test_a_personal_mount_over_a_site_cache_uses_the_sites_blobs_and_headers(
        server, source_urls, archive, tmp_path):
    from astropy.io import fits

    from ccfcache import Cache
    from ccfcache.config import write_config_file

    name = "XRT3_XAREAEF_0012.CCF"
    site, personal = tmp_path / "site", tmp_path / "me"
    with Cache(site, sources=source_urls, workers=2) as cache:
        cache.sync()
        cache.fetch([name])
    with Cache(personal, sources=source_urls, workers=2) as cache:
        cache.sync()
    write_config_file(personal, {"sources": source_urls, "site_dir": str(site)})
    shutil.rmtree(personal / "headers")  # header reads must come from the site's
    server.reset_counts()
    mounted = Mounted(personal, tmp_path / "ccf")
    try:
        for each in mounted.names():
            fits.getheader(mounted.point / each)
        assert read_all(mounted.point / name) == read_all(served_file(archive, name))
        assert server.total_requests() == 0
        assert blob_count(personal) == 0
    finally:
        mounted.stop()


@needs_fuse
def test_a_lower_case_server_works_through_the_mount(tmp_path, archive):
    """A server whose files are named in lower case (the listing's href as written): header
    reads the sync did not keep are Range requests for the href, and a whole read fetches the
    href; nothing asks for the upper-case name. Fails without the fix: the mount read headers
    by the upper-case name (404), then downloaded whole files to serve header reads."""
    from astropy.io import fits

    from ccfcache import Cache
    from ccfcache.demo.server import ArchiveServer

    folder = tmp_path / "lower"
    folder.mkdir()
    names = sorted(archive.full_names())[:5]
    for name in names:
        shutil.copyfile(archive.root / "full" / name, folder / name.lower())
    with ArchiveServer({"/ccf/": folder}) as running:
        with Cache(tmp_path / "cache", sources=[running.url("/ccf/")], workers=2) as cache:
            assert cache.sync().read == len(names)
            shutil.rmtree(cache.layout.headers)  # the mount must read them from the server
            root = cache.root
        running.reset_counts()
        mounted = Mounted(root, tmp_path / "ccf", env={**os.environ, "CCFCACHE_RETRIES": "1"})
        try:
            assert mounted.names() == names
            for name in names:
                original = fits.getheader(folder / name.lower())
                assert fits.getheader(mounted.point / name)["SUBDATE"] == original["SUBDATE"]
            log = running.request_log
            assert log and all(rng is not None for _, _, rng in log), log  # headers only
            assert blob_count(root) == 0
            data = read_all(mounted.point / names[0])
            assert data == (folder / names[0].lower()).read_bytes()
            asked = {path for _, path, _ in running.request_log}
            assert asked <= {f"/ccf/{name.lower()}" for name in names}, asked
        finally:
            mounted.stop()
