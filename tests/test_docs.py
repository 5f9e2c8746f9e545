"""Every shell and Python example in README.md and docs/*.md runs, against the local test
server, so the docs stay true.

How examples are run (docs/cli.md says this for writers of docs):
- Fenced blocks tagged `bash`, `sh`, `shell` or `python` run as they are; in `console` blocks
  the lines starting with `$ ` run. Other tags (`cron`, `text`, untagged) are not run.
- Each markdown file runs its blocks in order, in one sandbox: a fresh folder as the working
  directory and $HOME, `CCFCACHE_DIR` a cache whose config.json names the test server (so
  `ccfcache sync` syncs from it), synced once, `ccfcache` on PATH, and stand-ins for SAS tasks
  (`epproc`, `rgsproc`, ...) that fail unless SAS_CCF and SAS_CCFPATH hand over a whole CIF.
  Shell blocks run with `bash -e -o pipefail`.
- A block that cannot run here is marked on the line just before its fence with
  `<!-- docs-test: skip: REASON -->` (a reason is required: e.g. it installs packages, needs the
  real archive or writes outside the sandbox).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
RUN_TAGS = {"bash", "sh", "shell", "console", "python"}
SKIP_RE = re.compile(r"<!--\s*docs-test:\s*skip:\s*(?P<reason>\S.*?)\s*-->")
SAS_TASKS = ("epproc", "emproc", "rgsproc", "omichain", "sasversion")

# a SAS task stand-in: the hand-over is whole (the CIF exists, every row's file is in the view)
SAS_STANDIN = """#!{python}
import os, sys
from ccfcache.cif import read_cif
ccf, path = os.environ.get("SAS_CCF"), os.environ.get("SAS_CCFPATH")
if not ccf or not path:
    sys.exit("SAS_CCF and SAS_CCFPATH must be set")
rows = read_cif(ccf).rows
missing = [r["name"] for r in rows if not os.path.exists(os.path.join(path, r["name"]))]
if missing:
    sys.exit(f"files missing from SAS_CCFPATH: {{missing[:5]}}")
print(f"{{os.path.basename(sys.argv[0])}}: {{len(rows)}} calibration files found")
"""


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence
    tag: str
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, with their skip markers."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^(```+)\s*(\S*)", lines[i])
        if not fence:
            i += 1
            continue
        start, tag = i, fence.group(2).lower()
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence.group(1)):
            j += 1
        before = lines[start - 1] if start else ""
        marker = SKIP_RE.search(before)
        found.append(Block(path, start + 1, tag, "\n".join(lines[start + 1 : j]),
                           marker.group("reason") if marker else None))
        i = j + 1
    return found


def _shell(block: Block) -> str:
    if block.tag != "console":
        return block.code
    return "\n".join(line[2:] for line in block.code.splitlines() if line.startswith("$ "))


@pytest.fixture
def sandbox(tmp_path, source_urls, server):
    """A working folder, a cache configured with (and synced from) the test server, and an
    environment whose PATH has this ccfcache and the SAS stand-ins."""
    home = tmp_path / "work"
    home.mkdir()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "config.json").write_text(json.dumps({"sources": source_urls}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for task in SAS_TASKS:
        script = bin_dir / task
        script.write_text(SAS_STANDIN.format(python=sys.executable))
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCFCACHE_", "SAS_"))}
    env.update(HOME=str(home), CCFCACHE_DIR=str(cache), CCFCACHE_RETRIES="1",
               PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent),
                                     env.get("PATH", "")]))
    done = subprocess.run(["ccfcache", "sync"], cwd=home, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return home, env


def test_every_skip_marker_gives_a_reason_and_precedes_a_block():
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            if "docs-test" in line:
                assert SKIP_RE.search(line), f"{path}:{number}: malformed marker {line!r}"
        marked = sum(bool(SKIP_RE.search(line)) for line in text.splitlines())
        assert marked == sum(b.skip is not None for b in blocks(path)), (
            f"{path}: a docs-test marker must be on the line just before a fence")


def test_docs_have_examples_to_run():
    runnable = [b for p in DOCS for b in blocks(p) if b.tag in RUN_TAGS and not b.skip]
    assert len(runnable) >= 10


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_examples_run(path, sandbox):
    home, env = sandbox
    ran = 0
    for block in blocks(path):
        if block.tag not in RUN_TAGS or block.skip:
            continue
        if block.tag == "python":
            command = [sys.executable, "-c", block.code]
        else:
            command = ["bash", "-e", "-o", "pipefail", "-c", _shell(block)]
        done = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (
            f"{block.where} ({block.tag}) failed with status {done.returncode}:\n"
            f"{block.code}\n--- stdout\n{done.stdout[-2000:]}\n--- stderr\n"
            f"{done.stderr[-3000:]}")
        assert "Traceback" not in done.stderr, f"{block.where}:\n{done.stderr[-3000:]}"
        ran += 1
    if not ran:
        pytest.skip(f"{path.name} has no runnable example")
