"""CLIP weights files: OpenAI-style TorchScript archives made here, read without running their code,
converted once to safetensors, and rebuilt into the same model that openai-clip's own loader gives."""

from __future__ import annotations

import json
import re
import zipfile

import pytest
import torch
import torch.nn.functional as F
from clip_models import OPEN_CLIP_RN, OPEN_CLIP_VIT, save_torchscript, tiny_openai
from PIL import Image
from safetensors import safe_open

import essence
from essence import WeightsError
from essence.weights import get_assets, get_converters
from essence.plugins.encoders.clip import import_clip
from essence.plugins.encoders.clip.checkpoint import detect, infer_architecture, read_weights

NAMES = {"vit": "clip-vitb32", "rn": "clip-rn50"}


@pytest.fixture(scope="module", params=["vit", "rn"])
def archive(request, tmp_path_factory):
    """(kind, path of a tiny TorchScript archive saved like OpenAI's, the model clip.load makes of it)."""
    path = save_torchscript(tiny_openai(request.param), tmp_path_factory.mktemp("ts") / "tiny.pt")
    reference, _ = import_clip().load(str(path), device="cpu", jit=False)
    return request.param, path, reference.eval()


def reference_embedding(model, inputs):
    with torch.no_grad():
        return F.normalize(model.encode_image(inputs).float(), dim=-1)


INPUTS = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def test_read_weights_gives_the_archives_state_dict(archive):
    kind, path, reference = archive
    state, info = read_weights(path)
    expected = reference.state_dict()
    assert info["format"] == "torchscript" and info["openai"] and info["input_resolution"] == 224
    assert "float16" in info["source_dtypes"]
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert state[key].dtype == (torch.float32 if value.is_floating_point() else value.dtype), key
        assert torch.equal(state[key], value.to(state[key].dtype)), key


def test_converter_output_rebuilds_the_same_model_without_torchscript(archive, tmp_path, monkeypatch):
    kind, path, reference = archive
    converter = get_converters()["openai-clip"]  # as registered through the hook
    assert converter.detect(path)
    dst = tmp_path / "converted.safetensors"
    report = converter.convert(path, dst)
    assert report["architecture"] == ("ViT" if kind == "vit" else "ResNet") and report["embed_dim"] == 32
    with safe_open(str(dst), "pt") as f:
        meta = f.metadata()
        assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {torch.float32}
    assert json.loads(meta["architecture"]) == infer_architecture(read_weights(path)[0])
    assert meta["source_sha256"] == read_weights(path)[1]["sha256"]

    def no_torchscript(*args, **kwargs):
        raise AssertionError("TorchScript touched while building from converted weights")

    monkeypatch.setattr(torch.jit, "load", no_torchscript)
    monkeypatch.setattr("essence.plugins.encoders.clip.checkpoint.read_torchscript", no_torchscript)
    encoder = essence.get_encoder(NAMES[kind], weights=str(dst), device="cpu")
    assert encoder.weights_id == "sha256:" + meta["source_sha256"][:16]
    with torch.no_grad():
        assert (encoder.embed_preprocessed(INPUTS) - reference_embedding(reference, INPUTS)).abs().max() < 1e-5


def test_archive_path_as_weights_loads_in_memory(archive):
    kind, path, reference = archive
    encoder = essence.get_encoder(NAMES[kind], weights=str(path), device="cpu")
    with torch.no_grad():
        assert (encoder.embed_preprocessed(INPUTS) - reference_embedding(reference, INPUTS)).abs().max() < 1e-5


def test_openclip_reads_the_archive_with_quickgelu(archive):
    """open_clip's plain ViT-B-32 / RN50 configs use GELU; OpenAI's weights still run with QuickGELU."""
    kind, path, reference = archive
    arch, overrides = ("ViT-B-32", OPEN_CLIP_VIT) if kind == "vit" else ("RN50", OPEN_CLIP_RN)
    encoder = essence.get_encoder("openclip", arch=arch, weights=str(path), architecture=overrides, device="cpu")
    with torch.no_grad():
        assert (encoder.embed_preprocessed(INPUTS) - reference_embedding(reference, INPUTS)).abs().max() < 1e-5


def test_plain_state_dict_file(tmp_path):
    model = tiny_openai("vit")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "sd.pt")
    encoder = essence.get_encoder("clip-vitb32", weights=str(tmp_path / "sd.pt"), device="cpu")
    with torch.no_grad():
        assert (encoder.embed_preprocessed(INPUTS) - reference_embedding(model, INPUTS)).abs().max() < 1e-6


def test_detect_is_false_for_other_files(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "b.bin").write_bytes(b"\x00" * 100)
    torch.save({"weight": torch.zeros(2)}, tmp_path / "c.pt")
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    for name in ("a.png", "b.bin", "c.pt", "d.zip", "missing.pt"):
        assert not detect(tmp_path / name), name


def test_archive_asking_for_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(Vtouch {marker}\ntR.".encode()
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:
        z.writestr("evil/data.pkl", payload)
        z.writestr("evil/constants.pkl", b"")
        z.writestr("evil/version", "3")
    with pytest.raises(WeightsError, match=r"os\.system.*refusing"):
        read_weights(tmp_path / "evil.pt")
    assert not marker.exists()


def test_damaged_files_give_clear_errors(archive, tmp_path):
    _, path, _ = archive
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_text("not weights")
    for name in ("cut.pt", "text.pt"):
        with pytest.raises(WeightsError, match=name):
            essence.get_encoder("clip-vitb32", weights=str(tmp_path / name), device="cpu")


def test_wrong_family_names_the_right_encoder(tmp_path):
    torch.save(tiny_openai("rn").state_dict(), tmp_path / "rn.pt")
    with pytest.raises(WeightsError, match="clip-rn50"):
        essence.get_encoder("clip-vitb32", weights=str(tmp_path / "rn.pt"), device="cpu")


def test_assets_are_openai_files_checked_by_the_sha256_in_their_url():
    assets = get_assets()
    converters = get_converters()
    for name, filename in (("clip-vitb32", "ViT-B-32.pt"), ("clip-rn50", "RN50.pt")):
        asset = assets[name]
        assert asset.kind == "encoder" and asset.filename == filename and asset.license == "MIT"
        assert asset.convert in converters
        match = re.fullmatch(r"https://openaipublic\.azureedge\.net/clip/models/([0-9a-f]{64})/(.+)", asset.urls[0])
        assert match and match.group(1) == asset.sha256 and match.group(2) == filename
        assert essence.get_registry().get("encoder", name).defaults["weights"] == name


def test_default_weights_not_cached_say_how_to_get_them(essence_home, fresh_plugins):
    with pytest.raises(WeightsError, match="clip-vitb32"):
        essence.get_encoder("clip-vitb32", device="cpu")
