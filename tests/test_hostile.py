"""Hostile and bad input: listing names built to escape the cache (served by the real server),
symlink tricks, malformed FITS headers, wrong CLI arguments, a damaged index, a cache folder
made read-only mid-run; and the security defaults (TLS, redirects, size cap, permissions, no
shell).

Nothing is ever written outside the cache root (the tree around it is snapshotted before and
after); every failure is one line, never a traceback.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import xxhash
from typer.testing import CliRunner

from ccfcache import Cache
from ccfcache.cli import app
from ccfcache.demo.server import ArchiveServer, esa_mounts
from ccfcache.errors import CcfCacheError, FetchError
from ccfcache.listing import parse_html_listing
from ccfcache.names import parse_name

PACKAGE = Path(__file__).parent.parent / "ccfcache"
CCFCACHE = str(Path(sys.executable).with_name("ccfcache"))
runner = CliRunner()

# Every href here must be rejected or mapped to a bare canonical name; none may become a path.
ESCAPES = [
    "../EPN_EVIL_0001.CCF", "../../../../../../tmp/EPN_EVIL_0002.CCF",
    "..%2FEPN_EVIL_0003.CCF", "%2e%2e%2fEPN_EVIL_0004.CCF", "%2E%2E/%2E%2E/etc/passwd",
    "%252e%252e%252fEPN_EVIL_0005.CCF", "..%5cEPN_EVIL_0006.CCF", "..\\..\\EPN_EVIL_0007.CCF",
    "/etc/passwd", "/tmp/EPN_EVIL_0008.CCF", "file:///etc/passwd",
    "http://evil.example/EPN_EVIL_0009.CCF", "//evil.example/EPN_EVIL_0010.CCF",
    "EPN_EVIL_0011.CCF/../../../escape", "EPN_EVIL_0012.CCF%00.txt", "EPN_EVIL_0013.CCF%2F..",
    "~/EPN_EVIL_0014.CCF", "C:\\Windows\\EPN_EVIL_0015.CCF", "C:EPN_EVIL_0016.CCF",
    "javascript:alert(1)", "$(touch pwned)EPN_EVIL_0017.CCF", "EPN_EVIL_0018.CCF;touch pwned",
    "`touch pwned`", "EPN_EVIL_0019.CCF?x=../../", ".", "..", "...", "....//EPN_EVIL_0020.CCF",
    "E" * 5000 + ".CCF", "EPN_" + "A" * 300 + "_0001.CCF", "EPN_EVIL_" + "9" * 200 + ".CCF",
    "\u00c9PN_EVIL_0021.CCF", "EPN_\u00c9VIL_0022.CCF", "epn_ev\u0131l_0023.ccf",  # dotless i
    "\uff25\uff30\uff2e_EVIL_0024.CCF", "EPN_EVIL_0025.CCF\u202e", "EPN_EVIL_0026.CCF\u200b",
    "EPN_EVIL_0027.CC\u0192", "EPN%E2%80%AE_EVIL_0028.CCF", "EPN_EVIL_0029.CCF\n",
    "EPN_EVIL_0030.CCF ", " ../EPN_EVIL_0031.CCF", "%", "%%32%65", "\\\\server\\share\\X.CCF",
]


def tree(root: Path, *, skip: tuple[Path, ...] = ()) -> dict[str, tuple]:
    """Every path under `root` (not following links) with its type, size, mode and mtime."""
    found = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d not in skip]
        for item in [*dirs, *files]:
            path = here / item
            if path in skip:
                continue
            st = path.lstat()
            # a folder's mtime moves when the cache is created in it: its entries are compared
            mtime = 0 if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns
            found[str(path)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mode, mtime)
    return found


def assert_store_sound(root: Path) -> int:
    count = 0
    for path in (root / "blobs").rglob("*"):
        if path.is_file() or path.is_symlink():
            assert not path.is_symlink(), path
            assert path.name == xxhash.xxh3_128_hexdigest(path.read_bytes()), path
            assert stat.S_IMODE(path.lstat().st_mode) == 0o444
            count += 1
    return count


def assert_cache_layout(root: Path) -> None:
    """Every entry inside the cache is where the layout puts it, with a safe name."""
    allowed = re.compile(
        r"(index\.sqlite(-journal)?|config\.json|CCFCACHE_FORMAT|"
        r"blobs(/[0-9a-f]{2}(/[0-9a-f]{32})?)?|headers(/[0-9a-f]{2}(/[0-9a-f]{32})?)?|"
        r"tmp(/[A-Z0-9_]+\.CCF\.[0-9a-z-]+\.part(\.json)?)?|"
        r"locks(/.*\.(lock|break))?|cifs(/.*)?|views(/[^/]+(/[A-Z0-9_]+\.CCF)?)?)"
    )
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        assert allowed.fullmatch(rel), rel
        if path.is_symlink():  # view links stay inside the cache
            assert path.resolve().is_relative_to(root.resolve()), path


def hostile_page(server: ArchiveServer, mount: str, extra: list[str]) -> str:
    """The server's real listing with hostile links added (escaped and raw)."""
    page = httpx.get(server.url(mount)).text
    rows = []
    for href in extra:
        rows.append(f'<tr><td><a href="{html.escape(href, quote=True)}">x</a></td>'
                    "<td>2020-01-01 00:00</td><td>12K</td></tr>")
    rows.append("<tr><td><a href=../EPN_EVIL_0099.CCF>raw</a></td></tr>")
    rows.append("<tr><td><a href='/etc/EPN_EVIL_0098.CCF'>quoted</a></td></tr>")
    return page.replace("</table>", "\n".join(rows) + "\n</table>")


def test_hostile_listing_names_never_escape(tmp_path, server, archive) -> None:
    """A listing full of escape attempts and lookalikes: sync, fetch everything listed, build
    a CIF. Nothing outside the cache root changes; only canonical names reach the index."""
    real = sorted(set(archive.full_names()) & set(archive.valid_names()))[0]
    variants = [real.lower(), real.capitalize(), real.swapcase()]
    urls = [server.url("/pub/ccf/constituents/"), server.url("/pub/ccf/valid_constituents/")]
    for mount, name in (("/pub/ccf/constituents/", "constituents"),
                        ("/pub/ccf/valid_constituents/", "valid_constituents")):
        server.set_fault("listing_html", name=name,
                         html=hostile_page(server, mount, ESCAPES + variants))
    (tmp_path / "sentinel").mkdir()
    (tmp_path / "sentinel" / "victim.txt").write_text("untouched")
    root = tmp_path / "nest" / "cache"
    out = tmp_path / "nest" / "out"
    out.mkdir(parents=True)
    before = tree(tmp_path, skip=(root, out))
    with Cache(root, sources=urls, workers=4) as cache:
        report = cache.sync()
        # hrefs with surrounding whitespace are bare names once stripped (as browsers do):
        # asked for by name, not found, never indexed
        assert all("EVIL" in f and "HTTP 404" in f for f in report.failures), report.failures
        rejected = {h for hs in report.rejected.values() for h in hs}
        assert len(rejected) >= len(ESCAPES) - 3  # '.', '..' and '' like links are skipped
        names = [r["name"] for r in cache.ls()]
        assert names == sorted(archive.full_names())  # lookalikes mapped or rejected
        for name in names:
            assert parse_name(name).name == name and name.isascii()
        cache.fetch(names)
        result = cache.cif("2015-01-01", "2030-01-01", out / "ccf.cif")
        assert result.rows
    assert tree(tmp_path, skip=(root, out)) == before
    assert (tmp_path / "sentinel" / "victim.txt").read_text() == "untouched"
    assert not list(Path("/tmp").glob("EPN_EVIL_*")) and not list(Path("/").glob("escape"))
    assert not list(tmp_path.rglob("pwned")) and not Path("pwned").exists()
    assert_cache_layout(root)
    assert assert_store_sound(root) == len(names)  # one blob per content, all verified
    requested = {path for _, path, _ in server.request_log}
    assert all(path.startswith("/pub/ccf/") and ".." not in path for path in requested)


# the only escapes that name a file of the listed folder: a bare name with white space around
TRIMMED = {"EPN_EVIL_0029.CCF\n": "EPN_EVIL_0029.CCF", "EPN_EVIL_0030.CCF ": "EPN_EVIL_0030.CCF"}


@pytest.mark.parametrize("href", ESCAPES)
def test_each_escape_is_rejected_by_the_parser(href) -> None:
    """No link out of the listed folder (a path, '..', a scheme, another host) becomes an
    entry, not even under its base name: fails when `listing._bare_name` is replaced by a
    basename (`../EPN_EVIL_0001.CCF` would be listed as EPN_EVIL_0001.CCF)."""
    page = f'<html><body><a href="{html.escape(href, quote=True)}">x</a></body></html>'
    listing = parse_html_listing(page, "http://127.0.0.1/")
    if href in TRIMMED:
        assert {n: e.href for n, e in listing.entries.items()} == {TRIMMED[href]: TRIMMED[href]}
    else:
        assert listing.entries == {}


def test_local_folder_symlink_tricks(tmp_path, archive) -> None:
    """A local mirror with links leading out of it, loops, folders and special files named
    like constituents: only regular files inside the mirror are used; nothing outside is
    read into the cache or written."""
    mirror = tmp_path / "mirror"
    shutil.copytree(archive.full_dir, mirror)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("secret")
    real = archive.full_names()[1]
    (mirror / "EPN_EVIL_0001.CCF").symlink_to(secret / "key.txt")
    (mirror / "EPN_EVIL_0002.CCF").symlink_to("../secret/key.txt")
    (mirror / "EPN_EVIL_0003.CCF").symlink_to("/etc/passwd")
    (mirror / "EPN_EVIL_0004.CCF").symlink_to(secret)
    (mirror / "EPN_EVIL_0005.CCF").symlink_to("EPN_EVIL_0005.CCF")  # a loop
    (mirror / "EPN_EVIL_0006.CCF").symlink_to("missing")  # broken
    os.mkfifo(mirror / "EPN_EVIL_0007.CCF")  # would block a reader forever
    (mirror / "EPN_EVIL_0008.CCF").mkdir()
    (mirror / "EPN_LINK_0001.CCF").symlink_to(real)  # inside the mirror: fine
    (mirror / "../EPN_EVIL_0009.CCF").write_bytes(b"outside")  # sibling of the mirror
    root = tmp_path / "cache"
    before = tree(tmp_path, skip=(root,))
    with Cache(root, sources=[str(mirror)], workers=4) as cache:
        report = cache.sync()
        rejected = set(next(iter(report.rejected.values())))
        assert {f"EPN_EVIL_000{i}.CCF" for i in (1, 2, 3, 4, 5, 6, 7)} <= rejected
        names = [r["name"] for r in cache.ls()]
        assert not any("EVIL" in n for n in names)
        assert "EPN_LINK_0001.CCF" in names
        paths = cache.fetch(names)
    assert tree(tmp_path, skip=(root,)) == before
    assert paths["EPN_LINK_0001.CCF"].read_bytes() == (mirror / real).read_bytes()
    assert_store_sound(root)
    assert_cache_layout(root)


def test_planted_symlink_in_tmp_is_not_followed(synced, archive, tmp_path) -> None:
    """In a shared cache another user could plant tmp/<partial> -> a victim's file: the download
    must replace the link, never write through it (nor chmod its target)."""
    name = archive.valid_names()[2]
    version = synced.current_version(name)
    from ccfcache.fetcher import content_key

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    victim.chmod(0o600)
    partial = synced.store.partial_path(content_key(version))
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.symlink_to(victim)
    path = synced.fetch([name])[name]
    assert victim.read_text() == "precious"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert hashlib.md5(path.read_bytes()).hexdigest() == archive.entries[name].md5
    assert not partial.exists() and not partial.is_symlink()


# -- malformed FITS headers served by the real server --------------------------------------------
def card(key: str, value: str = "", *, raw: str | None = None) -> bytes:
    text = raw if raw is not None else (f"{key:<8}= {value}" if value else f"{key:<8}")
    return text.encode("latin-1")[:80].ljust(80)


def fits_bytes(cards: list[bytes], *, end: bool = True, data_blocks: int = 2) -> bytes:
    body = b"".join(cards) + (card("END") if end else b"")
    body = body.ljust(-(-len(body) // 2880) * 2880)
    return body + b"\0" * 2880 * data_blocks


BASE = [card("SIMPLE", "T"), card("BITPIX", "8"), card("NAXIS", "0")]
MALFORMED: dict[str, bytes] = {
    "truncated": fits_bytes(BASE + [card("VALDATE", "'2000-01-01T00:00:00'")])[:1000],
    "missing END": fits_bytes(BASE + [card("VALDATE", "'2000-01-01T00:00:00'")], end=False),
    "absurd dates": fits_bytes(BASE + [card("VALDATE", "'9999-99-99T99:99:99'"),
                                       card("SUBDATE", "'0000-00-00T00:00:00'")]),
    "numeric dates": fits_bytes(BASE + [card("VALDATE", "1E308"), card("SUBDATE", "-1")]),
    "year zero": fits_bytes(BASE + [card("VALDATE", "'0000-01-01T00:00:00'"),
                                    card("SUBDATE", "'2001-01-01T00:00:00'")]),
    "huge CONTINUE": fits_bytes(
        BASE + [card("CREATOR", "'x&'")]
        + [card("", raw="CONTINUE  '" + "x" * 66 + "&'")] * (101 * 36), end=True),
    "garbage cards": fits_bytes(BASE + [card("", raw="\x00\xff" * 40)] * 40),
    "unterminated string": fits_bytes(BASE + [card("VALDATE", "'2000-01-01")]),
    "not FITS": b"PK\x03\x04" + os.urandom(9000),
    "empty": b"",
}


@pytest.fixture
def own(tmp_path, archive) -> Iterator[tuple[ArchiveServer, Path, list[str]]]:
    root = tmp_path / "archive"
    shutil.copytree(archive.root, root)
    with ArchiveServer(esa_mounts(root)) as running:
        urls = [running.url("/pub/ccf/constituents/"), running.url("/pub/ccf/valid_constituents/")]
        yield running, root, urls


def test_malformed_headers_are_recorded_not_fatal(own, archive, tmp_path) -> None:
    server, root, urls = own
    targets = dict(zip(sorted(archive.full_names())[::2], MALFORMED.items(), strict=False))
    for name, (_, data) in targets.items():
        for folder in ("full", "valid"):
            if (root / folder / name).exists():
                (root / folder / name).write_bytes(data)
    with Cache(tmp_path / "cache", sources=urls, workers=4) as cache:
        cache.settings.backoff = 0.01
        report = cache.sync()
        broken = {name for name in targets if any(name in m for m in report.header_errors)}
        failed = {name for name in targets if any(name in m for m in report.failures)}
        assert broken | failed == set(targets), (report.header_errors, report.failures)
        for message in report.header_errors + report.failures:
            assert "\n" not in message and len(message) < 400
        for name in targets:
            with pytest.raises(CcfCacheError) as caught:
                cache.fetch([name])
            assert "\n" not in str(caught.value)
        good = [n for n in archive.full_names() if n not in targets]
        paths = cache.fetch(good)
        for name, path in paths.items():
            assert hashlib.md5(path.read_bytes()).hexdigest() == archive.entries[name].md5
        try:
            cache.cif("2015-01-01", "2030-01-01", tmp_path / "ccf.cif")
        except CcfCacheError as exc:  # a broken selected type is a clear error, not a crash
            assert "\n" not in str(exc)
        assert_store_sound(cache.root)
    huge = next(n for n, (label, _) in targets.items() if label == "huge CONTINUE")
    copies = sum((root / folder / huge).exists() for folder in ("full", "valid"))
    assert server.bytes_sent(huge) <= copies * 100 * 2880  # the header read is bounded


# -- the command line -----------------------------------------------------------------------------
def cli(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=True)


def assert_clean_failure(result) -> None:
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("ccfcache: error:")]
    usage = result.exit_code == 2 and ("Usage:" in result.output or "Error" in result.output)
    assert len(errors) == 1 or (usage and not errors), result.output


BAD_ARGS = [
    ["nosuchcommand"],
    ["fetch"],
    ["fetch", "--bogus", "X"],
    ["fetch", "../../etc/passwd"],
    ["fetch", "/etc/passwd"],
    ["fetch", "EPN_X_0001.CCF\x00"],
    ["fetch", "E" * 20000],
    ["fetch", "\u00c9PN_X_0001.CCF"],
    ["path", "../../../etc/shadow"],
    ["path", ""],
    ["cif"],
    ["cif", "--obs-date", "yesterday"],
    ["cif", "--obs-date", "2020-02-30"],
    ["cif", "--obs-date", "2020-01-01", "--analysis-date", "9999-99-99"],
    ["cif", "--obs-date", "2020-01-01T25:61:61"],
    ["cif", "--odf", "/nonexistent/odf"],
    ["cif", "--obs-date", "2020-01-01", "--bogus"],
    ["sync", "--max-delete", "many"],
    ["sync", "--source", "ftp://example.org/pub/"],
    ["sync", "--source", "gopher://x"],
    ["sync", "--source"],
    ["ls", "a", "b"],
    ["stats", "extra"],
    ["prune", "--older-than", "forever"],
    ["prune", "--max-size", "lots"],
    ["prune", "--grace", "-1d"],
    ["verify", "--sample", "abc"],
    ["verify", "--cif", "/nonexistent.cif"],
    ["env", "--cif", "/nonexistent.cif"],
    ["cifbuild", "bogus=1"],
    ["cifbuild", "analysisdate=garbage"],
    ["pin", "999"],
    ["unpin", "no-such-cif"],
    ["cifs", "--json", "--json=1"],
]


@pytest.mark.parametrize("args", BAD_ARGS, ids=lambda a: " ".join(a)[:40])
def test_wrong_arguments_one_line_error(args, tmp_path) -> None:
    root = tmp_path / "cache"
    env = {"CCFCACHE_DIR": str(root), "CCFCACHE_RETRIES": "0", "CCFCACHE_TIMEOUT": "2"}
    root.mkdir()
    (root / "config.json").write_text('{"sources": ["http://127.0.0.1:9/"]}')
    assert_clean_failure(cli(*args, env=env))


@pytest.mark.parametrize(
    "cache_dir", ["/dev/null", "/proc/version", "/proc/self/nonexistent"], ids=str
)
def test_unusable_cache_dir(cache_dir) -> None:
    assert_clean_failure(cli("ls", "--cache-dir", cache_dir))


# -- a damaged index ------------------------------------------------------------------------------
def _damage(db: Path, how: str) -> None:
    data = bytearray(db.read_bytes())
    if how == "truncated to 1000 bytes":
        data = data[:1000]
    elif how == "truncated to half":
        data = data[: len(data) // 2]
    elif how == "garbage header":
        data[:100] = os.urandom(100)
    elif how == "garbage pages":
        for page in range(1, len(data) // 4096):
            data[page * 4096 + 8 : page * 4096 + 4000] = b"\xa5" * 3992
    elif how == "text file":
        data = bytearray(b"this is not a database\n" * 200)
    db.write_bytes(bytes(data))


DAMAGE = ["truncated to 1000 bytes", "truncated to half", "garbage header", "garbage pages",
          "text file"]


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_index_is_a_clear_error(how, synced, archive, tmp_path) -> None:
    root = synced.root
    synced.close()
    _damage(root / "index.sqlite", how)
    name = archive.full_names()[0]
    commands = [["ls"], ["stats"], ["fetch", name], ["path", name], ["sync"],
                ["cif", "--obs-date", "2015-01-01", "-o", str(tmp_path / "x.cif")],
                ["prune"], ["cifs"]]
    failed = 0
    for args in commands:
        result = cli(*args, "--cache-dir", str(root))
        if result.exit_code == 0:
            continue  # the damage spared what this command reads
        assert_clean_failure(result)
        assert "doctor" in result.output, (args, result.output)
        failed += 1
    assert failed >= len(commands) - 1
    assert assert_store_sound(root) == 0


# -- a cache folder made read-only mid-run (chattr +i: root ignores chmod) ------------------------
def _chattr(flag: str, *paths: Path) -> bool:
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def immutable_ok(tmp_path) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    if shutil.which("chattr") is None or not _chattr("+i", probe):
        pytest.skip("chattr +i is not available here (needs root and ext4/xfs/btrfs)")
    _chattr("-i", probe)


@pytest.mark.parametrize("frozen", ["blobs", "root"])
def test_cache_made_read_only_mid_fetch(immutable_ok, synced, server, archive, frozen) -> None:
    root = synced.root
    (root / "config.json").write_text(json.dumps({"sources": synced.settings.sources}))
    synced.close()
    names = sorted(archive.full_names(), key=lambda n: -archive.entries[n].size)[:3]
    server.set_fault("slow", on="file", delay=0.3)
    (root / "blobs").mkdir(exist_ok=True)
    child = subprocess.Popen([CCFCACHE, "fetch", "--cache-dir", str(root), *names],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frozen_paths = [root / "blobs", root / "tmp"] if frozen == "blobs" else [root]
    try:
        deadline = time.monotonic() + 20
        while server.total_requests() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _chattr("+i", *frozen_paths)
        out, err = child.communicate(timeout=60)
    finally:
        _chattr("-i", *frozen_paths)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert child.returncode == 1, (out, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("ccfcache: error:")]
    assert len(lines) == 1, err
    assert_store_sound(root)
    server.clear_faults()
    done = subprocess.run([CCFCACHE, "fetch", "--cache-dir", str(root), *names],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        name, path = line.split("\t")
        assert hashlib.md5(Path(path).read_bytes()).hexdigest() == archive.entries[name].md5
    assert_store_sound(root)


# -- security defaults ----------------------------------------------------------------------------
def test_tls_verification_is_on_by_default() -> None:
    from ccfcache.sources import open_source

    source = open_source("https://127.0.0.1:9/pub/ccf/constituents/")
    try:
        context = source.http.client._transport._pool._ssl_context
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is True
        assert source.http.client.follow_redirects is False  # redirects are vetted one by one
    finally:
        source.close()


@pytest.fixture
def tls_server(tmp_path, archive) -> Iterator[str]:
    """The archive over https with a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a certificate: {made.stderr[:200]!r}")
    server = ArchiveServer(esa_mounts(archive.root)).start()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server._httpd.socket = context.wrap_socket(server._httpd.socket, server_side=True)
    try:
        yield f"https://127.0.0.1:{server.port}/pub/ccf/constituents/"
    finally:
        server.stop()


def test_self_signed_certificate_is_refused(tls_server, tmp_path) -> None:
    with Cache(tmp_path / "cache", sources=[tls_server]) as cache:
        cache.settings.retries = 0
        with pytest.raises(CcfCacheError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
            cache.sync()
        assert cache.ls() == []


def test_download_is_capped_at_the_listed_size(synced, server, archive) -> None:
    """A server sending more than the size read at sync: the partial never grows past it."""
    name = archive.valid_names()[0]
    with synced.index.write() as db:  # pretend the sync saw a smaller file, without ETag
        db.execute("UPDATE versions SET size = size - 2880 WHERE name = ?", (name,))
        db.execute("UPDATE listings SET etag = NULL WHERE name = ?", (name,))
    with pytest.raises(FetchError, match="more bytes than the listed"):
        synced.fetch([name])
    assert not list((synced.root / "tmp").iterdir())
    assert assert_store_sound(synced.root) == 0


def test_files_are_created_with_safe_permissions(synced, archive, tmp_path) -> None:
    names = archive.valid_names()[:5]
    synced.fetch(names)
    synced.cif("2015-01-01", "2030-01-01", tmp_path / "ccf.cif")
    assert assert_store_sound(synced.root) >= 5
    for path in [synced.root, *synced.root.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode):
            assert not mode & stat.S_IWOTH, f"world-writable: {path}"
            assert not mode & (stat.S_ISUID | stat.S_ISGID) or stat.S_ISDIR(mode), path
    assert not (tmp_path / "ccf.cif").stat().st_mode & stat.S_IWOTH


# Modules allowed to start a program, each with argument lists it builds itself (never a shell,
# never a server's data as a program or option): the mount runs `fusermount3 -u DIR` and
# re-executes ccfcache for --background; the demo package starts test servers (SeaweedFS, squid).
MAY_START_PROGRAMS = {"mount.py", "demo/external.py"}


def test_no_shell_commands_in_the_package() -> None:
    """No process is started with server data: the package never runs a shell, and only the
    audited modules above start a program at all."""
    never = re.compile(
        r"os\.system|os\.popen|shell\s*=\s*True|os\.exec\w*\(|os\.spawn\w*\(|"
        r"pty\.spawn|\beval\(|\bexec\(|__import__\(|pickle\.loads?\(|yaml\.load\(")
    starts_programs = re.compile(r"\bsubprocess\b")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if '"""' in code or code.strip().startswith(('"', "'")):
                continue
            if never.search(code) or (
                    starts_programs.search(code) and relative not in MAY_START_PROGRAMS):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []
    assert len(list(PACKAGE.rglob("*.py"))) > 20  # the scan saw the package
