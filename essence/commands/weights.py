"""``essence weights ...``: list, pull, import, verify, locate, remove and convert model weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from essence.core.errors import WeightsError


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the known weights: kind, size, licence, whether they are cached, and where."""
    from essence.weights.assets import get_assets
    from essence.weights.cache import human_size, cache_entry, weights_root

    rows = []
    for name in sorted(get_assets()):
        entry = cache_entry(name)
        rows.append({**entry.asset.model_dump(), "status": entry.status, "path": str(entry.path)})
    if as_json:
        typer.echo(json.dumps({"cache": str(weights_root()), "assets": rows}, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"Weights (cache: {weights_root()})", title_justify="left")
    for col in ("name", "kind", "size", "source", "licence", "status", "path"):
        table.add_column(col, overflow="fold")
    for r in rows:
        status = f"[green]{r['status']}[/]" if r["status"] == "cached" else r["status"]
        source = r["urls"][0] if r["urls"] else "by hand: `essence weights import`"
        if len(r["urls"]) > 1:
            source += f" (+{len(r['urls']) - 1} mirror{'s' if len(r['urls']) > 2 else ''})"
        table.add_row(r["name"], r["kind"], human_size(r["size"]), source, r["license"], status, r["path"])
    if not rows:
        table.add_row("(none: plugins register weights)", "", "", "", "", "", "")
    _console().print(table)


def pull_command(
    names: list[str] = typer.Argument(..., help="Asset names (see `essence weights list`)."),
    force: bool = typer.Option(False, "--force", help="Download again even when cached."),
    offline: bool = typer.Option(
        False, "--offline", help="Never use the network: only finish what the cache holds (also ESSENCE_OFFLINE=1)."
    ),
) -> None:
    """Download, check and convert weights into the cache (resumes unfinished downloads)."""
    from essence.weights.assets import get_asset
    from essence.weights.cache import cache_entry, pull

    assets = [get_asset(n) for n in names]  # every name checked before anything downloads
    out = _console()
    for asset in assets:
        was_cached = cache_entry(asset).status == "cached" and not force
        entry = pull(asset, force=force, offline=offline or None)
        out.print(f"{asset.name}: {'already cached' if was_cached else 'ready'} at {entry.path}")


def import_command(
    name: str = typer.Argument(..., help="Asset name (see `essence weights list`)."),
    path: Path = typer.Argument(..., help="The file you downloaded."),
) -> None:
    """Check a file you downloaded by hand (size, SHA256 when known), copy it into the cache and convert it."""
    from essence.weights.cache import import_file

    entry = import_file(name, path)
    _console().print(f"{entry.asset.name}: imported {path}; ready at {entry.path}")


def verify_command(name: Optional[str] = typer.Argument(None, help="One asset (default: everything cached).")) -> None:
    """Re-hash cached files against their records."""
    from essence.weights.assets import get_assets
    from essence.weights.cache import cache_entry, verify

    names = [name] if name else [n for n in sorted(get_assets()) if cache_entry(n).status != "missing"]
    out = _console()
    if not names:
        out.print("Nothing in the cache to verify.")
        return
    bad = []
    for n in names:
        for check in verify(n):
            if check.ok:
                out.print(f"[green]OK[/]      {n}: {check.path.name} sha256 {check.detail}")
            else:
                bad.append(n)
                out.print(f"[red]FAILED[/]  {n}: {check.path}: {check.detail}")
    if bad:
        first = bad[0]
        raise WeightsError(
            f"{len(bad)} file(s) failed verification; run `essence weights pull {first} --force` to download again."
        )


def path_command(name: str = typer.Argument(..., help="Asset name.")) -> None:
    """Print the cached file that components load for NAME."""
    from essence.weights.cache import STATUSES, cache_entry

    entry = cache_entry(name)
    if entry.status != "cached":
        raise WeightsError(
            f"{name!r} is not ready ({entry.status}: {STATUSES[entry.status]}); run `essence weights pull {name}`."
        )
    typer.echo(str(entry.path))


def rm_command(name: str = typer.Argument(..., help="Asset name.")) -> None:
    """Delete NAME from the cache (download, converted file, record, partial download)."""
    from essence.weights.cache import remove

    removed = remove(name)
    _console().print(f"{name}: {'removed from the cache' if removed else 'was not in the cache'}")


def convert_command(
    src: Path = typer.Argument(..., help="A checkpoint in a format a plugin converts."),
    dst: Path = typer.Argument(..., help="The safetensors file to write."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Skip detection and use this converter."),
    force: bool = typer.Option(False, "--force", help="Overwrite DST."),
) -> None:
    """Convert a checkpoint to safetensors, detecting its format; print what the converter found."""
    from essence.weights.cache import convert_file
    from essence.core.files import sha256_file

    if dst.exists() and not force:
        raise WeightsError(f"{dst} exists; pass --force to overwrite it.")
    converter, info = convert_file(src, dst, converter=fmt)
    out = _console()
    out.print(f"{src} -> {dst} (format {converter.name}, plugin {converter.plugin})")
    for key, value in info.items():
        out.print(f"  {key}: {value}")
    out.print(f"  sha256: {sha256_file(dst)}")


def weights_app() -> typer.Typer:
    app = typer.Typer(
        help="Download, check and cache model weights.",
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.command("list")(list_command)
    app.command("pull")(pull_command)
    app.command("import")(import_command)
    app.command("verify")(verify_command)
    app.command("path")(path_command)
    app.command("rm")(rm_command)
    app.command("convert")(convert_command)
    return app
