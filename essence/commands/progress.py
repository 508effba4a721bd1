"""A rich progress bar on stderr for the commands that optimise something (blend, compare, eval)."""

from __future__ import annotations

from typing import Any

import typer


class StageProgress:
    """One bar per stage (``inversion``, ``blend`` ...), advanced by ``update(stage, step, steps, loss)``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[loss]}"),
            console=Console(stderr=True),
        )
        self.progress.start()

    def advance(self, stage: str, completed: int, total: int, text: str = "", description: str | None = None) -> None:
        """Show ``completed`` of ``total`` for ``stage``, with ``text`` (live losses) after the bar."""
        if self.quiet:
            return
        if self.progress is None:
            self._start()
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total, loss="")
        self.progress.update(
            self.tasks[stage], completed=completed, total=total, loss=text, description=description or stage
        )

    def update(self, stage: str, step: int, steps: int, loss: float) -> None:
        self.advance(stage, step + 1, steps, f"loss {loss:.4f}")

    def note(self, message: str) -> None:
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.console.print(message)
        else:
            typer.echo(message, err=True)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.tasks = {}
