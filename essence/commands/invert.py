"""``essence align`` and ``essence invert``: your own photos in (aligned crops, then W+ latents)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from essence.method.rundir import out_folder

from essence.core.errors import EssenceError

_PHOTOS = typer.Argument(..., help="Photo files (PNG, JPEG, ...).", show_default=False, metavar="PHOTO")


def align_command(
    photos: list[str] = _PHOTOS,
    aligner: str = typer.Option("ffhq-dlib", "--aligner", "-a", help="ffhq-dlib, ffhq-mediapipe, center-crop, resize (essence list aligners)."),
    size: int = typer.Option(1024, "--size", help="Side of the crops in pixels (FFHQ: 1024)."),
    all_faces: bool = typer.Option(False, "--all-faces", help="A crop for every face (default: the largest only)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default essence-runs/align-<photo>-<time>).", parser=out_folder),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier result in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but warnings."),
) -> None:
    """Align photos as a generator expects them: the crops, and a sheet photo | crop."""
    from essence.core.config import validate_config
    from essence.workflows.invert import AlignConfig, execute_align

    options = {"photos": photos, "aligner": aligner, "size": size, "all_faces": all_faces, "out": str(out) if out else None}
    outcome = execute_align(validate_config(AlignConfig, options, "align settings"), overwrite=overwrite)
    if not quiet:
        typer.echo(f"{len(outcome.record['crops'])} crop(s) in {outcome.out / 'images'}; sheet {outcome.out / 'sheet.png'}")


def invert_command(
    photos: list[str] = _PHOTOS,
    generator: Optional[str] = typer.Option(None, "--generator", "-g", help="Generator name (default stylegan2-ffhq)."),
    inverter: Optional[str] = typer.Option(None, "--inverter", "-i", help="Inverter (default: the generator's, e.g. e4e for FFHQ)."),
    init: Optional[str] = typer.Option(
        None, "--init", help="The projector starts from this inverter's latents (e4e, toy-encoder); implies --inverter projector."
    ),
    aligner: Optional[str] = typer.Option(None, "--aligner", "-a", help="Aligner (default: the one for the generator's alignment)."),
    align: str = typer.Option("auto", "--align", help="auto (align to the generator's crop) or none (photos already aligned)."),
    all_faces: bool = typer.Option(False, "--all-faces", help="Invert every face of a photo (default: the largest)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="The latent file (.safetensors, .pt, .npy); the sheet and record go beside it."
    ),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, mps ..."),
    sets: Optional[list[str]] = typer.Option(
        None, "--set", "-s", help="Override any setting: --set inversion.inverter.config.steps=300 (dotted keys)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier latent file, sheet and record."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Invert photos into W+ latents that --sources/--latents accept, with a reconstruction sheet and errors."""
    from essence.commands.progress import StageProgress
    from essence.core.config import build_config
    from essence.workflows.invert import InvertConfig, execute_invert

    if align not in ("auto", "none"):
        raise EssenceError(f"--align {align!r}: use auto or none.")
    inversion: dict[str, Any] = {"align": align, "all_faces": all_faces}
    if init and inverter not in (None, "projector"):
        raise EssenceError(f"--init starts the projector from another inverter's latents; it does not apply to --inverter {inverter}.")
    if inverter or init:
        inversion["inverter"] = {"name": inverter or "projector", **({"config": {"init": init}} if init else {})}
    if aligner:
        inversion["aligner"] = aligner
    options: dict[str, Any] = {
        "photos": photos,
        "generator": {"name": generator} if generator else None,
        "inversion": inversion,
        "device": device,
        "out": str(out) if out else None,
    }
    config = build_config(InvertConfig, {k: v for k, v in options.items() if v is not None}, sets=sets or (), what="invert settings")
    display = StageProgress(quiet)
    try:
        outcome = execute_invert(config, overwrite=overwrite, progress=display.stage("inverting"))
    finally:
        display.stop()
    if quiet:
        return
    r = outcome.record
    for image in r["images"]:
        lpips = "" if image["lpips"] is None else f", LPIPS {image['lpips']:.4f}"
        typer.echo(f"{image['name']}: pixel MSE {image['pixel_mse']:.4f}{lpips}")
    typer.echo(
        f"Latents {tuple(r['latents']['shape'])} ({r['inverter']}, aligned by {r['aligner']}): {outcome.latents}; "
        f"sheet {outcome.sheet}"
    )
