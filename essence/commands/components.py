"""``essence list``, ``info``, ``plugins`` and ``doctor``: what is installed and whether it works."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from essence.core.registry import get_registry, list_components, normalize_kind, plural
from essence.version import __version__


def _stdout_console():
    from rich.console import Console

    return Console(highlight=False)


def list_command(
    kind: Optional[str] = typer.Argument(None, help="generators, encoders, losses, metrics, aligners or inverters (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """List the registered generators, encoders, losses, metrics, aligners and inverters."""
    components = list_components(kind)
    if as_json:
        typer.echo(json.dumps({plural(k): [r.summary() for r in regs] for k, regs in components.items()}, indent=2))
        return
    from rich.table import Table

    console = _stdout_console()
    for k, regs in components.items():
        table = Table(title=plural(k).capitalize(), title_justify="left", expand=False)
        for col in ("name", "aliases", "plugin", "description"):
            table.add_column(col, overflow="fold")
        for r in regs:
            table.add_row(r.name, ", ".join(r.aliases), r.plugin, r.description)
        if not regs:
            table.add_row("(none)", "", "", "")
        console.print(table)


def info_command(
    kind: str = typer.Argument(..., help="generator, encoder, loss, metric, aligner or inverter."),
    name: str = typer.Argument(..., help="The component's name or alias."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a component's configuration fields, with types, defaults and descriptions."""
    reg = get_registry().get(normalize_kind(kind), name)
    fields = reg.fields()
    if as_json:
        typer.echo(json.dumps({**reg.summary(), "kind": reg.kind, "fields": fields}, indent=2, default=str))
        return
    from rich.table import Table

    console = _stdout_console()
    console.print(f"[bold]{reg.kind} {reg.name}[/]  (plugin {reg.plugin})")
    if reg.aliases:
        console.print("aliases: " + ", ".join(reg.aliases))
    if reg.description:
        console.print(reg.description)
    table = Table(expand=False)
    for col in ("field", "type", "default", "description"):
        table.add_column(col, overflow="fold")
    for f in fields:
        table.add_row(f["name"], f["type"], json.dumps(f["default"], default=str), f["description"])
    if not fields:
        table.add_row("(no options)", "", "", "")
    console.print(table)


def plugins_command(
    show_all: bool = typer.Option(False, "--all", help="Include the built-in plugins."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the loaded plugins, their versions and the hooks they implement."""
    from essence.core.plugins import get_host

    host = get_host()
    plugins = [p for p in host.plugins.values() if show_all or not p.builtin]
    if as_json:
        rows = [{"name": p.name, "version": p.version, "builtin": p.builtin, "hooks": p.hooks} for p in plugins]
        errors = [{"plugin": e.plugin, "stage": e.stage, "error": e.error} for e in host.errors]
        typer.echo(json.dumps({"plugins": rows, "errors": errors}, indent=2))
        return
    from rich.table import Table

    console = _stdout_console()
    table = Table(title="Plugins", title_justify="left")
    for col in ("name", "version", "hooks"):
        table.add_column(col, overflow="fold")
    for p in plugins:
        table.add_row(p.name, p.version or ("built-in" if p.builtin else ""), ", ".join(p.hooks))
    if not plugins:
        table.add_row("(no third-party plugins)" if not show_all else "(none)", "", "")
    console.print(table)
    for e in host.errors:
        console.print(f"[red]failed:[/] {e.plugin} ({e.stage}): {e.error}")


def doctor_command() -> None:
    """Check the installation: Python, torch, devices, cache folder, plugins and their errors."""
    import importlib.metadata
    import platform

    from essence.core.paths import essence_home
    from essence.core.plugins import get_host

    console = _stdout_console()

    def row(item: str, value: str) -> None:
        console.print(f"[bold]{item}:[/] {value}", soft_wrap=True)

    row("essence", __version__)
    row("python", f"{platform.python_version()} ({sys.executable})")
    row("platform", platform.platform())
    for dist in ("torch", "torchvision", "openai-clip", "open_clip_torch", "pydantic", "pluggy", "safetensors"):
        try:
            row(dist, importlib.metadata.version(dist))
        except importlib.metadata.PackageNotFoundError:
            row(dist, "[red]not installed[/]")
    try:
        import torch

        row("torch threads", str(torch.get_num_threads()))
        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            row("cuda", f"{torch.version.cuda}: " + ", ".join(names))
        else:
            row("cuda", "not available (CPU only)")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            row("mps", "available")
    except Exception as exc:  # a broken torch is exactly what doctor should report
        row("torch", f"[red]import failed: {exc}[/]")
    home = essence_home()
    row("cache folder", f"{home} ({'exists' if home.exists() else 'not created yet'})")
    host = get_host()
    row("plugins", ", ".join(p.name for p in host.plugins.values()) or "(none)")
    if host.errors:
        console.print("[bold red]Plugin errors:[/]")
        for e in host.errors:
            console.print(f"  {e.plugin} ({e.stage}): {e.error}", soft_wrap=True)
    else:
        console.print("No plugin errors.")
