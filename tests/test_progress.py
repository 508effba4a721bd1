"""The progress bars at 80 columns (step/total and ETA first, nothing cut), and the long-run estimate."""

from __future__ import annotations

import io
from types import SimpleNamespace as NS

import pytest
from rich.console import Console

from engine_doubles import doubles, target_file  # noqa: F401 (fixtures)

from essence.commands import progress as P


def _render(display) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=80).print(display.progress.get_renderable())
    return out.getvalue().splitlines()


def _steps(display, n, restart=0, device=None):
    import torch

    record = NS(loss=0.51234, transfer=0.41234, consistency=0.12345)
    b = None if device is None else torch.zeros(1, device=device)
    for _ in range(n):
        display.step(NS(record=record, restart=restart, direction=b))


@pytest.fixture
def clock(monkeypatch):
    """time.monotonic advancing ``seconds`` per call (one call per step)."""
    import time

    state = {"now": 0.0, "seconds": 0.01}

    def tick():
        state["now"] += state["seconds"]
        return state["now"]

    monkeypatch.setattr(time, "monotonic", tick)
    return state


def test_run_bar_at_80_columns_shows_steps_and_eta_first_and_every_value(monkeypatch, clock):
    monkeypatch.setenv("COLUMNS", "80")
    display = P.RunProgress(False)
    display.start(NS(steps=1000, restarts=2, device="cpu"), 0)
    assert display.progress.console.width == 80  # rich reads COLUMNS
    display.progress.console.file = io.StringIO()  # keep the live bar off the test's stderr
    _steps(display, 12)
    lines = _render(display)
    display.stop()
    assert lines[0].split()[:3] == ["12/2000", "ETA", lines[0].split()[2]]
    assert ":" in lines[0].split()[2]  # a time, not an ellipsis
    assert all(len(line) <= 80 for line in lines)
    text = " ".join(lines)
    assert "…" not in text
    for part in ("restart 1/2", "loss 0.5123", "transfer loss 0.4123", "consistency loss 0.1235"):
        assert part in text


def test_stage_bar_at_80_columns_keeps_the_count(monkeypatch):
    display = P.StageProgress(False, console=Console(file=io.StringIO(), width=80))
    display.update("inversion", 41, 500, 0.123456)
    display.counter("rendering", "rendering 7 alphas")(3, 7)
    lines = _render(display)
    display.stop()
    assert lines[0].split()[:2] == ["42/500", "ETA"] and lines[1].split()[:2] == ["3/7", "ETA"]
    assert "loss 0.1235" in lines[0] and "rendering 7 alphas" in lines[1]


def test_a_long_run_says_how_long_and_how_to_shorten_it(clock):
    clock["seconds"] = 5.0  # 5 s a step: 1000 steps on a CPU is over an hour
    err = io.StringIO()
    display = P.RunProgress(False, console=Console(file=err, width=80))
    display.start(NS(steps=1000, restarts=1, device="cuda"), 0)  # the device the steps ran on wins
    _steps(display, P.ESTIMATE_AFTER + 3, device="cpu")
    display.stop()
    text = " ".join(err.getvalue().split())
    assert text.count("This run will take about") == 1  # once, after the first steps
    assert "1 h 23 min more" in text and "5.00 s/step on the CPU" in text
    assert "A GPU (--device cuda)" in text and "--steps 250" in text


def test_a_short_run_gets_no_estimate(clock):
    err = io.StringIO()
    display = P.RunProgress(False, console=Console(file=err, width=80))
    display.start(NS(steps=100, restarts=1, device="cpu"), 0)
    _steps(display, 10)
    display.stop()
    assert "will take" not in err.getvalue()


def test_duration_reads_at_a_glance():
    assert [P.duration(s) for s in (40, 720, 7500)] == ["40 s", "12 min", "2 h 05 min"]


def test_apply_and_eval_show_progress(doubles, target_file, tmp_path, monkeypatch):  # noqa: F811
    import torch
    from typer.testing import CliRunner

    import essence
    from essence.cli import build_app

    monkeypatch.setenv("COLUMNS", "80")

    def invoke(*args):
        return CliRunner().invoke(build_app(), [str(a) for a in args])

    b = essence.save_direction(tmp_path / "d.safetensors", torch.randn(4, 8), generator="tiny-gen")
    applied = invoke("apply", "-d", b, "--sources", 2, "--alpha", "0,0.5,1", "-o", tmp_path / "a")
    assert applied.exit_code == 0, applied.output
    assert "3/3" in applied.stderr and "rendering 3 alphas" in applied.stderr
    run = tmp_path / "run"
    made = invoke("run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 3, "--heldout", 2, "-o", run, "-q")
    assert made.exit_code == 0, made.output
    judged = invoke("eval", run)
    assert judged.exit_code == 0, judged.output
    assert "1/1" in judged.stderr and "judging 1 run(s)" in judged.stderr
    quiet = invoke("eval", run, "--json")
    assert quiet.exit_code == 0 and quiet.stdout.lstrip().startswith("{")  # the bar is on stderr, never in the JSON
