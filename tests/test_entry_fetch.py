"""`ccfcache fetch NAME...` runs without the typer parser (`entry._fetch_arguments`): the same
command function, so the same output and exit status as through typer, errors included;
anything else (other options, --help, `--`, repeats) goes to typer."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_entry_cif import _run  # the same two ways to run a command

from ccfcache.entry import _fetch_arguments

XRT3 = "XRT3_XAREAEF_0012.CCF"


@pytest.mark.parametrize("argv, expected", [
    (["fetch", "A.CCF"], {"names": ["A.CCF"]}),
    (["fetch", "A.CCF", "--cache-dir", "~/c", "B.CCF", "--json"],
     {"names": ["A.CCF", "B.CCF"], "cache_dir": Path("~/c"), "as_json": True}),
    (["fetch", "--cache-dir=a b", "A.CCF"], {"names": ["A.CCF"], "cache_dir": Path("a b")}),
])
def test_plain_fetch_arguments_are_taken(argv: list[str], expected: dict) -> None:
    assert _fetch_arguments(argv) == expected


@pytest.mark.parametrize("argv", [
    ["fetch"], ["fetch", "--json"], ["fetch", "--help"], ["fetch", "A", "-h"],
    ["fetch", "--cif", "x.cif"], ["fetch", "--source", "esa", "A"], ["fetch", "--", "-A"],
    ["fetch", "A", "--json", "--json"], ["fetch", "A", "--cache-dir"],
    ["fetch", "A", "--cache-dir", "a", "--cache-dir", "b"], ["fetch", "A", "--cache-dir="],
    ["fetch", "A", "--cache-dir", "-x"], ["--offline", "fetch", "A"], ["path", "A"],
])
def test_anything_else_goes_to_typer(argv: list[str]) -> None:
    assert _fetch_arguments(argv) is None


@pytest.mark.parametrize("args", [
    [XRT3], [XRT3, "--json"], ["NOT_A_CONSTITUENT.CCF"], [XRT3, "EMOS1_NOSUCH_0001.CCF"],
])
def test_the_fast_path_answers_as_typer(synced, args: list[str]) -> None:
    answers = []
    for typer_path in (True, True, False):  # (the first downloads: both others find it)
        done = _run(["fetch", *args], synced.root, typer_path=typer_path)
        answers.append((done.returncode, done.stdout, done.stderr))
    assert answers[1] == answers[2]
    if len(args) == 1 and args[0] == XRT3:
        assert answers[2][0] == 0 and answers[2][1].startswith(XRT3 + "\t")
    if "NOSUCH" in str(args) or "NOT_A" in str(args):
        assert answers[2][0] != 0 and "ccfcache: error:" in answers[2][2]
