"""Loading user images: every common mode becomes RGB; bad files give a clear error naming them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from essence import EssenceError
from essence.core.images import load_image, to_uint8


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("L", (8, 6), 100),
        lambda: Image.new("P", (8, 6), 3),
        lambda: Image.new("RGBA", (8, 6), (10, 20, 30, 255)),
        lambda: Image.new("LA", (8, 6), (10, 255)),
        lambda: Image.new("CMYK", (8, 6), (0, 0, 0, 0)),
        lambda: Image.fromarray(np.full((6, 8), 40000, dtype=np.uint16)),
    ],
    ids=["grey", "palette", "rgba", "grey-alpha", "cmyk", "16-bit"],
)
def test_modes_load_as_rgb(tmp_path, make):
    path = tmp_path / "img.png" if make().mode != "CMYK" else tmp_path / "img.jpg"
    make().save(path)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (8, 6)


def test_transparent_pixels_become_white(tmp_path):
    Image.new("RGBA", (2, 2), (0, 0, 0, 0)).save(tmp_path / "t.png")
    assert load_image(tmp_path / "t.png").getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_is_rescaled_not_saturated(tmp_path):
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(tmp_path / "g16.png")
    assert load_image(tmp_path / "g16.png").getpixel((0, 0)) == (128, 128, 128)


def test_missing_file(tmp_path):
    with pytest.raises(EssenceError, match="Image file not found: .*nope.png"):
        load_image(tmp_path / "nope.png")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(EssenceError, match="Not an image file .*notes.png"):
        load_image(tmp_path / "notes.png")


def test_truncated_image(tmp_path):
    Image.effect_noise((64, 64), 50).convert("RGB").save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(EssenceError, match="cut.png"):
        load_image(tmp_path / "cut.png")


def test_to_uint8_matches_nvidia_conversion():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8(x)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]
