"""Never delete what cannot be replaced, never leave the index and the store disagreeing, and
never show a traceback: the real CLI (subprocesses) against the real test server.

Scenarios (issue 12): prune on a cache it may not write, `verify --repair` of a damaged or
unreadable blob, `doctor` on an interrupted index, prune racing a fetch, lock waits, a header
value wider than its CIF column, HTML error pages read as headers, the site overlay, and
OSErrors that used to reach users as tracebacks.

Permission scenarios need a user that file modes apply to: as root they run the CLI as
`nobody` through `setpriv` (root ignores file modes), and skip with the reason when that is
impossible (no setpriv, or the ccfcache install is not readable by `nobody`).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from ccfcache import Cache
from ccfcache.demo.server import ArchiveServer, esa_mounts

CCFCACHE = str(Path(sys.executable).with_name("ccfcache"))
OBS, ANAL = "2015-06-01", "2030-01-01"


# -- helpers -------------------------------------------------------------------------------------
def _urls(server: ArchiveServer) -> list[str]:
    return [server.url("/pub/ccf/constituents/"), server.url("/pub/ccf/valid_constituents/")]


def run(root: Path, *args: str, prefix: list[str] | None = None, env: dict | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), CCFCACHE, *args, "--cache-dir", str(root)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The run failed with exactly one `ccfcache: error:` line and no traceback."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("ccfcache: error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def problem_line(stdout: str, kind: str, xxh3: str) -> str:
    """The verify line reporting a problem of this kind with this content."""
    found = [x for x in stdout.splitlines() if x.startswith(f"{kind}:") and xxh3 in x]
    assert found, stdout
    return found[0]


def blob_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "blobs").rglob("*") if p.is_file()}


def any_blob_file(root: Path) -> bool:
    """Whether a blob file is left, while another process may be deleting them (os.walk
    skips a folder removed under it; `blob_files` would read a file just unlinked)."""
    return any(files for _, _, files in os.walk(root / "blobs"))


def index_rows(root: Path, table: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{root / 'index.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
    finally:
        conn.close()


def assert_store_matches_index(root: Path) -> int:
    """Every blob file re-hashes to its name and is recorded in `blobs`; returns the count."""
    recorded = {row[0] for row in index_rows(root, "blobs")}
    files = blob_files(root)
    for name, data in files.items():
        assert xxhash.xxh3_128_hexdigest(data) == name, f"corrupt blob {name}"
    assert set(files) <= recorded, f"blob files the index does not know: {set(files) - recorded}"
    return len(files)


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(archive) -> Iterator[ArchiveServer]:
    with ArchiveServer(esa_mounts(archive.root)) as running:
        yield running


@pytest.fixture(scope="module")
def stocked_template(server, tmp_path_factory) -> Path:
    """A synced cache holding one CIF's contents (and its view)."""
    root = tmp_path_factory.mktemp("safety") / "cache"
    with Cache(root, sources=_urls(server), workers=4) as cache:
        cache.sync()
        cache.cif(OBS, ANAL, root.parent / "ccf.cif")
    return root


def _copy(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


@pytest.fixture
def stocked(stocked_template, server, tmp_path) -> Path:
    server.clear_faults()
    server.reset_counts()
    yield _copy(stocked_template, tmp_path / "cache")
    server.clear_faults()


def _nobody_skip() -> str | None:
    if os.geteuid() != 0:
        return None  # already unprivileged: file modes apply to us
    if shutil.which("setpriv") is None:
        return "running as root without setpriv: cannot drop privileges to test file modes"
    probe = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", CCFCACHE, "--help"],
        capture_output=True, text=True, env={**os.environ, "HOME": "/tmp"}, cwd="/",
    )
    if probe.returncode != 0:
        return f"`nobody` cannot run this ccfcache install: {probe.stderr.strip()[-160:]}"
    return None


NOBODY_SKIP = _nobody_skip()


@pytest.fixture
def unprivileged() -> Iterator[tuple[list[str], Path, dict]]:
    """(command prefix, a folder that user can reach, env) for running the CLI as a user that
    file modes apply to: `nobody` when we are root, else ourselves."""
    if NOBODY_SKIP:
        pytest.skip(NOBODY_SKIP)
    base = Path(tempfile.mkdtemp(prefix="ccfcache-safety-"))
    os.chmod(base, 0o755)
    home = base / "home"
    home.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam("nobody")
        os.chown(home, user.pw_uid, user.pw_gid)
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    else:
        prefix = []
    try:
        yield prefix, base, {"HOME": str(home), "CCFCACHE_DIR": ""}
    finally:
        for path in base.rglob("*"):  # modes set by a test must not stop the cleanup
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def _give_to_nobody(root: Path) -> None:
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam("nobody")
    for path in [root, *root.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


# -- 1. prune on a cache it may not write ------------------------------------------------------
@pytest.mark.parametrize("case", ["readonly-root", "readonly-index", "another-users-site"])
def test_prune_on_a_cache_it_may_not_write_deletes_nothing(stocked_template, unprivileged,
                                                          case) -> None:
    """Before the fix: every blob and view was unlinked, then "read-only for you"."""
    prefix, base, env = unprivileged
    root = _copy(stocked_template, base / "cache")
    if case == "another-users-site":  # root's cache, folders left world-writable by mistake
        for path in [root, *root.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o777)
    else:
        _give_to_nobody(root)
        if case == "readonly-root":
            root.chmod(0o555)
        else:
            (root / "index.sqlite").chmod(0o444)
    blobs, views = blob_files(root), sorted((root / "views").rglob("*"))
    before = index_rows(root, "blobs")
    assert blobs and views
    done = run(root, "prune", "--older-than", "0s", "--grace", "0s", prefix=prefix, env=env)
    line = one_error_line(done)
    assert "nothing was removed" in line and str(root) in line, line
    assert blob_files(root) == blobs
    assert sorted((root / "views").rglob("*")) == views
    assert index_rows(root, "blobs") == before
    done = run(root, "prune", "--older-than", "0s", "--dry-run", prefix=prefix, env=env)
    assert done.returncode == 0, done.stderr  # a dry run only reads


# -- 2. verify --repair ----------------------------------------------------------------------------
def _damage(root: Path) -> Path:
    """Flip the last byte of the largest blob; returns its path."""
    path = max((p for p in (root / "blobs").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    path.chmod(0o444)
    return path


def test_repair_keeps_a_damaged_blob_until_a_verified_replacement_is_in(stocked, server):
    """Before the fix: the damaged blob was unlinked first, so a failed download lost it."""
    path = _damage(stocked)
    damaged = path.read_bytes()
    server.set_fault("status", on="file", code=404)
    done = run(stocked, "verify", "--full", "--repair")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "repair failed" in problem_line(done.stdout, "corrupt", path.name)
    assert path.read_bytes() == damaged  # still there: nothing better was had
    assert not list((stocked / "tmp").iterdir())
    server.clear_faults()
    done = run(stocked, "verify", "--full", "--repair")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(repaired)" in done.stdout
    assert xxhash.xxh3_128_hexdigest(path.read_bytes()) == path.name
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert run(stocked, "verify", "--full").returncode == 0


def test_repair_never_deletes_an_unreadable_blob(stocked_template, unprivileged, server):
    """Before the fix: an unreadable blob (EACCES) was unlinked and fetched again."""
    prefix, base, env = unprivileged
    root = _copy(stocked_template, base / "cache")
    _give_to_nobody(root)
    path = next(p for p in (root / "blobs").rglob("*") if p.is_file())
    path.chmod(0o000)
    server.reset_counts()
    done = run(root, "verify", "--full", "--repair", prefix=prefix, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "not deleted" in problem_line(done.stdout, "unreadable", path.name)
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0
    assert server.total_requests() == 0


# -- 3. doctor on an interrupted index -------------------------------------------------------------
def _hot_journal(root: Path) -> None:
    """Leave a hot rollback journal, as a writer killed with SIGKILL mid-transaction does."""
    script = (
        "import os, sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('PRAGMA journal_mode = DELETE')\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "conn.execute('DELETE FROM cifs')\n"
        "conn.execute('UPDATE versions SET last_used = 1')\n"
        "conn.execute('PRAGMA cache_size = 1')\n"  # spill: pages reach the file
        "for i in range(2000):\n"
        "    conn.execute('INSERT INTO meta VALUES (?, ?)', (f'junk{i}', 'x' * 500))\n"
        "os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(root / "index.sqlite")], check=False)
    assert (root / "index.sqlite-journal").stat().st_size > 0


def test_doctor_rolls_back_an_interrupted_index(stocked) -> None:
    """Before the fix: the read-only check could not roll the journal back, called the index
    corrupt, moved it aside and lost the CIF records and pins."""
    assert run(stocked, "pin", "1").returncode == 0
    cifs = index_rows(stocked, "cifs")
    _hot_journal(stocked)
    done = run(stocked, "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "index integrity: ok" in done.stdout, done.stdout
    assert not list(stocked.glob("index.sqlite.*")), "moved aside"
    assert index_rows(stocked, "cifs") == cifs  # records and pin kept
    assert not (stocked / "index.sqlite-journal").exists()


def test_doctor_rebuild_keeps_one_backup(stocked) -> None:
    """Before the fix: every rebuild left one more `index.sqlite.corrupt-*` behind."""
    for _ in range(3):
        done = run(stocked, "doctor", "--rebuild")
        assert done.returncode == 0, done.stdout + done.stderr
    backups = sorted(p.name for p in stocked.glob("index.sqlite.*"))
    assert backups == ["index.sqlite.backup"], backups


# -- 4. prune racing a fetch -----------------------------------------------------------------------
def test_prune_racing_a_fetch_leaves_no_unknown_blob(stocked, archive) -> None:
    """A content prune removes while another process fetches it again: the two agree through
    the content's lock, so every blob file is recorded. The prune is held still (SIGSTOP, as
    a descheduled process) once its blob files are gone, while the fetch runs. Before the fix
    the fetch published and recorded the blobs, then prune deleted the rows it had planned to
    delete: blob files the index did not know."""
    view = next(p for p in (stocked / "views").iterdir() if not p.name.startswith("."))
    for i in range(300):  # dead views, removed after the blobs: a window of seconds
        shutil.copytree(view, stocked / "views" / f"dead{i:04d}", symlinks=True)
    names = sorted(p.name for p in view.iterdir())
    prune = subprocess.Popen([CCFCACHE, "prune", "--older-than", "0s", "--grace", "0s",
                              "--cache-dir", str(stocked)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while any_blob_file(stocked) and prune.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(prune.pid, signal.SIGSTOP)
        assert not any_blob_file(stocked), "prune did not get to its blobs"
        fetch = subprocess.Popen([CCFCACHE, "fetch", *names, "--cache-dir", str(stocked)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            fetch.wait(timeout=30)  # a fetch waiting on the held-still prune goes on below
        except subprocess.TimeoutExpired:
            pass
    finally:
        os.kill(prune.pid, signal.SIGCONT)
    _, err = prune.communicate(timeout=120)
    assert prune.returncode == 0, err
    _, ferr = fetch.communicate(timeout=120)
    assert fetch.returncode == 0, ferr
    assert_store_matches_index(stocked)
    assert run(stocked, "verify").returncode == 0


# -- 9. a kill before the schema existed ---------------------------------------------------------
@pytest.mark.parametrize("state", ["empty-file", "rolled-back"])
def test_index_without_schema_is_usable(stocked_template, server, tmp_path, state) -> None:
    """A kill before the schema was created leaves an index.sqlite without tables (empty, or
    rolled back from its journal): the next command creates the schema and works."""
    root = tmp_path / "cache"
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"sources": _urls(server)}))
    db = root / "index.sqlite"
    if state == "empty-file":
        db.touch()
    else:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("ROLLBACK")
        conn.close()
    for args in (["ls"], ["stats"], ["doctor"]):
        done = run(root, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert not list(root.glob("index.sqlite.*"))
    done = run(root, "cif", "--obs-date", OBS, "--analysis-date", ANAL,
               "-o", str(tmp_path / "ccf.cif"))
    assert done.returncode == 0, done.stderr
    assert_store_matches_index(root)


# -- 6. one bad row never blocks everyone ----------------------------------------------------------
@pytest.fixture
def own(tmp_path, archive) -> Iterator[tuple[ArchiveServer, Path, Path]]:
    """A private, writable copy of the archive, its server and a cache folder for it."""
    root = tmp_path / "archive"
    shutil.copytree(archive.root, root)
    with ArchiveServer(esa_mounts(root)) as running:
        cache = tmp_path / "cache"
        cache.mkdir()
        (cache / "config.json").write_text(json.dumps({"sources": _urls(running)}))
        yield running, root, cache


def _copies(root: Path, name: str) -> list[Path]:
    return [p for p in (root / "full" / name, root / "valid" / name) if p.exists()]


def _selected_name(cache: Path, tmp_path: Path) -> str:
    """A name the test CIF selects (from a CIF built in a scratch copy)."""
    scratch = _copy(cache, tmp_path / "scratch")
    done = run(scratch, "cif", "--obs-date", OBS, "--analysis-date", ANAL, "-o",
               str(tmp_path / "scratch.cif"), "--json")
    assert done.returncode == 0, done.stderr
    return sorted(r["name"] for r in json.loads(done.stdout)["rows"])[0]


def test_header_value_wider_than_its_cif_column_is_truncated(own, tmp_path) -> None:
    """A 70-character CREATOR (column 64A) is cut to the column as cifbuild's FITS writer does,
    with a warning; before the fix every CIF selecting the file failed."""
    from astropy.io import fits

    server, archive_root, cache = own
    assert run(cache, "sync").returncode == 0
    name = _selected_name(cache, tmp_path)
    creator = "C" * 70
    for path in _copies(archive_root, name):
        with fits.open(path) as hdul:
            hdul[0].header["CREATOR"] = creator
            hdul.writeto(path, overwrite=True, output_verify="silentfix")
    assert run(cache, "sync").returncode == 0
    out = tmp_path / "ccf.cif"
    done = run(cache, "cif", "--obs-date", OBS, "--analysis-date", ANAL, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{name}: CREATOR" in done.stderr and "truncated to 64" in done.stderr, done.stderr
    from ccfcache.cif import read_cif

    row = next(r for r in read_cif(out).rows if r["name"] == name)
    assert row["creator"] == creator[:64]


def test_error_messages_are_capped(own, tmp_path) -> None:
    """A CIF whose FNAME (with --fullpath) cannot fit its 256A column, under a cache folder
    with a long path: the error quotes the value cut short. Before the fix the line repeated
    the whole path."""
    server, archive_root, cache = own
    deep = tmp_path / ("d" * 200) / ("e" * 100) / "cache"
    deep.parent.mkdir(parents=True)
    deep = _copy(cache, deep)
    done = run(deep, "cif", "--obs-date", OBS, "--analysis-date", ANAL, "--fullpath",
               "-o", str(tmp_path / "x.cif"))
    line = one_error_line(done)
    assert "FNAME is longer than 256 characters" in line, line
    assert len(line) <= 250, len(line)


def test_html_error_page_read_as_a_header_is_retried_next_sync(own, tmp_path) -> None:
    """During a maintenance window the server answered a header read with an HTML page (same
    listing: size and date unchanged). Before the fix the name was recorded as "not a FITS
    file" for ever, since the listing did not change; now the next sync reads it again."""
    server, archive_root, cache = own
    name = sorted(p.name for p in (archive_root / "full").iterdir())[3]
    kept = {}
    for path in _copies(archive_root, name):
        st = path.stat()
        kept[path] = (path.read_bytes(), st.st_atime_ns, st.st_mtime_ns)
        page = b"<html><body>Down for maintenance</body></html>\n"
        path.write_bytes((page * st.st_size)[:st.st_size])
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    done = run(cache, "sync")
    assert "not a FITS file" in done.stderr
    for path, (data, atime, mtime) in kept.items():  # the window is over
        path.write_bytes(data)
        os.utime(path, ns=(atime, mtime))
    done = run(cache, "sync")
    assert done.returncode == 0 and "not a FITS file" not in done.stderr, done.stderr
    done = run(cache, "path", name)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).read_bytes() == next(iter(kept.values()))[0]


# -- 7. site overlay ------------------------------------------------------------------------------
def _overlay_env(site: Path, personal: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCFCACHE_")}
    env.update(CCFCACHE_SITE_DIR=str(site), CCFCACHE_DIR=str(personal))
    return env


def _overlay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CCFCACHE, *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_path_answers_from_the_personal_index_not_the_stale_site(own, tmp_path, archive):
    """The site cache holds a name's old bytes and has not synced since the server changed
    the file; the personal cache has. Before the fix `path` (the warm path looked in the site
    first) returned the site's old bytes; now the personal index's current content."""
    from ccfcache.demo.archive import generate_archive

    server, archive_root, _ = own
    name = archive.cases["v2"]["modified"]
    site = tmp_path / "site"
    with Cache(site, sources=_urls(server), workers=2) as cache:
        cache.sync()
        old = cache.path(name).read_bytes()
    v2 = generate_archive(tmp_path / "v2", seed=0, scale=1000.0, version=2, types=20)
    for prefix, folder in esa_mounts(v2.root).items():
        server.set_mount(prefix, folder)
    env = _overlay_env(site, tmp_path / "personal")
    done = _overlay(env, "sync", "--source", _urls(server)[0], "--source", _urls(server)[1])
    assert done.returncode == 0, done.stderr
    done = _overlay(env, "path", name)
    assert done.returncode == 0, done.stderr
    got = Path(done.stdout.strip()).read_bytes()
    assert got != old
    assert hashlib.md5(got).hexdigest() == v2.entries[name].md5
    done = _overlay(env, "path", name)  # the warm path now: same answer
    assert Path(done.stdout.strip()).read_bytes() == got


def test_view_into_a_pruned_site_cache_is_repaired(own, tmp_path):
    """A personal CIF's view links into the site cache; the site is pruned. Before the fix the
    next `cif` and `env` reused the view with its dangling links; now they repair it."""
    server, archive_root, _ = own
    site = tmp_path / "site"
    with Cache(site, sources=_urls(server), workers=2) as cache:
        cache.sync()
        cache.cif(OBS, ANAL, tmp_path / "site.cif")
    env = _overlay_env(site, tmp_path / "personal")
    out = tmp_path / "ccf.cif"
    args = ["cif", "--obs-date", OBS, "--analysis-date", ANAL, "-o", str(out), "--json"]
    done = _overlay(env, *args)
    assert done.returncode == 0, done.stderr
    view = Path(json.loads(done.stdout)["view_dir"])
    assert any(site in (view / n).resolve().parents for n in os.listdir(view))
    done = run(site, "prune", "--older-than", "0s")
    assert done.returncode == 0, done.stderr
    assert not blob_files(site)

    def dangling(folder: Path) -> list[str]:
        return [n for n in os.listdir(folder) if not (folder / n).exists()]

    done = _overlay(env, "env", "--cif", str(out), "--json")
    assert done.returncode == 0, done.stderr
    again = Path(json.loads(done.stdout)["SAS_CCFPATH"])
    assert dangling(again) == [], "env handed out a view with dangling links"
    done = _overlay(env, *args)
    assert done.returncode == 0, done.stderr
    view = Path(json.loads(done.stdout)["view_dir"])
    assert dangling(view) == []
    for link in view.iterdir():
        target = link.resolve()
        assert xxhash.xxh3_128_hexdigest(target.read_bytes()) == target.name


# -- 5. lock waits are bounded and talk ------------------------------------------------------------
def _content_lock(root: Path, name: str) -> Path:
    from ccfcache.locks import content_key

    with Cache(root) as cache:
        version = cache.current_version(name)
    return root / "locks" / f"{content_key(version)}.lock"


def _foreign_lock(path: Path, host: str, heartbeat: float, pid: int = 4242) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "started": time.time(),
                                "boot": "", "pidns": "", "token": "theirs"}))
    os.utime(path, (heartbeat, heartbeat))


def _stored_names(root: Path) -> list[str]:
    with Cache(root) as cache:
        return sorted(r["name"] for r in cache.ls() if r["local"])


def test_lock_dated_in_the_future_is_stale(stocked) -> None:
    """A lock whose heartbeat is dated a day ahead (a holder's clock set wrong): before the fix
    every fetch waited for it until that date, and prune never cleared it."""
    name = _stored_names(stocked)[0]
    lock = _content_lock(stocked, name)
    _foreign_lock(lock, "ccf-skewed-host", time.time() + 86400)
    done = run(stocked, "prune", "--dry-run", "--json", env={"CCFCACHE_LOCK_TTL": "2"})
    assert done.returncode == 0, done.stderr
    assert str(lock) in json.loads(done.stdout)["locks"]
    for path in (stocked / "blobs").rglob("*"):
        if path.is_file():
            path.unlink()  # the fetch below must download, so it must take the lock
    done = run(stocked, "fetch", name, env={"CCFCACHE_LOCK_TTL": "2"}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not lock.exists()
    _foreign_lock(lock, "ccf-skewed-host", time.time() + 86400)
    done = run(stocked, "prune", "--grace", "0s", env={"CCFCACHE_LOCK_TTL": "2"})
    assert done.returncode == 0, done.stderr
    assert not lock.exists()


def test_waiting_for_another_download_says_whose_and_how_long(stocked) -> None:
    """Another host holds the content's lock (heartbeat alive): the waiting fetch says on stderr
    whose download it waits for (host, pid) and for how long, again every 5 s while it waits.
    Before the fix it waited silently."""
    name = _stored_names(stocked)[0]
    lock = _content_lock(stocked, name)
    for path in (stocked / "blobs").rglob("*"):
        if path.is_file():
            path.unlink()
    _foreign_lock(lock, "ccf-other-host", time.time(), pid=31337)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.2):
            os.utime(lock)

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    proc = subprocess.Popen([CCFCACHE, "fetch", name, "--cache-dir", str(stocked)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120  # the first note, however slow the start-up
        while not any("is being downloaded by" in x for x in lines):
            assert time.monotonic() < deadline and proc.poll() is None, lines
            time.sleep(0.1)
        first = time.monotonic()
        deadline = first + 60  # the second note (due 5 s after the first), however loaded
        while sum("is being downloaded by" in x for x in lines) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, lines
            time.sleep(0.1)
        held = time.monotonic() - first
    finally:
        stop.set()
        beater.join()
        lock.unlink()
    code = proc.wait(timeout=120)
    reader.join(timeout=10)
    proc.stdout.close()
    proc.stderr.close()
    assert code == 0, lines
    notes = [x for x in lines if "is being downloaded by" in x]
    assert "host ccf-other-host, pid 31337" in notes[0] and "waiting (" in notes[0], notes
    assert 2 <= len(notes) <= held / 5 + 2, notes  # it keeps saying so,
    assert held > 4.5, (held, notes)  # not more often than every 5 s


# -- 8. OSErrors and sqlite3 errors become one line naming the path and the fix --------------------
def test_blob_folder_without_permissions(stocked_template, unprivileged) -> None:
    """chmod 000 on a blob folder: before the fix `path`, `fetch` and `verify` showed a
    PermissionError traceback."""
    prefix, base, env = unprivileged
    root = _copy(stocked_template, base / "cache")
    _give_to_nobody(root)
    name = _stored_names(root)[0]
    with Cache(root) as cache:
        xxh3 = cache.current_version(name)["xxh3"]
    folder = root / "blobs" / xxh3[:2]
    folder.chmod(0)
    for args in (["path", name], ["fetch", name]):
        done = run(root, *args, prefix=prefix, env=env)
        line = one_error_line(done)
        assert str(folder) in line and "ermission" in line, line
    done = run(root, "verify", prefix=prefix, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    problem_line(done.stdout, "unreadable", xxh3)


def test_blob_path_that_is_a_folder(stocked) -> None:
    """A folder where a blob should be: every command ends with one line naming it and the fix
    (or a verify problem). Before the fix `verify --repair` showed an IsADirectoryError
    traceback, and the others said 'cannot publish ...: Is a directory' twice, without a fix."""
    name = _stored_names(stocked)[0]
    with Cache(stocked) as cache:
        xxh3 = cache.current_version(name)["xxh3"]
    blob = stocked / "blobs" / xxh3[:2] / xxh3
    blob.unlink()
    blob.mkdir()
    (blob / "x").write_text("x")
    for args in (["path", name], ["fetch", name], ["verify", "--full", "--repair"],
                 ["cif", "--obs-date", OBS, "--analysis-date", ANAL, "-o",
                  str(stocked.parent / "x.cif")]):
        done = run(stocked, *args)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        assert done.returncode == 1, (args, done.stdout)
        if args[0] == "verify":
            assert "blob has" in problem_line(done.stdout, "size", xxh3), done.stdout
            assert "remove it" in done.stdout, done.stdout
        else:
            line = one_error_line(done)
            assert str(blob) in line and f"rm -r {blob}" in line, (args, line)


@pytest.fixture
def few_inodes(tmp_path) -> Iterator[Path]:
    """A tmpfs with few inodes (needs mount permission: root in this container)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m,nr_inodes=400", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()[:120]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_out_of_inodes_while_making_a_view(few_inodes, stocked_template, tmp_path) -> None:
    """The cache's file system runs out of inodes when a CIF's view is made: before the fix an
    OSError traceback; now one line naming the view folder."""
    root = _copy(stocked_template, few_inodes / "cache")
    shutil.rmtree(root / "views")
    (root / "views").mkdir()
    filler = few_inodes / "filler"
    filler.mkdir()
    for i in range(100000):  # use up every inode left
        try:
            (filler / str(i)).touch()
        except OSError:
            break
    for j in range(1, 4):  # but three: enough for the index's journal, not for a view
        (filler / str(i - j)).unlink()
    done = run(root, "cif", "--obs-date", OBS, "--analysis-date", ANAL,
               "-o", str(tmp_path / "ccf.cif"))
    line = one_error_line(done)
    assert str(root / "views") in line and "No space left" in line, line
    assert not (tmp_path / "ccf.cif").exists()


def test_concurrent_doctor_rebuilds(stocked) -> None:
    """Two `doctor --rebuild` at once, with a fetch and a CIF build: each succeeds or ends with
    one line that says what happened and what to do. Before the fix the second doctor moved
    the first one's new index aside, and the others said 'attempt to write a readonly
    database; is the cache folder writable?' or 'disk I/O error'."""
    name = _stored_names(stocked)[0]
    messages = []
    for _ in range(3):
        jobs = (["doctor", "--rebuild"], ["doctor", "--rebuild"], ["fetch", name],
                ["cif", "--obs-date", OBS, "--analysis-date", ANAL, "-o",
                 str(stocked.parent / "x.cif")])
        procs = [subprocess.Popen([CCFCACHE, *args, "--cache-dir", str(stocked)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for args in jobs]
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert "Traceback" not in err, err
            if proc.returncode != 0:
                lines = [x for x in err.splitlines() if x.startswith("ccfcache: error:")]
                assert len(lines) == 1, err
                messages.append(lines[0])
    for line in messages:
        assert "again" in line and ("doctor" in line or "replaced" in line), line
        assert "readonly" not in line and "disk I/O" not in line, line
    done = run(stocked, "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert run(stocked, "verify").returncode == 0


