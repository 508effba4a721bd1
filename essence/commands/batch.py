"""``essence batch``: one essence direction per target (files, folders of images, text files of prompts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from essence.method.rundir import out_folder

from essence.commands.progress import StageProgress
from essence.commands.run import (
    CHUNK,
    COMPILE,
    CONFIG,
    DEVICE,
    ENCODER,
    GENERATOR,
    HELDOUT,
    INIT,
    PRECISION,
    PRESET,
    RESTARTS,
    SEED,
    SETS,
    SOURCES,
    STEPS,
    settings_layer,
)

EXIT_INTERRUPTED = 130


class BatchProgress(StageProgress):
    """Two bars on stderr: targets done, and steps over the whole batch (its ETA); a line per finished target."""

    def event(self, event: Any) -> None:
        if event.kind == "start":
            self.total, self.steps, self.done_steps, self.finished = event.total, max(event.steps, 1), {}, 0
            if event.skipped:
                self.note(f"{event.skipped} target(s) already done: skipped.")
            self.advance("targets", 0, event.total)
            self.advance("steps", 0, self.steps)
        elif event.kind == "step":
            self.done_steps[event.name] = event.done
            self.advance("steps", sum(self.done_steps.values()), self.steps)
        elif event.kind == "done":
            self.finished += 1
            self.advance("targets", self.finished, self.total)
            h = (event.metrics or {}).get("heldout") or {}
            detail = (
                f", held-out transfer loss {h['transfer']:.4f} (unedited {h['transfer_unedited']:.4f}), "
                f"consistency loss {h['consistency']:.4f} (lower is better)" if h else ""
            )
            self.note(f"{event.name}: {event.status}{detail}")
        elif event.kind in ("retry", "note"):
            self.note(event.message)


def batch_command(
    targets: list[str] = typer.Argument(
        ..., help="Image files (one target each), folders (each image one target; each subfolder one target of "
        "all its images) and .txt files (one text target per line)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The batch folder: runs/<target>/, index.html, sheet.png, summary.csv.", parser=out_folder),
    pack: int = typer.Option(1, "--pack", min=1, help="Optimise K targets at once in one batch of K x N images."),
    executor: str = typer.Option("local", "--executor", help="local (this machine) or ray (needs essence-transfer[ray])."),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=1, help="Workers, each with its own models: processes (local) or Ray actors (one per GPU)."
    ),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads per worker."),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="An existing Ray cluster ('auto': the one this machine belongs to)."
    ),
    retries: int = typer.Option(2, "--retries", min=0, help="Times a pack is tried again when its worker dies."),
    generator: Optional[str] = GENERATOR,
    encoder: Optional[str] = ENCODER,
    preset: Optional[str] = PRESET,
    steps: Optional[str] = STEPS,
    sources: Optional[list[str]] = SOURCES,
    seed: Optional[int] = SEED,
    config: Optional[Path] = CONFIG,
    sets: Optional[list[str]] = SETS,
    init: Optional[str] = INIT,
    restarts: Optional[int] = RESTARTS,
    heldout: Optional[int] = HELDOUT,
    device: Optional[str] = DEVICE,
    precision: Optional[str] = PRECISION,
    chunk: Optional[int] = CHUNK,
    compile: Optional[bool] = COMPILE,
    checkpoint_every: Optional[int] = typer.Option(
        None, "--checkpoint-every", help="Write a checkpoint every K steps (a batch's default: 50)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo every target, even those already done."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no summary."),
) -> None:
    """Find one essence direction per target, with the models built once per worker.

    Every target gets an ordinary run folder (the same direction as `essence run` with the same settings and seed).

    Run the same command again to continue: finished targets are skipped, interrupted ones resume from their checkpoints.
    """
    from essence.core.errors import EssenceError
    from essence.method.runconfig import build_run_config
    from essence.workflows.batch import BatchConfig, collect_targets, execute_batch, plan_batch

    if executor not in ("local", "ray"):
        raise EssenceError(f"Unknown executor {executor!r}: use local or ray.")
    if ray_address is not None and executor != "ray":
        raise EssenceError("--ray-address is for --executor ray.")
    options = settings_layer(
        preset=preset, generator=generator, encoder=encoder, steps=steps, seed=seed, init=init, restarts=restarts,
        heldout=heldout, device=device, precision=precision, chunk=chunk, compile=compile,
        checkpoint_every=checkpoint_every, sources=sources,
    )
    settings = build_run_config(options, file=config, sets=list(sets or ()))
    batch = BatchConfig(
        pack=pack, executor=executor, workers=workers, threads=threads, ray_address=ray_address, retries=retries
    )
    plan = plan_batch(settings, collect_targets(targets), out, batch, overwrite=overwrite)
    display = BatchProgress(quiet)
    try:
        outcome = execute_batch(plan, display.event, display.note)
    finally:
        display.stop()
    statuses = list(outcome.statuses.values())
    counts = {s: statuses.count(s) for s in dict.fromkeys(statuses)}
    if not quiet:
        ran = len(plan.todo)
        rate = f", {ran / outcome.seconds * 60:.2f} targets/min" if ran and outcome.seconds > 0 else ""
        typer.echo(
            f"{len(plan.jobs)} targets: " + ", ".join(f"{n} {s}" for s, n in counts.items())
            + f" ({ran} run in {outcome.seconds:.1f} s{rate})."
        )
        typer.echo(f"Batch folder: {outcome.out} (index.html, sheet.png, summary.csv)")
    if "interrupted" in counts:
        typer.echo(f"Interrupted; continue with the same command (the checkpoints are in {outcome.out}/runs).", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
