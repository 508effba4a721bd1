"""``essence compare``: ours, the StyleGAN blend, the CLIP blend and Gatys on the same target and sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from essence.method.rundir import out_folder

from essence.commands.apply import sources_option
from essence.commands.run import EXIT_INTERRUPTED


def compare_command(
    target: list[str] = typer.Option(..., "--target", "-t", help="Target image; repeat for several."),
    target_latent: Optional[Path] = typer.Option(
        None, "--target-latent", help="The target's W+ latent for the StyleGAN blend (default: invert --target)."
    ),
    generator: Optional[str] = typer.Option(None, "--generator", "-g", help="Generator name (essence list generators)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="Encoder of all three methods."),
    sources: Optional[str] = typer.Option(None, "--sources", help="A number of random sources, or a latent file."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of sources, held-out sources and init."),
    preset: Optional[str] = typer.Option(
        None, "--preset", "-p", help="Preset of our run: essence-in (default), essence-ood, paper, paper-ood or targetclip."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimisation steps of our run."),
    heldout: Optional[int] = typer.Option(None, "--heldout", help="Held-out sources the four are judged on (default 8)."),
    features: Optional[str] = typer.Option(
        None, "--features", help="Gatys's feature network (default vgg19; the toy world: toy-clip-features)."
    ),
    judge: Optional[str] = typer.Option(None, "--judge", help="A second, judging encoder for the metrics (e.g. clip-rn50)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, mps ..."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (four run folders, figure.png, metrics.json).", parser=out_folder),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="A run config file (.toml or .json) for our run."),
    sets: Optional[list[str]] = typer.Option(
        None, "--set", "-s",
        help="Override a setting: run settings as in `essence run`; blend.KEY=V for the blends; judge.config.KEY=V.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier comparison in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON instead of the table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no table."),
) -> None:
    """Compare ours with the paper's baselines: Figure 1 (target, sources, one row per method) and metrics."""
    from essence.commands.progress import RunProgress, StageProgress
    from essence.workflows.compare import execute_compare, split_sets
    from essence.workflows.evaluate import build_eval_config, metrics_table
    from essence.core.config import parse_set
    from essence.method.runconfig import build_run_config

    run_sets, blend_sets, judge_sets = split_sets(list(sets or ()))
    if features:
        blend_sets.insert(0, f"features.name={features}")
    options: dict[str, Any] = {
        "preset": preset,
        "generator": {"name": generator} if generator else None,
        "encoder": {"name": encoder} if encoder else None,
        "target": list(target),
        "steps": steps,
        "seed": seed,
        "sources": sources_option(sources),
        "heldout": {"count": heldout} if heldout is not None else None,
        "device": device,
    }
    run_config = build_run_config({k: v for k, v in options.items() if v is not None}, file=config, sets=run_sets)
    eval_config = build_eval_config({"encoder": {"name": judge}} if judge else {}, judge_sets)

    run_display = RunProgress(quiet)
    blend_display = StageProgress(quiet)

    def note(message: str) -> None:
        run_display.stop()  # our run's bar is done once the next stage starts
        blend_display.note(message)

    try:
        outcome = execute_compare(
            run_config,
            out=out,
            target_latent=str(target_latent) if target_latent is not None else None,
            blend_overrides=parse_set(blend_sets),
            eval_config=eval_config,
            overwrite=overwrite,
            run_callbacks={"callback": run_display.step, "on_start": run_display.start, "notify": run_display.note},
            notify=note,
            progress=blend_display.update,
            judged=blend_display.counter("judging", "judging the 4 methods"),
        )
    finally:
        run_display.stop()
        blend_display.stop()
    if outcome.status == "interrupted":
        resume = f"essence run --resume {outcome.folders['essence']}"
        typer.echo(f"Interrupted during our run; continue it with `{resume}`.", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    assert outcome.report is not None
    if as_json:
        typer.echo(json.dumps(outcome.report, indent=2))
    elif not quiet:
        from rich.console import Console

        Console(highlight=False).print(metrics_table(outcome.report, labels=[r["label"] for r in outcome.report["runs"]]))
        typer.echo(f"Figure: {outcome.figure}\nFolder: {outcome.out}")
