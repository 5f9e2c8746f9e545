"""Progress reporting: a no-op for the API, a rich progress bar on stderr for the CLI."""

from __future__ import annotations

from typing import Protocol


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


class RichProgress:
    """A rich progress bar on stderr (transient; nothing when stderr is not a terminal)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._columns = {
            "count": (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn()),
            "bytes": (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      TimeRemainingColumn()),
        }
        self._console = Console(stderr=True)
        self._bar = None
        self._task = None

    def start(self, label: str, total: int, unit: str = "count") -> None:
        from rich.progress import Progress as RichBar

        self.finish()
        self._bar = RichBar(*self._columns[unit], console=self._console, transient=True,
                            disable=not self._console.is_terminal)
        self._bar.start()
        self._task = self._bar.add_task(label, total=total)

    def advance(self, amount: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
