"""``essence ui``: the web page (find, apply and compare directions), from the ``[ui]`` extra."""

from __future__ import annotations

from pathlib import Path

import typer

from essence.method.rundir import RUNS_ROOT


def ui_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on; 0.0.0.0 opens it to your network."),
    port: int = typer.Option(7860, "--port", help="Port to serve on."),
    runs: Path = typer.Option(
        RUNS_ROOT, "--runs", help="Folder of run folders: listed, applied, and where new runs go."
    ),
) -> None:
    """A local web page: find a direction (live), apply it with a strength slider, compare runs."""
    from essence.ui import require_gradio

    require_gradio()
    from essence.ui.app import UiState, launch

    state = UiState(runs)
    typer.echo(f"essence ui on http://{host}:{port}/ (runs in {runs}); Ctrl-C stops it.", err=True)
    launch(state, host=host, port=port, quiet=True)
