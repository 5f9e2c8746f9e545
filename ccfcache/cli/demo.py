"""The `demo` command: a generated archive served on 127.0.0.1, the main job run against it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import CcfCacheError
from .common import fail


def demo(
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Where to put the demo archive and cache.")
    ] = None,
    scale: Annotated[float, typer.Option(help="Shrink real sizes by this factor.")] = 200.0,
    keep: Annotated[
        bool | None, typer.Option("--keep/--no-keep", help="Keep the demo folder (default: "
                                  "kept with --workdir, removed otherwise).")
    ] = None,
) -> None:
    """Generate a small archive, serve it on 127.0.0.1 and run the main job against it."""
    from ..demo.run import run_demo

    try:
        run_demo(workdir, scale=scale, keep=keep, echo=typer.echo)
    except CcfCacheError as exc:
        fail(str(exc))
