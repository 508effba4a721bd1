"""Progress on stderr for the commands that optimise something: a bar per stage, and a run's bar and summary."""

from __future__ import annotations

from typing import Any

import typer


#: A run whose estimate passes this many seconds gets a note after its first steps: what it will take, and how to shorten it.
LONG_RUN_SECONDS = 15 * 60
#: Steps timed before the estimate (the first one, which warms up, is left out of the rate).
ESTIMATE_AFTER = 3


def duration(seconds: float) -> str:
    """``2 h 05 min``, ``12 min``, ``40 s``: a time a person reads at a glance."""
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds:.0f} s"


class StageProgress:
    """One bar per stage (``inversion``, ``blend`` ...), advanced by ``update(stage, step, steps, loss)``.

    Readable at 80 columns: step/total and the ETA come first, then a short bar, the stage, and the live
    values last (folded onto a second line when they do not fit, never cut)."""

    def __init__(self, quiet: bool, console: Any = None) -> None:
        self.quiet = quiet
        self.console = console
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        from rich.table import Column

        fixed = {"no_wrap": True}
        self.progress = Progress(
            MofNCompleteColumn(table_column=Column(**fixed)),
            TextColumn("ETA", table_column=Column(**fixed)),
            TimeRemainingColumn(table_column=Column(**fixed)),
            BarColumn(bar_width=10, table_column=Column(**fixed)),
            TextColumn("{task.description}", table_column=Column(**fixed)),
            TextColumn("{task.fields[loss]}", table_column=Column(overflow="fold", ratio=1)),
            console=self.console or Console(stderr=True),
            expand=False,
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

    def counter(self, stage: str, description: str | None = None) -> Any:
        """``count(done, total)`` for a stage without a loss (rendering a grid, judging runs); ``{total}`` in
        ``description`` becomes the count (known only once the work starts)."""
        return lambda done, total: self.advance(
            stage, done, total, description=description.replace("{total}", str(total)) if description else None
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
            self.progress.console.print(message, highlight=False)
        else:
            typer.echo(message, err=True)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.tasks = {}


class RunProgress(StageProgress):
    """A progress bar with ETA and live losses on stderr, and a summary on stdout (unless quiet). After
    its first steps, a run that will take long (:data:`LONG_RUN_SECONDS`) says how long, and how to shorten it."""

    def start(self, config: Any, done: int) -> None:
        self.total = config.steps * config.restarts
        self.restarts = config.restarts
        self.steps = config.steps
        self.device = str(getattr(config, "device", "auto"))
        self.done = done
        self.timed: list[float] = []
        self.estimated = False
        self.advance("optimising", done, self.total)

    def step(self, event: Any) -> None:
        import time

        r = event.record
        self.done += 1
        where = getattr(getattr(event, "direction", None), "device", None)  # where the run really is
        if where is not None:
            self.device = where.type
        self.timed.append(time.monotonic())
        desc = f"restart {event.restart + 1}/{self.restarts}" if self.restarts > 1 else "optimising"
        losses = f"loss {r.loss:.4f}  transfer loss {r.transfer:.4f}  consistency loss {r.consistency:.4f}"
        self.advance("optimising", self.done, self.total, losses, description=desc)
        if not self.estimated and len(self.timed) > ESTIMATE_AFTER:
            self.estimated = True
            rate = (self.timed[-1] - self.timed[0]) / (len(self.timed) - 1)
            left = rate * (self.total - self.done)
            if left > LONG_RUN_SECONDS:
                self.note(self.long_run_note(rate, left))

    def long_run_note(self, rate: float, left: float) -> str:
        on = "the CPU" if self.device in ("cpu", "auto") else self.device
        hints = []
        if self.device in ("cpu", "auto"):
            hints.append("a GPU (--device cuda) is much faster")
        fewer = max(1, self.steps // 4)
        hints.append(f"fewer steps (--steps {fewer}) or fewer sources (--sources 4) finish sooner")
        if self.restarts > 1:
            hints.append("--restarts 1 runs one start")
        advice = "; ".join(hints)
        return (
            f"This run will take about {duration(left)} more: {self.total - self.done} steps at {rate:.2f} s/step "
            f"on {on}. " + advice[0].upper() + advice[1:] + ". Ctrl-C keeps the best direction so far (`essence run --resume` continues)."
        )

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
                f"transfer loss {h['transfer']:.4f} (unedited {h['transfer_unedited']:.4f}), "
                f"consistency loss {h['consistency']:.4f}, loss {h['loss']:.4f} (lower is better)",
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
