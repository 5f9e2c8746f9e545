"""The typer application: every command is registered here, in the order `--help` shows.

To add a command: write its function in a module of this package (one module per group of
commands; import the shared options and helpers from `.common`, keep logic in the library),
then add ONE line below, e.g. ``app.command()(mif.mif)``. Pass `name=` when the function's
name differs from the command's, and `context_settings=` only when the command parses its own
arguments (as `cifbuild` does).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from . import admin, cifs, data, demo, init, mount, pipelines
from .common import EXIT_INTERRUPTED, EXIT_USAGE

app = typer.Typer(
    help="A lazy, content-addressed cache of XMM-Newton calibration files (CCF).",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"ccfcache {version('ccfcache')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True,
                           help="Print the version and exit.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Log each HTTP request on stderr.")
    ] = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="Contact no server (also CCFCACHE_OFFLINE=1); "
                           "say what is missing instead.")
    ] = False,
) -> None:
    """A lazy, content-addressed cache of XMM-Newton calibration files (CCF)."""
    if verbose:
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        for name in ("httpx", "ccfcache"):
            logger = logging.getLogger(name)
            logger.setLevel(logging.INFO)
            logger.addHandler(handler)
    if offline:
        from ..config import set_offline

        set_offline()


# -- registrations: one line per command --------------------------------------------------------
app.command()(data.sync)
app.command()(data.fetch)
app.command()(data.path)
app.command(name="ls")(data.ls_command)
app.command()(data.stats)
app.command()(cifs.cif)
app.command(context_settings=cifs.OWN_ARGUMENTS, epilog=cifs.CIFBUILD_EPILOG)(cifs.cifbuild)
app.command()(cifs.cifs)
app.command()(cifs.env)
app.command()(pipelines.mif)
app.command()(admin.prune)
app.command()(admin.verify)
app.command()(admin.doctor)
app.command()(admin.pin)
app.command()(admin.unpin)
app.command()(init.init)
app.command()(demo.demo)
app.command()(mount.mount)
app.command()(mount.umount)


def run(argv: list[str] | None = None) -> None:
    """Run the CLI (console script target). A usage error is one line on stderr and exit
    status 2; Ctrl-C outside a command's own handling is exit status 130."""
    try:  # typer >= 0.16 carries its own copy of click
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover - older typer
        import click.exceptions as click  # type: ignore[no-redef]

    command = typer.main.get_command(app)
    try:
        code = command.main(args=sys.argv[1:] if argv is None else argv, prog_name="ccfcache",
                            standalone_mode=False)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
            typer.echo(exc.ctx.get_help())
            raise SystemExit(EXIT_USAGE) from None
        where = exc.ctx.command_path if exc.ctx is not None else "ccfcache"
        typer.echo(f"ccfcache: error: {exc.format_message()} (see `{where} --help`)", err=True)
        raise SystemExit(EXIT_USAGE) from None
    except click.ClickException as exc:
        typer.echo(f"ccfcache: error: {exc.format_message()}", err=True)
        raise SystemExit(exc.exit_code) from None
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("ccfcache: error: interrupted", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def command_names() -> list[str]:
    """Every command name (used by the docs test)."""
    names = []
    for info in app.registered_commands:
        callback = info.callback
        assert callback is not None  # every command is registered with its function
        names.append(info.name or callback.__name__.replace("_", "-"))
    return names
