"""Aligners: the FFHQ crop geometry, photo loading, and the dlib / MediaPipe backends.

Geometry and photo loading need numpy and PIL only. The backend tests skip cleanly without their extras
(``photos``: dlib-bin and the 68-point model; ``mediapipe``) or scikit-image (the astronaut photo).
"""

from __future__ import annotations

import bz2
import io
import math
import os
import struct
import sys
import threading
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

import essence
from essence.plugins.aligners.ffhq import geometry as g
from essence.plugins.aligners.ffhq.photos import load_photo
from essence.testing import check_aligner

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


# -- a synthetic face: coloured dots at the eye centres and the mouth, its landmarks known exactly ------


def synthetic_face(
    size=(800, 600), eye_left=(330.0, 260.0), eye_right=(450.0, 260.0), mouth_ratio=10 / 9, seed=0
) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """A low-contrast textured photo with a red and a green dot at the eye centres and a blue dot at the
    mouth centre; the landmarks (dlib order, NaN where FFHQ needs nothing) and the three dot centres.
    ``mouth_ratio`` is |eye_to_mouth| / |eye_to_eye|."""
    rng = np.random.default_rng(seed)
    w, h = size
    texture = (100 + rng.random((h // 8 + 1, w // 8 + 1, 3)) * 50).astype(np.uint8)
    img = Image.fromarray(texture).resize((w, h), Image.Resampling.BILINEAR)
    left, right = np.array(eye_left), np.array(eye_right)
    across = right - left
    d = math.hypot(*across)
    down = np.array([-across[1], across[0]]) / d * (mouth_ratio * d)
    mouth = (left + right) / 2 + down
    lm = np.full((68, 2), np.nan)
    for indices, centre in ((range(36, 42), left), (range(42, 48), right)):
        for k, i in enumerate(indices):  # six points on an ellipse: their mean is the centre
            t = 2 * math.pi * k / 6
            lm[i] = centre + [0.1 * d * math.cos(t), 0.04 * d * math.sin(t)]
    half_mouth = across / d * 0.2 * d
    lm[48], lm[54] = mouth - half_mouth, mouth + half_mouth
    draw = ImageDraw.Draw(img)
    r = max(3.0, 0.05 * d)
    for centre, colour in ((left, RED), (right, GREEN), (mouth, BLUE)):
        draw.ellipse([centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r], fill=colour)
    return img, lm, np.stack([left, right, mouth])


def dot_centres(crop: Image.Image) -> np.ndarray:
    """Centroids (x, y) of the red, green and blue dots in a crop, in pixel-index coordinates, weighted by
    how much each pixel's channel stands out of the other two (a blurred dot keeps its centre)."""
    a = np.asarray(crop).astype(float)
    ys, xs = np.mgrid[: a.shape[0], : a.shape[1]]
    out = []
    for c in range(3):
        others = np.delete(a, c, axis=2).mean(axis=2)
        weight = np.clip(a[..., c] - others - 60, 0, None)
        assert weight.sum() > 0, f"dot of channel {c} not found in the crop"
        out.append(((xs * weight).sum() / weight.sum(), (ys * weight).sum() / weight.sum()))
    return np.array(out)


def rotate_photo(img: Image.Image, points: np.ndarray, degrees: float) -> tuple[Image.Image, np.ndarray]:
    """``img`` rotated counter-clockwise about its centre (expanded to hold it all) and ``points`` with it."""
    out = img.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(125, 125, 125))
    t = math.radians(degrees)
    c_in = np.array(img.size) / 2
    c_out = np.array(out.size) / 2
    rel = np.asarray(points) + 0.5 - c_in
    # PIL's counter-clockwise on screen (y down): x' = x cos + y sin, y' = -x sin + y cos
    rot = np.stack(
        [rel[..., 0] * math.cos(t) + rel[..., 1] * math.sin(t), -rel[..., 0] * math.sin(t) + rel[..., 1] * math.cos(t)],
        axis=-1,
    )
    return out, rot + c_out - 0.5


# -- the FFHQ positions, derived from the recipe ----------------------------------------------------------


def test_ffhq_puts_the_eyes_where_the_recipe_says():
    """Upright face with |eye_to_mouth| = 10/9 |eye_to_eye| (both terms of the scale equal): the crop's
    half side is s = 2 |eye_to_eye|, the centre 0.1 eye_to_mouth below the eyes, so the eyes sit at
    x = 1/2 -+ 1/8 and y = 1/2 - 0.1 * (10/9) / 4 = 0.47222 of the side: (384, 483.6) and (640, 483.6)
    at 1024 px in continuous coordinates, i.e. pixel indices (383.5, 483.06) and (639.5, 483.06)."""
    _, lm, dots = synthetic_face()
    quad = g.ffhq_quad(lm)
    eyes = g.photo_to_crop(dots[:2], quad, 1024)
    np.testing.assert_allclose(eyes, [[383.5, 483.06], [639.5, 483.06]], atol=0.01)
    np.testing.assert_allclose(g.ffhq_eye_positions(lm, 1024), eyes, atol=1e-9)
    # the published "about (386, 480) and (640, 480)", to within a few pixels
    np.testing.assert_allclose(eyes, [[386, 480], [640, 480]], atol=4)
    # the mouth's centre lands at 3/4 of the height
    np.testing.assert_allclose(g.photo_to_crop(dots[2:], quad, 1024), [[511.5, 767.5]], atol=0.1)


@pytest.mark.parametrize("ratio", [0.8, 1.0, 10 / 9, 1.25, 1.4])
def test_ffhq_eye_positions_for_other_face_shapes(ratio):
    """Either the eye distance sets the scale (ratio <= 10/9: eyes at x = 3/8, 5/8, y = 1/2 - ratio/40) or
    the eye-to-mouth distance does (ratio >= 10/9: y = 0.4722, x = 1/2 -+ 1/(7.2 ratio))."""
    _, lm, dots = synthetic_face(mouth_ratio=ratio)
    got = (g.photo_to_crop(dots[:2], g.ffhq_quad(lm), 1024) + 0.5) / 1024
    if ratio <= 10 / 9:
        want = [[3 / 8, 0.5 - ratio / 40], [5 / 8, 0.5 - ratio / 40]]
    else:
        want = [[0.5 - 1 / (7.2 * ratio), 0.5 - 0.1 / 3.6], [0.5 + 1 / (7.2 * ratio), 0.5 - 0.1 / 3.6]]
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("resolution", [64, 256, 1024])
def test_the_crop_puts_photo_points_where_photo_to_crop_says(resolution):
    img, lm, dots = synthetic_face()
    crop, quad = g.ffhq_crop(img, lm, resolution)
    assert crop.size == (resolution, resolution) and crop.mode == "RGB"
    want = g.photo_to_crop(dots, quad, resolution)
    np.testing.assert_allclose(dot_centres(crop), want, atol=max(0.6, resolution / 256 * 0.6))
    np.testing.assert_allclose(g.crop_to_photo(want, quad, resolution), dots, atol=1e-9)


def test_a_large_face_is_shrunk_first_and_keeps_its_geometry():
    """Eyes 600 px apart, 256 px output: qsize 2400 > 2 x 256, so the photo is downscaled by 4 first."""
    img, lm, dots = synthetic_face(size=(2400, 2000), eye_left=(900, 800), eye_right=(1500, 800))
    assert g.quad_side(g.ffhq_quad(lm)) / 256 / 2 > 4
    crop, quad = g.ffhq_crop(img, lm, 256)
    np.testing.assert_allclose(dot_centres(crop), g.photo_to_crop(dots, quad, 256), atol=0.6)
    np.testing.assert_allclose(dot_centres(crop)[:2], [[95.5, 120.4], [159.5, 120.4]], atol=0.6)


@pytest.mark.parametrize("degrees", [25, -40, 90])
def test_the_crop_does_not_depend_on_the_face_s_roll(degrees):
    img, lm, dots = synthetic_face()
    upright, _ = g.ffhq_crop(img, lm, 128)
    turned_img, turned_lm = rotate_photo(img, lm, degrees)
    _, turned_dots = rotate_photo(img, dots, degrees)
    turned, quad = g.ffhq_crop(turned_img, turned_lm, 128)
    np.testing.assert_allclose(dot_centres(turned), dot_centres(upright), atol=0.6)
    np.testing.assert_allclose(dot_centres(turned), g.photo_to_crop(turned_dots, quad, 128), atol=0.6)
    mad = np.abs(np.asarray(turned, dtype=float) - np.asarray(upright, dtype=float)).mean()
    assert mad < 3.0, f"rotated crop differs by {mad:.2f} / 255 on average"


def test_scaling_the_photo_scales_nothing_in_the_crop():
    img, lm, _ = synthetic_face()
    big = img.resize((1600, 1200), Image.Resampling.LANCZOS)
    a, _ = g.ffhq_crop(img, lm, 128)
    b, _ = g.ffhq_crop(big, (lm + 0.5) * 2 - 0.5, 128)
    np.testing.assert_allclose(dot_centres(a), dot_centres(b), atol=0.6)


def test_a_face_at_the_border_is_padded_with_a_blurred_reflection():
    """The quad leaves the photo at the top left: padding fills it with a blurred, faded reflection (no
    black), and without padding the outside is black, as in FFHQ's --no-padding."""
    img, lm, dots = synthetic_face(size=(400, 300), eye_left=(40, 30), eye_right=(100, 30))
    padded, quad = g.ffhq_crop(img, lm, 128)
    bare, _ = g.ffhq_crop(img, lm, 128, padding=False)
    assert (quad.min(axis=0) < 0).all()
    corner_bare = np.asarray(bare)[:8, :8].astype(float)
    corner_padded = np.asarray(padded)[:8, :8].astype(float)
    assert corner_bare.max() == 0  # outside the photo
    assert corner_padded.min() > 90  # filled from the photo's colours (its texture is 100..150)
    assert corner_padded.std() < 3  # and smooth there: faded to the median colour
    np.testing.assert_allclose(dot_centres(padded), g.photo_to_crop(dots, quad, 128), atol=0.6)


def test_padding_works_in_bands_for_a_tall_image():
    arr = np.random.default_rng(1).integers(0, 256, (700, 90, 3), dtype=np.uint8)
    out = g.pad_with_blurred_border(Image.fromarray(arr), (30, 40, 20, 10), qsize=200)
    assert out.size == (90 + 50, 700 + 50)
    inner = np.asarray(out)[40:-10, 30:-20].astype(int)
    # deep inside the photo nothing changes (the blend starts 4/3 of the padding away from the edge)
    assert (inner[100:-100, 45:46] == arr[100:-100, 45:46]).all()


def test_landmarks_without_eyes_are_refused():
    _, lm, _ = synthetic_face()
    lm[40] = np.nan
    with pytest.raises(essence.EssenceError, match="eye points 36-47"):
        g.ffhq_quad(lm)
    with pytest.raises(essence.EssenceError, match=r"\(68, 2\)"):
        g.ffhq_quad(np.zeros((5, 2)))
    with pytest.raises(essence.EssenceError, match="coincide"):
        g.ffhq_quad(np.zeros((68, 2)))


def test_the_centre_crop_aligner():
    img = Image.new("RGB", (300, 200), (0, 0, 255))
    ImageDraw.Draw(img).rectangle([50, 0, 249, 199], fill=(255, 0, 0))  # the centred square is red
    aligner = essence.get_aligner("center-crop")
    check_aligner(aligner)
    (crop,) = aligner.align(img, 64)
    assert crop.image.size == (64, 64) and (np.asarray(crop.image)[:, :, 0] > 200).all()
    (face,) = aligner.align(img, 32)
    assert face.face is None and face.image.size == (32, 32)


def test_align_faces_warns_and_refuses_in_one_line():
    img, lm, _ = synthetic_face()
    img.info["essence.source"] = "me.jpg"
    big = essence.Face(box=(300, 200, 480, 420), landmarks=lm, score=1.0)
    small = essence.Face(box=(10, 10, 60, 60), landmarks=lm, score=0.5)
    with pytest.raises(essence.EssenceError) as err:
        g.align_faces(img, [], 256, backend="ffhq-test")
    assert "No face found in me.jpg by ffhq-test" in str(err.value) and "\n" not in str(err.value)
    (one,) = g.align_faces(img, [big, small], 256)
    assert one.face is big and any("2 faces found in me.jpg" in w for w in one.warnings)
    both = g.align_faces(img, [big, small], 256, all_faces=True)
    assert len(both) == 2 and not any("faces found" in w for c in both for w in c.warnings)
    # the quad spans 480 px: fine at 256, too small for 1024
    assert not any("upscaled" in w for w in one.warnings)
    (large,) = g.align_faces(img, [big], 1024)
    assert any("spans 480 px, less than the generator's 1024 px" in w for w in large.warnings)
    assert all("\n" not in w for w in large.warnings)


# -- photos ---------------------------------------------------------------------------------------------


def _halves(size=(60, 40)) -> Image.Image:
    img = Image.new("RGB", size, (0, 0, 255))
    ImageDraw.Draw(img).rectangle([0, 0, size[0] // 2 - 1, size[1]], fill=(255, 0, 0))  # left half red
    return img


def test_exif_orientation_is_honoured(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    _halves().save(path, exif=exif, quality=95)
    photo = load_photo(path)
    assert photo.image.size == (40, 60) and photo.original_size == (40, 60) and photo.scale == 1.0
    arr = np.asarray(photo.image).astype(int)
    assert arr[:25, :, 0].mean() > 200 and arr[35:, :, 2].mean() > 200  # the red half is now on top
    assert photo.image.info["essence.source"] == str(path)


@pytest.mark.parametrize(
    "kind", ["cmyk-jpeg", "grey16-png", "grey16-tiff", "la-png", "p-transparent", "rgba-png", "grey-png"]
)
def test_every_mode_becomes_rgb(tmp_path, kind):
    if kind == "cmyk-jpeg":
        path = tmp_path / "c.jpg"
        Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path)  # pure red in CMYK
        want = (255, 0, 0)
    elif kind.startswith("grey16"):
        path = tmp_path / ("g.png" if kind.endswith("png") else "g.tif")
        Image.fromarray(np.full((16, 16), 32896, dtype=np.uint16)).save(path)  # 32896 / 65535 * 255 = 128
        want = (128, 128, 128)
    elif kind == "la-png":
        path = tmp_path / "la.png"
        Image.new("LA", (16, 16), (0, 0)).save(path)  # black, fully transparent: white
        want = (255, 255, 255)
    elif kind == "p-transparent":
        path = tmp_path / "p.png"
        p = Image.new("P", (16, 16), 1)
        p.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
        p.info["transparency"] = 1
        p.save(path, transparency=1)
        want = (255, 255, 255)
    elif kind == "rgba-png":
        path = tmp_path / "rgba.png"
        Image.new("RGBA", (16, 16), (0, 0, 255, 255)).save(path)
        want = (0, 0, 255)
    else:
        path = tmp_path / "l.png"
        Image.new("L", (16, 16), 77).save(path)
        want = (77, 77, 77)
    photo = load_photo(path)
    assert photo.image.mode == "RGB"
    np.testing.assert_allclose(np.asarray(photo.image).reshape(-1, 3).mean(0), want, atol=2)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (its pixel data is missing): what a bomb's header says."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(12_000, 12_000), (40_000, 40_000)])
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, size):
    """144 MP is over our 120 MP limit (below PIL's own 179 MP error); 1600 MP trips PIL's check first."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(*size))
    with pytest.raises(essence.EssenceError, match="megapixel limit") as err:
        load_photo(path)
    assert "\n" not in str(err.value) and "bomb.png" in str(err.value)


def test_the_pixel_limit_is_a_parameter(tmp_path):
    path = tmp_path / "small.png"
    _halves().save(path)
    with pytest.raises(essence.EssenceError, match="60 x 40"):
        load_photo(path, max_pixels=1000)
    assert load_photo(path, max_pixels=None).image.size == (60, 40)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_huge_photos_are_downscaled_while_loading(tmp_path, suffix):
    path = tmp_path / f"big{suffix}"
    _halves((3000, 2000)).save(path)
    photo = load_photo(path, max_side=1000)
    assert photo.image.size == (1000, 667) and photo.original_size == (3000, 2000)
    assert photo.scale == pytest.approx(3.0)
    assert photo.warnings == [f"{path} is 3000 x 2000 px; aligned from a 1000 x 667 copy."]
    arr = np.asarray(photo.image).astype(int)
    assert arr[:, :480, 0].mean() > 200 and arr[:, 520:, 2].mean() > 200


def test_jpeg_is_decoded_at_a_reduced_scale(tmp_path, monkeypatch):
    """The JPEG path asks the decoder for a reduced size (``draft``) before decoding: a 4000 x 3000 photo
    wanted at 500 px is decoded at 1/8 scale, so the full-size pixels never exist in memory."""
    from PIL import JpegImagePlugin

    path = tmp_path / "big.jpg"
    _halves((4000, 3000)).save(path)
    decoded = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        decoded.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    photo = load_photo(path, max_side=500)
    assert decoded == [(500, 375)]
    assert photo.image.size == (500, 375) and photo.scale == pytest.approx(8.0)


def test_a_fifo_is_refused_without_hanging(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def attempt():
        try:
            load_photo(fifo)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "load_photo blocked on a FIFO"
    assert isinstance(outcome[0], essence.EssenceError) and "is a FIFO, not a regular file" in str(outcome[0])


def test_bad_files_are_one_line_errors_and_the_others_still_load(tmp_path):
    good = tmp_path / "good.png"
    _halves().save(good)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = tmp_path / "cut.png"
    buf = io.BytesIO()
    _halves((200, 200)).save(buf, format="PNG")
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    folder = tmp_path / "folder"
    folder.mkdir()
    paths = [text, good, tmp_path / "missing.jpg", empty, truncated, folder, good]
    loaded, errors = [], []
    for p in paths:
        try:
            loaded.append(load_photo(p))
        except essence.EssenceError as exc:
            errors.append(str(exc))
    assert len(loaded) == 2 and len(errors) == 5
    assert all("\n" not in e for e in errors)
    for fragment in ("Not an image file", "not found", "empty", "Cannot read image", "got a folder"):
        assert any(fragment in e for e in errors), (fragment, errors)


# -- the dlib model file and its asset -------------------------------------------------------------------


def test_the_dlib_asset_record_is_valid():
    from essence.plugins.aligners.ffhq import dlib_landmarks as dl

    (asset,) = essence.load_assets(dl.ASSETS_FILE)
    assert asset.name == dl.ASSET_NAME and asset.kind == "aligner" and asset.filename == dl.PREDICTOR_FILE + ".bz2"
    assert asset.urls[0].startswith("http://dlib.net/files/") and "commercial" in asset.license


def test_decompress_bz2_is_bounded_and_atomic(tmp_path):
    from essence.plugins.aligners.ffhq.dlib_landmarks import decompress_bz2

    src = tmp_path / "m.dat.bz2"
    src.write_bytes(bz2.compress(b"x" * 3_000_000))
    out = decompress_bz2(src, tmp_path / "m.dat")
    assert out.read_bytes() == b"x" * 3_000_000
    with pytest.raises(essence.WeightsError, match="inflates to more than"):
        decompress_bz2(src, tmp_path / "bomb.dat", max_bytes=2_000_000)
    assert not (tmp_path / "bomb.dat").exists() and not list(tmp_path.glob(".*partial"))
    bad = tmp_path / "bad.bz2"
    bad.write_bytes(b"BZh9" + b"\0" * 100)
    with pytest.raises(essence.WeightsError, match="Cannot decompress"):
        decompress_bz2(bad, tmp_path / "bad.dat")


def test_a_compressed_cached_model_is_inflated_once_beside_it(tmp_path):
    from essence.plugins.aligners.ffhq import dlib_landmarks as dl

    src = tmp_path / (dl.PREDICTOR_FILE + ".bz2")
    src.write_bytes(bz2.compress(b"model"))
    out = dl.usable_predictor(src)
    assert out == tmp_path / dl.PREDICTOR_FILE and out.read_bytes() == b"model"
    stamp = out.stat().st_mtime_ns
    assert dl.usable_predictor(src) == out and out.stat().st_mtime_ns == stamp
    plain = tmp_path / "own.dat"
    plain.write_bytes(b"already inflated")
    assert dl.usable_predictor(plain) == plain


def test_explicit_model_paths_are_checked(tmp_path):
    from essence.plugins.aligners.ffhq import dlib_landmarks as dl

    with pytest.raises(essence.EssenceError, match="not found"):
        dl.find_predictor(tmp_path / "nope.dat")
    packed = tmp_path / "m.bz2"
    packed.write_bytes(bz2.compress(b"model"))
    with pytest.raises(essence.EssenceError, match="still bzip2-compressed"):
        dl.find_predictor(packed)


def test_offline_without_the_model_says_how_to_get_it(essence_home):
    from essence.plugins.aligners.ffhq import dlib_landmarks as dl

    with pytest.raises(essence.WeightsError) as err:
        dl.cached_predictor(offline=True)
    message = str(err.value)
    assert "essence weights import dlib-shape-predictor-68" in message and "\n" not in message


def test_missing_extras_name_what_to_install(monkeypatch):
    from essence.plugins.aligners.ffhq import dlib_landmarks as dl
    from essence.plugins.aligners.ffhq import mediapipe_landmarks as mp

    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib now raises ImportError
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(essence.MissingExtraError, match=r'pip install "essence-transfer\[photos\]"'):
        dl.DlibAligner()
    with pytest.raises(essence.MissingExtraError, match=r'pip install "essence-transfer\[mediapipe\]"'):
        mp.MediaPipeAligner()


def test_the_face_mesh_mapping_covers_what_ffhq_reads():
    from essence.plugins.aligners.ffhq.mediapipe_landmarks import DLIB_FROM_MESH, mesh_to_dlib

    assert sorted(DLIB_FROM_MESH) == sorted(g.NEEDED_POINTS)
    mesh = np.arange(468 * 2, dtype=float).reshape(468, 2)
    lm = mesh_to_dlib(mesh)
    assert np.isfinite(lm[list(g.NEEDED_POINTS)]).all() and np.isnan(lm[0]).all()
    np.testing.assert_array_equal(lm[36], mesh[33])


def test_the_modules_import_neither_dlib_nor_mediapipe():
    """Nor torch; and looking for the model in face_recognition_models does not import that package."""
    import subprocess

    code = (
        "import sys, essence.plugins.aligners.ffhq.dlib_landmarks, essence.plugins.aligners.ffhq.mediapipe_landmarks, "
        "essence.plugins.aligners.ffhq.photos; "
        "essence.plugins.aligners.ffhq.dlib_landmarks.packaged_predictor(); "
        "bad = [m for m in ('dlib', 'mediapipe', 'torch', 'face_recognition_models') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the backends on a real photo (skipped without their extras) ---------------------------------------


def astronaut() -> Image.Image:
    data = pytest.importorskip("skimage.data", reason="scikit-image ships the astronaut photo")
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def dlib_aligner():
    pytest.importorskip("dlib", reason="the photos extra (dlib-bin) is not installed")
    from essence.plugins.aligners.ffhq import dlib_landmarks as dl

    path = dl.packaged_predictor()
    if path is None:
        try:
            path = dl.cached_predictor(offline=True)
        except essence.EssenceError:
            pytest.skip("dlib's 68-point landmark model is not installed (face_recognition_models or the cache)")
    return dl.DlibAligner(path)


@pytest.fixture(scope="module")
def mediapipe_aligner():
    pytest.importorskip("mediapipe", reason="the mediapipe extra is not installed")
    from essence.plugins.aligners.ffhq.mediapipe_landmarks import MediaPipeAligner

    aligner = MediaPipeAligner()
    yield aligner
    aligner.close()


def _eyes_in_crop(aligner, crop: Image.Image) -> np.ndarray:
    faces = aligner.detect(crop)
    assert faces, f"{aligner.name} finds no face in its own crop"
    p = g.key_points(faces[0].landmarks)
    return np.stack([p["eye_left"], p["eye_right"]])


def _check_astronaut(aligner):
    photo = astronaut()
    (face,) = aligner.align(photo, 256)
    assert face.image.size == (256, 256) and face.image.mode == "RGB"
    # the eyes FFHQ's recipe asks for, for this face's own shape ...
    want = g.ffhq_eye_positions(face.face.landmarks, 256)
    np.testing.assert_allclose(want, [[95.5, 120.4], [159.5, 120.4]], atol=4)
    # ... and where the same detector finds them in the crop it made
    np.testing.assert_allclose(_eyes_in_crop(aligner, face.image), want, atol=3)
    # a 512 px photo, a face quad of ~175 px: smaller than 256, so the user is told
    assert any("upscaled" in w for w in face.warnings)
    return face


def test_dlib_on_the_astronaut(dlib_aligner):
    face = _check_astronaut(dlib_aligner)
    p = g.key_points(face.face.landmarks)
    np.testing.assert_allclose(p["eye_left"], [203.2, 101.5], atol=1.5)
    np.testing.assert_allclose(p["eye_right"], [246.5, 104.2], atol=1.5)
    check_aligner(dlib_aligner)


def test_mediapipe_on_the_astronaut_offline(mediapipe_aligner, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("the network is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    from essence.plugins.aligners.ffhq.mediapipe_landmarks import MediaPipeAligner

    fresh = MediaPipeAligner()  # builds its graphs and loads its models with no network
    try:
        face = _check_astronaut(fresh)
    finally:
        fresh.close()
    p = g.key_points(face.face.landmarks)
    np.testing.assert_allclose(p["eye_left"], [203.2, 101.5], atol=2)
    np.testing.assert_allclose(p["eye_right"], [246.5, 104.2], atol=2)
    check_aligner(mediapipe_aligner)


def test_mediapipe_finds_a_small_face_in_a_large_photo(mediapipe_aligner):
    canvas = Image.new("RGB", (2400, 1600), (128, 128, 128))
    canvas.paste(astronaut(), (1700, 900))
    (face,) = mediapipe_aligner.detect(canvas)
    p = g.key_points(face.landmarks)
    np.testing.assert_allclose(p["eye_left"] - (1700, 900), [203.2, 101.5], atol=2.5)


def test_the_two_backends_agree_on_the_astronaut(dlib_aligner, mediapipe_aligner):
    photo = astronaut()
    (a,) = dlib_aligner.align(photo, 256)
    (b,) = mediapipe_aligner.align(photo, 256)
    mad = np.abs(np.asarray(a.image, dtype=float) - np.asarray(b.image, dtype=float)).mean()
    assert mad < 12, f"the crops differ by {mad:.1f} / 255 on average"
