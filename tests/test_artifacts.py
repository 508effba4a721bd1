"""Latent and direction files, and the run folder's pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import essence
from essence.method.figures import contact_sheet, loss_figure, loss_plot
from essence.method.rundir import ensure_writable_dir
from essence.core.errors import EssenceError


@pytest.mark.parametrize("suffix", [".pt", ".npy", ".safetensors"])
def test_latent_files_round_trip(tmp_path, suffix):
    ws = torch.randn(3, 4, 8)
    path = essence.save_latents(tmp_path / f"ws{suffix}", ws)
    assert torch.equal(essence.load_latents(path, num_ws=4, w_dim=8), ws)


def test_latent_file_shapes_and_containers(tmp_path):
    one = torch.randn(4, 8)
    torch.save(one, tmp_path / "one.pt")
    assert essence.load_latents(tmp_path / "one.pt").shape == (1, 4, 8)
    torch.save({"latents": torch.randn(2, 4, 8), "other": torch.zeros(1)}, tmp_path / "dict.pt")
    assert essence.load_latents(tmp_path / "dict.pt").shape == (2, 4, 8)
    save_file({"a": torch.zeros(1, 4, 8), "b": torch.zeros(1, 4, 8)}, str(tmp_path / "two.safetensors"))
    with pytest.raises(EssenceError, match="several tensors"):
        essence.load_latents(tmp_path / "two.safetensors")
    np.save(tmp_path / "f64.npy", np.zeros((2, 4, 8)))
    assert essence.load_latents(tmp_path / "f64.npy").dtype == torch.float32


def test_mismatched_latent_shape_says_what_fits(tmp_path):
    essence.save_latents(tmp_path / "ffhq.pt", torch.randn(4, 18, 512))
    with pytest.raises(EssenceError, match=r"has shape \(4, 18, 512\), but the generator needs \(N, 14, 512\)"):
        essence.load_latents(tmp_path / "ffhq.pt", num_ws=14, w_dim=512)


def test_unsafe_or_broken_latent_files_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EssenceError, match="Cannot read"):
        essence.load_latents(tmp_path / "obj.npy")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save(Evil(), tmp_path / "evil.pt")
    with pytest.raises(EssenceError, match="Cannot read"):
        essence.load_latents(tmp_path / "evil.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(EssenceError, match="Cannot read"):
        essence.load_latents(tmp_path / "junk.safetensors")
    with pytest.raises(EssenceError, match="not found"):
        essence.load_latents(tmp_path / "missing.pt")
    (tmp_path / "w.txt").write_text("0.1 0.2")
    with pytest.raises(EssenceError, match="unsupported format"):
        essence.load_latents(tmp_path / "w.txt")


def test_direction_file_round_trip_with_metadata(tmp_path):
    b, d = torch.randn(4, 8), torch.nn.functional.normalize(torch.randn(16), dim=0)
    path = essence.save_direction(
        tmp_path / "direction.safetensors",
        b[None],
        d,
        generator="tiny-gen",
        encoder="tiny-enc",
        generator_weights_id="abc",
        config={"steps": 3},
        extra={"best_step": 2},
    )
    direction = essence.load_direction(path)
    assert torch.equal(direction.b, b) and torch.equal(direction.d, d)
    m = direction.metadata
    assert (m["generator"], m["encoder"], m["generator_weights_id"], m["num_ws"], m["w_dim"]) == ("tiny-gen", "tiny-enc", "abc", 4, 8)
    assert m["config"] == {"steps": 3} and m["best_step"] == 2 and m["essence_version"] == essence.__version__

    class G:
        num_ws, w_dim = 14, 8

    with pytest.raises(EssenceError, match=r"made for 'tiny-gen'"):
        direction.check_fits(G())


def test_targetclip_style_npy_directions_load(tmp_path):
    np.save(tmp_path / "elsa.npy", np.ones((1, 4, 8), dtype=np.float32))
    direction = essence.load_direction(tmp_path / "elsa.npy")
    assert direction.b.shape == (4, 8) and direction.d is None


def test_contact_sheet_layout():
    tile = 32
    src = [Image.new("RGB", (16, 16), (0, 0, 255))] * 3
    res = [Image.new("RGB", (16, 16), (0, 255, 0))] * 3
    sheet = contact_sheet([Image.new("RGB", (50, 30), (255, 0, 0))], src, res, tile=tile, gap=4)
    assert sheet.width == 4 * tile + 5 * 4
    label = 14
    top, bottom = label + 4 + tile // 2, label + 4 + tile + 4 + label + tile // 2
    col0, col1 = 4 + tile // 2, 4 + tile + 4 + tile // 2
    assert sheet.getpixel((col1, top)) == (0, 0, 255)  # sources on the top row
    assert sheet.getpixel((col1, bottom)) == (0, 255, 0)  # results below
    assert sheet.getpixel((col0, bottom)) == (255, 0, 0)  # target at the left
    assert sheet.getpixel((col0, top)) == (255, 255, 255)


def test_loss_plot_draws_each_series():
    img = loss_plot({"loss": [3.0, 2.0, 1.0], "nan": [float("nan")] * 3}, size=(300, 200))
    assert img.size == (300, 200) and img.mode == "RGB"
    colours = {c for _, c in img.getcolors(100000)}
    assert (31, 119, 180) in colours  # matplotlib's first series colour: the line is drawn


def test_loss_figure_has_real_axes_ticks_and_a_legend():
    fig = loss_figure({"loss": [3.0, 2.0, float("inf"), 1.0], "transfer": [1.0, 0.9, 0.8, 0.7]}, title="restart 0")
    (ax,) = fig.axes
    fig.canvas.draw()
    assert ax.get_xlabel() == "step" and ax.get_title() == "restart 0"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "transfer"]
    assert any(t.get_text() for t in ax.get_yticklabels()) and any(t.get_text() for t in ax.get_xticklabels())
    low, high = ax.get_ylim()
    assert low <= 0.7 and 3.0 <= high < 10  # the inf left a gap, not an infinite scale


def test_unwritable_output_folder_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(EssenceError, match="is a file"):
        ensure_writable_dir(tmp_path / "file")
    with pytest.raises(EssenceError, match="Cannot write to output folder"):
        ensure_writable_dir(tmp_path / "file" / "run")
    assert ensure_writable_dir(tmp_path / "a" / "b").is_dir()
    assert not list((tmp_path / "a" / "b").iterdir())


def test_metadata_is_json_where_structured(tmp_path):
    path = essence.save_direction(tmp_path / "d.safetensors", torch.zeros(2, 3), extra={"heldout": {"loss": 0.5}})
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        raw = fh.metadata()
    assert json.loads(raw["heldout"]) == {"loss": 0.5} and raw["format"] == "essence-direction"
