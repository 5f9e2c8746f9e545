"""The command line as a new user meets it (issue 13), each point through the real CLI against
the local test server: usage errors, output in a pipe, the hand-over to SAS, never the wrong
place, progress and summary lines, interrupts, --offline, the cifbuild drop-in."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccfcache.cli import app

runner = CliRunner()
XRT3 = "XRT3_XAREAEF_0012.CCF"
OBS = "2021-03-10T00:21:11"
ANAL = "2021-03-25T09:56:39"
ENTRY = "from ccfcache.entry import main; main()"


def run(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
        **kwargs) -> subprocess.CompletedProcess:
    """The console script in a child process (stdout and stderr are pipes, not terminals)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, **kwargs)


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("ccfcache: error")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def cli_cache(tmp_path, source_urls, server):
    root = tmp_path / "cache"
    result = run("sync", "--cache-dir", str(root),
                 *sum((["--source", u] for u in source_urls), []))
    assert result.exit_code == 0, result.output
    server.reset_counts()
    return root


# -- usage ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["fetch", "--bogus", "X"], "--bogus"),
        (["nosuchcommand"], "nosuchcommand"),
        (["fetch"], "names"),
        (["cif", "--odf", "/tmp", "--obs-date", "2011-01-01"], "not both"),
        (["cif", "--obs-date", "2011-01-01", "--category", "bogus"], "'bogus' is not a CCF"),
        (["verify", "--quick", "--full"], "--quick"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(args, needle, tmp_path):
    done = cli(*args, "--cache-dir", str(tmp_path / "c")) if args[0] != "nosuchcommand" \
        else cli(*args)
    assert done.returncode == 2, done.stderr
    assert needle in error_line(done.stderr)
    assert not (tmp_path / "c").exists()


def test_version_help_and_completion():
    from importlib.metadata import version

    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"ccfcache {version('ccfcache')}"
    done = cli("fetch", "-h")
    assert done.returncode == 0 and "--source" in done.stdout
    done = cli("-h")
    assert "--install-completion" in done.stdout and "--offline" in done.stdout


# -- output in a pipe -------------------------------------------------------------------------
def test_ls_in_a_pipe_is_plain_tsv_with_every_name(cli_cache, archive):
    done = cli("ls", "--cache-dir", str(cli_cache))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split("\t") == ["name", "size", "subdate", "status", "local"]
    names = [line.split("\t")[0] for line in lines[1:]]
    assert names == sorted(archive.full_names())
    assert not set("│─┃━┏┡└╭") & set(done.stdout)
    assert all(len(line.split("\t")) == 5 for line in lines)


def test_path_and_fetch_print_json(cli_cache, archive):
    paths = json.loads(run("fetch", "--cache-dir", str(cli_cache), XRT3, "--json").stdout)
    again = json.loads(run("path", "--cache-dir", str(cli_cache), XRT3, "--json").stdout)
    assert paths == again and Path(again[XRT3]).stat().st_size == archive.entries[XRT3].size


# -- the hand-over to SAS ---------------------------------------------------------------------
def test_exports_are_shell_quoted_and_eval_sets_them(cli_cache, tmp_path):
    out = tmp_path / "dir with 'quotes' and spaces" / "ccf.cif"
    script = (f"eval \"$({shlex.quote(sys.executable)} -c {shlex.quote(ENTRY)} cif "
              f"--cache-dir {shlex.quote(str(cli_cache))} --obs-date {OBS} --analysis-date "
              f"{ANAL} -o {shlex.quote(str(out))})\" && printf '%s\\n' \"$SAS_CCF\" "
              "\"$SAS_CCFPATH\"")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ccf, ccfpath = done.stdout.splitlines()
    assert ccf == str(out) and Path(ccfpath).is_dir()
    assert "downloaded " in done.stderr and " already cached" in done.stderr


def test_env_failure_leaves_no_stale_sas_ccf(cli_cache, tmp_path):
    python = shlex.quote(sys.executable)
    script = (f"export SAS_CCF=/old/ccf.cif SAS_CCFPATH=/old; eval \"$({python}"
              f" -c {shlex.quote(ENTRY)} env --cache-dir {shlex.quote(str(cli_cache))} --cif "
              f"{shlex.quote(str(tmp_path / 'missing.cif'))})\"; "
              "echo \"status=$? ccf=[${SAS_CCF-unset}] path=[${SAS_CCFPATH-unset}]\"")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert "ccf=[unset] path=[unset]" in done.stdout, done.stdout + done.stderr
    assert "missing.cif" in error_line(done.stderr)


def test_category_is_case_insensitive(cli_cache, tmp_path):
    result = run("cif", "--cache-dir", str(cli_cache), "--obs-date", OBS, "--analysis-date",
                 ANAL, "--category", "xmmccf", "-o", str(tmp_path / "c.cif"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["category"] == "XMMCCF"


def test_cif_dry_run_downloads_nothing(cli_cache, server, tmp_path):
    out = tmp_path / "dry.cif"
    result = run("cif", "--cache-dir", str(cli_cache), "--obs-date", OBS, "--analysis-date",
                 ANAL, "-o", str(out), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["selected"] > 10 and len(plan["download"]) == plan["selected"]
    assert plan["download_bytes"] == sum(r["size"] for r in plan["download"]) > 0
    assert server.total_bytes() == 0 and not out.exists()
    run("fetch", "--cache-dir", str(cli_cache), plan["download"][0]["name"])
    again = json.loads(run("cif", "--cache-dir", str(cli_cache), "--obs-date", OBS,
                           "--analysis-date", ANAL, "--dry-run", "--json").stdout)
    assert again["cached"] == 1 and len(again["download"]) == plan["selected"] - 1


# -- never the wrong place --------------------------------------------------------------------
@pytest.mark.parametrize("command", [["ls"], ["stats"], ["cifs"], ["verify"], ["prune"]])
def test_read_only_commands_refuse_a_folder_that_is_not_a_cache(command, tmp_path):
    absent = tmp_path / "nothing-here"
    done = cli(*command, "--cache-dir", str(absent))
    assert done.returncode == 1
    assert "not a ccfcache cache" in error_line(done.stderr)
    assert not absent.exists()


def test_no_command_takes_over_a_foreign_folder(tmp_path, source_urls):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    for args in (["sync", "--source", source_urls[0]], ["fetch", XRT3], ["ls"]):
        done = cli(*args, "--cache-dir", str(folder))
        assert done.returncode == 1
        assert "not empty and is not a ccfcache cache" in error_line(done.stderr)
    assert sorted(p.name for p in folder.iterdir()) == ["chapter1.tex"]


def test_first_contact_names_the_server_and_source_is_remembered_on_failure(tmp_path,
                                                                            source_urls):
    root = tmp_path / "c"
    done = cli("sync", "--cache-dir", str(root), "--source", source_urls[0])
    assert done.returncode == 0, done.stderr
    assert f"first sync of {root}: from {source_urls[0]}" in done.stderr
    # a source that fails is still remembered (the user's choice is kept)
    bad = "http://127.0.0.1:9/pub/ccf/constituents/"
    done = cli("sync", "--cache-dir", str(root), "--source", bad,
               env={"CCFCACHE_RETRIES": "0"})
    assert done.returncode == 1
    assert json.loads((root / "config.json").read_text())["sources"] == [bad]


def test_default_sources_are_named_as_esa(tmp_path):
    done = cli("path", "--cache-dir", str(tmp_path / "c"), XRT3,
               env={"CCFCACHE_OFFLINE": "1"})
    assert done.returncode == 1 and "offline" in error_line(done.stderr)
    from ccfcache.cli.common import describe_sources
    from ccfcache.config import DEFAULT_SOURCES

    assert describe_sources(list(DEFAULT_SOURCES)) == "ESA's full and valid archives (default)"


def test_fetch_path_cif_env_accept_source(tmp_path, source_urls, server):
    root = tmp_path / "c"
    result = run("fetch", "--cache-dir", str(root), "--source", source_urls[0], XRT3)
    assert result.exit_code == 0, result.output
    assert json.loads((root / "config.json").read_text())["sources"] == [source_urls[0]]
    for args in (["path", XRT3], ["cif", "--dry-run", "--obs-date", OBS],
                 ["env", "--cif", str(tmp_path / "none.cif")]):
        assert "--source" in cli(*args[:1], "-h").stdout


def test_offline_contacts_no_server_and_names_what_is_missing(cli_cache, server, archive):
    other = next(n for n in archive.full_names() if n != XRT3)
    run("fetch", "--cache-dir", str(cli_cache), XRT3)
    server.reset_counts()
    done = cli("--offline", "path", "--cache-dir", str(cli_cache), XRT3)
    assert done.returncode == 0 and Path(done.stdout.strip()).exists()
    done = cli("fetch", "--cache-dir", str(cli_cache), XRT3, other,
               env={"CCFCACHE_OFFLINE": "1"})
    assert done.returncode == 1
    assert f"offline: 1 files are not in the cache ({other})" in error_line(done.stderr)
    done = cli("--offline", "sync", "--cache-dir", str(cli_cache))
    assert done.returncode == 1 and "offline" in error_line(done.stderr)
    assert server.total_requests() == 0


@pytest.mark.parametrize(
    ("config", "key"),
    [({"sources": "https://example.org/ccf/"}, "sources"), ({"workers": "8"}, "workers"),
     ({"retries": -1}, "retries"), ({"shared": "yes"}, "shared")],
)
def test_config_json_is_validated(cli_cache, config, key):
    (cli_cache / "config.json").write_text(json.dumps(config))
    done = cli("ls", "--cache-dir", str(cli_cache))
    assert done.returncode == 1
    assert f"'{key}' must be" in error_line(done.stderr)


# -- progress, summary, -v --------------------------------------------------------------------
def test_fetch_ends_with_a_summary_and_v_logs_requests(cli_cache, archive):
    done = cli("-v", "fetch", "--cache-dir", str(cli_cache), XRT3)
    assert done.returncode == 0, done.stderr
    size = archive.entries[XRT3].size
    assert "HTTP Request: GET" in done.stderr and XRT3 in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("downloaded 1 files (")
    again = cli("fetch", "--cache-dir", str(cli_cache), XRT3)
    assert again.stderr.strip().splitlines()[-1] == "downloaded 0 files (0 B), 1 already cached"
    assert "HTTP Request" not in again.stderr
    assert size > 0


# -- interrupts -------------------------------------------------------------------------------
def test_first_ctrl_c_exits_130_and_keeps_a_resumable_partial(cli_cache, archive, server):
    names = sorted(archive.full_names(), key=lambda n: -archive.entries[n].size)[:6]
    server.set_fault("slow", on="file", delay=0.05)
    child = subprocess.Popen([sys.executable, "-c", ENTRY, "fetch", "--cache-dir",
                              str(cli_cache), *names], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    tmp = cli_cache / "tmp"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.stat().st_size > 0 for p in tmp.glob("*.part")):
            break
        time.sleep(0.05)
    else:
        child.kill()
        pytest.fail("no download started")
    child.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = child.communicate(timeout=30)
    elapsed = time.monotonic() - started
    assert child.returncode == 130, err
    assert elapsed < 10
    assert "interrupted" in error_line(err) and "next run resumes" in err
    partials = {p.name: p.stat().st_size for p in tmp.glob("*.part")}
    assert partials and any(size > 0 for size in partials.values())
    assert not list((cli_cache / "locks").glob("*.lock"))
    server.clear_faults()
    server.reset_counts()
    done = cli("fetch", "--cache-dir", str(cli_cache), *names)
    assert done.returncode == 0, done.stderr
    # the partial bytes were not downloaded again: each kept partial is resumed where it
    # ended (judged by the requests, not by byte counters: the server may still be sending
    # the interrupted run's responses into dead sockets when the counters are reset)
    asked = {(p.rpartition("/")[2], r) for _, p, r in server.request_log}
    for part, size in partials.items():
        name = part.split(".CCF.")[0] + ".CCF"
        if 0 < size < archive.entries[name].size:  # (a whole one is published as it is)
            assert (name, f"bytes={size}-") in asked, asked
    for line in done.stdout.splitlines():
        name, path = line.split("\t")
        assert Path(path).stat().st_size == archive.entries[name].size


# -- the cifbuild drop-in ---------------------------------------------------------------------
def test_cifbuild_accepts_sas_spellings_and_warns_for_ignored(cli_cache, tmp_path):
    out = tmp_path / "sas.cif"
    done = cli("cifbuild", "--cache-dir", str(cli_cache), "-V", "4", f"--calindexset={out}",
               "withobservationdate=yes", "--observationdate", OBS, f"analysisdate={ANAL}",
               "verbosity=2", "withccfpath=yes", "ccfpath=/ccf/valid", "category=xmmccf")
    assert done.returncode == 0, done.stderr
    assert out.exists()
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert any("withccfpath=yes is ignored" in w for w in warnings)
    assert any("ccfpath=/ccf/valid is ignored" in w for w in warnings)
    helped = cli("cifbuild", "--help")
    for name in ("calindexset", "observationdate", "withccfpath", "-V n"):
        assert name in helped.stdout


def test_refused_connection_is_given_up_quickly_naming_url_and_fix(tmp_path):
    """Nothing listens on port 9: two tries (not the whole retry policy), then one line with
    the URL and what to check. Fails without REFUSED_RETRIES: 'gave up after 5 tries'."""
    url = "http://127.0.0.1:9/pub/ccf/constituents/"
    done = cli("sync", "--cache-dir", str(tmp_path / "c"), "--source", url)
    assert done.returncode == 1
    line = error_line(done.stderr)
    assert url in line and "gave up after 2 tries" in line
    assert "proxy" in line and "--source" in line


def test_demo_cleans_up_and_says_what_to_run_next(tmp_path):
    env = {"TMPDIR": str(tmp_path)}
    done = cli("demo", "--scale", "4000", env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "removed the demo folder" in done.stdout
    assert "next, against ESA's real archive" in done.stdout and "ccfcache sync" in done.stdout
    assert not list(tmp_path.glob("ccfcache-demo-*"))
    kept = cli("demo", "--scale", "4000", "--workdir", str(tmp_path / "d"), timeout=600)
    assert kept.returncode == 0, kept.stderr
    assert f"left in {tmp_path / 'd'}" in kept.stdout and (tmp_path / "d" / "ccf.cif").exists()


def _links_resolve(view: str) -> tuple[int, list[str]]:
    names = os.listdir(view)
    return len(names), [n for n in names if not os.path.isfile(os.path.join(view, n))]


def test_env_and_cif_after_prune_never_hand_out_dangling_links(cli_cache, server, tmp_path):
    """prune --max-size evicts the CIF's contents; `env --cif` and `cif` then download them
    again instead of handing out a view of dangling links (fails without handover.py: env
    exited 0 with every link dangling)."""
    out = tmp_path / "ccf.cif"
    built = run("cif", "--cache-dir", str(cli_cache), "--obs-date", OBS, "--analysis-date",
                ANAL, "-o", str(out), "--json")
    assert built.exit_code == 0, built.output
    view = json.loads(built.stdout)["view_dir"]
    stored = json.loads(run("stats", "--cache-dir", str(cli_cache), "--json").stdout)
    half = stored["bytes_stored"] // 2  # some links dangle, the view itself stays
    pruned = run("prune", "--cache-dir", str(cli_cache), "--max-size", str(half))
    assert pruned.exit_code == 0, pruned.output
    total, dangling = _links_resolve(view)
    assert 0 < len(dangling) < total, "prune must leave a partly dangling view"
    server.reset_counts()
    env = run("env", "--cache-dir", str(cli_cache), "--cif", str(out), "--json")
    assert env.exit_code == 0, env.output
    handed = json.loads(env.stdout)["SAS_CCFPATH"]
    total, dangling = _links_resolve(handed)
    assert total > 10 and dangling == []
    assert server.total_bytes() > 0  # downloaded again
    run("prune", "--cache-dir", str(cli_cache), "--max-size", str(half))
    again = run("cif", "--cache-dir", str(cli_cache), "--obs-date", OBS, "--analysis-date",
                ANAL, "-o", str(out), "--json")
    assert again.exit_code == 0, again.output
    total, dangling = _links_resolve(json.loads(again.stdout)["view_dir"])
    assert total > 10 and dangling == []


def test_prune_names_what_it_removes_and_the_cifs_it_breaks(cli_cache, tmp_path):
    out = tmp_path / "ccf.cif"
    built = run("cif", "--cache-dir", str(cli_cache), "--obs-date", OBS, "--analysis-date",
                ANAL, "-o", str(out), "--json")
    rows = {r["name"] for r in json.loads(built.stdout)["rows"]}
    dry = run("prune", "--cache-dir", str(cli_cache), "--max-size", "1", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    named = {name for item in plan["removed"] for name in item["names"]}
    assert named == rows  # every content of the CIF, by constituent name
    assert [c["path"] for c in plan["cifs_needing_refetch"]] == [str(out)]
    assert set(plan["cifs_needing_refetch"][0]["names"]) == rows
    text = run("prune", "--cache-dir", str(cli_cache), "--max-size", "1")
    assert text.exit_code == 0, text.output
    removed = [line for line in text.stdout.splitlines() if line.startswith("removed: ")]
    assert {line.split(": ", 1)[1].split(" (")[0] for line in removed} == rows
    assert f"CIF 1 {out} lost {len(rows)} files" in text.stdout


def test_interrupted_sync_keeps_the_headers_it_read(tmp_path, source_urls, server, archive):
    """SIGINT in the middle of a first sync: exit 130, the headers read so far are in the
    index, and the next sync reads only the others (fails without batch commits: the index
    held no version and the second sync read every header again)."""
    import sqlite3

    root = tmp_path / "c"
    server.set_fault("slow", on="file", delay=0.3)
    child = subprocess.Popen([sys.executable, "-c", ENTRY, "sync", "--cache-dir", str(root),
                              "--source", source_urls[0]], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "CCFCACHE_WORKERS": "2"})

    def versions() -> int:
        try:
            with sqlite3.connect(f"file:{root / 'index.sqlite'}?mode=ro", uri=True) as db:
                return db.execute("SELECT count(*) FROM versions").fetchone()[0]
        except sqlite3.Error:
            return 0

    deadline = time.monotonic() + 120
    while versions() == 0 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    kept = versions()
    total = len(archive.full_names())
    assert 0 < kept < total
    server.clear_faults()
    server.reset_counts()
    done = cli("sync", "--cache-dir", str(root), "--json")
    assert done.returncode == 0, done.stderr
    assert versions() >= total
    assert json.loads(done.stdout)["read"] == total - kept  # only the headers not yet read


def test_verify_rehashes_by_default_quick_does_not_and_problems_are_named(cli_cache):
    fetched = json.loads(run("fetch", "--cache-dir", str(cli_cache), XRT3, "--json").stdout)
    blob = Path(fetched[XRT3]).resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only a re-hash sees it
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    quick = run("verify", "--cache-dir", str(cli_cache), "--quick")
    assert quick.exit_code == 0, quick.output
    full = run("verify", "--cache-dir", str(cli_cache))
    assert full.exit_code == 1
    assert f"corrupt: {XRT3} (content {blob.name})" in full.stdout
    problems = json.loads(run("verify", "--cache-dir", str(cli_cache), "--json").stdout)
    assert problems["problems"][0]["names"] == [XRT3]
    blob.unlink()
    missing = run("verify", "--cache-dir", str(cli_cache), "--quick")
    assert missing.exit_code == 1 and f"missing: {XRT3} (content {blob.name})" in missing.stdout
