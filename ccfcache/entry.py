"""The `ccfcache` console script: answers a warm `ccfcache path NAME...` with the standard
library alone, and hands everything else to the typer CLI."""

from __future__ import annotations

import os
import sys


def _fast_path(argv: list[str]) -> int | None:
    """Print the paths of already-stored names; None when the full CLI is needed."""
    if len(argv) < 2 or argv[0] != "path":
        return None
    argv = list(argv)
    cache_dir = None
    if "--cache-dir" in argv[1:-1]:
        at = argv.index("--cache-dir")
        cache_dir = argv[at + 1]
        del argv[at : at + 2]
    if len(argv) < 2 or any(a.startswith("-") for a in argv[1:]):
        return None
    from .config import env
    from .errors import InvalidName
    from .fastpath import layered_layout, local_path
    from .names import canonical_name

    folder = cache_dir or env("CCFCACHE_DIR")
    if folder:
        root = os.path.abspath(os.path.expanduser(folder))
    else:
        from .config import default_cache_dir  # platformdirs: only when no folder is given

        root = str(default_cache_dir())
    layout = layered_layout(root)  # the site cache (CCFCACHE_SITE_DIR) is looked at first
    found = []
    for name in argv[1:]:
        try:
            path = local_path(layout, canonical_name(name))
        except InvalidName:
            return None
        if path is None:
            return None
        found.append(path)
    sys.stdout.write("\n".join(found) + "\n")
    return 0


def main() -> None:
    """Entry point of the console script."""
    code = _fast_path(sys.argv[1:])
    if code is not None:
        raise SystemExit(code)
    from .cli import run

    run()
