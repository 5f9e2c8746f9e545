"""`ccfcache cif` with plain options runs without the typer parser (`entry._fast_command`): the
same command function, so the same output, exit status and CIF as through typer, for every
argument list it takes; anything else (other options, --help, repeats) goes to typer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ccfcache.entry import _cif_arguments

ANAL = "2021-03-25T09:56:39"


@pytest.mark.parametrize("argv, expected", [
    (["cif", "--obs-date", "2020-01-01", "-o", "x.cif"],
     {"obs_date": "2020-01-01", "output": Path("x.cif")}),
    (["cif", "--obs-date=now", "--output=a b.cif", "--cache-dir", "~/c", "--pin",
      "--fullpath", "--historical", "--category", "scisimccf", "--analysis-date", "now"],
     {"obs_date": "now", "output": Path("a b.cif"), "cache_dir": Path("~/c"), "pin": True,
      "fullpath": True, "historical": True, "category": "scisimccf", "analysis_date": "now"}),
    (["cif"], {}),
])
def test_plain_cif_options_are_taken(argv: list[str], expected: dict) -> None:
    assert _cif_arguments(argv) == expected


@pytest.mark.parametrize("argv", [
    ["path", "X.CCF"], ["cif", "--json"], ["cif", "--help"], ["cif", "-h"],
    ["cif", "--odf", "d"], ["cif", "--dry-run"], ["cif", "--source", "esa"],
    ["cif", "--obs-date", "a", "--obs-date", "b"], ["cif", "--obs-date"],
    ["cif", "--obs-date", "-1d"], ["cif", "--obs-date="], ["cif", "-o=x"], ["cif", "-ox"],
    ["cif", "--pin=yes"], ["cif", "extra"], ["--offline", "cif", "--obs-date", "now"],
    ["cif", "--obs"],
])
def test_anything_else_goes_to_typer(argv: list[str]) -> None:
    assert _cif_arguments(argv) is None


def _run(args: list[str], root: Path, *, typer_path: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCFCACHE_")}
    env["CCFCACHE_DIR"] = str(root)
    command = ([sys.executable, "-c", "from ccfcache.cli import run; run()", *args]
               if typer_path else ["ccfcache", *args])
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _without_date_card(data: bytes) -> bytes:
    """A CIF's bytes with the time it was written (DATE, and HISTORY's) blanked."""
    return re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.000' / creation| )", b"TIME", data)


@pytest.mark.parametrize("extra", [
    [], ["--fullpath"], ["--pin", "--historical"], ["--category", "xmmccf"],
    ["--category", "nonsense"], ["--analysis-date", "not a date"],
])
def test_the_fast_path_answers_as_typer(synced, tmp_path: Path, extra: list[str]) -> None:
    outputs = []
    for typer_path in (True, True, False):  # (the first fetches: both others find it warm)
        out = tmp_path / "ccf.cif"  # (its path is in the CIF: the same for both)
        out.unlink(missing_ok=True)
        args = ["cif", "--obs-date", "2021-03-10T00:21:11", "-o", str(out), *extra]
        if "--analysis-date" not in extra:
            args += ["--analysis-date", ANAL]
        done = _run(args, synced.root, typer_path=typer_path)
        text = (done.returncode, done.stdout.replace(str(out), "OUT"),
                done.stderr.replace(str(out), "OUT"))
        outputs.append((text, _without_date_card(out.read_bytes()) if out.exists() else None))
    assert outputs[1] == outputs[2]
    if "nonsense" in str(extra) or "not a" in str(extra):
        assert outputs[2][0][0] != 0 and "ccfcache: error:" in outputs[2][0][2]
    else:
        assert outputs[2][0][0] == 0 and "already cached" in outputs[2][0][2]
        assert outputs[2][1] is not None and b"CALINDEX" in outputs[2][1]


def test_a_usage_error_on_the_fast_path_is_typers(synced, tmp_path: Path) -> None:
    for typer_path in (True, False):
        done = _run(["cif", "-o", str(tmp_path / "x.cif")], synced.root, typer_path=typer_path)
        assert done.returncode == 2
        assert "give --obs-date" in done.stderr
