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
from essence.method.rundir import out_folder

EXIT_NONFINITE = 1
EXIT_INTERRUPTED = 130


# The settings ``essence run`` and ``essence batch`` share (one definition, one help text).
GENERATOR = typer.Option(None, "--generator", "-g", help="Generator name (essence list generators).")
ENCODER = typer.Option(None, "--encoder", "-e", help="Encoder name (essence list encoders).")
PRESET = typer.Option(
    None, "--preset", "-p", help="Ours: essence-in (default; in-domain), essence-ood (out-of-domain); the paper's: paper, paper-ood, targetclip."
)
STEPS = typer.Option(
    None, "--steps", help="Optimisation steps per restart, or 'auto': stop when the held-out loss stops improving "
    "(at most auto_stop.max_steps, 1000; see docs/method.md)."
)
SOURCES = typer.Option(
    None, "--sources", help="A number of random sources, a latent file (N, num_ws, w_dim), or photos (aligned and inverted)."
)
SEED = typer.Option(None, "--seed", help="Seed of sources, held-out sources and init.")
CONFIG = typer.Option(None, "--config", "-c", help="A run config file (.toml or .json).")
SETS = typer.Option(None, "--set", "-s", help="Override any setting: --set key=value (dotted keys, JSON values).")
INIT = typer.Option(
    None, "--init", help="auto (the default preset's: target where it can be inverted, else random), random, zeros, "
    "target (start at the inverted target: in-domain targets) or a latent file."
)
RESTARTS = typer.Option(None, "--restarts", help="Optimise K directions; keep the best held-out.")
HELDOUT = typer.Option(None, "--heldout", help="Held-out sources to check the direction on (0: off).")
DEVICE = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, mps ...")
PRECISION = typer.Option(None, "--precision", help="fp32, or bf16 autocast (CUDA).")
CHUNK = typer.Option(None, "--chunk", help="Most images per pass, when memory is short.")
COMPILE = typer.Option(None, "--compile/--no-compile", help="torch.compile the render pass.")
CHECKPOINT_EVERY = typer.Option(None, "--checkpoint-every", help="Write a checkpoint every K steps.")


def steps_value(text: str | None) -> int | str | None:
    """``--steps``: a positive number or ``auto``."""
    if text is None:
        return None
    if text.strip().lower() == "auto":
        return "auto"
    try:
        steps = int(text)
    except ValueError:
        raise EssenceError(f"--steps {text!r}: give a number of steps, or 'auto' to stop on the held-out check.") from None
    if steps < 1:
        raise EssenceError(f"--steps {text!r}: give at least 1 step, or 'auto'.")
    return steps


def settings_layer(**options: Any) -> dict[str, Any]:
    """The command-line layer of a run config from the shared options (None: not given)."""
    layer: dict[str, Any] = {
        "preset": options.get("preset"),
        "generator": {"name": options["generator"]} if options.get("generator") else None,
        "encoder": {"name": options["encoder"]} if options.get("encoder") else None,
        "steps": steps_value(options.get("steps")),
        "seed": options.get("seed"),
        "init": options.get("init"),
        "restarts": options.get("restarts"),
        "heldout": {"count": options["heldout"]} if options.get("heldout") is not None else None,
        "device": options.get("device"),
        "precision": options.get("precision"),
        "chunk": options.get("chunk"),
        "compile": options.get("compile"),
        "checkpoint_every": options.get("checkpoint_every"),
    }
    layer["sources"] = sources_option(options.get("sources"), photos=options.get("photos"))
    return {k: v for k, v in layer.items() if v is not None}


def run_command(
    generator: Optional[str] = GENERATOR,
    encoder: Optional[str] = ENCODER,
    target: Optional[list[str]] = typer.Option(
        None, "--target", "-t", help="Target image; repeat it for several images of one essence (one direction for all)."
    ),
    target_text: Optional[list[str]] = typer.Option(
        None, "--target-text", help="A text target, embedded by the encoder's text tower; repeatable, mixes with images."
    ),
    target_weights: Optional[str] = typer.Option(
        None, "--target-weights", help="One weight per target, images first, then texts: 1,0.5 (default: equal)."
    ),
    preset: Optional[str] = PRESET,
    steps: Optional[str] = STEPS,
    sources: Optional[list[str]] = SOURCES,
    seed: Optional[int] = SEED,
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Run folder (default essence-runs/<target>-<time>).", parser=out_folder
    ),
    config: Optional[Path] = CONFIG,
    sets: Optional[list[str]] = SETS,
    init: Optional[str] = INIT,
    restarts: Optional[int] = RESTARTS,
    heldout: Optional[int] = HELDOUT,
    device: Optional[str] = DEVICE,
    precision: Optional[str] = PRECISION,
    chunk: Optional[int] = CHUNK,
    compile: Optional[bool] = COMPILE,
    checkpoint_every: Optional[int] = CHECKPOINT_EVERY,
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the interrupted run in this folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run already in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
    photos: Optional[list[str]] = typer.Argument(
        None, help="More source photos (so `--sources me.jpg friend.png` works).", show_default=False, metavar="PHOTO"
    ),
) -> None:
    """Find the essence direction of a target: one direction in W+ for every source.

    The target is an image, several images of one essence, a text, or a weighted mix of them (--target face.png --target-text "smiling" --target-weights 1,0.5).
    """
    from essence.method.runconfig import build_run_config
    from essence.method.runner import execute_run, resume_run

    options = settings_layer(
        preset=preset, generator=generator, encoder=encoder, steps=steps, seed=seed, init=init, restarts=restarts,
        heldout=heldout, device=device, precision=precision, chunk=chunk, compile=compile,
        checkpoint_every=checkpoint_every, sources=sources, photos=photos,
    )
    targets = {
        "target": list(target) if target else None,
        "target_text": list(target_text) if target_text else None,
        "target_weights": target_weights,
        "out": str(out) if out is not None else None,
    }
    options.update({k: v for k, v in targets.items() if v is not None})

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
