"""Progress reports (`ccfcache.progress`): the plain lines written when stderr is not a
terminal, the bytes shown while partial files grow, and the tally behind the summary line.
The CLI's summary line itself is checked in test_cli_ux.py."""

from __future__ import annotations

import io
import time
from pathlib import Path

from ccfcache.progress import CliProgress, NullProgress, Progress, Tally
from ccfcache.units import human_bytes


def test_plain_progress_lines_when_not_a_terminal(tmp_path: Path) -> None:
    stream = io.StringIO()
    (tmp_path / "a.part").write_bytes(b"x" * 100)
    progress = CliProgress(terminal=False, stream=stream, watch=tmp_path, interval=0.3)
    progress.start("fetching 2 files", 5000, "bytes")
    (tmp_path / "a.part").write_bytes(b"x" * 1100)  # grows by 1000 bytes mid-file
    time.sleep(1.0)
    assert progress.shown() == 1000
    progress.advance(3000)
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert lines and lines[0].startswith("fetching 2 files: 1.0 KB of 5.0 KB")
    assert progress.tally.summary(4) == "downloaded 1 files (3.0 KB), 4 already cached"


def test_shown_bytes_count_only_growth_since_start_and_never_pass_the_total(
        tmp_path: Path) -> None:
    (tmp_path / "old.part").write_bytes(b"x" * 700)
    (tmp_path / "ignored.tmp").write_bytes(b"x" * 10)
    progress = CliProgress(terminal=False, stream=io.StringIO(), watch=tmp_path,
                           interval=3600)
    progress.start("fetching", 1000, "bytes")
    try:
        assert progress.shown() == 0  # what was there before is not progress
        (tmp_path / "new.part").write_bytes(b"x" * 300)
        (tmp_path / "ignored.tmp").write_bytes(b"x" * 5000)  # not a partial download
        assert progress.shown() == 300
        (tmp_path / "old.part").write_bytes(b"x" * 5000)
        assert progress.shown() == 1000  # capped at the total
        (tmp_path / "old.part").unlink()  # a partial published: its bytes arrive by advance()
        progress.advance(400)
        assert progress.shown() == 700
    finally:
        progress.finish()


def test_count_lines_and_the_tally_over_several_steps() -> None:
    progress = CliProgress(terminal=False, stream=io.StringIO(), interval=3600)
    progress.start("reading headers", 12)
    progress.advance(5)
    assert progress.line() == "reading headers: 5 of 12"
    assert progress.tally == Tally()  # counts are not downloads
    progress.start("fetching", 2048, "bytes")
    progress.advance(1024)
    progress.start("fetching more", 4096, "bytes")
    progress.advance(4096)
    progress.finish()
    assert progress.tally == Tally(files=2, bytes=5120, planned_files=0, planned_bytes=6144)
    assert progress.line() == (f"fetching more: {human_bytes(4096)} of {human_bytes(4096)}, "
                               "2 files finished")


def test_summary_names_cached_files_only_when_asked() -> None:
    tally = Tally(files=3, bytes=3 * 1024)
    assert tally.summary() == f"downloaded 3 files ({human_bytes(3 * 1024)})"
    assert tally.summary(0).endswith(", 0 already cached")


def test_every_reporter_follows_the_protocol() -> None:
    cli = CliProgress(terminal=False, stream=io.StringIO())
    reporters: list[Progress] = [NullProgress(), cli]
    for reporter in reporters:
        reporter.start("x", 3)
        reporter.advance()
        reporter.finish()
        reporter.finish()  # twice is harmless
    assert cli.shown() == 1
