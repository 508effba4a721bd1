"""The ``essence demo`` command's display: a progress bar per target, then where the results are."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from essence.plugins.toy import world
from essence.plugins.toy.demo import TARGETS, run_demo


def demo(out: Path, targets: Sequence[str] | None, steps: int | None, seed: int, quiet: bool, overwrite: bool = False) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    console = Console(highlight=False)
    names = list(targets or TARGETS)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), TextColumn("{task.fields[loss]}"), console=Console(stderr=True), disable=quiet,
    )
    state: dict[str, Any] = {"k": 0}

    def on_start(config: Any, done: int) -> None:
        name = names[state["k"]]
        state["task"] = progress.add_task(f"{name} ({TARGETS[name].preset})", total=config.steps, loss="")
        state["k"] += 1

    def step(event: Any) -> None:
        r = event.record
        progress.update(state["task"], advance=1, loss=f"transfer loss {r.transfer:.3f}  consistency loss {r.consistency:.3f}")

    with progress:
        results = run_demo(out, targets=names, steps=steps, seed=seed, callback=step, on_start=on_start, overwrite=overwrite)
    for r in results:
        if quiet:
            console.print(str(r.outcome.out))
            continue
        h = r.outcome.metrics.get("heldout") or {}
        t = r.target
        title = (
            f"{t.name} target: {t.sprite.colour} {t.sprite.pattern} {t.sprite.shape} on {t.sprite.background}"
            f" ({t.style}), preset {t.preset}"
        )
        table = Table(title=title, title_justify="left")
        table.add_column("8 held-out sources")
        for factor in world.ESSENCE_FACTORS:
            table.add_column(f"{factor}\n{getattr(t.sprite, factor)}", justify="right")
        table.add_row("before the edit", *(f"{r.before[f]:.0%}" for f in world.ESSENCE_FACTORS))
        table.add_row("after G(w + b)", *(f"{r.adopted[f]:.0%}" for f in world.ESSENCE_FACTORS))
        console.print(table)
        if h:
            console.print(
                f"  CLIP losses on held-out sources (lower is better): transfer loss {h['transfer']:.3f}"
                f" (unedited {h['transfer_unedited']:.3f}), consistency loss {h['consistency']:.3f}"
            )
        console.print(f"  run folder: {r.outcome.out}  (sheet.png: target, sources, results; heldout_sheet.png)")
    if not quiet:
        console.print(
            "Shares are toy-clip's zero-shot reading of the results (the encoder the method optimised); "
            "position and size stay the source's. benchmarks/quality.py judges with independent classifiers."
        )
