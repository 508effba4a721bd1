"""Progress on stderr for the commands that optimise something: a bar per stage, and a run's bar and summary."""

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

    def stage(self, stage: str) -> Any:
        """``progress(step, steps, loss)`` for one stage (an optimising inverter's callback)."""
        return lambda step, steps, loss: self.update(stage, step, steps, loss)

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


class RunProgress(StageProgress):
    """A progress bar with ETA and live losses on stderr, and a summary on stdout (unless quiet)."""

    def start(self, config: Any, done: int) -> None:
        self.total = config.steps * config.restarts
        self.restarts = config.restarts
        self.done = done
        self.advance("optimising", done, self.total)

    def step(self, event: Any) -> None:
        r = event.record
        self.done += 1
        desc = f"restart {event.restart + 1}/{self.restarts}" if self.restarts > 1 else "optimising"
        losses = f"loss {r.loss:.4f}  transfer {r.transfer:.4f}  consistency {r.consistency:.4f}"
        self.advance("optimising", self.done, self.total, losses, description=desc)

    def summary(self, outcome: Any) -> None:
        result, m = outcome.result, outcome.metrics
        if outcome.status == "nonfinite":
            typer.echo(f"Error: {result.message} The run folder {outcome.out} holds the best direction before it.", err=True)
        elif outcome.status == "interrupted":
            typer.echo(
                f"Interrupted. Best direction so far written to {outcome.out / 'direction.safetensors'}; "
                f"continue with `essence run --resume {outcome.out}`.",
                err=True,
            )
        if self.quiet:
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"essence run: {outcome.status}", title_justify="left", show_header=False)
        table.add_column("item")
        table.add_column("value", overflow="fold")
        table.add_row("best", f"step {result.best_step} of restart {result.restart}, loss {result.best_loss:.4f}")
        h = result.heldout
        if h:
            table.add_row(
                f"held-out ({h['count']} sources)",
                f"transfer {h['transfer']:.4f} (unedited {h['transfer_unedited']:.4f}), "
                f"consistency {h['consistency']:.4f}, loss {h['loss']:.4f}",
            )
        t = m.get("targets") or {}
        if t.get("count", 0) > 1:
            weights = "" if t["weights"] is None else ", weights " + ", ".join(f"{w:.2f}" for w in t["weights"])
            table.add_row(
                f"targets ({len(t['images'])} images, {len(t['texts'])} texts)",
                f"mean pairwise cosine {t['mean_pairwise_cosine']:.3f} (lowest {t['min_pairwise_cosine']:.3f}); "
                "cosine to their mean " + ", ".join(f"{c:.2f}" for c in t["cosine_to_mean"]) + weights,
            )
        rate = m.get("seconds_per_step")
        table.add_row("time", f"{m['seconds']:.1f} s" + (f" ({rate:.3f} s/step)" if rate else ""))
        Console(highlight=False).print(table)
        typer.echo(f"Run folder: {outcome.out}")
