"""``essence apply`` and ``essence sweep``: a direction on any sources, at one or more strengths, as a grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from essence.core.errors import EssenceError
from essence.method.rundir import out_folder


def sources_option(
    sources: Optional[list[str]], latents: Optional[Path] = None, photos: Optional[list[str]] = None
) -> dict[str, Any] | None:
    """``--sources N|FILE|PHOTO...`` (and more photos as arguments) and ``--latents FILE`` -> the ``sources``
    settings: a count, a latent file, or photos to align and invert."""
    from essence.method.photos import is_image_file

    values = [v.strip() for v in [*(sources or []), *(photos or [])] if v.strip()]
    if values and latents is not None:
        raise EssenceError("Give either --sources (a count, a latent file or photos) or --latents FILE, not both.")
    if latents is not None:
        return {"latents": str(latents)}
    if not values:
        return None
    if len(values) == 1 and values[0].isdigit():
        if int(values[0]) < 1:
            raise EssenceError("--sources: give at least 1 source.")
        return {"count": int(values[0]), "latents": None}
    if all(is_image_file(v) for v in values):
        return {"photos": values, "latents": None}
    if len(values) == 1:
        return {"latents": values[0]}
    raise EssenceError(
        f"--sources {' '.join(values)}: give a number, one latent file, or photos (.png, .jpg ...), not a mix."
    )


def _apply(
    *,
    command: str,
    alphas: list[float] | None,
    direction: str,
    generator: Optional[str],
    sources: Optional[list[str]],
    latents: Optional[Path],
    photos: Optional[list[str]],
    seed: Optional[int],
    truncation: Optional[float],
    out: Optional[Path],
    tile: Optional[int],
    device: Optional[str],
    chunk: Optional[int],
    sets: Optional[list[str]],
    overwrite: bool,
    quiet: bool,
) -> None:
    from essence.commands.progress import StageProgress
    from essence.workflows.apply import build_apply_config, execute_apply

    src = sources_option(sources, latents, photos) or {}
    if truncation is not None:
        src["truncation"] = truncation
    options: dict[str, Any] = {
        "direction": direction,
        "generator": {"name": generator} if generator else None,
        "sources": src or None,
        "seed": seed,
        "alphas": alphas,
        "out": str(out) if out is not None else None,
        "tile": tile,
        "device": device,
        "chunk": chunk,
    }
    config = build_apply_config({k: v for k, v in options.items() if v is not None}, sets or ())
    display = StageProgress(quiet)
    try:
        outcome = execute_apply(
            config, overwrite=overwrite, command=command, progress=display.stage("inversion"),
            rendered=display.counter("rendering", "rendering {total} alphas"),
        )
    finally:
        display.stop()
    if not quiet:
        alphas_text = ", ".join(f"{a:g}" for a in outcome.record["alphas"])
        typer.echo(
            f"Grid: {outcome.grid} ({outcome.rows} sources x {outcome.cols} alphas [{alphas_text}], "
            f"{outcome.tile} px tiles); images in {outcome.out / 'images'}"
        )


_DIRECTION = typer.Option(..., "--direction", "-d", help="A direction file (ours or TargetCLIP's .npy) or a run folder.")
_GENERATOR = typer.Option(None, "--generator", "-g", help="Generator (default: the one the direction was made for).")
_SOURCES = typer.Option(
    None, "--sources", help="A number of random sources (default 6), a latent file, or photos (aligned and inverted)."
)
_PHOTOS = typer.Argument(
    None, help="More source photos (so `--sources me.jpg friend.png` works).", show_default=False, metavar="PHOTO"
)
_LATENTS = typer.Option(None, "--latents", help="A latent file of sources (N, num_ws, w_dim) or (num_ws, w_dim).")
_SEED = typer.Option(None, "--seed", help="Seed of the random sources (as `essence run --seed`; default 0).")
_TRUNCATION = typer.Option(None, "--truncation", help="Truncation psi of random sources (default 0.7, as runs).")
_OUT = typer.Option(
    None, "--out", "-o", help="Output folder (default essence-runs/<command>-<target>-<time>).", parser=out_folder
)
_TILE = typer.Option(None, "--tile", help="Tile size in the grid in pixels (default min(resolution, 256)).")
_DEVICE = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, mps ...")
_CHUNK = typer.Option(None, "--chunk", help="Most images per generator pass (default 8).")
_SETS = typer.Option(None, "--set", "-s", help="Override any setting: --set generator.config.weights=FILE (dotted keys).")
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace an earlier result in --out.")
_QUIET = typer.Option(False, "--quiet", "-q", help="Print nothing.")


def apply_command(
    direction: str = _DIRECTION,
    alpha: Optional[str] = typer.Option(
        None, "--alpha", "-a", help="Strengths, comma-separated: G(w + alpha b); 0 is the source (default: 0 and the "
        "direction's apply_alpha, 1 without one)."
    ),
    generator: Optional[str] = _GENERATOR,
    sources: Optional[list[str]] = _SOURCES,
    latents: Optional[Path] = _LATENTS,
    seed: Optional[int] = _SEED,
    truncation: Optional[float] = _TRUNCATION,
    out: Optional[Path] = _OUT,
    tile: Optional[int] = _TILE,
    device: Optional[str] = _DEVICE,
    chunk: Optional[int] = _CHUNK,
    sets: Optional[list[str]] = _SETS,
    overwrite: bool = _OVERWRITE,
    quiet: bool = _QUIET,
    photos: Optional[list[str]] = _PHOTOS,
) -> None:
    """Apply a direction to sources: a grid with one row per source and one column per alpha."""
    from essence.workflows.apply import parse_alphas

    _apply(
        command="apply", alphas=parse_alphas(alpha) if alpha is not None else None, direction=direction, generator=generator, sources=sources,
        latents=latents, photos=photos, seed=seed, truncation=truncation, out=out, tile=tile, device=device, chunk=chunk,
        sets=sets, overwrite=overwrite, quiet=quiet,
    )


def sweep_command(
    direction: str = _DIRECTION,
    alpha_range: str = typer.Option(
        "0:1.5:0.25", "--alpha-range", "-r", help="START:STOP:STEP, STOP included (0:1.5:0.25 is 7 columns)."
    ),
    generator: Optional[str] = _GENERATOR,
    sources: Optional[list[str]] = _SOURCES,
    latents: Optional[Path] = _LATENTS,
    seed: Optional[int] = _SEED,
    truncation: Optional[float] = _TRUNCATION,
    out: Optional[Path] = _OUT,
    tile: Optional[int] = _TILE,
    device: Optional[str] = _DEVICE,
    chunk: Optional[int] = _CHUNK,
    sets: Optional[list[str]] = _SETS,
    overwrite: bool = _OVERWRITE,
    quiet: bool = _QUIET,
    photos: Optional[list[str]] = _PHOTOS,
) -> None:
    """Sweep a direction's strength: like apply, with evenly spaced alphas."""
    from essence.workflows.apply import alpha_range as parse_range

    _apply(
        command="sweep", alphas=parse_range(alpha_range), direction=direction, generator=generator, sources=sources,
        latents=latents, photos=photos, seed=seed, truncation=truncation, out=out, tile=tile, device=device, chunk=chunk,
        sets=sets, overwrite=overwrite, quiet=quiet,
    )
