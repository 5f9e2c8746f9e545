"""Ctrl-C in a Python program using the API (issue 13): `Cache.fetch` and `Cache.cif` raise
KeyboardInterrupt at once; queued downloads are cancelled, running ones stop keeping a
resumable partial, and no lock is left. A real process against the slowed test server."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ccfcache import Cache

SCRIPT = textwrap.dedent("""
    import sys
    from ccfcache import Cache

    root, what = sys.argv[1], sys.argv[2]
    with Cache(root, workers=4) as cache:
        try:
            if what == "fetch":
                cache.fetch(sys.argv[3:])
            else:
                cache.cif("2015-06-01", "2030-01-01", root + ".cif")
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
            sys.exit(130)
    print("finished", flush=True)
""")


def interruptible() -> None:
    """In the child before exec: SIGINT at its default, as in a terminal. A shell without job
    control starts background commands with SIGINT ignored (bash does for `cmd &` in a
    script), and Python then installs no KeyboardInterrupt handler: a CI job started that way
    made these tests fail with 'finished'."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_partials(tmp: Path, child: subprocess.Popen, *, seconds: float) -> None:
    """Until two downloads have bytes in `tmp` (then Ctrl-C lands mid-download); the test
    fails, the child killed, when none starts in `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if tmp.is_dir() and sum(1 for p in tmp.glob("*.part") if p.stat().st_size > 0) >= 2:
            return
        time.sleep(0.02)
    child.kill()
    pytest.fail("no download started")


@pytest.mark.parametrize("what", ["fetch", "cif"])
def test_ctrl_c_stops_the_api_at_once(tmp_path, source_urls, server, archive, what) -> None:
    """SIGINT while 4 of many downloads run: the call raises KeyboardInterrupt, no download
    starts after it, the running ones keep their partials (with validators) and no lock file
    stays; the next call resumes them. Fails without the fix: the executor ran every queued
    download to the end before KeyboardInterrupt reached the program."""
    root = tmp_path / "cache"
    with Cache(root, sources=source_urls, workers=4) as cache:
        cache.sync()
    names = sorted(archive.full_names())
    server.reset_counts()  # the sync's header reads
    server.set_fault("slow", on="file", delay=0.05, chunk=4096)
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root), what, *names],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=interruptible)
    tmp = root / "tmp"
    wait_for_partials(tmp, child, seconds=60)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)  # a hang guard, not a speed assertion
    assert out.strip() == "KeyboardInterrupt", (out, err)
    assert child.returncode == 130, err
    files = {p for _, p, _ in server.request_log if not p.endswith("/")}
    assert len(files) <= 4 + 4, files  # the running ones (and those starting at that moment)
    partials = list(tmp.glob("*.part"))
    assert partials and all(p.with_name(p.name + ".json").exists() for p in partials)
    assert not [p.name for p in (root / "locks").iterdir() if p.name.endswith(".lock")]
    server.clear_faults()
    server.reset_counts()
    with Cache(root) as cache:
        if what == "fetch":
            paths = cache.fetch(names)
            assert all(paths[n].stat().st_size == archive.entries[n].size for n in names)
        else:
            cache.cif("2015-06-01", "2030-01-01", str(root) + ".cif")
    resumed = [r for _, p, r in server.request_log if r and r.startswith("bytes=") and
               not r.startswith("bytes=0-")]
    assert resumed  # the partials were resumed, not downloaded again
    assert Path(str(root) + ".cif").exists() or what == "fetch"
