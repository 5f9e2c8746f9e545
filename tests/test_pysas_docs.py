"""docs/pysas.md: every `sh` block runs, in order, in one bash session, with the caches it
uses configured with the test server as their source, from a folder holding the event list the
page names (the real one, its CALINDEX rewritten to the test archive, gzipped)."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
from pathlib import Path

import pytest

from ccfcache.cif import read_cif
from ccfcache.config import write_config_file

DOC = Path(__file__).resolve().parents[1] / "docs" / "pysas.md"


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def test_every_sh_block_of_the_pysas_page_runs(tmp_path: Path, archive, source_urls) -> None:
    from test_calindex import EVENTS, rewrite_calindex

    if not EVENTS.is_file():
        pytest.skip(f"{EVENTS} (real fixture) missing")
    blocks = sh_blocks(DOC.read_text())
    assert len(blocks) >= 4
    script = "\n".join(blocks)
    for command in ("fetch --cif", "env --cif", "verify --cif", "pin", "mif -o", "sync --mif"):
        assert f"ccfcache {command}" in script  # what the page promises is what runs
    work = tmp_path / "work"
    work.mkdir()
    names = [n for n in archive.valid_names() if archive.entries[n].category == "XMMCCF"][:5]
    plain = rewrite_calindex(tmp_path / "evts.fits", [archive.full_dir / n for n in names])
    (work / "P0201901401M2S002MIEVLI0000.FTZ").write_bytes(gzip.compress(plain.read_bytes()))
    for folder in (tmp_path / "cache", work / "seeded"):
        folder.mkdir()
        write_config_file(folder, {"sources": source_urls})
    env = {**os.environ, "CCFCACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    # the two CIFs (the cache's own, and the one from the MIF-seeded cache) agree
    ours = [(r["name"], r["md5"]) for r in read_cif(work / "ccf.cif").rows]
    seeded = [(r["name"], r["md5"]) for r in read_cif(work / "seeded.cif").rows]
    assert ours and ours == seeded
    assert len(read_cif(work / "ccf.mif").rows) > len(ours)
