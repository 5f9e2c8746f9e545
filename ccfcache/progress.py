"""Progress reporting: a no-op for the API; for the CLI, rich bars in a terminal and a plain
line every few seconds otherwise (batch jobs, notebook logs), plus the counts a command's
summary line and an interrupt message need.

The library reports through the `Progress` protocol: `start(label, total, unit)`, then
`advance(n)` (for unit "bytes", one call per finished file with its size), then `finish()`.
Bytes of files still downloading are seen by watching the partial files grow (`watch=`), so
bars move within a file without the download loop knowing about progress.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from .units import human_bytes

if TYPE_CHECKING:
    from rich.progress import Progress as RichBar
    from rich.progress import ProgressColumn, TaskID

PLAIN_INTERVAL_S = 5.0  # a plain progress line at most this often
POLL_S = 0.25  # how often partial files are looked at


class Progress(Protocol):
    """What long operations report to."""

    def start(self, label: str, total: int, unit: str = "count") -> None: ...

    def advance(self, amount: int = 1) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """Reports nothing."""

    def start(self, label: str, total: int, unit: str = "count") -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class Tally:
    """What the downloads of one command did, for its summary line."""

    files: int = 0  # files downloaded (finished)
    bytes: int = 0  # their bytes
    planned_files: int = 0  # files the command set out to download
    planned_bytes: int = 0

    def summary(self, cached: int | None = None) -> str:
        text = f"downloaded {self.files} files ({human_bytes(self.bytes)})"
        if cached is not None:
            text += f", {cached} already cached"
        return text


class CliProgress:
    """Progress on stderr for the CLI: rich bars when stderr is a terminal, else one plain
    line every PLAIN_INTERVAL_S seconds. Keeps a `Tally` of finished downloads."""

    def __init__(self, *, terminal: bool | None = None, stream: TextIO | None = None,
                 watch: Path | None = None, interval: float = PLAIN_INTERVAL_S) -> None:
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.watch = watch  # folder of partial downloads (*.part)
        self.interval = interval
        self.tally = Tally()
        self._lock = threading.Lock()
        self._label = ""
        self._unit = "count"
        self._total = 0
        self._done = 0
        self._baseline: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: RichBar | None = None
        self._task: TaskID | None = None

    # -- the protocol -----------------------------------------------------------------------
    def start(self, label: str, total: int, unit: str = "count") -> None:
        self.finish()
        with self._lock:
            self._label, self._total, self._unit, self._done = label, total, unit, 0
            if unit == "bytes":
                self.tally.planned_bytes += total
                self._baseline = self._partials()
        if self.terminal:
            self._start_bar()
        self._stop.clear()
        self._thread = threading.Thread(target=self._tick, name="ccfcache-progress",
                                        daemon=True)
        self._thread.start()

    def advance(self, amount: int = 1) -> None:
        with self._lock:
            self._done += amount
            if self._unit == "bytes":
                self.tally.files += 1
                self.tally.bytes += amount

    def count_download(self, size: int) -> None:
        """A file downloaded outside a `start`ed fetch (a CIF's downloads that start while
        headers are still read): counted in the tally for the summary line."""
        with self._lock:
            self.tally.files += 1
            self.tally.bytes += size
            self.tally.planned_bytes += size

    def finish(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # -- reading the state ------------------------------------------------------------------
    def _partials(self) -> dict[str, int]:
        if self.watch is None:
            return {}
        sizes = {}
        try:
            with os.scandir(self.watch) as entries:
                for entry in entries:
                    if entry.name.endswith(".part"):
                        try:
                            sizes[entry.name] = entry.stat().st_size
                        except OSError:
                            pass
        except OSError:
            pass
        return sizes

    def shown(self) -> int:
        """Finished amount plus the bytes that partial files grew by since start."""
        with self._lock:
            done, unit, baseline, total = self._done, self._unit, self._baseline, self._total
        if unit == "bytes":
            growing = sum(max(0, size - baseline.get(name, 0))
                          for name, size in self._partials().items())
            done = min(total, done + growing)
        return done

    def line(self) -> str:
        """The plain progress line: label, amount done of total, files finished."""
        done = self.shown()
        if self._unit == "bytes":
            return (f"{self._label}: {human_bytes(done)} of {human_bytes(self._total)}, "
                    f"{self.tally.files} files finished")
        return f"{self._label}: {done} of {self._total}"

    # -- drawing ----------------------------------------------------------------------------
    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import (
            Progress as RichBar,
        )

        columns: tuple[ProgressColumn, ...]
        if self._unit == "bytes":
            columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                       TransferSpeedColumn(), TimeRemainingColumn())
        else:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn())
        console = Console(file=self.stream, force_terminal=True)
        bar = self._bar = RichBar(*columns, console=console, transient=True)
        bar.start()
        self._task = bar.add_task(self._label, total=self._total)

    def _tick(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(POLL_S):
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, completed=self.shown())
            elif time.monotonic() - last >= self.interval:
                last = time.monotonic()
                print(self.line(), file=self.stream, flush=True)
