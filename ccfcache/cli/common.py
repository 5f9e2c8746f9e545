"""What every command module shares: the common options, opening a cache, one-line errors,
and printing (JSON for scripts, tables for people)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import CcfCacheError

CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Cache folder (default: $CCFCACHE_DIR, else the user cache)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error and exit non-zero."""
    typer.echo(f"ccfcache: error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def open_cache(cache_dir: Path | None, *, progress: bool = True, **kwargs: Any) -> Iterator:
    """A Cache for one command; library errors become one-line CLI errors."""
    from ..cache import Cache
    from ..progress import NullProgress, RichProgress

    try:
        bar = RichProgress() if progress and sys.stderr.isatty() else NullProgress()
        with Cache(cache_dir, progress=bar, **kwargs) as cache:
            yield cache
    except CcfCacheError as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        fail("interrupted", 130)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*[("" if v is None else str(v)) for v in row])
    Console().print(table)


def human(size: int | None) -> str:
    """A size for people (1.2 MB); '?' when unknown."""
    from ..prune import human_size

    return "?" if size is None else human_size(size)
