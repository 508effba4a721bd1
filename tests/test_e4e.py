"""e4e and pSp encoders: the reference layout and numbers (tests/fixtures/golden/e4e_*), the inverter,
and the checkpoint reader on files made here (tiny encoders: same code, small shapes)."""

from __future__ import annotations

import json
import math
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import essence
from essence.plugins.inverters.e4e import checkpoint
from essence.plugins.inverters.e4e.model import E4EInverter, EncoderArch, build_encoder

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
KEYS = json.loads((GOLDEN / "e4e_keys.json").read_text())["keys"]
ASSETS = Path(essence.__file__).parent / "plugins" / "inverters" / "e4e" / "assets.json"
KINDS = ("e4e", "psp")
ENCODER_TYPE = {"e4e": "Encoder4Editing", "psp": "GradualStyleEncoder"}
#: A tiny encoder: every layer kind, 8 W+ rows (3 coarse, 4 middle, 1 fine), widths 16..40.
TINY = EncoderArch(num_ws=8, units=(1, 2, 1, 1), widths=(16, 24, 32, 40))
TINY_SIZE = 32  # the generator size whose W+ has 8 rows
TINY_KEYS = {kind: checkpoint.expected_layout(kind, TINY) for kind in KINDS}


# -- the golden weights: rebuilt from the key names (tests/fixtures/golden/README.md) -----------------
def seeded(key: str, shape: list[int], dtype: str) -> torch.Tensor:
    if dtype == "int64":
        return torch.zeros(shape, dtype=torch.int64)
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("running_var"):
        return torch.rand(shape, generator=g).mul_(0.5).add_(0.75)
    if key.endswith("running_mean"):
        return torch.randn(shape, generator=g).mul_(0.1)
    if len(shape) == 1:
        return torch.randn(shape, generator=g).mul_(0.1).add_(1.0 if key.endswith(".weight") else 0.0)
    return torch.randn(shape, generator=g).div_(math.sqrt(math.prod(shape[1:])))


@pytest.fixture(scope="module")
def golden_weights() -> dict[str, torch.Tensor]:
    """The 267M seeded parameters, made on every core (each key has its own generator)."""
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return dict(zip([k for k, _, _ in KEYS], pool.map(lambda row: seeded(*row), KEYS)))


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "e4e_golden.safetensors")


def golden_encoder(kind: str, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    with torch.device("meta"):
        encoder = build_encoder(kind)
    encoder.load_state_dict(weights, strict=True, assign=True)  # shares the tensors: no copy
    return encoder.eval()


@pytest.mark.parametrize("kind", KINDS)
def test_official_layout_is_the_reference_one(kind):
    layout = checkpoint.expected_layout(kind, EncoderArch())
    assert [[k, list(shape), dtype] for k, (shape, dtype) in layout.items()] == KEYS  # keys, order, shapes, dtypes
    assert sum(math.prod(s) for s, d in layout.values() if d == "float32") == 267_161_024


def test_seeded_rule_matches_its_checks():
    with safe_open(str(GOLDEN / "e4e_golden.safetensors"), "pt") as f:
        checks = json.loads(f.metadata()["rule_checks"])
    shapes = {k: (s, d) for k, s, d in KEYS}
    for key, total in checks.items():
        assert seeded(key, *shapes[key]).double().sum().item() == pytest.approx(total, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_small_case_matches_the_reference(kind, golden_weights, golden):
    with torch.no_grad():
        out = golden_encoder(kind, golden_weights)(golden["small.input"])
    assert out.shape == (1, 18, 512)
    assert (out - golden[f"small.{kind}"]).abs().max().item() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_full_256px_case_matches_the_reference(kind, golden_weights, golden):
    with torch.no_grad():
        out = golden_encoder(kind, golden_weights)(golden["full.input"])
    assert (out - golden[f"full.{kind}"]).abs().max().item() < 1e-4


# -- the inverter ------------------------------------------------------------------------------------
def tiny_inverter(kind: str = "e4e", seed: int = 0) -> E4EInverter:
    torch.manual_seed(seed)
    encoder = build_encoder(kind, TINY)
    for name, buf in encoder.named_buffers():  # non-trivial BatchNorm statistics
        if name.endswith("running_mean"):
            buf.normal_(0, 0.1)
        elif name.endswith("running_var"):
            buf.uniform_(0.75, 1.25)
    return E4EInverter(encoder, torch.randn(TINY.num_ws, TINY.w_dim), kind=kind, weights_id="tiny")


@pytest.mark.parametrize("kind", KINDS)
def test_invert_resizes_to_256_and_adds_latent_avg(kind):
    inverter = tiny_inverter(kind)
    images = torch.rand(2, 3, 300, 280) * 2 - 1
    ws = inverter.invert(images)
    assert ws.shape == (2, TINY.num_ws, TINY.w_dim) and not ws.requires_grad
    x = F.interpolate(images, size=(256, 256), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        expected = inverter.encoder(x) + inverter.latent_avg
    torch.testing.assert_close(ws, expected)
    assert not torch.allclose(ws, expected - inverter.latent_avg)


def test_e4e_rows_are_a_base_latent_plus_offsets():
    inverter = tiny_inverter("e4e")
    enc = inverter.encoder
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        codes = enc(x)
        c1, c2, c3 = enc.backbone(x)
        maps = enc.pyramid(c1, c2, c3)
        w0 = enc.styles[0](c3)
        torch.testing.assert_close(codes[:, 0], w0)
        torch.testing.assert_close(codes[:, 5], w0 + enc.styles[5](maps[5]))


def test_invert_checks_the_generator_and_the_images():
    inverter = tiny_inverter()

    class Gen:
        num_ws, w_dim = 18, 512

    with pytest.raises(essence.EssenceError, match=r"8 x 40 \(for stylegan2-ffhq\).*18 x 512"):
        inverter.invert(torch.zeros(1, 3, 256, 256), generator=Gen())
    Gen.num_ws, Gen.w_dim = TINY.num_ws, TINY.w_dim
    assert inverter.invert(torch.zeros(1, 3, 64, 64), generator=Gen()).shape == (1, 8, 40)
    with pytest.raises(essence.EssenceError, match=r"\(n, 3, H, W\)"):
        inverter.invert(torch.zeros(3, 64, 64))


def test_inverter_stays_in_eval_mode():
    inverter = tiny_inverter()
    inverter.train()
    assert not inverter.training and not inverter.encoder.training
    assert not any(p.requires_grad for p in inverter.parameters())


# -- checkpoints ---------------------------------------------------------------------------------------
def official_dict(kind: str = "e4e", seed: int = 0, **opts) -> tuple[dict, E4EInverter]:
    """What the official files hold: the pSp framework's state dict, latent_avg and opts (a plain dict)."""
    inverter = tiny_inverter(kind, seed)
    state = {f"encoder.{k}": v.clone() for k, v in inverter.encoder.state_dict().items()}
    state |= {"decoder.style.1.weight": torch.randn(8, 8), "decoder.input.input": torch.randn(1, 8, 4, 4)}
    options = {
        "encoder_type": ENCODER_TYPE[kind],
        "stylegan_size": TINY_SIZE,
        "start_from_latent_avg": True,
        "dataset_type": "ffhq_encode",
        "exp_dir": "/home/someone/experiments",
        "lpips_lambda": 0.8,
    } | opts
    return {"state_dict": state, "latent_avg": inverter.latent_avg.clone(), "opts": options}, inverter


def save_official(tmp_path: Path, kind: str = "e4e", name: str = "ckpt.pt", **opts) -> tuple[Path, E4EInverter]:
    ckpt, inverter = official_dict(kind, **opts)
    path = tmp_path / name
    torch.save(ckpt, path)
    return path, inverter


@pytest.mark.parametrize("kind", KINDS)
def test_read_official_checkpoint(tmp_path, kind):
    path, inverter = save_official(tmp_path, kind)
    state, latent_avg, info = checkpoint.read_checkpoint(path)
    assert set(state) == set(inverter.encoder.state_dict())  # decoder.* left out, prefix stripped
    for key, value in inverter.encoder.state_dict().items():
        assert torch.equal(state[key], value)
    assert torch.equal(latent_avg, inverter.latent_avg)
    assert info["kind"] == kind and info["arch"] == TINY and (info["num_ws"], info["w_dim"]) == (8, 40)
    assert info["encoder_type"] == ENCODER_TYPE[kind] and info["source_format"] == "torch-zip"
    assert "exp_dir" not in info["opts"] and info["opts"]["dataset_type"] == "ffhq_encode"


@pytest.mark.parametrize("kind", KINDS)
def test_loaded_inverter_adds_latent_avg(tmp_path, kind):
    path, inverter = save_official(tmp_path, kind)
    loaded = checkpoint.load_inverter(path)
    assert (loaded.kind, loaded.weights_id, loaded.generators) == (kind, "ckpt.pt", ("stylegan2-ffhq",))
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    ws = loaded.invert(x)
    with torch.no_grad():
        raw = inverter.encoder(x)
    torch.testing.assert_close(ws, raw + inverter.latent_avg, rtol=0, atol=1e-6)
    assert (ws - raw).abs().max() > 0.5  # latent_avg really is there


def test_latent_avg_as_one_row_and_switched_off(tmp_path):
    ckpt, inverter = official_dict()
    ckpt["latent_avg"] = inverter.latent_avg[0].clone()  # (w_dim,): one w for every row
    torch.save(ckpt, tmp_path / "one.pt")
    _, latent_avg, _ = checkpoint.read_checkpoint(tmp_path / "one.pt")
    assert torch.equal(latent_avg, inverter.latent_avg[:1].expand(8, 40))

    path, _ = save_official(tmp_path, name="off.pt", start_from_latent_avg=False)
    _, latent_avg, info = checkpoint.read_checkpoint(path)  # the official forward adds nothing then
    assert not latent_avg.any() and info["start_from_latent_avg"] is False

    del ckpt["latent_avg"]
    torch.save(ckpt, tmp_path / "none.pt")
    with pytest.raises(essence.WeightsError, match="no 'latent_avg'"):
        checkpoint.read_checkpoint(tmp_path / "none.pt")


class Payload:
    """Unpickling this would call ``_ran`` (as an attacker's file would call os.system)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (_ran, (str(self.marker),))


def _ran(marker: str) -> None:
    Path(marker).write_text("code from the weights file ran")


def test_pickled_objects_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran.txt"
    ckpt, _ = official_dict()
    ckpt["opts"]["payload"] = Payload(marker)
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path)
    assert checkpoint.detect(path)  # it looks like one...
    with pytest.raises(essence.WeightsError, match=r"Refusing to load .*evil\.pt.*Nothing from the file was executed"):
        checkpoint.read_checkpoint(path)  # ...but is not read
    with pytest.raises(essence.WeightsError, match="Refusing"):
        checkpoint.convert(path, tmp_path / "evil.safetensors")
    assert not marker.exists() and not (tmp_path / "evil.safetensors").exists()


def test_wrong_keys_are_named(tmp_path):
    ckpt, _ = official_dict()
    state = ckpt["state_dict"]
    del state["encoder.styles.7.linear.bias"]
    state["encoder.styles.7.extra.weight"] = torch.zeros(3)
    state["encoder.latlayer1.weight"] = torch.zeros(40, 32, 3, 3)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(essence.WeightsError) as err:
        checkpoint.read_checkpoint(tmp_path / "bad.pt")
    message = str(err.value)
    assert "bad.pt" in message and "e4e architecture" in message
    assert "missing 1: styles.7.linear.bias" in message
    assert "unexpected 1: styles.7.extra.weight" in message
    assert "wrong shape 1: latlayer1.weight (40, 32, 3, 3) (expected (40, 32, 1, 1))" in message


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda c: c.pop("opts"), "no 'opts' dict"),
        (lambda c: c["opts"].update(encoder_type="BackboneEncoderUsingLastLayerIntoW"), "only Encoder4Editing"),
        (lambda c: c["opts"].update(stylegan_size=1024), "1024-px generator"),
        (lambda c: c.update(state_dict={k: v for k, v in c["state_dict"].items() if k.startswith("decoder.")}),
         "no 'encoder.\\*' tensors"),
        (lambda c: c.update(latent_avg=torch.zeros(3, 40)), "latent_avg has shape"),
        (lambda c: c["state_dict"].update({"encoder.input_layer.0.weight": torch.zeros(16, 1, 3, 3)}),
         "1-channel inputs"),
    ],
)
def test_inconsistent_checkpoints_say_what_is_wrong(tmp_path, change, match):
    ckpt, _ = official_dict()
    change(ckpt)
    torch.save(ckpt, tmp_path / "x.pt")
    with pytest.raises(essence.WeightsError, match=match):
        checkpoint.read_checkpoint(tmp_path / "x.pt")


def test_other_files_are_refused(tmp_path):
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "latent_avg": torch.zeros(2)}, tmp_path / "sg2.pt")
    with pytest.raises(essence.WeightsError, match="no 'state_dict'"):
        checkpoint.read_checkpoint(tmp_path / "sg2.pt")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(essence.WeightsError, match="is not an e4e or pSp checkpoint"):
        checkpoint.read_checkpoint(tmp_path / "notes.txt")
    with pytest.raises(essence.WeightsError, match="no such file"):
        checkpoint.read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "sg2.pt").read_bytes()[:300])
    with pytest.raises(essence.WeightsError, match="truncated or corrupt"):
        checkpoint.read_checkpoint(tmp_path / "cut.pt")
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(essence.WeightsError, match="not an e4e / pSp conversion"):
        checkpoint.read_checkpoint(tmp_path / "other.safetensors")


@pytest.mark.parametrize("kind", KINDS)
def test_convert_round_trip_equals_direct_load(tmp_path, kind):
    src, _ = save_official(tmp_path, kind)
    dst = tmp_path / "converted.safetensors"
    report = checkpoint.convert(src, dst)
    assert report["kind"] == kind and report["num_ws"] == 8 and report["tensors"] == len(TINY_KEYS[kind])
    with safe_open(str(dst), "pt") as f:
        meta = f.metadata()
        assert "decoder.style.1.weight" not in f.keys()
    assert (meta["format"], meta["kind"], meta["num_ws"], meta["w_dim"]) == ("essence-e4e", kind, "8", "40")
    assert json.loads(meta["arch"]) == {"num_ws": 8, "units": [1, 2, 1, 1], "widths": [16, 24, 32, 40]}

    direct, converted = checkpoint.read_checkpoint(src), checkpoint.read_checkpoint(dst)
    assert direct[0].keys() == converted[0].keys()
    assert all(torch.equal(direct[0][k], converted[0][k]) for k in direct[0])
    assert torch.equal(direct[1], converted[1])
    assert converted[2]["kind"] == kind and converted[2]["arch"] == TINY and converted[2]["opts"] == direct[2]["opts"]
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    a, b = checkpoint.load_inverter(src), checkpoint.load_inverter(dst)
    assert b.generators == ("stylegan2-ffhq",)
    # Equal tensors; the outputs agree to rounding (the tensors' memory alignment picks the CPU kernels).
    torch.testing.assert_close(a.invert(x), b.invert(x), rtol=0, atol=1e-6)


def test_detect(tmp_path):
    zip_file, _ = save_official(tmp_path, "psp")
    legacy = tmp_path / "legacy.pt"
    torch.save(official_dict()[0], legacy, _use_new_zipfile_serialization=False)
    converted = tmp_path / "ours.safetensors"
    checkpoint.convert(zip_file, converted)
    assert checkpoint.detect(zip_file) and checkpoint.detect(legacy) and checkpoint.detect(converted)
    assert checkpoint.read_checkpoint(legacy)[2]["source_format"] == "torch-legacy"

    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}}, tmp_path / "sg2.pt")
    save_file({"style.1.weight": torch.zeros(2)}, str(tmp_path / "sg2.safetensors"))
    (tmp_path / "notes.txt").write_text("encoder.input_layer.0.weight encoder.styles.0.")
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04garbage")
    for path in ("sg2.pt", "sg2.safetensors", "notes.txt", "broken.pt", "missing.pt"):
        assert not checkpoint.detect(tmp_path / path), path


@pytest.mark.slow
def test_official_size_checkpoint_converts_and_inverts(tmp_path, golden_weights, golden):
    """The whole path at the real size: an official-layout file (1.2 GB) -> detect -> convert -> invert."""
    latent_avg = torch.randn(18, 512, generator=torch.Generator().manual_seed(18))
    state = {f"encoder.{k}": v for k, v in golden_weights.items()} | {"decoder.style.1.weight": torch.randn(512, 512)}
    opts = {"encoder_type": "Encoder4Editing", "stylegan_size": 1024, "start_from_latent_avg": True,
            "dataset_type": "ffhq_encode"}
    src, dst = tmp_path / "e4e_ffhq_encode.pt", tmp_path / "e4e.safetensors"
    torch.save({"state_dict": state, "latent_avg": latent_avg, "opts": opts}, src)
    assert checkpoint.detect(src)
    report = checkpoint.convert(src, dst)
    assert (report["kind"], report["num_ws"], report["parameters"]) == ("e4e", 18, 267_161_024)
    src.unlink()
    inverter = checkpoint.load_inverter(dst)
    assert inverter.generators == ("stylegan2-ffhq",) and (inverter.num_ws, inverter.w_dim) == (18, 512)
    ws = inverter.invert(golden["full.input"])
    assert (ws - latent_avg - golden["full.e4e"]).abs().max().item() < 1e-4


def test_no_other_converter_claims_an_e4e_checkpoint(tmp_path):
    from essence.weights.assets import get_converters

    path, _ = save_official(tmp_path)
    assert [name for name, c in get_converters().items() if name != "e4e" and c.detect(path)] == []


# -- assets ------------------------------------------------------------------------------------------
def test_assets_are_valid_records():
    assets = essence.load_assets(ASSETS)
    assert [a.name for a in assets] == ["e4e-ffhq", "psp-ffhq"]
    for asset in assets:
        assert asset.convert == "e4e" and asset.filename == f"{asset.format[:-3]}_ffhq_encode.pt"
        assert asset.urls[0].startswith("https://drive.google.com/") and len(asset.urls) >= 2
        assert "non-commercial" in asset.license.lower()
