"""``essence demo``: the whole method on the shipped toy models, end to end (with few steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from essence.cli import main
from essence.plugins.toy import demo, world


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "essence-demo"
    code = main(["demo", "--out", str(out), "--steps", "12", "--seed", "3", "--quiet"])
    assert code == 0
    return out


@pytest.mark.parametrize("name", list(demo.TARGETS))
def test_demo_writes_a_complete_run_folder_per_target(demo_out, name):
    run = demo_out / name
    for file in ("direction.safetensors", "config.json", "trace.csv", "metrics.json", "sheet.png", "heldout_sheet.png"):
        assert (run / file).is_file(), file
    config = json.loads((run / "config.json").read_text())
    assert config["generator"]["name"] == "toy-sprites"
    assert config["encoder"]["name"] == "toy-clip"
    assert config["steps"] == 12
    assert len((run / "trace.csv").read_text().strip().splitlines()) == 1 + 12
    results = sorted((run / "images").glob("heldout_result_*.png"))
    assert len(results) == demo.HELDOUT
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["heldout"]["transfer"])


def test_demo_edits_the_held_out_sources(demo_out):
    images = demo_out / "in-domain" / "images"
    sources = [np.asarray(Image.open(p)) for p in sorted(images.glob("heldout_source_*.png"))]
    results = [np.asarray(Image.open(p)) for p in sorted(images.glob("heldout_result_*.png"))]
    assert all(s.shape == (world.RESOLUTION, world.RESOLUTION, 3) for s in sources)
    moved = [np.abs(s.astype(int) - r.astype(int)).mean() for s, r in zip(sources, results)]
    assert min(moved) > 0.5  # every held-out source changed


def test_demo_quiet_prints_the_run_folders(capsys, tmp_path):
    out = tmp_path / "again"
    assert main(["demo", "--out", str(out), "--steps", "2", "--target", "in-domain", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "in-domain")


def test_demo_reruns_into_its_own_folder_but_never_a_foreign_one(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["demo", "--out", str(out), "--steps", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "was not written by `essence demo`" in err and "Traceback" not in err
    assert (out / "notes.txt").read_text() == "keep me"


def test_unknown_demo_target_is_a_short_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "x"), "--target", "moon", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "Unknown demo target 'moon'" in err and "Traceback" not in err


def test_demo_is_deterministic_per_seed(tmp_path):
    a = demo.run_demo(tmp_path / "a", targets=["in-domain"], steps=3, seed=5)[0]
    b = demo.run_demo(tmp_path / "b", targets=["in-domain"], steps=3, seed=5)[0]
    da = load_file(a.outcome.out / "direction.safetensors")
    db = load_file(b.outcome.out / "direction.safetensors")
    assert da.keys() == db.keys() and all(torch.equal(da[k], db[k]) for k in da)
    assert a.adopted == b.adopted


def test_bundled_targets_are_what_the_world_renders():
    for t in demo.TARGETS.values():
        shipped = np.asarray(Image.open(t.path).convert("RGB"))
        assert np.array_equal(shipped, world.render(t.sprite, t.style))


def test_unwritable_demo_folder_is_a_short_error(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["demo", "--out", str(blocker / "demo"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "Cannot write to output folder" in err and "Traceback" not in err
