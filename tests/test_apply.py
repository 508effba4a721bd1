"""`essence apply` / `essence sweep` end to end on the test doubles: grid geometry, images, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from engine_doubles import TinyGenerator, doubles, target_file  # noqa: F401 (fixtures)
from PIL import Image
from typer.testing import CliRunner

import essence
from essence.cli import build_app
from essence.workflows.apply import alpha_range


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


@pytest.fixture
def direction_file(doubles, tmp_path):
    g = torch.Generator().manual_seed(3)
    return essence.save_direction(tmp_path / "direction.safetensors", torch.randn(4, 8, generator=g), generator="tiny-gen")


def tiles(grid: Image.Image, tile: int, origin=(0, 0), shape=None) -> list[list[np.ndarray]]:
    """The tiles of a grid whose tiles start at ``origin`` (the labelled grid records it in apply.json)."""
    x, y = origin
    a = np.asarray(grid)[y:, x:]
    rows, cols = shape or (a.shape[0] // tile, a.shape[1] // tile)
    return [[a[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] for c in range(cols)] for r in range(rows)]


def label_ink(grid: Image.Image, box) -> int:
    """How many non-white pixels a label area holds (text was drawn there)."""
    return int((np.asarray(grid.crop(box).convert("L")) < 200).sum())


def test_apply_grid_is_sources_by_alphas(direction_file, tmp_path):
    out = tmp_path / "applied"
    result = invoke("apply", "-d", direction_file, "--sources", 3, "--alpha", "0,0.5,1.25", "-o", out)
    assert result.exit_code == 0, result.output
    assert "3 sources x 3 alphas" in result.stdout
    grid = Image.open(out / "grid.png")
    tile = TinyGenerator.resolution  # default: the generator's resolution (below 256)
    record = json.loads((out / "apply.json").read_text())
    assert record["alphas"] == [0, 0.5, 1.25] and record["grid"]["shape"] == [3, 3] and record["generator"]["name"] == "tiny-gen"
    x, y = record["grid"]["origin"]
    assert x > 0 and y > 0 and grid.size == (x + 3 * tile, y + 3 * tile)  # a caption band and a name column
    assert record["grid"]["row_labels"] == ["source 0", "source 1", "source 2"]
    for c in range(3):  # every alpha column has its caption above it
        assert label_ink(grid, (x + c * tile, 0, x + (c + 1) * tile, y)) > 0
    for r in range(3):  # every source has its name at its left
        assert label_ink(grid, (0, y + r * tile, x, y + (r + 1) * tile)) > 0

    # each tile is the image file of its source and alpha, and the images are G(w + alpha b)
    generator = essence.get_generator("tiny-gen")
    ws = generator.sample_ws(3, seed=0, truncation=0.7)  # as `essence run` draws sources
    b = essence.load_direction(direction_file).b
    from essence.core.images import to_uint8

    for r, row in enumerate(tiles(grid, tile, (x, y), (3, 3))):
        for c, alpha in enumerate(["0", "0.5", "1.25"]):
            image = np.asarray(Image.open(out / "images" / f"source_{r:02d}_alpha_{alpha}.png"))
            assert np.array_equal(row[c], image)
            with torch.no_grad():
                expected = to_uint8(generator.synthesize(ws[r : r + 1] + float(alpha) * b[None]))[0]
            assert np.array_equal(image, expected)
    assert not np.array_equal(tiles(grid, tile, (x, y))[0][0], tiles(grid, tile, (x, y))[0][2])  # the direction changes the image


def test_sweep_grid_geometry_with_a_tile_size(direction_file, tmp_path):
    out = tmp_path / "swept"
    result = invoke("sweep", "-d", direction_file, "--alpha-range", "0:1.5:0.25", "--sources", 2, "--tile", 24, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert result.output == ""
    x, y = json.loads((out / "apply.json").read_text())["grid"]["origin"]
    assert Image.open(out / "grid.png").size == (x + 7 * 24, y + 2 * 24)
    assert json.loads((out / "apply.json").read_text())["alphas"] == [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5]
    assert len(list((out / "images").glob("*.png"))) == 14


def test_alpha_ranges():
    assert alpha_range("0:1.5:0.25") == [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    assert alpha_range("1:0:-0.5") == [1, 0.5, 0]
    assert alpha_range("0:0.3:0.1") == [0, 0.1, 0.2, 0.3]  # STOP included despite float rounding
    assert alpha_range("0:1:0.4") == [0, 0.4, 0.8]


def test_apply_reproduces_a_runs_sources_and_results(doubles, target_file, tmp_path):
    run = tmp_path / "run"
    args = ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 4, "--heldout", 0, "--seed", 5, "-o", run, "-q"]
    assert invoke(*args).exit_code == 0
    result = invoke("apply", "-d", run, "--sources", 6, "--seed", 5, "--alpha", "0,1", "-o", tmp_path / "a", "-q")
    assert result.exit_code == 0, result.output
    for i in range(6):
        for alpha, name in (("0", "source"), ("1", "result")):
            ours = np.asarray(Image.open(tmp_path / "a" / "images" / f"source_{i:02d}_alpha_{alpha}.png"))
            assert np.array_equal(ours, np.asarray(Image.open(run / "images" / f"{name}_{i:02d}.png")))


def test_the_generator_config_comes_from_the_direction_and_set_overrides_it(doubles, tmp_path):
    config = {"generator": {"name": "tiny-gen", "config": {"seed": 7}}}
    path = essence.save_direction(tmp_path / "d.safetensors", torch.zeros(4, 8), generator="tiny-gen", config=config)
    assert invoke("apply", "-d", path, "-o", tmp_path / "a", "-q").exit_code == 0
    assert json.loads((tmp_path / "a" / "apply.json").read_text())["generator"]["config"]["seed"] == 7
    assert invoke("apply", "-d", path, "-o", tmp_path / "b", "--set", "generator.config.seed=2", "-q").exit_code == 0
    assert json.loads((tmp_path / "b" / "apply.json").read_text())["generator"]["config"]["seed"] == 2


def test_the_device_a_direction_was_made_on_is_not_this_machines(doubles, tmp_path):
    config = {"generator": {"name": "tiny-gen", "config": {"seed": 7, "device": "cuda:7"}}}
    path = essence.save_direction(tmp_path / "d.safetensors", torch.zeros(4, 8), generator="tiny-gen", config=config)
    result = invoke("apply", "-d", path, "-o", tmp_path / "a", "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a" / "apply.json").read_text())["generator"]["config"] == {"seed": 7, "device": "cpu"}


def _misfit(tmp_path):
    essence.save_direction(tmp_path / "ffhq.safetensors", torch.zeros(18, 512), generator="stylegan2-ffhq")
    return ["-d", tmp_path / "ffhq.safetensors", "-g", "tiny-gen"]


def _misfit_npy(tmp_path):
    np.save(tmp_path / "elsa.npy", np.zeros((1, 18, 512), dtype=np.float32))
    return ["-d", tmp_path / "elsa.npy", "-g", "tiny-gen"]


def _wrong_latents(tmp_path):
    essence.save_latents(tmp_path / "ws.pt", torch.zeros(2, 5, 8))
    return ["--latents", tmp_path / "ws.pt"]


BAD = {
    "direction for another generator": (_misfit, "has shape (18, 512) (it was made for 'stylegan2-ffhq'), but this generator's W+ is (4, 8)"),
    "TargetCLIP npy on another generator": (_misfit_npy, "The direction elsa.npy has shape (18, 512)"),
    "imported direction without a generator": (
        lambda p: ["-d", essence.save_direction(p / "bare.safetensors", torch.zeros(4, 8))],
        "does not say which generator",
    ),
    "missing direction": (lambda p: ["-d", p / "nope.safetensors"], "Direction file not found"),
    "folder without a direction": (lambda p: ["-d", p / "images"], "without direction.safetensors"),
    "unknown generator": (lambda p: ["-g", "tiny-gne"], "Did you mean 'tiny-gen'?"),
    "bad generator option": (lambda p: ["--set", "generator.config.sed=1"], "unknown field 'sed' (did you mean 'seed'?)"),
    "unknown setting": (lambda p: ["--set", "sorces.count=2"], "unknown field 'sorces' (did you mean 'sources'?)"),
    "bad alpha": (lambda p: ["--alpha", "0,one"], "give numbers separated by commas"),
    "non-finite alpha": (lambda p: ["--alpha", "0,inf"], "finite"),
    "missing latent file": (lambda p: ["--latents", p / "nope.pt"], "Sources latent file not found"),
    "latents of another generator": (_wrong_latents, "has shape (2, 5, 8), but the generator needs (N, 4, 8)"),
    "sources and latents": (lambda p: ["--sources", 2, "--latents", p / "x.pt"], "not both"),
    "zero sources": (lambda p: ["--sources", 0], "at least 1 source"),
    "unwritable output": (lambda p: ["-o", p / "direction.safetensors" / "out"], "Cannot write to output folder"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_apply_inputs_are_clean_errors(direction_file, tmp_path, case):
    (tmp_path / "images").mkdir()
    make_args, message = BAD[case]
    args = make_args(tmp_path)
    if "-d" not in args:
        args = ["-d", direction_file, *args]
    result = invoke("apply", *args, *([] if "-o" in args else ["-o", tmp_path / "out"]))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "out" / "grid.png").exists()


@pytest.mark.parametrize("text", ["0:1", "0:1:0", "1:0:0.5", "a:b:c", "0:1000:1"])
def test_bad_alpha_ranges_are_clean_errors(direction_file, tmp_path, text):
    result = invoke("sweep", "-d", direction_file, "--alpha-range", text, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "--alpha-range" in result.output, result.output


def test_an_earlier_result_is_not_overwritten_by_accident(direction_file, tmp_path):
    out = tmp_path / "out"
    assert invoke("apply", "-d", direction_file, "-o", out, "-q").exit_code == 0
    again = invoke("apply", "-d", direction_file, "-o", out, "-q")
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert invoke("apply", "-d", direction_file, "-o", out, "-q", "--overwrite", "--alpha", "1").exit_code == 0
    assert len(list((out / "images").glob("*.png"))) == 6  # the earlier images are gone


def test_help_of_the_new_commands_imports_no_torch():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys\nfrom essence.cli import main\n"
        "for args in (['--help'], ['apply', '--help'], ['sweep', '--help'], ['blend', '--help'], ['eval', '--help'],\n"
        "             ['compare', '--help'], ['import', 'direction', '--help'], ['list', 'metrics']):\n"
        "    assert main(args) == 0, args\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    env = {**os.environ, "ESSENCE_LOAD_PLUGINS": "", "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root, capture_output=True)
