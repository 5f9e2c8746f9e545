"""What every command module shares: the common options, opening a cache, one-line errors,
the first Ctrl-C, and printing (JSON for scripts, tables for people, TSV in a pipe).

Exit statuses (documented in docs/cli.md): 0 success; 1 an error (one line on stderr,
`ccfcache: error: ...`), or problems found by `verify`/`doctor`; 2 a usage error (unknown
option, missing argument, conflicting options); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import CcfCacheError, last_resort_message

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Cache folder (default: $CCFCACHE_DIR, else the user cache)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
SourceOpt = Annotated[
    list[str] | None,
    typer.Option("--source", help="Source URL, folder or preset (esa, esa-valid, heasarc, "
                 "heasarc-caldb, heasarc-s3; repeatable; remembered by the cache)."),
]


MAX_MESSAGE = 500  # characters of an error line; the rest is cut ("...")


def fail(message: str, code: int = EXIT_ERROR) -> None:
    """Print a one-line error (its first line, at most MAX_MESSAGE characters) and exit
    non-zero."""
    lines = message.splitlines()
    line = lines[0] if lines else message
    if len(line) > MAX_MESSAGE:
        line = line[:MAX_MESSAGE - 3] + "..."
    typer.echo(f"ccfcache: error: {line}", err=True)
    raise typer.Exit(code)


def usage_error(message: str) -> None:
    """A wrong use of the command line: one line, exit status 2."""
    fail(message, EXIT_USAGE)


def _hint(message: str) -> str:
    """Add the likely fix to an error that says a server could not be reached."""
    if "ConnectError" in message or "ConnectTimeout" in message:
        return (message + "; is the network up, does it need a proxy ($HTTPS_PROXY), or "
                "should another --source be used?")
    return message


def one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _hint(text)


class _Interrupt:
    """The first Ctrl-C: say what finished, release this process's download locks and exit
    130 at once. Downloads stop where they are: their partial files stay in the cache's tmp/
    and the next run resumes them (the same state a kill leaves, which the cache is built to
    survive). A second Ctrl-C is not needed."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.previous: Any = None

    def __enter__(self) -> _Interrupt:
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread (e.g. a test runner): leave it alone
            self.previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: object) -> None:
        from ..cancel import stop_downloads
        from ..locks import release_all_held
        from ..units import human_bytes

        message = "interrupted"
        tally = getattr(self.progress, "tally", None)
        if tally is not None and tally.planned_bytes:
            message += (f": {tally.files} files ({human_bytes(tally.bytes)}) finished of "
                        f"{human_bytes(tally.planned_bytes)} planned; partial downloads are "
                        "kept and the next run resumes them")
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        try:
            os.write(2, f"\nccfcache: error: {message}\n".encode())
        except OSError:
            pass
        stop_downloads()  # as for the API; here the exit then ends every thread at once
        release_all_held()
        os._exit(EXIT_INTERRUPTED)


@contextmanager
def open_cache(cache_dir: Path | None, *, progress: bool = True, create: bool = True,
               sources: list[str] | None = None, **kwargs: Any) -> Iterator[Any]:
    """A Cache for one command; library errors become one-line CLI errors.

    `create=False` (commands that only read) refuses a folder that is not a cache instead of
    creating one; no command takes over a non-empty folder that is not a cache.
    """
    from ..cache import Cache
    from ..config import resolve_cache_dir
    from ..placement import check_folder
    from ..progress import CliProgress, NullProgress

    try:
        root = resolve_cache_dir(cache_dir)
        check_folder(root, create=create)
        bar = CliProgress(watch=root / "tmp") if progress else NullProgress()
        with _Interrupt(bar), Cache(root, progress=bar, sources=sources, **kwargs) as cache:
            yield cache
    except CcfCacheError as exc:
        fail(one_line(exc))
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # an OSError or sqlite3 error no layer translated: one line
        from ..index import replaced_index_error

        replaced = replaced_index_error(exc)
        if replaced is not None:
            fail(one_line(replaced))
        message = last_resort_message(exc)
        if message is None:
            raise
        fail(message)


def say(message: str) -> None:
    """A note for the person at the terminal (stderr, so stdout stays data)."""
    typer.echo(message, err=True)


def download_summary(cache: Any, items: int | None = None, *, quiet: bool = False) -> None:
    """The one summary line of a command that downloads: files and bytes downloaded, files
    already cached (of `items` asked for)."""
    tally = getattr(cache.progress, "tally", None)
    if tally is None or quiet:
        return
    cached = None if items is None else max(0, items - tally.files)
    say(tally.summary(cached))


def header_note(cache: Any, *, quiet: bool = False) -> None:
    """After a command that read only the headers it needed: how many, of how many listed."""
    reads = getattr(cache, "header_reads", None)
    if reads is None or quiet:
        return
    done, listed = reads
    say(f"read {done} of {listed} headers (the rest when a command needs them; "
        "`ccfcache sync` reads them all)")


def _plain(value: Any) -> Any:
    """JSON for the library's typed results (their `as_dict()`), else their text."""
    as_dict = getattr(value, "as_dict", None)
    return as_dict() if callable(as_dict) else str(value)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=_plain))


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def print_table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    """A rich table in a terminal; otherwise tab-separated lines (a header line of column
    names, then one line per row), never truncated, without box characters."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    if not stdout_is_terminal():
        lines = ["\t".join(columns)] + ["\t".join(c.replace("\t", " ") for c in row)
                                        for row in cells]
        typer.echo("\n".join(lines))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title)
    for row in cells:
        table.add_row(*row)
    Console().print(table)


def human(size: int | None) -> str:
    """A size for people (1.2 MB); '?' when unknown."""
    from ..units import human_bytes

    return "?" if size is None else human_bytes(size)


def export_lines(env: dict[str, str]) -> str:
    """`export KEY=value` lines, each value shell-quoted."""
    import shlex

    return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in env.items())


def describe_sources(urls: list[str]) -> str:
    """ESA's default pair by name, anything else by URL."""
    from ..config import DEFAULT_SOURCES

    if list(urls) == list(DEFAULT_SOURCES):
        return "ESA's full and valid archives (default)"
    return ", ".join(urls)


def announce_first_sync(cache: Any, *, always: bool = False, quiet: bool = False) -> None:
    """The first time a cache contacts servers, say which (`always`: every sync says it)."""
    from ..config import offline

    if offline() or quiet:
        return
    try:
        first = not cache._synced_once()
    except CcfCacheError:
        return  # the command itself will say what is wrong with the cache
    if first or always:
        verb = "first sync of" if first else "syncing"
        say(f"{verb} {cache.root}: from {describe_sources(cache.settings.sources)}")
