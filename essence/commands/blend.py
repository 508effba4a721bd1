"""``essence blend``: the paper's baselines (StyleGAN blend, CLIP blend, Gatys), written as run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from essence.commands.apply import sources_option
from essence.core.errors import EssenceError


def blend_command(
    method: str = typer.Option(..., "--method", "-m", help="stylegan (average the latents), clip (average the embeddings) or gatys (style transfer of the source pixels)."),
    generator: Optional[str] = typer.Option(None, "--generator", "-g", help="Generator name (essence list generators)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="Encoder name (essence list encoders)."),
    target: Optional[list[str]] = typer.Option(None, "--target", "-t", help="Target image; repeat for several."),
    target_latent: Optional[Path] = typer.Option(
        None, "--target-latent", help="The target's W+ latent (one); without it the StyleGAN blend inverts --target."
    ),
    sources: Optional[str] = typer.Option(None, "--sources", help="A number of random sources (default 6), or a latent file."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the sources and held-out sources (as `essence run`)."),
    weight: Optional[float] = typer.Option(None, "--weight", help="How far towards the target (default 0.5: the average)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="CLIP blend, Gatys: optimisation steps per source (default 200)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="CLIP blend, Gatys: Adam's learning rate (default 0.05)."),
    features: Optional[str] = typer.Option(
        None, "--features", help="Gatys: the feature network (default vgg19; the toy world: toy-clip-features)."
    ),
    heldout: Optional[int] = typer.Option(None, "--heldout", help="Held-out sources `essence eval` will judge on (default 8)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, mps ..."),
    chunk: Optional[int] = typer.Option(None, "--chunk", help="Most images per pass, when memory is short."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Run folder (default essence-runs/<method>-blend-<target>-<time>)."
    ),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="A blend config file (.toml or .json)."),
    sets: Optional[list[str]] = typer.Option(
        None, "--set", "-s", help="Override any setting: --set inversion.inverter=projector (dotted keys, JSON values)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier run in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Blend each source with the target, as the paper's baselines: no direction, one result per source."""
    from essence.commands.progress import StageProgress
    from essence.workflows.blend import build_blend_config, execute_blend

    if method == "stylegan" and (steps is not None or lr is not None):
        raise EssenceError(
            "--steps and --lr are for --method clip or gatys; the target's inversion takes --set inversion.inverter=NAME "
            "and --set inversion.inverter.config.steps=N."
        )
    if features is not None and method != "gatys":
        raise EssenceError("--features is for --method gatys (the network whose Gram matrices it matches).")
    options: dict[str, Any] = {
        "method": method,
        "generator": {"name": generator} if generator else None,
        "encoder": {"name": encoder} if encoder else None,
        "target": list(target) if target else None,
        "target_latent": str(target_latent) if target_latent is not None else None,
        "sources": sources_option([sources] if sources is not None else None),
        "seed": seed,
        "weight": weight,
        "steps": steps,
        "lr": lr,
        "features": {"name": features} if features else None,
        "heldout": {"count": heldout} if heldout is not None else None,
        "device": device,
        "chunk": chunk,
        "out": str(out) if out is not None else None,
    }
    cfg = build_blend_config({k: v for k, v in options.items() if v is not None}, file=config, sets=sets or ())
    display = StageProgress(quiet)
    try:
        outcome = execute_blend(cfg, overwrite=overwrite, notify=display.note, progress=display.update)
    finally:
        display.stop()
    if quiet:
        return
    r = outcome.metrics["report"]
    typer.echo(
        f"{outcome.config.label} of {r['count']} sources: transfer loss {r['transfer']:.4f} "
        f"(sources {r['transfer_unedited']:.4f}), consistency loss {r['consistency']:.4f} (lower is better)"
    )
    typer.echo(f"Run folder: {outcome.out}")
