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

from .app import app, command_names, run

__all__ = ["app", "command_names", "run"]
