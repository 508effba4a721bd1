"""``essence run``: optimise an essence direction and write a run folder.

Settings are layered: the preset, then ``--config FILE``, then the options below, then ``--set key=value``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from essence.commands.apply import sources_option
from essence.commands.progress import RunProgress
from essence.core.errors import EssenceError

EXIT_NONFINITE = 1
EXIT_INTERRUPTED = 130


def run_command(
    generator: Optional[str] = typer.Option(None, "--generator", "-g", help="Generator name (essence list generators)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="Encoder name (essence list encoders)."),
    target: Optional[list[str]] = typer.Option(None, "--target", "-t", help="Target image; repeat for several."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="paper (default), paper-ood or targetclip."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimisation steps per restart."),
    sources: Optional[list[str]] = typer.Option(
        None, "--sources", help="A number of random sources, a latent file (N, num_ws, w_dim), or photos (aligned and inverted)."
    ),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of sources, held-out sources and init."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default essence-runs/<target>-<time>)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="A run config file (.toml or .json)."),
    sets: Optional[list[str]] = typer.Option(
        None, "--set", "-s", help="Override any setting: --set key=value (dotted keys, JSON values)."
    ),
    init: Optional[str] = typer.Option(
        None, "--init", help="random, zeros, target (start at the inverted target: in-domain targets) or a latent file."
    ),
    restarts: Optional[int] = typer.Option(None, "--restarts", help="Optimise K directions; keep the best held-out."),
    heldout: Optional[int] = typer.Option(None, "--heldout", help="Held-out sources to check the direction on (0: off)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, mps ..."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, or bf16 autocast (CUDA)."),
    chunk: Optional[int] = typer.Option(None, "--chunk", help="Most images per pass, when memory is short."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the render pass."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Write a checkpoint every K steps."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the interrupted run in this folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run already in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
    photos: Optional[list[str]] = typer.Argument(
        None, help="More source photos (so `--sources me.jpg friend.png` works).", show_default=False, metavar="PHOTO"
    ),
) -> None:
    """Find the essence direction of a target image: one direction in W+ for every source."""
    from essence.method.runconfig import build_run_config
    from essence.method.runner import execute_run, resume_run

    options: dict[str, Any] = {
        "preset": preset,
        "generator": {"name": generator} if generator else None,
        "encoder": {"name": encoder} if encoder else None,
        "target": list(target) if target else None,
        "steps": steps,
        "seed": seed,
        "init": init,
        "restarts": restarts,
        "heldout": {"count": heldout} if heldout is not None else None,
        "device": device,
        "precision": precision,
        "chunk": chunk,
        "compile": compile,
        "checkpoint_every": checkpoint_every,
        "out": str(out) if out is not None else None,
    }
    options["sources"] = sources_option(sources, photos=photos)
    options = {k: v for k, v in options.items() if v is not None}

    display = RunProgress(quiet)
    if resume is not None:
        if options or config is not None or sets or overwrite:
            raise EssenceError("--resume continues a run with its own settings; give no other run options with it.")
        outcome = resume_run(
            resume, callback=display.step, on_start=display.start, notify=display.note, handle_sigint=True
        )
    else:
        cfg = build_run_config(options, file=config, sets=list(sets or ()))
        outcome = execute_run(
            cfg,
            overwrite=overwrite,
            callback=display.step,
            on_start=display.start,
            notify=display.note,
            handle_sigint=True,
            progress=display.stage("inversion"),
        )
    display.stop()
    display.summary(outcome)
    if outcome.status == "nonfinite":
        raise typer.Exit(EXIT_NONFINITE)
    if outcome.status == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
