"""`essence blend`: the paper's baselines end to end on the test doubles."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from engine_doubles import TinyGenerator, components, doubles, target_file  # noqa: F401 (fixtures)
from PIL import Image
from typer.testing import CliRunner

import essence
from essence.cli import build_app
from essence.workflows.blend import clip_blend


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def blend(method, out, *extra):
    return invoke("blend", "-m", method, "-g", "tiny-gen", "-e", "tiny-enc", "--sources", 3, "-o", out, "-q", *extra)


@pytest.fixture
def target_latent(doubles, tmp_path):
    return essence.save_latents(tmp_path / "target_w.pt", essence.get_generator("tiny-gen").sample_ws(1, seed=77))


def test_stylegan_blend_averages_the_latents(target_file, target_latent, tmp_path):
    out = tmp_path / "sg"
    result = blend("stylegan", out, "-t", target_file, "--target-latent", target_latent)
    assert result.exit_code == 0, result.output
    ws = essence.load_latents(out / "sources.safetensors")
    assert torch.equal(ws, essence.get_generator("tiny-gen").sample_ws(3, seed=0, truncation=0.7))  # as runs draw them
    w_t = essence.load_latents(target_latent)
    assert torch.allclose(essence.load_latents(out / "results.safetensors"), (ws + w_t) / 2, atol=1e-6)
    for name in ("config.json", "metrics.json", "sheet.png", "target_latent.safetensors", "images/target_00.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "images").glob("result_*.png"))) == 3 and not (out / "trace.csv").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "stylegan-blend" and metrics["report"]["count"] == 3 and metrics["inversion"] is None
    tile = 96  # the run sheet's layout: (N + 1) tiles of max(96, min(resolution, 256)) px
    assert Image.open(out / "sheet.png").width == 4 * tile + 5 * 4
    assert json.loads((out / "config.json").read_text())["kind"] == "blend"


def test_stylegan_blend_inverts_an_image_target(doubles, target_file, tmp_path):
    out = tmp_path / "sg"
    steps = ["--set", "inversion.inverter.config.steps=30", "--set", "inversion.inverter.config.lr=0.2"]
    result = blend("stylegan", out, "-t", target_file, *steps)
    assert result.exit_code == 0, result.output
    with open(out / "trace.csv") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh)]
    assert len(losses) == 30 and losses[-1] < losses[0]  # the generator's default inverter (the doubles': a projector)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["inversion"] == {"aligner": "resize", "inverter": "tiny-projector", "final_loss": pytest.approx(losses[-1])}
    w_t = essence.load_latents(out / "target_latent.safetensors")
    ws = essence.load_latents(out / "sources.safetensors")
    assert torch.allclose(essence.load_latents(out / "results.safetensors"), (ws + w_t) / 2, atol=1e-6)
    assert (out / "images" / "target_inverted.png").is_file() and (out / "loss.png").is_file()
    # The sheet shows the inverted target (what the blend mixes) left of the sources, under its caption.
    from essence.method.figures import LABEL_HEIGHT, square_tile

    sheet, tile, gap = Image.open(out / "sheet.png"), 96, 4
    cell = sheet.crop((gap, LABEL_HEIGHT + gap, gap + tile, LABEL_HEIGHT + gap + tile))
    expected = square_tile(Image.open(out / "images" / "target_inverted.png"), tile)
    assert np.array_equal(np.asarray(cell), np.asarray(expected))


def test_clip_blend_moves_each_source_towards_the_mixed_embedding(doubles, target_file, tmp_path):
    out = tmp_path / "cb"
    result = blend("clip", out, "-t", target_file, "--steps", 30, "--lr", 0.1)
    assert result.exit_code == 0, result.output
    with open(out / "trace.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30 and float(rows[-1]["loss"]) < float(rows[0]["loss"])
    report = json.loads((out / "metrics.json").read_text())["report"]
    assert report["transfer"] < report["transfer_unedited"]  # the blends carry some of the target


def test_clip_blend_treats_each_source_on_its_own(components):
    generator, encoder = components
    ws = generator.sample_ws(3, seed=4, truncation=0.7)
    target = encoder.embed(generator.synthesize(generator.sample_ws(1, seed=8)))
    together, _ = clip_blend(generator, encoder, target, ws, steps=5, lr=0.1)
    alone, _ = clip_blend(generator, encoder, target, ws[1:2], steps=5, lr=0.1)
    chunked, _ = clip_blend(generator, encoder, target, ws, steps=5, lr=0.1, chunk=2)
    assert torch.allclose(together[1:2], alone, atol=1e-5)
    assert torch.allclose(together, chunked, atol=1e-5)
    assert not torch.allclose(together, ws)


def test_a_target_latent_alone_is_a_target(target_latent, tmp_path):
    out = tmp_path / "cb"
    assert blend("clip", out, "--target-latent", target_latent, "--steps", 3).exit_code == 0
    assert Image.open(out / "images" / "target_00.png").size == (TinyGenerator.resolution,) * 2  # G(w_t)


def _two_latents(tmp_path):
    essence.save_latents(tmp_path / "two.pt", torch.zeros(2, 4, 8))
    return ["--target-latent", tmp_path / "two.pt"]


def _wrong_shape(tmp_path):
    essence.save_latents(tmp_path / "ffhq.pt", torch.zeros(1, 18, 512))
    return ["--target-latent", tmp_path / "ffhq.pt"]


BAD = {
    "unknown method": (["-m", "clap"], "Input should be 'stylegan', 'clip' or 'gatys'"),
    "no target": ([], "No target: pass --target IMAGE or --target-latent FILE"),
    "steps for the stylegan blend": (["-m", "stylegan", "-t", "T", "--steps", 3], "--steps and --lr are for --method clip"),
    "missing target latent": (["--target-latent", "missing.pt"], "Target latent file not found"),
    "two target latents": (_two_latents, "holds 2 latents; give one"),
    "target latent of another generator": (_wrong_shape, "has shape (1, 18, 512), but the generator needs (N, 4, 8)"),
    "unknown setting": (["-t", "T", "--set", "wieght=0.3"], "unknown field 'wieght' (did you mean 'weight'?)"),
    "bad inversion setting": (["-m", "stylegan", "-t", "T", "--set", "inversion.inverter.config.pixel=0"], "the projector needs a loss"),
    "unknown inverter": (["-m", "stylegan", "-t", "T", "--set", "inversion.inverter=tiny-projektor"], "Unknown inverter 'tiny-projektor'. Did you mean 'tiny-projector'"),
    "unknown encoder": (["-t", "T", "-e", "tiny-enk"], "Did you mean 'tiny-enc'?"),
    "bad target file": (["-t", "missing.png"], "Image file not found"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_blend_inputs_are_clean_errors(doubles, target_file, tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    args, message = BAD[case]
    args = args(tmp_path) if callable(args) else args
    args = [target_file if a == "T" else a for a in args]
    method = [] if "-m" in args else ["-m", "clip"]
    result = invoke("blend", *method, "-g", "tiny-gen", "-e", "tiny-enc", "-o", tmp_path / "out", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_an_earlier_blend_is_not_overwritten_by_accident(target_file, target_latent, tmp_path):
    out = tmp_path / "sg"
    assert blend("stylegan", out, "--target-latent", target_latent).exit_code == 0
    again = blend("stylegan", out, "--target-latent", target_latent)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert blend("stylegan", out, "--target-latent", target_latent, "--overwrite").exit_code == 0
