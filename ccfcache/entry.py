"""The `ccfcache` console script: answers a warm `ccfcache path NAME...` with the standard
library alone, runs a plain `ccfcache cif` or `ccfcache fetch NAME...` without the typer
parser, and hands everything else to the typer CLI."""

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


# `ccfcache cif` options a pipeline passes: option -> (keyword of cli.cifs.cif, takes a value)
_CIF_OPTIONS = {
    "--obs-date": ("obs_date", True), "--analysis-date": ("analysis_date", True),
    "-o": ("output", True), "--output": ("output", True), "--cache-dir": ("cache_dir", True),
    "--category": ("category", True), "--fullpath": ("fullpath", False),
    "--historical": ("historical", False), "--pin": ("pin", False),
}
_PATHS = ("output", "cache_dir")


def _cif_arguments(argv: list[str]) -> dict[str, object] | None:
    """The keyword arguments typer would pass to `cli.cifs.cif` for `cif` followed by the
    options above, each at most once, values neither empty nor starting with '-'; None for
    anything else (other options, --help, repeats, positionals): the typer CLI parses it."""
    if not argv or argv[0] != "cif":
        return None
    found: dict[str, object] = {}
    rest = argv[1:]
    while rest:
        token = rest.pop(0)
        option, equals, value = token.partition("=")
        spec = _CIF_OPTIONS.get(option if token.startswith("--") else token)
        if spec is None:
            return None
        key, takes_value = spec
        if takes_value and not equals:
            if not rest:
                return None
            value = rest.pop(0)
        if key in found or (takes_value and (not value or value.startswith("-"))) or (
                not takes_value and equals):
            return None
        found[key] = value if takes_value else True
    for key in _PATHS:
        if key in found:
            from pathlib import Path

            found[key] = Path(str(found[key]))
    return found


def _fetch_arguments(argv: list[str]) -> dict[str, object] | None:
    """The keyword arguments typer would pass to `cli.data.fetch` for `fetch` followed by
    constituent names and at most one --cache-dir DIR and one --json; None for anything else
    (other options, --help, `--`, a name starting with '-', no name): typer parses it."""
    if not argv or argv[0] != "fetch":
        return None
    names: list[str] = []
    found: dict[str, object] = {}
    rest = argv[1:]
    while rest:
        token = rest.pop(0)
        option, equals, value = token.partition("=")
        if token == "--json" and "as_json" not in found:
            found["as_json"] = True
        elif option == "--cache-dir" and "cache_dir" not in found:
            if not equals:
                if not rest:
                    return None
                value = rest.pop(0)
            if not value or value.startswith("-"):
                return None
            from pathlib import Path

            found["cache_dir"] = Path(value)
        elif token.startswith("-"):
            return None
        else:
            names.append(token)
    return {"names": names, **found} if names else None


def _fast_command(argv: list[str]) -> int | None:
    """Run `ccfcache cif` with plain options (`_cif_arguments`), or `ccfcache fetch NAME...`
    (`_fetch_arguments`), as the typer CLI would: the same command function, its output and
    exit statuses, without click's parsing and the pydantic validation typer builds for every
    option (most of a warm CIF's start-up; ~0.2 CPU-s of every fetch)."""
    arguments = _cif_arguments(argv)
    fetching = arguments is None
    if fetching:
        arguments = _fetch_arguments(argv)
    if arguments is None:
        return None
    import typer

    from .cli.common import EXIT_INTERRUPTED

    if fetching:
        from .cli.data import fetch as command
    else:
        from .cli.cifs import cif as command  # type: ignore[assignment]
    try:
        command(**arguments)  # type: ignore[arg-type]
    except typer.Exit as exc:
        return int(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("ccfcache: error: interrupted", err=True)
        return EXIT_INTERRUPTED
    return 0


def _skip_httpx_command_line() -> None:
    """The ccfcache command never runs httpx's own command line, whose module (`httpx._main`,
    imported by `import httpx` when click and rich are installed, as typer installs them)
    imports pygments' lexers and rich's syntax, table and progress: ~0.1 CPU-s of every
    command that downloads. Without it httpx defines a stub `main`, as it does when its `cli`
    extra is not installed. Only in this process, whose code is ours: the library never
    does this to a program that imports it."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def main() -> None:
    """Entry point of the console script."""
    code = _fast_path(sys.argv[1:])
    if code is None:
        _skip_httpx_command_line()
        code = _fast_command(sys.argv[1:])
    if code is not None:
        raise SystemExit(code)
    from .cli import run

    run()
