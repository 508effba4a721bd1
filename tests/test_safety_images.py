"""Adversarial images: decompression bombs, FIFOs, devices, folders, empty and truncated files, given as
targets, source photos, photos to invert or UI uploads. Every one is refused with one line naming the file,
without hanging and before any model is built, by the kernel's one reader (``essence.core.images``)."""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_doubles import TinyGenerator, doubles, target_file  # noqa: F401 (fixtures)
from PIL import Image
from typer.testing import CliRunner

import essence
from essence.cli import build_app
from essence.core.errors import EssenceError
from essence.core.images import load_image, read_image

HANG_S = 20


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def within(seconds, fn):
    """fn() in a thread; fails the test when it has not returned after ``seconds`` (a hang)."""
    box: list = []

    def go():
        try:
            box.append(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box.append(("raised", exc))

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for more than {seconds} s"
    kind, value = box[0]
    if kind == "raised":
        raise value
    return value


def _png_header(width, height):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def _gif_header(width, height):
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b",\x00\x00\x00\x00" + struct.pack("<HH", width, height) + b"\x00\x02\x02D\x01\x00;"


def _bomb_png(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(12_000, 12_000))  # 144 MP: over our limit, under PIL's error
    return path


def _huge_png(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(60_000, 60_000))  # 3600 MP: PIL's own check trips at open
    return path


def _bomb_gif(tmp_path):
    path = tmp_path / "bomb.gif"
    path.write_bytes(_gif_header(65_535, 65_535))
    return path


def _real_bomb(tmp_path):
    """A real one: 11000 x 11000 of zeros, a 1.6 MB file that inflates to 363 MB of pixels."""
    path = tmp_path / "zeros.png"
    side = 11_000
    row, deflate = b"\0" * (1 + 3 * side), zlib.compressobj(1)
    raw = b"".join([deflate.compress(row) for _ in range(side)] + [deflate.flush()])

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    assert path.stat().st_size < 2_000_000
    return path


def _fifo(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    return path


def _dev_zero(tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")
    return link


def _folder(tmp_path):
    path = tmp_path / "folder.png"
    path.mkdir()
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    return path


def _truncated(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def _text(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    return path


BAD = {
    "bomb from the header (144 MP)": (_bomb_png, "megapixel limit (a decompression bomb?)"),
    "bomb beyond PIL's limit (3600 MP)": (_huge_png, "megapixel limit (a decompression bomb?)"),
    "GIF bomb (4 GP)": (_bomb_gif, "megapixel limit (a decompression bomb?)"),
    "real zero-filled bomb (121 MP)": (_real_bomb, "megapixel limit (a decompression bomb?)"),
    "FIFO": (_fifo, "is a FIFO, not a regular file"),
    "/dev/zero": (_dev_zero, "is a device or socket, not a regular file"),
    "folder": (_folder, "got a folder"),
    "empty file": (_empty, "is empty (0 bytes)"),
    "truncated PNG": (_truncated, "Cannot read image"),
    "text named .png": (_text, "Not an image file"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_the_reader_refuses_them_without_hanging(tmp_path, case):
    make, words = BAD[case]
    path = make(tmp_path)
    with pytest.raises(EssenceError) as info:
        within(HANG_S, lambda: load_image(path))
    assert words in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


# Every command that reads a user's images, with the image in each role it can play.
ROLES = {
    "run target": lambda img, t: ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", img, "--steps", 2],
    "run source photo": lambda img, t: ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", t, "--steps", 2, "--sources", img],
    "blend target": lambda img, t: ["blend", "--method", "clip", "-g", "tiny-gen", "-e", "tiny-enc", "-t", img],
    "compare target": lambda img, t: ["compare", "-g", "tiny-gen", "-e", "tiny-enc", "-t", img, "--steps", 2],
    "batch target": lambda img, t: ["batch", "-g", "tiny-gen", "-e", "tiny-enc", "--steps", 2, img],
    "invert photo": lambda img, t: ["invert", "-g", "tiny-gen", "--align", "none", img],
    "apply source photo": lambda img, t: ["apply", "-d", t.parent / "d.safetensors", "--sources", img],
    "blend source photo": lambda img, t: ["blend", "--method", "clip", "-g", "tiny-gen", "-e", "tiny-enc", "-t", t, "--sources", img],
}
ROLE_CASES = ["bomb from the header (144 MP)", "FIFO", "/dev/zero", "folder"]


@pytest.mark.parametrize("case", ROLE_CASES)
@pytest.mark.parametrize("role", list(ROLES))
def test_every_command_refuses_them_cleanly(doubles, target_file, tmp_path, role, case):
    make, words = BAD[case]
    path = make(tmp_path)
    essence.save_direction(tmp_path / "d.safetensors", torch.zeros(4, 8), generator="tiny-gen")
    built = TinyGenerator.built
    out = tmp_path / ("out.safetensors" if role == "invert photo" else "out")
    result = within(HANG_S, lambda: invoke(*ROLES[role](path, target_file), "-o", out, "-q"))
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    flat = " ".join(result.output.split())
    if role == "batch target" and case != "bomb from the header (144 MP)":
        # a folder of targets is a batch's own input; anything else that is not a file is named as such
        words = "holds no image" if case == "folder" else "is not an image, a folder of images or a .txt file"
    assert words in flat and str(path) in flat, result.output
    assert TinyGenerator.built == built


def test_ui_uploads_are_refused_cleanly(doubles, tmp_path):
    """The Find tab runs an uploaded target (a path gradio hands over) in a thread: it fails in one line."""
    from essence.ui.find import FindJob, find_config

    for make, words in ((_bomb_png, "decompression bomb"), (_fifo, "FIFO"), (_folder, "folder")):
        path = make(tmp_path)
        config = find_config(
            str(path), generator="tiny-gen", encoder="tiny-enc", preset="paper", steps=2, seed=0, restarts=1,
            sources=2, runs=tmp_path / "runs",
        )
        job = FindJob(config).start()
        assert job.wait(HANG_S), "the Find job hung on a bad upload"
        view = job.view()
        assert view.state == "failed" and words in view.message and str(path) in view.message, view.message


def test_exif_orientation_is_applied_for_runs_too(tmp_path):
    """A phone photo stored sideways with an EXIF 'rotate' tag reads upright (runs, compare, batch)."""
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    upright = load_image(path)
    assert upright.size == (20, 40)
    arr = np.asarray(upright).astype(int)
    assert arr[:10, :, 2].mean() > 200 and arr[30:, :, 0].mean() > 200  # blue on top after the rotation
    photo = read_image(path, max_side=10)
    assert max(photo.image.size) == 10 and photo.original_size == (20, 40)


def test_the_aligner_uses_the_kernels_reader():
    from essence.core import images
    from essence.plugins.aligners.ffhq import photos

    assert photos.open_regular_file is images.open_regular_file
    assert photos.Photo is images.Photo
    source = Path(photos.__file__).read_text()
    assert "Image.open" not in source and "os.stat" not in source  # no second copy of the checks


def test_good_images_still_load(tmp_path):
    for mode, suffix in (("RGB", ".png"), ("L", ".jpg"), ("RGBA", ".png"), ("P", ".gif"), ("I;16", ".png")):
        path = tmp_path / f"ok-{mode.replace(';', '')}{suffix}"
        Image.new(mode, (8, 6)).save(path)
        img = load_image(path)
        assert img.mode == "RGB" and img.size == (8, 6)
    from essence.core.images import save_image

    save_image(Image.new("RGB", (4, 4)), tmp_path / "w.png")
    assert torch.tensor(np.asarray(load_image(tmp_path / "w.png"))).shape == (4, 4, 3)
