"""``essence eval``: judge run folders on held-out sources; a table, JSON, or both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from essence.core.errors import EssenceError


def eval_command(
    runs: list[Path] = typer.Argument(..., help="Run folders written by essence run or essence blend."),
    encoder: Optional[str] = typer.Option(
        None, "--encoder", "-e", help="A second, judging encoder besides each run's own (e.g. clip-rn50)."
    ),
    heldout: Optional[int] = typer.Option(None, "--heldout", help="Held-out sources (default: the run's count, 8 if none)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the held-out sources (default: the run's held-out seed)."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Strength of a direction (default: its apply_alpha, else the run's held-out alpha)."),
    metric: Optional[list[str]] = typer.Option(None, "--metric", "-m", help="A metric to compute; repeat (default: all)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, mps ..."),
    chunk: Optional[int] = typer.Option(None, "--chunk", help="Most images per pass (default 8)."),
    sets: Optional[list[str]] = typer.Option(
        None, "--set", "-s", help="Override a setting: --set encoder.config.weights=FILE (the judging encoder's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the JSON report to this file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing (with --out)."),
) -> None:
    """Judge runs on held-out sources: similarity to the target, consistency of the edit, similarity to the source."""
    from essence.core.files import write_json
    from essence.method.rundir import ensure_writable_dir
    from essence.workflows.evaluate import build_eval_config, evaluate_runs, metrics_table

    options: dict[str, Any] = {
        "encoder": {"name": encoder} if encoder else None,
        "heldout": {k: v for k, v in {"count": heldout, "seed": seed, "alpha": alpha}.items() if v is not None} or None,
        "metrics": list(metric) if metric else None,
        "device": device,
        "chunk": chunk,
    }
    config = build_eval_config({k: v for k, v in options.items() if v is not None}, sets or ())
    if out is not None:
        if out.is_dir():
            raise EssenceError(f"--out {out} is a folder; give a file name such as {out / 'eval.json'}.")
        ensure_writable_dir(out.parent)
    from essence.commands.progress import StageProgress

    display = StageProgress(quiet)
    try:
        report = evaluate_runs(runs, config, judged=display.counter("judging", f"judging {len(runs)} run(s)"))
    finally:
        display.stop()
    if out is not None:
        write_json(out, report)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    elif not quiet:
        from rich.console import Console

        Console(highlight=False).print(metrics_table(report))
