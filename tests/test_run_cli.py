"""`essence run` end to end through the real CLI app, on the test doubles."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_doubles import TinyGenerator, doubles, target_file  # noqa: F401 (fixtures)
from PIL import Image
from typer.testing import CliRunner

import essence
from essence.cli import build_app
from essence.method.runconfig import validate_run_config

STEPS = 10


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def base(target, out, *extra):
    return ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target, "--steps", STEPS, "--heldout", 3, "--out", out, *extra]


def test_run_writes_every_artifact(doubles, target_file, tmp_path):
    out = tmp_path / "run"
    result = invoke(*base(target_file, out))
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout and "held-out" in result.stdout
    for name in ("direction.safetensors", "config.json", "trace.csv", "metrics.json", "sheet.png", "heldout_sheet.png", "loss.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint.pt").exists()
    n = 32  # the default preset's (essence-in) sources
    assert sorted(p.name for p in (out / "images").glob("source_*.png")) == [f"source_{i:02d}.png" for i in range(n)]
    assert len(list((out / "images").glob("heldout_result_*.png"))) == 3

    config = validate_run_config(json.loads((out / "config.json").read_text()))
    assert config.steps == STEPS and config.generator.name == "tiny-gen" and config.out == str(out)
    with open(out / "trace.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == STEPS
    assert {"step", "lr", "loss", "transfer", "consistency", "direction_norm", "mean_coefficient"} <= set(rows[0])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps_done"] == STEPS
    assert metrics["heldout"]["count"] == 3 and metrics["heldout"]["transfer"] < metrics["heldout"]["transfer_unedited"]
    assert Image.open(out / "sheet.png").width > Image.open(out / "heldout_sheet.png").width

    direction = essence.load_direction(out / "direction.safetensors")
    generator, encoder = essence.get_generator("tiny-gen"), essence.get_encoder("tiny-enc")
    direction.check_fits(generator)
    meta = direction.metadata
    assert (meta["generator"], meta["encoder"], meta["num_ws"]) == ("tiny-gen", "tiny-enc", generator.num_ws)
    assert meta["generator_weights_id"] == generator.weights_id and meta["essence_version"] == essence.__version__
    assert validate_run_config(meta["config"]) == config
    # init 'auto' inverted the target (tiny-gen has an inverter): config.json says so, and the start is kept
    assert (config.init.mode, config.init.auto) == ("target", "the target image was inverted")
    start = essence.load_latents(out / "init.safetensors")
    again = essence.optimize_direction(generator, encoder, target_file, config=config, init=start)
    assert torch.equal(direction.b, again.direction)
    assert torch.allclose(direction.d, again.embedding_direction)


def test_config_file_set_and_quiet(doubles, target_file, tmp_path):
    path = tmp_path / "run.toml"
    out = tmp_path / "run"
    path.write_text(
        f'generator = "tiny-gen"\nencoder = "tiny-enc"\ntarget = "{target_file}"\nsteps = 50\n'
        f'out = "{out}"\n[heldout]\ncount = 0\n'
    )
    result = invoke("run", "--config", path, "--steps", 4, "--set", "sources.count=3", "--set", "seed=2", "--quiet")
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if not line.startswith("Warning:")] == []  # warnings only
    config = json.loads((out / "config.json").read_text())
    assert (config["steps"], config["sources"]["count"], config["seed"]) == (4, 3, 2)
    assert len((out / "trace.csv").read_text().splitlines()) == 1 + 4
    assert not (out / "heldout_sheet.png").exists()


def test_sources_from_a_latent_file(doubles, target_file, tmp_path):
    ws = essence.get_generator("tiny-gen").sample_ws(2, seed=9)
    essence.save_latents(tmp_path / "ws.pt", ws)
    result = invoke(*base(target_file, tmp_path / "run", "--sources", tmp_path / "ws.pt", "-q"))
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "run" / "images").glob("source_*.png"))) == 2


def test_targetclip_preset_configures_the_encoder(doubles, target_file, tmp_path):
    result = invoke(*base(target_file, tmp_path / "run", "--preset", "targetclip", "-q"))
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["encoder"]["config"] == {"normalize": False, "resample": "area"}
    assert config["coefficients"]["optimizer"] == "per-step"
    with open(tmp_path / "run" / "trace.csv") as fh:
        assert float(next(csv.DictReader(fh))["mean_coefficient"]) == 1.0


def _bad_target(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG not really")
    return ["-t", path]


def _wrong_latents(tmp_path):
    essence.save_latents(tmp_path / "ws.npy", torch.zeros(2, 5, 8))
    return ["--sources", tmp_path / "ws.npy"]


BAD_INPUTS = {
    "bad target file": (_bad_target, "Not an image file", False),
    "missing target": (lambda p: ["-t", p / "missing.png"], "Image file not found", False),
    "unknown generator": (lambda p: ["-g", "tiny-gne"], "Unknown generator 'tiny-gne'. Did you mean 'tiny-gen'?", False),
    "unknown encoder": (lambda p: ["-e", "nope"], "Unknown encoder 'nope'", False),
    "unknown loss": (lambda p: ["--set", "losses.transfr=1"], "Unknown loss 'transfr'", False),
    "unknown run setting": (lambda p: ["--set", "stepz=3"], "unknown field 'stepz' (did you mean 'steps'?)", False),
    "bad component option": (lambda p: ["--set", "generator.config.chanels=3"], "unknown field 'chanels'", False),
    "unknown preset": (lambda p: ["--preset", "targetclp"], "Did you mean 'targetclip'?", False),
    "missing latent file": (lambda p: ["--sources", p / "nope.pt"], "Sources latent file not found", False),
    "latent file of another generator": (_wrong_latents, "has shape (2, 5, 8), but the generator needs (N, 4, 8)", True),
    "unwritable output folder": (lambda p: ["--out", p / "target.png" / "run"], "Cannot write to output folder", False),
    "init target with restarts": (lambda p: ["--init", "target", "--restarts", "2"], "init 'target' is one start", False),
    "unknown inverter": (lambda p: ["--init", "target", "--set", "inversion.inverter=e4f"], "Unknown inverter 'e4f'", False),
    "unknown aligner": (lambda p: ["--sources", p / "target.png", "--set", "inversion.aligner=dlib"], "Unknown aligner 'dlib'", False),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_fail_before_any_compute(doubles, target_file, tmp_path, case):
    make_args, message, builds_generator = BAD_INPUTS[case]
    out = tmp_path / "run"
    built = TinyGenerator.built
    result = invoke(*base(target_file, out), *make_args(tmp_path))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert (TinyGenerator.built > built) == builds_generator  # names, files and folders are checked before G is built
    assert not (out / "direction.safetensors").exists() and not (out / "trace.csv").exists()


def test_an_existing_run_is_not_overwritten_by_accident(doubles, target_file, tmp_path):
    out = tmp_path / "run"
    assert invoke(*base(target_file, out, "-q")).exit_code == 0
    result = invoke(*base(target_file, out, "-q"))
    assert result.exit_code == 2 and "already holds a run" in result.output
    assert "--resume" not in result.output  # a finished run has nothing to resume: no advice that then fails
    assert invoke(*base(target_file, out, "-q", "--overwrite")).exit_code == 0


def test_ctrl_c_then_resume_equals_an_uninterrupted_run(doubles, target_file, tmp_path):
    common = ["--restarts", 2, "--set", "coefficients=true", "-q"]
    full = tmp_path / "full"
    assert invoke(*base(target_file, full, *common)).exit_code == 0

    cut = tmp_path / "cut"
    interrupted = invoke(*base(target_file, cut, *common, "--set", 'losses.sigint-at={"weight": 0, "config": {"step": 4}}'))
    assert interrupted.exit_code == 130, interrupted.output
    assert "--resume" in interrupted.output
    assert (cut / "checkpoint.pt").is_file() and (cut / "direction.safetensors").is_file()
    metrics = json.loads((cut / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["steps_done"] == 5

    assert invoke("run", "--resume", cut, "--steps", 3).exit_code == 2  # its own settings only
    resumed = invoke("run", "--resume", cut, "-q")
    assert resumed.exit_code == 0, resumed.output
    assert not (cut / "checkpoint.pt").exists()
    a, b = essence.load_direction(full / "direction.safetensors"), essence.load_direction(cut / "direction.safetensors")
    assert torch.equal(a.b, b.b) and torch.equal(a.d, b.d)
    columns = ("restart", "step", "loss", "transfer", "consistency", "direction_norm", "mean_coefficient")
    with open(full / "trace.csv") as f1, open(cut / "trace.csv") as f2:
        assert [tuple(r[c] for c in columns) for r in csv.DictReader(f1)] == [
            tuple(r[c] for c in columns) for r in csv.DictReader(f2)
        ]
    done = invoke("run", "--resume", cut)
    assert done.exit_code == 2 and "already complete" in done.output


def test_periodic_checkpoints_are_written_and_cleared(doubles, target_file, tmp_path):
    out = tmp_path / "run"
    seen = []

    def spy(event):
        seen.append((out / "checkpoint.pt").exists())

    from essence.method.runner import execute_run

    cfg = validate_run_config({"generator": "tiny-gen", "encoder": "tiny-enc", "target": str(target_file), "steps": 6, "checkpoint_every": 2})
    outcome = execute_run(cfg, out=out, callback=spy)
    assert outcome.status == "completed"
    assert seen == [False, True, True, True, True, True]
    assert not (out / "checkpoint.pt").exists()


def test_same_seed_same_direction_file(doubles, target_file, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert invoke(*base(target_file, tmp_path / name, "--seed", seed, "-q")).exit_code == 0
    a, b, c = (essence.load_direction(tmp_path / n / "direction.safetensors").b for n in "abc")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_nan_stops_with_a_clear_message_and_keeps_the_direction(doubles, target_file, tmp_path):
    out = tmp_path / "run"
    result = invoke(*base(target_file, out, "--set", 'losses.nan-at={"weight": 1, "config": {"step": 3}}'))
    assert result.exit_code == 1
    assert "The loss became nan at step 3" in result.output and "last good direction" in result.output
    direction = essence.load_direction(out / "direction.safetensors")
    assert torch.isfinite(direction.b).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "nonfinite" and metrics["steps_done"] == 3 and math.isfinite(metrics["best_loss"])


def test_resume_needs_a_run_folder(doubles, tmp_path):
    result = invoke("run", "--resume", tmp_path)
    assert result.exit_code == 2 and "not a run folder" in result.output


def test_building_the_cli_imports_no_torch():
    root = Path(__file__).resolve().parents[1]
    code = "import sys, essence.cli; essence.cli.build_app(); assert 'torch' not in sys.modules, 'torch imported'"
    env = {**os.environ, "ESSENCE_LOAD_PLUGINS": "", "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)
