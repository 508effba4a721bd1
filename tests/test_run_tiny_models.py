"""`essence run` end to end with the real plugins (StyleGAN2 + CLIP) at tiny sizes with random weights."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import essence
from essence.cli import build_app

STEPS = 20

CONFIG = """
preset = "paper"
steps = {steps}
seed = 3

[generator]
name = "stylegan2"
[generator.config]
weights = "random"
size = 32
style_dim = 32
n_mlp = 2
channels = {{ "4" = 32, "8" = 32, "16" = 16, "32" = 8 }}

[encoder]
name = "clip-vitb32"
[encoder.config]
weights = "random"
architecture = {{ embed_dim = 32, vision_layers = 2, vision_width = 128, vision_patch_size = 32 }}

[heldout]
count = 3
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-run")
    target = root / "target.png"
    Image.effect_noise((48, 48), 64).convert("RGB").save(target)
    config = root / "run.toml"
    config.write_text(CONFIG.format(steps=STEPS))
    out = root / "out"
    result = CliRunner().invoke(build_app(), ["run", "-c", str(config), "-t", str(target), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, config, target


def test_every_artifact_is_written(finished_run):
    out, _, _ = finished_run
    for name in ("direction.safetensors", "config.json", "trace.csv", "metrics.json", "sheet.png", "loss.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "images").glob("result_*.png"))) == 6  # the paper preset's N
    sheet = Image.open(out / "sheet.png")
    tile = Image.open(out / "images" / "source_00.png").width
    assert sheet.width >= 7 * tile  # target column + 6 sources


def test_losses_fall_and_heldout_is_reported(finished_run):
    out, _, _ = finished_run
    with open(out / "trace.csv") as fh:
        losses = [float(row["loss"]) for row in csv.DictReader(fh)]
    assert len(losses) == STEPS
    assert min(losses[-5:]) < losses[0]
    heldout = json.loads((out / "metrics.json").read_text())["heldout"]
    assert heldout["count"] == 3
    assert heldout["transfer"] < heldout["transfer_unedited"]  # the direction carries the target on new sources


def test_direction_reloads_fits_and_reproduces_the_edit(finished_run):
    out, _, _ = finished_run
    direction = essence.load_direction(out / "direction.safetensors")
    config = json.loads((out / "config.json").read_text())
    generator = essence.get_generator("stylegan2", **config["generator"]["config"])
    direction.check_fits(generator)
    assert direction.metadata["generator"] == "stylegan2" and direction.metadata["encoder"] == "clip-vitb32"
    assert tuple(direction.b.shape) == (generator.num_ws, generator.w_dim)
    # The saved result image of source 0 is G(w_0 + b): re-render it from the reloaded direction.
    ws = generator.sample_ws(6, seed=3, truncation=0.7)
    image = generator.synthesize(ws[:1] + direction.b)
    saved = np.asarray(Image.open(out / "images" / "result_00.png"), dtype=np.int16)
    ours = essence.core.images.to_uint8(image)[0].astype(np.int16)
    assert np.abs(saved - ours).max() <= 1


def test_same_seed_same_direction(finished_run, tmp_path):
    out, config, target = finished_run
    again = tmp_path / "again"
    result = CliRunner().invoke(build_app(), ["run", "-c", str(config), "-t", str(target), "--out", str(again), "-q"])
    assert result.exit_code == 0, result.output
    a = essence.load_direction(out / "direction.safetensors").b
    b = essence.load_direction(again / "direction.safetensors").b
    assert torch.equal(a, b)
