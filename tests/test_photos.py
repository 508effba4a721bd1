"""Photos in: aligners and their pairing with generators, `essence align`, `essence invert`, and photos as
sources (apply, run) and as the init of a run, on the test doubles (tiny-gen's inverter is the projector
at a test size). Bad photos are one line each and the other photos still go through."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest
import torch
from engine_doubles import doubles, target_file  # noqa: F401 (fixtures)
from PIL import Image
from typer.testing import CliRunner

import essence
from essence.cli import build_app
from essence.method.photos import InversionSettings, build_aligner, build_inverter, crops_tensor, invert_photos


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def one_line(output: str) -> str:
    return " ".join(output.split())


@pytest.fixture
def photos(tmp_path):
    """A colour photo, a grey 16-bit one, one with alpha, and a file that is not an image."""
    rng = np.random.default_rng(0)
    paths = {}
    paths["colour"] = tmp_path / "colour.png"
    Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(paths["colour"])
    paths["grey16"] = tmp_path / "grey16.png"
    Image.fromarray(rng.integers(0, 65535, (20, 20), dtype=np.uint16)).save(paths["grey16"])
    paths["alpha"] = tmp_path / "alpha.png"
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), mode="RGBA").save(paths["alpha"])
    paths["broken"] = tmp_path / "broken.jpg"
    paths["broken"].write_bytes(b"this is not a jpeg")
    return paths


# -- aligners --------------------------------------------------------------------------------------------


def test_center_crop_takes_the_middle_square_and_resize_the_whole_photo():
    photo = np.zeros((40, 60, 3), dtype=np.uint8)
    photo[:, :10] = (255, 0, 0)  # bands left and right of the central 40 x 40 square
    photo[:, 50:] = (0, 0, 255)
    photo[:, 10:50] = (0, 200, 0)
    image = Image.fromarray(photo)
    (crop,) = essence.get_aligner("center-crop").align(image, 32)
    assert crop.image.size == (32, 32) and crop.face is None
    a = np.asarray(crop.image).astype(int)
    assert a[..., [0, 2]].max() < 10 and np.median(a[..., 1]) == 200  # only the green middle (Lanczos rings a little)
    assert np.allclose(crop.quad, [[10, 0], [10, 40], [50, 40], [50, 0]])
    (whole,) = essence.get_aligner("resize").align(image, 32)
    a = np.asarray(whole.image)
    assert a[16, 1, 0] > 200 and a[16, 30, 2] > 200  # both bands are in
    assert any("stretched" in w for w in whole.warnings)
    (small,) = essence.get_aligner("center-crop").align(image, 64)
    assert any("upscaled" in w for w in small.warnings)


def test_generators_declare_their_alignment_and_default_inverter():
    registry = essence.get_registry()
    expected = {
        "stylegan2-ffhq": ("ffhq", "e4e"),
        "stylegan2-church": ("center", "projector"),
        "stylegan2": ("none", "projector"),
    }
    for name, (alignment, inverter) in expected.items():
        config = registry.get("generator", name).validate(weights="random", size=16)
        assert (config.alignment, config.default_inverter) == (alignment, inverter), name
    g = essence.get_generator("stylegan2", weights="random", size=16, alignment="center", default_inverter="x")
    assert (g.alignment, g.default_inverter) == ("center", "x")
    toy = essence.get_generator("toy-sprites", device="cpu")
    assert (toy.alignment, toy.default_inverter) == ("none", "toy-encoder")


def test_an_aligner_of_another_alignment_is_refused(doubles):
    generator = essence.get_generator("tiny-gen")  # alignment "none"
    with pytest.raises(essence.EssenceError, match="makes 'center' crops, but generator 'tiny-gen' expects 'none'.*--aligner resize"):
        build_aligner("center-crop", generator, "tiny-gen")
    assert build_aligner("resize", generator, "tiny-gen").alignment == "none"


def test_an_inverter_trained_for_another_generator_is_refused(doubles):
    generator = essence.get_generator("tiny-gen")
    settings = InversionSettings(inverter={"name": "toy-encoder", "config": {"weights": "random"}})
    with pytest.raises(essence.EssenceError, match="trained for toy-sprites, not 'tiny-gen'.*projector"):
        build_inverter(settings, generator, "tiny-gen", "cpu")


# -- inverting photos -------------------------------------------------------------------------------------


def test_invert_photos_goes_on_past_bad_photos(doubles, photos):
    generator = essence.get_generator("tiny-gen")
    inv = invert_photos([str(p) for p in photos.values()], generator, "tiny-gen")
    assert inv.names == [str(photos[k]) for k in ("colour", "grey16", "alpha")]
    assert tuple(inv.ws.shape) == (3, 4, 8) and torch.isfinite(inv.ws).all()
    assert len(inv.problems) == 1 and "broken.jpg" in inv.problems[0]
    assert (inv.aligner, inv.inverter) == ("resize", "tiny-projector")
    with pytest.raises(essence.EssenceError, match="No photo could be used: .*broken.jpg"):
        invert_photos([str(photos["broken"])], generator, "tiny-gen")


def test_essence_invert_writes_latents_a_sheet_and_errors(doubles, photos, tmp_path):
    out = tmp_path / "me.safetensors"
    result = invoke("invert", *photos.values(), "-g", "tiny-gen", "-o", out)
    assert result.exit_code == 0, result.output
    assert "broken.jpg" in one_line(result.output) and "Traceback" not in result.output
    ws = essence.load_latents(out, num_ws=4, w_dim=8)
    assert ws.shape[0] == 3
    record = json.loads((tmp_path / "me.json").read_text())
    assert [i["name"] for i in record["images"]] == [str(photos[k]) for k in ("colour", "grey16", "alpha")]
    assert record["inverter"] == "tiny-projector" and record["latents"]["shape"] == [3, 4, 8]
    assert all(i["lpips"] is None for i in record["images"])  # the test projector has no LPIPS
    sheet = Image.open(tmp_path / "me_sheet.png")
    assert sheet.size == (3 * 96, 3 * 96)  # photo | aligned | G(w), one row per image
    # the reported error is the reconstruction's: G(w) against the aligned photo
    generator = essence.get_generator("tiny-gen")
    with torch.no_grad():
        recon = generator.synthesize(ws)
    (aligned,) = essence.get_aligner("resize").align(Image.open(photos["colour"]), 16)
    crop = torch.from_numpy(np.asarray(aligned.image, dtype=np.float32))
    crop = crop.permute(2, 0, 1)[None] / 127.5 - 1
    assert record["images"][0]["pixel_mse"] == pytest.approx(float((recon[:1] - crop).square().mean()), rel=1e-4)
    again = invoke("invert", photos["colour"], "-g", "tiny-gen", "-o", out)
    assert again.exit_code == 2 and "already exists" in one_line(again.output)
    # the latent file is what --latents / --sources accept
    direction = essence.save_direction(tmp_path / "d.safetensors", torch.zeros(4, 8), generator="tiny-gen")
    applied = invoke("apply", "-d", direction, "--latents", out, "-o", tmp_path / "applied", "-q")
    assert applied.exit_code == 0, applied.output


def test_essence_invert_without_any_usable_photo_is_one_line(doubles, photos, tmp_path):
    result = invoke("invert", photos["broken"], tmp_path / "missing.png", "-g", "tiny-gen", "-o", tmp_path / "w.pt")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "No photo could be used" in result.output and "missing.png" in one_line(result.output)
    assert not (tmp_path / "w.pt").exists()


def test_bad_invert_options_fail_before_any_model(doubles, photos, tmp_path):
    cases = {
        ("--align", "sideways"): "--align 'sideways': use auto or none",
        ("--inverter", "projektor"): "Did you mean 'projector'",
        ("--aligner", "ffhq-dlibb"): "Unknown aligner",
        ("-o", str(tmp_path / "w.txt")): "a latent file ends in",
    }
    for args, message in cases.items():
        result = invoke("invert", photos["colour"], "-g", "tiny-gen", *args)
        assert result.exit_code == 2 and message in one_line(result.output), (args, result.output)


# -- photos as sources and targets --------------------------------------------------------------------------


def test_apply_aligns_and_inverts_source_photos_and_keeps_their_latents(doubles, photos, tmp_path):
    direction = essence.save_direction(tmp_path / "d.safetensors", torch.randn(4, 8), generator="tiny-gen")
    out = tmp_path / "applied"
    result = invoke("apply", "-d", direction, "--sources", photos["colour"], photos["alpha"], "--alpha", "0,1", "-o", out)
    assert result.exit_code == 0, result.output
    ws = essence.load_latents(out / "sources.safetensors")
    assert ws.shape == (2, 4, 8)
    record = json.loads((out / "apply.json").read_text())
    assert record["grid"]["shape"] == [2, 2] and record["inversion"]["inverter"] == "tiny-projector"
    assert record["inversion"]["names"] == [str(photos["colour"]), str(photos["alpha"])]
    again = invoke("apply", "-d", direction, "--sources", out / "sources.safetensors", "-o", tmp_path / "reuse", "-q")
    assert again.exit_code == 0, again.output  # the kept latents are sources as they are


def test_a_mix_of_photos_and_a_count_is_refused(doubles, photos, tmp_path):
    direction = essence.save_direction(tmp_path / "d.safetensors", torch.randn(4, 8), generator="tiny-gen")
    result = invoke("apply", "-d", direction, "--sources", "3", photos["colour"], "-o", tmp_path / "x")
    assert result.exit_code == 2 and "not a mix" in one_line(result.output)


def test_run_with_photo_sources_and_init_target(doubles, photos, target_file, tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 3, "--heldout", 0, "--init", "target",
        "--sources", photos["colour"], photos["grey16"], photos["broken"], "-o", out, "-q",
    )
    assert result.exit_code == 0, result.output
    assert "broken.jpg" in one_line(result.output)  # a warning, and the run went on with the others
    sources = essence.load_latents(out / "sources.safetensors")
    init = essence.load_latents(out / "init.safetensors")
    assert sources.shape == (2, 4, 8) and init.shape == (1, 4, 8)
    generator = essence.get_generator("tiny-gen")
    target = invert_photos([str(target_file)], generator, "tiny-gen").ws
    assert torch.allclose(init, target, atol=1e-6)  # the inverted target
    with open(out / "trace.csv") as fh:
        first = fh.read().splitlines()[1].split(",")
    header = open(out / "trace.csv").readline().strip().split(",")
    norm = float(first[header.index("direction_norm")])
    assert norm == pytest.approx(float(init[0].norm()), rel=1e-5)  # b started there
    config = json.loads((out / "config.json").read_text())
    assert config["init"]["mode"] == "target" and len(config["sources"]["photos"]) == 3


def test_blend_sources_can_be_photos(doubles, photos, target_file, tmp_path):
    out = tmp_path / "cb"
    result = invoke(
        "blend", "-m", "clip", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 2,
        "--sources", photos["colour"], "-o", out, "-q",
    )
    assert result.exit_code == 0, result.output
    assert essence.load_latents(out / "sources.safetensors").shape == (1, 4, 8)


# -- essence align --------------------------------------------------------------------------------------------


class TwoFaces(essence.Aligner):
    """A fake face aligner: two 'faces' in photos wider than tall, none otherwise; small faces warn."""

    alignment = "ffhq"

    def align(self, image, resolution, *, all_faces=False):
        w, h = image.size
        if w <= h:
            raise essence.EssenceError("No face found in the photo.")
        faces = [(0, 0, h, h), (w - h, 0, w, h)]
        crops = []
        for box in faces if all_faces else faces[:1]:
            warnings = [f"the face is {h} px, smaller than {resolution} px"] if h < resolution else []
            face = essence.Face(box=box, landmarks=np.full((68, 2), np.nan))
            crops.append(essence.AlignedFace(image.crop(box).resize((resolution, resolution)), resolution, face, None, warnings))
        return crops


class TwoFacesPlugin:
    @essence.hookimpl
    def register_aligners(self, register):
        register("two-faces", lambda config: TwoFaces(), tiny={})


@pytest.fixture
def two_faces(fresh_plugins):
    from essence.core.plugins import get_host

    get_host().add(TwoFacesPlugin(), "two-faces", None, builtin=False)


def test_align_writes_crops_and_a_sheet_and_reports_each_bad_photo(two_faces, photos, tmp_path):
    out = tmp_path / "aligned"
    args = ["align", photos["colour"], photos["alpha"], photos["broken"], "--aligner", "two-faces", "--size", 32]
    result = invoke(*args, "--all-faces", "-o", out)
    assert result.exit_code == 0, result.output
    text = one_line(result.output)
    assert "alpha.png: No face found" in text and "broken.jpg" in text and "smaller than 32 px" in text
    record = json.loads((out / "align.json").read_text())
    assert [c["file"] for c in record["crops"]] == ["images/colour.png", "images/colour_2.png"]
    assert [c["box"] for c in record["crops"]] == [[0, 0, 24, 24], [6, 0, 30, 24]]
    assert Image.open(out / "images" / "colour_2.png").size == (32, 32)
    assert Image.open(out / "sheet.png").size == (64, 64)  # photo | crop, one row per crop
    largest = invoke(*args, "-o", tmp_path / "largest", "-q")
    assert largest.exit_code == 0 and len(json.loads((tmp_path / "largest" / "align.json").read_text())["crops"]) == 1
    assert invoke(*args, "-o", out).exit_code == 2  # not overwritten by accident


def test_align_with_no_usable_photo_is_one_line(two_faces, photos, tmp_path):
    result = invoke("align", photos["alpha"], "--aligner", "two-faces", "-o", tmp_path / "a")
    assert result.exit_code == 2 and "No photo could be aligned" in result.output and "Traceback" not in result.output


# -- the toy world's offline photo path -----------------------------------------------------------------------


def test_a_toy_sprite_photo_is_inverted_offline_by_the_shipped_encoder(tmp_path, monkeypatch):
    from essence.plugins.toy import world

    monkeypatch.setenv("ESSENCE_OFFLINE", "1")
    sprites = world.sample_sprites(24, seed=4242)  # renders the generator never made
    images = world.render(sprites)
    generator = essence.get_generator("toy-sprites", device="cpu")
    paths = []
    for k in range(len(sprites)):
        paths.append(tmp_path / f"sprite_{k}.png")
        Image.fromarray(images[k]).resize((96, 96), Image.Resampling.NEAREST).save(paths[-1])  # a "photo"
    inv = invert_photos([str(p) for p in paths], generator, "toy-sprites")
    assert inv.inverter == "toy-encoder" and inv.aligner == "resize"
    x = crops_tensor(inv.aligned)
    with torch.no_grad():
        mse = float((generator.synthesize(inv.ws.to(generator.device)) - x).square().mean())
        mean = generator.mean_w[:, None].repeat(len(paths), generator.num_ws, 1)
        baseline = float((generator.synthesize(mean) - x).square().mean())
    assert mse < 0.25 * baseline, (mse, baseline)


def test_the_readme_own_photo_example_runs_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ESSENCE_OFFLINE", "1")
    assert invoke("demo", "--steps", 3, "-q").exit_code == 0
    photo = "essence-demo/in-domain/images/target_00.png"
    edit = invoke("apply", "-d", "essence-demo/out-of-domain", "--sources", photo, "--alpha", "0,0.5,1", "--out", "my-edit")
    assert edit.exit_code == 0, edit.output
    assert json.loads((tmp_path / "my-edit" / "apply.json").read_text())["grid"]["shape"] == [1, 3]
    assert essence.load_latents(tmp_path / "my-edit" / "sources.safetensors").shape == (1, 8, 128)
    inverted = invoke("invert", photo, "-g", "toy-sprites", "--out", "me.safetensors")
    assert inverted.exit_code == 0, inverted.output
    assert "pixel MSE" in inverted.output and (tmp_path / "me_sheet.png").is_file()


def test_a_decompression_bomb_is_one_line_and_the_other_photos_go_on(doubles, photos, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # 24 x 30 is a bomb (over 2x), 16 x 16 is not
    generator = essence.get_generator("tiny-gen")
    # The kernel's reader checks the header itself and keeps PIL's warning for the one under 2x quiet.
    inv = invert_photos([str(photos["colour"]), str(photos["alpha"])], generator, "tiny-gen")
    assert inv.names == [str(photos["alpha"])]
    assert len(inv.problems) == 1 and "a decompression bomb?" in inv.problems[0]
    assert str(photos["colour"]) in inv.problems[0]


def test_invert_init_starts_the_projector_from_another_inverter(doubles, photos, tmp_path):
    out = tmp_path / "w.safetensors"
    small = [f"inversion.inverter.config.{k}" for k in ("perceptual=none", "steps=5", "w_avg_samples=256")]
    sets = [a for item in small for a in ("--set", item)]
    result = invoke("invert", photos["colour"], "-g", "tiny-gen", "--init", "tiny-projector", *sets, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "w.json").read_text())
    assert record["inverter"] == "projector" and record["inversion"]["inverter"]["config"]["init"] == "tiny-projector"
    refused = invoke("invert", photos["colour"], "-g", "tiny-gen", "--init", "x", "--inverter", "tiny-projector")
    assert refused.exit_code == 2 and "does not apply to --inverter tiny-projector" in one_line(refused.output)


def test_a_missing_face_aligner_is_named_before_the_generator_is_built(tmp_path, photos, monkeypatch):
    from essence.method.photos import check_inversion_settings

    registry = essence.get_registry()
    ffhq = registry.get("generator", "stylegan2-ffhq")
    if importlib.util.find_spec("dlib") is not None:
        pytest.skip("the FFHQ aligner is installed here")
    expected = "The aligner 'ffhq-dlib' (needs dlib) is not installed: pip install \"essence-transfer[photos]\" (or pass --align none"
    with pytest.raises(essence.EssenceError, match=re.escape(expected)):
        check_inversion_settings(InversionSettings(), ffhq, {})
    check_inversion_settings(InversionSettings(align="none", inverter={"name": "projector"}), ffhq, {})  # aligned photos
    result = invoke("invert", photos["colour"], "-o", tmp_path / "w.pt")  # stylegan2-ffhq: no weights are fetched
    assert result.exit_code == 2 and "pip install" in one_line(result.output)


def test_essence_align_without_the_face_aligner_says_what_to_install(photos, tmp_path):
    if importlib.util.find_spec("dlib") is not None:
        pytest.skip("the FFHQ aligner is installed here")
    result = invoke("align", photos["colour"], "-o", tmp_path / "a")
    assert result.exit_code == 2 and 'pip install "essence-transfer[photos]"' in one_line(result.output)
