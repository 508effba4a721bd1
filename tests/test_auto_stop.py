"""`--steps auto` (a run ends when its held-out loss stops improving) and a preset's apply strength, which
`essence apply` and `essence eval` use unless given --alpha."""

from __future__ import annotations

import json

import pytest
import torch
from engine_doubles import doubles, target_file  # noqa: F401 (fixtures)
from typer.testing import CliRunner

import essence
from essence.cli import build_app
from essence.method.engine import TransferOptimizer
from essence.method.runconfig import validate_run_config


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def test_the_rule_stops_after_patience_checks_without_improvement():
    cfg = validate_run_config({"steps": "auto", "auto_stop": {"patience": 2, "min_delta": 0.01}})
    assert cfg.auto_stop.enabled and cfg.steps == 1000  # the most it may take
    from essence.method.engine import DirectionSearch

    s = DirectionSearch.__new__(DirectionSearch)
    s.config, s.checks, s.best_check, s.stale_checks, s.stop_reason, s.step_index = cfg, [], float("inf"), 0, None, 0
    for loss in (1.0, 0.9, 0.895, 0.85):  # 0.895 is within 1 % of 0.9: no improvement; 0.85 is one
        s.auto_stop_check(loss)
    assert s.stop_reason is None and s.best_check == 0.85
    s.auto_stop_check(0.849)
    s.auto_stop_check(0.86)
    assert s.stop_reason is not None and "2 checks" in s.stop_reason and s.done


def test_steps_auto_needs_heldout_sources():
    with pytest.raises(essence.ConfigError, match="held-out"):
        validate_run_config({"steps": "auto", "heldout": {"count": 0}})


def test_a_run_with_steps_auto_stops_early_and_says_why(doubles, target_file, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", "auto", "--heldout", 3,
                    "--set", "auto_stop.every=2", "--set", "auto_stop.patience=2", "--set", "auto_stop.min_delta=0.5",
                    "--set", "auto_stop.max_steps=200", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    stopping = metrics["stopping"]
    # a 50 % improvement per 2 steps is not kept up for long: it stops well before its 200 steps
    assert stopping["stopped_early"] and "not improved" in stopping["reason"]
    assert metrics["steps_done"] == stopping["steps_done"] < 200 and metrics["steps"] == 200
    assert len(stopping["checks"]) == stopping["steps_done"] // 2
    assert metrics["restart_results"][0]["steps_done"] == stopping["steps_done"]
    assert validate_run_config(json.loads((out / "config.json").read_text())).auto_stop.enabled


def test_without_auto_every_step_is_done(doubles, target_file):
    G, C = essence.get_generator("tiny-gen"), essence.get_encoder("tiny-enc")
    run = TransferOptimizer(G, C, target_file, config={"steps": 6, "heldout": {"count": 2}}).run()
    assert len(run.trace) == 6 and run.restarts[0].stopping is None


def test_bad_steps_is_a_clean_error(doubles, target_file, tmp_path):
    result = invoke("run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", "soon", "-o", tmp_path / "r")
    assert result.exit_code == 2 and "'auto'" in result.output and "Traceback" not in result.output


def test_apply_alpha_is_recorded_and_used_by_apply_and_eval(doubles, target_file, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 3, "--heldout", 2,
                    "--set", "apply_alpha=1.2", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    direction = essence.load_direction(out / "direction.safetensors")
    assert direction.apply_alpha == 1.2

    applied = invoke("apply", "-d", out, "--sources", 2, "-o", tmp_path / "applied", "-q")
    assert applied.exit_code == 0, applied.output
    assert json.loads((tmp_path / "applied" / "apply.json").read_text())["alphas"] == [0.0, 1.2]
    given = invoke("apply", "-d", out, "--sources", 2, "--alpha", "0,1", "-o", tmp_path / "given", "-q")
    assert json.loads((tmp_path / "given" / "apply.json").read_text())["alphas"] == [0.0, 1.0]

    judged = invoke("eval", out, "--json")
    assert judged.exit_code == 0, judged.output
    assert json.loads(judged.stdout)["runs"][0]["heldout"]["alpha"] == 1.2
    judged = invoke("eval", out, "--json", "--alpha", 0.5)
    assert json.loads(judged.stdout)["runs"][0]["heldout"]["alpha"] == 0.5


def test_a_direction_without_apply_alpha_applies_at_one(doubles, target_file, tmp_path):
    out = tmp_path / "run"
    assert invoke("run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 2, "--heldout", 2,
                  "--preset", "paper", "-o", out, "-q").exit_code == 0
    assert essence.load_direction(out / "direction.safetensors").apply_alpha is None
    assert invoke("apply", "-d", out, "--sources", 1, "-o", tmp_path / "a", "-q").exit_code == 0
    assert json.loads((tmp_path / "a" / "apply.json").read_text())["alphas"] == [0.0, 1.0]


def test_init_target_with_only_text_targets_is_a_clean_error(doubles, tmp_path):
    result = invoke("run", "-g", "tiny-gen", "-e", "tiny-enc", "--target-text", "a red circle", "--init", "target",
                    "-o", tmp_path / "r")
    assert result.exit_code == 2 and "--init zeros" in result.output and "Traceback" not in result.output
