"""`essence compare`: ours and the three baselines on the same sources, Figure 1 and the metrics table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from engine_doubles import doubles, target_file  # noqa: F401 (fixtures)
from PIL import Image
from typer.testing import CliRunner

import essence
from essence.cli import build_app


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def compare(target, out, *extra):
    return invoke(
        "compare", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target, "--sources", 3, "--steps", 8, "--heldout", 3,
        "--set", "blend.steps=5", "--set", "blend.inversion.inverter.config.steps=5", "--features", "vgg19",
        "--set", "blend.features.config.weights=random", "--set", "blend.features.config.width=0.0625",
        "--set", "blend.features.config.resolution=32", "-o", out, *extra,
    )


def test_compare_writes_four_runs_the_figure_and_the_metrics(doubles, target_file, tmp_path):
    out = tmp_path / "cmp"
    result = compare(target_file, out, "--judge", "tiny-enc", "--set", "judge.config.seed=1")
    assert result.exit_code == 0, result.output
    assert "held-out sources" in result.stdout and "Figure:" in result.stdout
    assert (out / "essence" / "direction.safetensors").is_file()
    for name in ("stylegan-blend", "clip-blend"):
        assert (out / name / "results.safetensors").is_file()
    assert (out / "gatys" / "images" / "result_02.png").is_file()  # pixels: no result latents
    assert not (out / "gatys" / "results.safetensors").exists()
    # the same sources for all three
    ours = essence.load_latents(out / "stylegan-blend" / "sources.safetensors")
    assert essence.load_latents(out / "clip-blend" / "sources.safetensors").equal(ours)
    assert np.array_equal(
        np.asarray(Image.open(out / "essence" / "images" / "source_00.png")),
        np.asarray(Image.open(out / "clip-blend" / "images" / "source_00.png")),
    )
    report = json.loads((out / "metrics.json").read_text())
    assert [r["label"] for r in report["runs"]] == ["essence", "stylegan-blend", "clip-blend", "gatys"]
    sources = {tuple(r["heldout"][k] for k in ("count", "seed", "truncation", "latents")) for r in report["runs"]}
    assert len(sources) == 1  # all four judged on identical held-out sources
    assert report["judge"] == "tiny-enc (seed=1)"
    table = (out / "metrics.md").read_text().splitlines()
    assert "| metric | encoder | essence (n=3) | stylegan-blend (n=3) | clip-blend (n=3) | gatys (n=3) |" in table
    assert sum(line.startswith("| target-similarity") for line in table) == 2  # the run's own encoder and the judge

    # Figure 1: the target and 3 sources on the top row, then one row per method
    tile, gap, label = 96, 4, 14
    figure = Image.open(out / "figure.png")
    assert figure.size == (4 * tile + 5 * gap, label + gap + 5 * (tile + gap))  # the fifth row: Gatys
    cell = np.asarray(figure)[label + gap + tile + gap : label + gap + 2 * tile + gap, gap + tile + gap : gap + 2 * tile + gap]
    result_00 = Image.open(out / "essence" / "images" / "result_00.png").resize((tile, tile), Image.Resampling.NEAREST)
    assert np.array_equal(cell, np.asarray(result_00))  # row 1 (ours), column 1 (the first source)
    top = label + gap + 4 * (tile + gap)
    cell = np.asarray(figure)[top : top + tile, gap + tile + gap : gap + 2 * tile + gap]
    gatys_00 = Image.open(out / "gatys" / "images" / "result_00.png").resize((tile, tile), Image.Resampling.NEAREST)
    assert np.array_equal(cell, np.asarray(gatys_00))  # row 4 (Gatys)


def test_compare_json(doubles, target_file, tmp_path):
    result = compare(target_file, tmp_path / "cmp", "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["runs"]) == 4 and report["judge"] is None


BAD = {
    "blend setting typo": (["--set", "blend.stpes=3"], "unknown field 'stpes' (did you mean 'steps'?)"),
    "run setting typo": (["--set", "stepz=3"], "unknown field 'stepz'"),
    "unknown judge": (["--judge", "tiny-enk"], "Did you mean 'tiny-enc'?"),
    "missing target latent": (["--target-latent", "nope.pt"], "Target latent file not found"),
    "judge renamed by --set": (["--judge", "tiny-enc", "--set", "judge.name=nope"], "Unknown encoder 'nope'"),
    "existing file as output": (["-o", "target.png"], "is a file"),
    "unknown feature network": (["--features", "vgg91"], "Did you mean 'vgg19'?"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_compare_inputs_fail_before_any_run(doubles, target_file, tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    args, message = BAD[case]
    result = compare(target_file, tmp_path / "cmp", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "cmp" / "essence").exists()


def test_an_earlier_comparison_is_not_overwritten_by_accident(doubles, target_file, tmp_path):
    assert compare(target_file, tmp_path / "cmp", "-q").exit_code == 0
    again = compare(target_file, tmp_path / "cmp", "-q")
    assert again.exit_code == 2 and "--overwrite" in again.output
