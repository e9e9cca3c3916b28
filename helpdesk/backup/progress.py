"""Progress of a long command: a `rich` bar with an estimate on a terminal, and one summary
line in the log when it ends (never a line per step)."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress

log = logging.getLogger("helpdesk.backup")


class Progress:
    """Phases of known or unknown size; a no-op display when stderr is not a terminal."""

    def __init__(self, command: str, *, enabled: bool | None = None) -> None:
        self.command = command
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None
        self._summary: tuple[str, tuple[Any, ...]] | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._finish_task()
            self._bar.__exit__(exc_type, exc, tb)
            self._bar = None
        if self._summary is not None:
            self._log(*self._summary)

    def _finish_task(self) -> None:
        if self._task is not None:
            done = self._bar.tasks[self._task].completed
            self._bar.update(self._task, total=done, completed=done)

    def phase(self, description: str, total: int | None) -> None:
        """Start a phase of `total` bytes (None: size unknown, a spinner-like bar)."""
        if self._bar is None:
            return
        self._finish_task()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, amount)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def summary(self, message: str, *args: Any) -> None:
        """The one log line of the command (sizes, counts, duration); written once the
        bar is gone, so that it is not mixed into the terminal's live display."""
        args = (*args, self.elapsed())
        if self._bar is not None:
            self._summary = (message, args)
        else:
            self._log(message, args)

    def _log(self, message: str, args: tuple[Any, ...]) -> None:
        log.info("%s: " + message + " in %.1f s", self.command, *args)
