"""A CIF being built holds a lease on its contents: a `prune` running meanwhile keeps them, so
the SAS_CCFPATH a build returns never holds a dangling link (issue 13). A prune loop against
builds in two other processes, on a cache synced from the real test server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from ccfcache import Cache

CCFCACHE = str(Path(sys.executable).with_name("ccfcache"))

BUILDS = textwrap.dedent("""
    import json, sys
    import ccfcache.build as build
    from ccfcache import Cache
    from ccfcache.errors import CcfCacheError
    from ccfcache.handover import dangling_links

    out, count = sys.argv[1], int(sys.argv[2])
    dangling, failed = [], []
    leased_build = build._build_leased

    def checked(*args, **kwargs):  # the view, checked at the last moment the lease is held:
        result = leased_build(*args, **kwargs)  # what a prune may remove after that is not
        dangling.append(len(dangling_links(result.view_dir)))  # the lease's to keep
        return result

    build._build_leased = checked
    with Cache() as cache:  # $CCFCACHE_DIR
        for i in range(count):
            obs = f"{2008 + i % 12}-{1 + i % 12:02d}-15"
            try:
                cache.cif(obs, "2030-01-01", f"{out}.cif-{i}")
            except CcfCacheError as exc:
                failed.append(str(exc))
    print(json.dumps({"dangling": dangling, "failed": failed}))
""")


def test_a_prune_loop_never_leaves_a_returned_cif_dangling(tmp_path, source_urls) -> None:
    """A prune to --max-size 1 runs in a loop while two processes build 12 CIFs each: every
    build succeeds and its view is whole when it returns (checked as the build's lease ends:
    a prune that starts after that may remove them, as the lease says); prune says it kept
    leased contents, and no lease is left behind. Fails without the lease: builds came back
    with dangling views, or failed after three re-fetch rounds ("rows lost their files
    again")."""
    root = tmp_path / "cache"
    with Cache(root, sources=source_urls, workers=4) as cache:
        cache.sync()
    stop = threading.Event()
    reports: list[dict] = []
    errors: list[str] = []

    def prune_loop() -> None:  # as fast as prune goes (through the API: no process start)
        with Cache(root) as pruning:
            while not stop.is_set():
                try:
                    reports.append(pruning.prune(max_size=1).as_dict())
                except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
                    errors.append(f"{type(exc).__name__}: {exc}")
                stop.wait(0.01)

    pruner = threading.Thread(target=prune_loop)
    pruner.start()
    try:
        builders = [subprocess.Popen([sys.executable, "-c", BUILDS, str(tmp_path / f"b{n}"),
                                      "12"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "CCFCACHE_RETRIES": "1",
                                          "CCFCACHE_DIR": str(root)})
                    for n in range(2)]
        outputs = [b.communicate(timeout=600) for b in builders]
    finally:
        stop.set()
        pruner.join()
    dangling: list[int] = []
    failed: list[str] = []
    for builder, (out, err) in zip(builders, outputs, strict=True):
        assert builder.returncode == 0, err
        outcome = json.loads(out)
        dangling += outcome["dangling"]
        failed += outcome["failed"]
    print(f"{len(reports)} prunes; dangling links per returned CIF: {dangling}; "
          f"failed builds: {failed}")
    assert failed == []
    assert len(dangling) == 24 and set(dangling) == {0}
    assert errors == []
    assert sum(r.get("kept_leased", 0) for r in reports) > 0
    leftover = [p.name for p in (root / "locks").iterdir() if p.name.startswith("lease-")]
    assert leftover == []  # every build removed its lease when it returned
