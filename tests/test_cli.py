"""The command line: every command runs against the real server, errors are one line with a
non-zero exit, the warm `path` answers without the typer CLI, and docs mention each command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccfcache.cli import app, command_names

runner = CliRunner()
XRT3 = "XRT3_XAREAEF_0012.CCF"
DOCS = Path(__file__).parent.parent / "docs"


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("ccfcache: error")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def cli_cache(tmp_path, source_urls, server):
    root = tmp_path / "cache"
    result = run("sync", "--cache-dir", str(root), *sum((["--source", u] for u in source_urls),
                                                        []))
    assert result.exit_code == 0, result.output
    server.reset_counts()
    return root


def test_sync_ls_stats_json(cli_cache, archive):
    result = run("ls", "--cache-dir", str(cli_cache), "--json")
    assert result.exit_code == 0
    names = {row["name"] for row in json.loads(result.output)}
    assert names == set(archive.full_names())
    stats = json.loads(run("stats", "--cache-dir", str(cli_cache), "--json").output)
    assert stats["constituents_listed"] == len(names) and stats["contents_stored"] == 0


def test_fetch_and_path(cli_cache, archive, server):
    result = run("fetch", "--cache-dir", str(cli_cache), XRT3)
    assert result.exit_code == 0
    path = Path(result.output.split("\t")[1].strip())
    assert path.stat().st_size == archive.entries[XRT3].size
    result = run("path", "--cache-dir", str(cli_cache), XRT3)
    assert result.output.strip() == str(path)
    assert server.counts(XRT3).gets == 1


def test_warm_path_by_subprocess_skips_typer(cli_cache, archive):
    run("fetch", "--cache-dir", str(cli_cache), XRT3)
    env = {**os.environ, "CCFCACHE_DIR": str(cli_cache)}
    code = ("import sys; from ccfcache.entry import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n"
            "    heavy = [m for m in ('typer', 'httpx', 'astropy', 'sqlite_utils')"
            " if m in sys.modules]\n    print('heavy:', heavy)\n    raise")
    out = subprocess.run([sys.executable, "-c", code, "path", XRT3], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "heavy: []" in out
    assert Path(out.splitlines()[0]).stat().st_size == archive.entries[XRT3].size


def test_fetch_by_subprocess_skips_httpx_command_line(cli_cache, archive):
    # the console script imports httpx without httpx._main (click, rich.syntax, pygments)
    env = {**os.environ, "CCFCACHE_DIR": str(cli_cache)}
    code = ("import sys; from ccfcache.entry import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n"
            "    print('loaded:', [m for m in ('httpx', 'httpx._main', 'pygments')"
            " if sys.modules.get(m)])\n    raise")
    out = subprocess.run([sys.executable, "-c", code, "fetch", XRT3], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "loaded: ['httpx']" in out
    path = Path(out.splitlines()[0].split("\t")[1])
    assert path.stat().st_size == archive.entries[XRT3].size


def test_cif_and_env_and_cifs(cli_cache, tmp_path):
    out = tmp_path / "ccf.cif"
    result = run("cif", "--cache-dir", str(cli_cache), "--obs-date", "2021-03-10T00:21:11",
                 "--analysis-date", "2021-03-25T09:56:39", "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert out.exists() and data["rows"] and all(r["xxh3"] for r in data["rows"])
    env = run("env", "--cache-dir", str(cli_cache), "--cif", str(out))
    assert f"export SAS_CCF={out}" in env.output and "SAS_CCFPATH=" in env.output
    cifs = json.loads(run("cifs", "--cache-dir", str(cli_cache), "--json").output)
    assert cifs[0]["path"] == str(out)


def test_cifbuild_drop_in(cli_cache, tmp_path):
    out = tmp_path / "drop.cif"
    result = run("cifbuild", "--cache-dir", str(cli_cache), f"calindexset={out}",
                 "withobservationdate=yes", "observationdate=2011-03-04T12:00:00",
                 "analysisdate=now")
    assert result.exit_code == 0, result.output
    from ccfcache.cif import read_cif

    assert read_cif(out).obs_date == "2011-03-04T12:00:00"


def test_cifbuild_rejects_unknown_parameter(cli_cache):
    result = run("cifbuild", "--cache-dir", str(cli_cache), "calindexset=x.cif", "bogus=1")
    assert result.exit_code != 0
    assert "bogus" in one_line_error(result)


def test_cif_from_odf(cli_cache, tmp_path):
    odf = tmp_path / "odf"
    odf.mkdir()
    (odf / "0123_0123456789_SCX00000SUM.ASC").write_text(
        "// Observation\nOBSERVATION\n0123456789\n2011-03-04T12:00:00 // scheduled start\n"
        "2011-03-05T02:00:00 // scheduled end\nEXPOSURES\n")
    result = run("cif", "--cache-dir", str(cli_cache), "--odf", str(odf), "-o",
                 str(tmp_path / "o.cif"))
    assert result.exit_code == 0, result.output
    assert "2011-03-04T12:00:00" in result.output


@pytest.mark.parametrize(
    ("args", "needle", "code"),
    [
        (["path", "../x.CCF"], "not a constituent name", 1),
        (["path", "EPN_NOSUCH_0001.CCF"], "EPN_NOSUCH_0001.CCF", 1),
        (["cif", "--obs-date", "2021-02-30"], "2021-02-30", 1),
        (["cif"], "--obs-date", 2),  # a usage error
        (["cif", "--odf", "/nonexistent/odf"], "/nonexistent/odf", 1),
    ],
)
def test_bad_input_is_one_line_and_nonzero(cli_cache, args, needle, code, tmp_path):
    before = sorted(p.name for p in cli_cache.rglob("*"))
    result = run(*args[:1], "--cache-dir", str(cli_cache), *args[1:])
    assert result.exit_code == code
    assert needle in one_line_error(result)
    assert "Traceback" not in result.output
    assert sorted(p.name for p in cli_cache.rglob("*")) == before


def test_unreachable_server(tmp_path, monkeypatch):
    monkeypatch.setenv("CCFCACHE_RETRIES", "1")
    result = run("sync", "--cache-dir", str(tmp_path / "c"), "--source", "http://127.0.0.1:9/x/")
    assert result.exit_code == 1
    assert "127.0.0.1:9" in one_line_error(result)


def test_demo_runs_offline(tmp_path):
    result = run("demo", "--workdir", str(tmp_path / "demo"), "--scale", "2000")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (tmp_path / "demo" / "ccf.cif").exists()


def test_every_command_is_documented():
    text = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    missing = [name for name in command_names() if f"ccfcache {name}" not in text]
    assert not missing, f"commands not in docs/: {missing}"
    reference = (DOCS / "cli.md").read_text()
    for info in app.registered_commands:
        summary = (info.callback.__doc__ or "").strip().splitlines()[0]
        assert summary in reference, f"docs/cli.md lacks the help line {summary!r}"
