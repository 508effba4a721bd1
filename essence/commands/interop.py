"""``essence import``: other tools' directions and latent files -> ours, with where they came from."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from essence.core.errors import EssenceError


def import_app() -> typer.Typer:
    app = typer.Typer(
        help="Import other tools' files (TargetCLIP directions, latent tensors, e4e-style latents) into ours.",
        no_args_is_help=True,
    )
    app.command("direction")(import_direction_command)
    app.command("latents")(import_latents_command)
    return app


def _destinations(files: list[Path], out: Optional[Path]) -> list[Path]:
    """One file -> ``--out`` (a .safetensors file or a folder); several -> ``--out`` must be a folder."""
    names = [f"{f.stem}.safetensors" for f in files]
    if len(set(names)) != len(names):
        raise EssenceError("Two input files have the same name; import them into different --out folders.")
    if out is None:
        return [Path(n) for n in names]
    if out.suffix.lower() == ".safetensors":
        if len(files) > 1:
            raise EssenceError(f"--out {out} is one file, but {len(files)} files are imported: give a folder.")
        return [out]
    if out.suffix and not out.is_dir():
        raise EssenceError(f"--out {out}: give a .safetensors file or a folder.")
    return [out / n for n in names]


def _check_writable(dests: list[Path], overwrite: bool) -> None:
    from essence.method.rundir import ensure_writable_dir

    for dest in dests:
        if dest.exists() and not overwrite:
            raise EssenceError(f"{dest} exists. Choose another --out, or pass --overwrite.")
        ensure_writable_dir(dest.parent)


def import_direction_command(
    files: list[Path] = typer.Argument(
        ..., help="Direction files: TargetCLIP .npy (1, num_ws, w_dim), or .pt/.npy/.safetensors tensors."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="A .safetensors file (one input) or a folder (default: <stem>.safetensors here)."
    ),
    generator: Optional[str] = typer.Option(
        None, "--generator", "-g", help="The generator it is for (TargetCLIP's: stylegan2-ffhq)."
    ),
    target: Optional[str] = typer.Option(
        None, "--target", help="The target's name (default: the file's stem, as TargetCLIP names them)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing."),
) -> None:
    """Import directions: values unchanged, shape (num_ws, w_dim), metadata saying where they came from."""
    from essence.workflows.interop import import_direction

    dests = _destinations(files, out)
    _check_writable(dests, overwrite)
    for src, dest in zip(files, dests):
        path = import_direction(src, dest, generator=generator, target=target)
        if not quiet:
            typer.echo(f"{src} -> {path}")


def import_latents_command(
    file: Path = typer.Argument(
        ..., help="Latents: a tensor (N, num_ws, w_dim) or (num_ws, w_dim), a list, or a dict (e4e-style)."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="A .safetensors file or a folder (default: <stem>.safetensors here)."
    ),
    generator: Optional[str] = typer.Option(
        None, "--generator", "-g", help="The generator they are for (TargetCLIP's: stylegan2-ffhq)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing."),
) -> None:
    """Import W+ latents (sources) into a .safetensors latent file (tensor ws (N, num_ws, w_dim))."""
    from essence.workflows.interop import import_latents

    (dest,) = _destinations([file], out)
    _check_writable([dest], overwrite)
    path, imported = import_latents(file, dest, generator=generator)
    if not quiet:
        named = f", named ({len(imported.names)})" if imported.names else ""
        typer.echo(f"{file} -> {path}: {tuple(imported.ws.shape)} from a {imported.container}{named}")
