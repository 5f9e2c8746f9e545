"""The typer application: every command is registered here, in the order `--help` shows.

To add a command: write its function in a module of this package (one module per group of
commands; import the shared options and helpers from `.common`, keep logic in the library),
then add ONE line below, e.g. ``app.command()(mif.mif)``. Pass `name=` when the function's
name differs from the command's, and `context_settings=` only when the command parses its own
arguments (as `cifbuild` does).
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from . import admin, cifs, data, demo, init, mount

app = typer.Typer(
    help="A lazy, content-addressed cache of XMM-Newton calibration files (CCF).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# -- registrations: one line per command --------------------------------------------------------
app.command()(data.sync)
app.command()(data.fetch)
app.command()(data.path)
app.command(name="ls")(data.ls_command)
app.command()(data.stats)
app.command()(cifs.cif)
app.command(context_settings=cifs.OWN_ARGUMENTS)(cifs.cifbuild)
app.command()(cifs.cifs)
app.command()(cifs.env)
app.command()(admin.prune)
app.command()(admin.verify)
app.command()(admin.doctor)
app.command()(admin.pin)
app.command()(admin.unpin)
app.command()(init.init)
app.command()(demo.demo)
app.command()(mount.mount)
app.command()(mount.umount)


def run() -> None:
    """Run the CLI (console script target)."""
    app()


def command_names() -> list[str]:
    """Every command name (used by the docs test)."""
    names = []
    for info in app.registered_commands:
        callback: Callable = info.callback  # type: ignore[assignment]
        names.append(info.name or callback.__name__.replace("_", "-"))
    return names
