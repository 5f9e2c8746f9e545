"""The `ccfcache` command line (typer): parse arguments, call the library, print.

No logic lives here: every command opens a `Cache`, calls the library and prints the result
(rich in a terminal, plain in a pipe, `--json` for scripts); a `CcfCacheError` becomes one line
on stderr and a non-zero exit status.

Layout (nothing in this package imports `app`, so there is no import cycle):
- `common.py`  shared options (`CacheDir`, `JsonFlag`), `open_cache`, `fail`, printing helpers;
- `data.py`    sync, fetch, path, ls, stats;   `cifs.py`  cif, cifbuild, cifs, env;
- `admin.py`   prune, verify, doctor, pin, unpin;   `init.py`  init;   `demo.py`  demo;
- `app.py`     the typer app: registers every command, one line each.

Adding a command: put the function in a module here (a new one for a new group, e.g.
`mount.py`), importing helpers from `.common`; then add one line to `app.py`:
``app.command()(mount.mount)``. The docs test requires the command and its help line in
docs/cli.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "command_names", "run"]


def __getattr__(name: str) -> Any:
    """`app`, `command_names` and `run`, imported on first use: `ccfcache cif` imports its
    own command module (`cli.cifs`) without the app and every other command's."""
    if name in __all__:
        import importlib

        module = importlib.import_module(f"{__name__}.app")  # (binds `app` to the module:
        globals().update(app=module.app, command_names=module.command_names,
                         run=module.run)  # then to the typer app, as before)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
