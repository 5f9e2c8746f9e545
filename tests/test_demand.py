"""A cold CIF reads only the headers it needs (ccfcache.demand) and selects exactly what a CIF
built after a full sync selects; the rest of the headers are read by `sync` and by the
commands that need the whole index. Real test server, real files, the real CLI."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccfcache import Cache
from ccfcache.config import write_config_file
from ccfcache.demand import Outline, Rule, Walk
from ccfcache.demo.archive import Manifest, generate_archive
from ccfcache.demo.server import ArchiveServer, esa_mounts
from ccfcache.errors import SelectionError
from ccfcache.names import parse_name


def header_reads(server: ArchiveServer) -> Counter:
    """Header reads per path: the first Range request of each (`bytes=0-N`)."""
    return Counter(path for method, path, rng in server.request_log
                   if method == "GET" and rng is not None and rng.startswith("bytes=0-")
                   and not rng.endswith("-"))


def ccfcache(*args: str, root: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCFCACHE_")}
    env["CCFCACHE_DIR"] = str(root)
    return subprocess.run(["ccfcache", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def configure(root: Path, urls: list[str]) -> None:
    """A cache folder holding only its config: nothing listed, nothing read."""
    root.mkdir(parents=True)
    write_config_file(root, {"sources": urls})


# -- the walk (pure) ---------------------------------------------------------------------------
def _version(name: str, **fields) -> dict:
    parts = parse_name(name)
    row = {"name": name, "scope": parts.scope, "typeid": parts.typeid, "issue": parts.issue,
           "valdate": "2000-01-01T00:00:00", "subdate": "2000-01-01T00:00:00",
           "evaldate": None, "category": "XMMCCF", "header_error": None}
    row.update(fields)
    return row


NAMES = [f"XRT1_XAREAEF_{i:04d}.CCF" for i in (3, 5, 9)]
RULE = Rule("2020-01-01T00:00:00", "2021-01-01T00:00:00")


def test_walk_reads_a_type_from_its_highest_issue_down_to_the_first_valid():
    walk = Walk.plan(NAMES, dict.fromkeys(NAMES, 1), [], RULE)
    assert walk.to_read()[0] == "XRT1_XAREAEF_0009.CCF"
    for name in walk.to_read():
        walk.start(name)
    walk.record("XRT1_XAREAEF_0009.CCF",
                [_version("XRT1_XAREAEF_0009.CCF", valdate="2030-01-01T00:00:00")])
    assert not walk.resolved()  # 0009 is not valid yet: 0005 decides
    walk.record("XRT1_XAREAEF_0005.CCF", [_version("XRT1_XAREAEF_0005.CCF")])
    assert walk.resolved() == {("XRT1", "XAREAEF")}  # 0003 (being read) no longer counts
    assert walk.to_read() == []


def test_walk_reads_the_whole_type_when_a_header_issue_disagrees_with_its_name():
    walk = Walk.plan(NAMES, dict.fromkeys(NAMES, 1), [], RULE)
    walk.start("XRT1_XAREAEF_0009.CCF")
    walk.record("XRT1_XAREAEF_0009.CCF", [_version("XRT1_XAREAEF_0009.CCF", issue=2)])
    assert sorted(walk.to_read()) == NAMES[:2]
    assert not walk.resolved()


def test_walk_reads_everything_when_a_header_names_another_type():
    other = "XRT2_XAREAEF_0001.CCF"
    walk = Walk.plan([*NAMES, other], dict.fromkeys([*NAMES, other], 1), [], RULE,
                     groups=[("XRT1", "XAREAEF")])
    assert other not in walk.to_read()  # another type: not needed for this one
    walk.start("XRT1_XAREAEF_0009.CCF")
    walk.record("XRT1_XAREAEF_0009.CCF", [_version("XRT1_XAREAEF_0009.CCF", typeid="OTHER")])
    assert other in walk.to_read()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(
    ["valid", "future", "error", "other-category", "other-issue", "other-type", "fail"])),
    max_size=12))
def test_walk_remembers_what_each_type_needs_only_until_it_changes(steps):
    """The walk keeps each type's needed names between reads (the read loop asks after every
    read); after any start, record or failure it answers as a walk computing afresh."""
    names = [f"XRT1_XAREAEF_{i:04d}.CCF" for i in (2, 4, 6)] + \
        [f"EMOS1_ADUCONV_{i:04d}.CCF" for i in (1, 3, 5)]
    walk = Walk.plan(names, dict.fromkeys(names, 2), [], RULE)

    def afresh() -> tuple[list[str], set, dict]:
        memo, walk._memo = walk._memo, {}
        try:
            return walk.to_read(), walk.resolved(), walk.failures()
        finally:
            walk._memo = memo

    for pick, outcome in steps:
        name = names[pick]
        if walk.by_name[name].unread - walk.by_name[name].reading <= 0:
            continue
        walk.to_read()  # fills the memo
        walk.start(name)
        assert (walk.to_read(), walk.resolved(), walk.failures()) == afresh()
        if outcome == "fail":
            walk.failed(name, "HTTP 500")
        else:
            fields = {"valid": {}, "future": {"valdate": "2030-01-01T00:00:00"},
                      "error": {"header_error": "not FITS", "valdate": None},
                      "other-category": {"category": "XMMOTHER"},
                      "other-issue": {"issue": 99}, "other-type": {"typeid": "OTHER"}}[outcome]
            walk.record(name, [_version(name, **fields)])
        assert (walk.to_read(), walk.resolved(), walk.failures()) == afresh()


def test_recording_does_not_hold_up_the_header_reads():
    """While a batch of headers is being recorded (a commit waiting for the index and an
    fsync, then the downloads of the types it decided), the reads go on: the recorder has a
    thread of its own. Here the first recording waits until every other header was read;
    done in the read loop (before), it waited in vain (fails without the fix)."""
    import threading

    from ccfcache.demand import read_on_demand
    from ccfcache.rows import ListingUnread

    decided = "EMOS1_ADUCONV_0001.CCF"
    others = [f"XRT1_XAREAEF_{i:04d}.CCF" for i in range(1, 9)]
    names = [decided, *others]
    walk = Walk.plan(names, dict.fromkeys(names, 1), [], RULE)
    unread = [ListingUnread("http://a/", n, None, None, None, n, *parse_name(n)[:3])
              for n in names]
    all_read = threading.Event()
    read: list[str] = []
    recorded: list[bool] = []

    def read_one(group):
        source, entry = group[0]
        if entry.name != decided:
            threading.Event().wait(0.02)
        read.append(entry.name)
        if set(others) <= set(read):
            all_read.set()
        future = {} if entry.name == decided else {"valdate": "2030-01-01T00:00:00"}
        return [(source, entry, None, _version(entry.name, **future))], 0.01

    def record(batch):
        if not recorded:
            recorded.append(all_read.wait(5))  # the first batch: the decided type
        else:
            recorded.append(True)

    resolved: list[set] = []
    done = read_on_demand(walk, unread, read_one, record, workers=1, cap=1,
                          on_resolved=resolved.append, flush_s=0.01)
    assert done == len(names)
    assert recorded[0] is True, "the reads waited for the recording"
    assert ("EMOS1", "ADUCONV") in set().union(*resolved)


def test_walk_goes_below_unreadable_headers_and_other_categories():
    walk = Walk.plan(NAMES, dict.fromkeys(NAMES, 1), [], RULE)
    for name in list(walk.to_read()):
        walk.start(name)
    walk.record(NAMES[2], [_version(NAMES[2], header_error="not FITS", valdate=None)])
    walk.record(NAMES[1], [_version(NAMES[1], category="XMMOTHER")])
    assert not walk.resolved()
    walk.record(NAMES[0], [_version(NAMES[0])])
    assert walk.resolved() == {("XRT1", "XAREAEF")}


_YEARS = [f"20{y:02d}-01-01T00:00:00" for y in (0, 5, 10, 15, 20)]


@st.composite
def _walk_inputs(draw: st.DrawFn) -> tuple:
    """Listed names of two types (unread rows or not) and headers read of some of them:
    valid or not, unreadable, of another category, or contradicting their names."""
    names = sorted(draw(st.sets(st.builds(
        "{}_{}_{:04d}.CCF".format, st.sampled_from(["XRT1", "EPN"]),
        st.sampled_from(["XAREAEF", "CTI"]), st.integers(0, 6)), max_size=10)))
    unread = {n: draw(st.integers(0, 2)) for n in names}
    versions = []
    for name in names:
        for _ in range(draw(st.integers(0, 2))):
            fields = {"valdate": draw(st.sampled_from(_YEARS)),
                      "subdate": draw(st.sampled_from(_YEARS)),
                      "evaldate": draw(st.sampled_from([None, "", *_YEARS])),
                      "category": draw(st.sampled_from(["XMMCCF", "XMMCCF", "XMMOTHER"])),
                      "header_error": draw(st.sampled_from([None] * 6 + ["not FITS"]))}
            odd = draw(st.integers(0, 19))
            if odd == 0:
                fields["issue"] = 99  # the header's ISSUE is not the name's
            elif odd == 1:
                fields["typeid"] = "OTHER"  # the header names another type
            versions.append(_version(name, **fields))
    groups = draw(st.sampled_from([None, [("XRT1", "XAREAEF")], [("EPN", "CTI"), ("X", "Y")]]))
    return names, unread, versions, groups


@settings(max_examples=300, deadline=None)
@given(_walk_inputs(), st.lists(st.tuples(st.sampled_from(_YEARS), st.sampled_from(_YEARS),
                                          st.booleans()), min_size=1, max_size=4))
def test_an_outline_answers_as_a_new_walk_for_any_dates(inputs, rules):
    """A warm build asks the remembered `Outline` whether its dates need a header read: it
    answers as a walk planned for those dates would (`to_read()` empty or not)."""
    names, unread, versions, groups = inputs
    outline = Outline.of(names, unread, versions)
    for obs, anal, ignore in rules:
        rule = Rule(obs, anal, "XMMCCF", ignore)
        walk = Walk.plan(names, unread, versions, rule, groups=groups)
        assert outline.needs_reading(rule, groups) == bool(walk.to_read())


# -- against a full sync, for any dates --------------------------------------------------------
def _rewrite(path: Path, target: Path, **cards) -> None:
    with fits.open(path) as hdus:
        for key, value in cards.items():
            hdus[0].header[key] = value
        hdus.writeto(target, overwrite=True)


@pytest.fixture(scope="module")
def tricky(tmp_path_factory) -> Manifest:
    """A demo archive (EVALDATE time-sliced types included) with a header whose ISSUE
    disagrees with its name, a top issue of another category, and names to withdraw."""
    root = tmp_path_factory.mktemp("tricky") / "v1"
    manifest = generate_archive(root, seed=3, scale=1000.0, version=1, types=30)
    by_type: dict[tuple[str, str], list[str]] = {}
    for name in sorted(manifest.full_names()):
        parts = parse_name(name)
        by_type.setdefault((parts.scope, parts.typeid), []).append(name)
    groups = [names for names in by_type.values() if len(names) >= 3]
    # 1. a new top name whose header says a low issue, valid from 1999 (the whole type is read)
    top = groups[0][-1]
    parts = parse_name(top)
    odd = f"{parts.scope}_{parts.typeid}_{parts.issue + 1:04d}.CCF"
    _rewrite(manifest.full_dir / top, manifest.full_dir / odd, ISSUE=1,
             VALDATE="1999-01-01T00:00:00")
    # 2. a new top name of another category
    top = groups[1][-1]
    parts = parse_name(top)
    _rewrite(manifest.full_dir / top,
             manifest.full_dir / f"{parts.scope}_{parts.typeid}_{parts.issue + 1:04d}.CCF",
             ISSUE=parts.issue + 1, CATEGORY="XMMOTHER", VALDATE="1999-01-01T00:00:00")
    manifest.cases["withdraw"] = [groups[2][-1], groups[3][-1]]
    return manifest


def _rows(selection_rows) -> list[tuple]:
    return [(r["name"], r["size"], r["header_digest"]) for r in selection_rows]


@pytest.fixture(scope="module")
def prepared(tricky: Manifest, tmp_path_factory):
    """A cache synced fully and a cache synced listings-only, through the same changes:
    two names withdrawn, then one of them listed again."""
    base = tmp_path_factory.mktemp("prepared")
    withdrawn, back = tricky.cases["withdraw"]
    away = base / "away"
    away.mkdir()
    with ArchiveServer(esa_mounts(tricky.root)) as server:
        urls = [server.url("/pub/ccf/constituents/"), server.url("/pub/ccf/valid_constituents/")]
        full, lazy = Cache(base / "full", sources=urls), Cache(base / "lazy", sources=urls)
        with full, lazy:
            for step in range(3):
                if step == 1:
                    for name in (withdrawn, back):
                        for folder in (tricky.full_dir, tricky.valid_dir):
                            if (folder / name).exists():
                                os.replace(folder / name, away / f"{folder.name}-{name}")
                if step == 2:
                    for moved in away.iterdir():
                        folder_name, name = moved.name.split("-", 1)
                        if name == back:
                            os.replace(moved, tricky.root / folder_name / name)
                full.sync(force=True)
                report = lazy.sync(headers=False, force=True)
                assert report.read == 0
            assert full.index.header_counts()[0] == 0
            unread, listed = lazy.index.header_counts()
            assert unread == listed and listed == full.index.header_counts()[1]
            assert lazy.index.withdrawn_names() == full.index.withdrawn_names() | {back}
        yield base, urls, server


DATES = st.datetimes(min_value=datetime.datetime(1990, 1, 1),
                     max_value=datetime.datetime(2030, 12, 31)).map(
    lambda d: d.replace(microsecond=0).isoformat())


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(obs=DATES, anal=DATES, category=st.sampled_from(["XMMCCF", "XMMOTHER", None]))
def test_demand_selection_equals_a_full_syncs(prepared, tmp_path_factory, obs, anal, category):
    base, urls, _server = prepared
    work = tmp_path_factory.mktemp("example")
    shutil.copytree(base / "lazy", work / "lazy")
    options = {"category": category or "XMMCCF", "ignore_category": category is None}

    def plan(cache):
        try:
            return _rows(cache.plan_cif(obs, anal, **options).rows)
        except SelectionError as exc:
            return str(exc)

    with Cache(base / "full", sources=urls) as full, Cache(work / "lazy", sources=urls) as lazy:
        expected = plan(full)
        assert plan(lazy) == expected
        read, listed = lazy.header_reads or (0, 0)
        assert read <= listed == full.index.header_counts()[1]  # each header at most once


# -- the CLI, end to end -----------------------------------------------------------------------
def test_cold_cif_reads_few_headers_and_builds_the_same_cif(tmp_path, server, source_urls,
                                                            archive: Manifest):
    obs, anal = "2019-06-01T00:00:00", "2024-01-01T00:00:00"
    full, cold = tmp_path / "full", tmp_path / "cold"
    for root in (full, cold):
        configure(root, source_urls)
    assert ccfcache("sync", root=full).returncode == 0
    everything = header_reads(server)
    server.reset_counts()
    done = ccfcache("cif", "--obs-date", obs, "--analysis-date", anal, "-o",
                    str(tmp_path / "cold.cif"), "--json", root=cold)
    assert done.returncode == 0, done.stderr
    needed = header_reads(server)
    assert max(needed.values()) == 1  # each header read once
    assert 0 < len(needed) < len(everything)
    # the downloads started while header reads were still in flight (pipelined)
    log = [(m, rng) for m, p, rng in server.request_log if m == "GET"]
    first_download = next(i for i, (m, rng) in enumerate(log) if rng in (None, "bytes=0-"))
    last_header = max(i for i, (m, rng) in enumerate(log)
                      if rng and rng.startswith("bytes=0-") and not rng.endswith("-"))
    assert first_download < last_header
    quiet = ccfcache("cif", "--obs-date", obs, "--analysis-date", anal, "-o",
                     str(tmp_path / "again.cif"), root=tmp_path / "cold")
    assert quiet.returncode == 0, quiet.stderr
    assert not [x for x in quiet.stderr.splitlines() if x.startswith("read ")]  # none needed
    again = ccfcache("cif", "--obs-date", obs, "--analysis-date", anal, "-o",
                     str(tmp_path / "full.cif"), "--json", root=full)
    cold_rows = [(r["name"], r["md5"]) for r in json.loads(done.stdout)["rows"]]
    assert cold_rows == [(r["name"], r["md5"]) for r in json.loads(again.stdout)["rows"]]
    text = ccfcache("cif", "--obs-date", "2003-01-01T00:00:00", "--analysis-date", anal,
                    "-o", str(tmp_path / "old.cif"), root=cold)
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stderr.splitlines() if x.startswith("read "))
    assert line.endswith("headers (the rest when a command needs them; `ccfcache sync` "
                         "reads them all)")
    listed = len(archive.full_names()) + len(archive.valid_names())
    assert int(line.split()[3]) == listed  # "read N of M": M = all listed, both folders
    stats = json.loads(ccfcache("stats", "--json", root=cold).stdout)
    assert 0 < stats["headers_unread"] < listed


def test_sync_reads_the_rest_even_when_the_listing_answers_304(tmp_path, server, source_urls,
                                                                archive: Manifest):
    cold = tmp_path / "cold"
    configure(cold, source_urls)
    done = ccfcache("cif", "--obs-date", "2019-06-01", "-o", str(tmp_path / "c.cif"),
                    root=cold)
    assert done.returncode == 0, done.stderr
    with Cache(cold) as cache:
        unread, listed = cache.index.header_counts()
    assert unread > 0
    server.reset_counts()
    synced = ccfcache("sync", "--json", root=cold)
    assert synced.returncode == 0, synced.stderr
    assert server.counts("/pub/ccf/constituents/").not_modified == 1  # the listing: 304
    assert json.loads(synced.stdout)["read"] == unread
    with Cache(cold) as cache:
        assert cache.index.header_counts() == (0, listed)


def test_ls_reads_the_headers_it_shows(tmp_path, server, source_urls, archive: Manifest):
    cold = tmp_path / "cold"
    configure(cold, source_urls)
    assert ccfcache("cif", "--obs-date", "2019-06-01", "-o", str(tmp_path / "c.cif"),
                    root=cold).returncode == 0
    name = sorted(archive.full_names())[0]
    with Cache(cold) as cache:
        assert cache.index.unread_listings([name]), "the walk read the lowest issue?"
    server.reset_counts()
    shown = json.loads(ccfcache("ls", name, "--json", root=cold).stdout)
    assert [(r["name"], r["size"]) for r in shown] == [(name, archive.entries[name].size)]
    assert header_reads(server) and all(p.endswith(name) for p in header_reads(server))
    with Cache(cold) as cache:
        assert not cache.index.unread_listings([name])
        assert cache.index.header_counts()[0] > 0  # only what ls showed was read


def test_ctrl_c_stops_a_cold_cifs_pipelined_downloads(tmp_path, source_urls, server, archive):
    """SIGINT to a program whose cold `Cache.cif` is downloading the first decided types
    while it reads headers: KeyboardInterrupt at once, no download starts after it, the
    running ones keep a resumable partial, no lock file stays."""
    import signal
    import sys

    from test_interrupt_api import SCRIPT, interruptible, wait_for_partials

    root = tmp_path / "cache"
    configure(root, source_urls)
    server.set_fault("slow", on="file", delay=0.05, chunk=4096)
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root), "cif"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=interruptible)
    tmp = root / "tmp"
    wait_for_partials(tmp, child, seconds=120)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)  # a hang guard, not a speed assertion
    assert out.strip() == "KeyboardInterrupt", (out, err)
    assert child.returncode == 130, err
    downloads = {p for _, p, rng in server.request_log
                 if not p.endswith("/") and (rng is None or rng.endswith("-"))}
    assert 2 <= len(downloads) <= 4 + 4, downloads  # the prefetch pool's 4 (and starting)
    partials = list(tmp.glob("*.part"))
    assert all(p.with_name(p.name + ".json").exists() for p in partials)
    stored = [p for p in (root / "blobs").rglob("*") if p.is_file()]
    # every download that started is stored whole or kept as a resumable partial (under load
    # the ones running when the test saw them may have ended before SIGINT reached the child)
    assert len(stored) + len(partials) == len(downloads), (stored, partials, downloads)
    assert not [p.name for p in (root / "locks").iterdir() if p.name.endswith(".lock")]


def test_a_warm_cif_on_a_walked_cache_opens_no_source(tmp_path, server, source_urls,
                                                       archive: Manifest):
    """Once a cold CIF has read what its dates need, the same CIF again is decided by the
    index alone: no request, no HTTP client imported (before: every warm build took the
    headers lock and opened its sources, ~50 ms)."""
    import sys

    obs, anal = "2019-06-01T00:00:00", "2024-01-01T00:00:00"
    cold = tmp_path / "cold"
    configure(cold, source_urls)
    assert ccfcache("cif", "--obs-date", obs, "--analysis-date", anal, "-o",
                    str(tmp_path / "cold.cif"), root=cold).returncode == 0
    server.reset_counts()
    script = ("import sys; from ccfcache import Cache\n"
              "with Cache(sys.argv[1]) as cache:\n"
              "    cache.cif(sys.argv[2], sys.argv[3], sys.argv[4])\n"
              "print('httpx' in sys.modules)")
    probe = subprocess.run([sys.executable, "-c", script, str(cold), obs, anal,
                            str(tmp_path / "warm.cif")], capture_output=True, text=True,
                           timeout=300)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "False"
    assert not [entry for entry in server.request_log]
    with Cache(cold) as cache:
        assert cache.index.header_counts()[0] > 0  # still a walked (partial) index


def test_the_sources_are_listed_at_once(cache, server):
    """A first sync asks both folders for their listing together (over a wide-area network,
    one round trip of waiting instead of two): with each listing answered slowly, the server
    handles both at once (fails without the fix: one after the other)."""
    server.set_fault("slow", on="listing", delay=0.5)
    report = cache.sync(headers=False)
    assert len(report.sources) == 2 and all(report.sources.values())
    assert server.peak_in_flight >= 2
    listing_requests = [p for m, p, r in server.request_log if p.endswith("/")]
    assert len(listing_requests) == 2
