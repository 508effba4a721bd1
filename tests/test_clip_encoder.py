"""The CLIP encoder as users meet it: preprocessing, image files, configuration errors, frozen eval mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clip_models import tiny_openai
from PIL import Image

import essence
from essence import ConfigError, EssenceError
from essence.plugins.encoders.clip import CLIPEncoder, TINY_RN, TINY_VIT, import_clip


@pytest.fixture(scope="module")
def encoder():
    return CLIPEncoder.from_model(tiny_openai("vit"))


def noise_image(w, h, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [(224, 224), (300, 225), (225, 301), (500, 224), (100, 60), (257, 1000)])
def test_preprocess_is_clips_standard_transform(encoder, size):
    image = noise_image(*size)
    expected = import_clip().clip._transform(224)(image)[None]
    assert torch.allclose(encoder.preprocess(image), expected, atol=1e-6)


def save(image, path):
    image.save(path)
    return path


def test_embed_file_handles_every_common_mode(encoder, tmp_path):
    """Grey, palette, RGBA and 16-bit files give the embedding of the RGB picture they show."""
    grey = np.random.default_rng(1).integers(0, 256, (40, 50), dtype=np.uint8)
    rgb = Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    expected = encoder.embed_pil(rgb)
    files = {
        "grey": save(Image.fromarray(grey), tmp_path / "grey.png"),
        "palette": save(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), tmp_path / "palette.png"),
        "rgba": save(rgb.convert("RGBA"), tmp_path / "rgba.png"),
        "16-bit": save(Image.fromarray(grey.astype(np.uint16) * 257), tmp_path / "grey16.png"),
    }
    for mode, path in files.items():
        emb = encoder.embed_file(path)
        assert emb.shape == (1, encoder.embed_dim), mode
        assert torch.allclose(emb, expected, atol=1e-5), mode


def test_embed_file_errors_name_the_file(encoder, tmp_path):
    noise_image(64, 64).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.jpg").write_text("not an image")
    for name in ("cut.png", "notes.jpg", "missing.png"):
        with pytest.raises(EssenceError, match=name):
            encoder.embed_file(tmp_path / name)


def test_frozen_eval_mode_with_gradients_to_the_input():
    encoder = essence.get_encoder("clip-rn50", weights="random", architecture=TINY_RN, device="cpu")
    encoder.train()
    assert not any(m.training for m in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())
    images = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    encoder.embed(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.parameters())


def test_batch_statistics_never_leak_between_images():
    """In eval mode an image's embedding does not depend on the rest of the batch (BN uses running stats)."""
    model = tiny_openai("rn")
    model.train()
    encoder = CLIPEncoder.from_model(model)
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(encoder.embed(images)[:1], encoder.embed(images[:1]), atol=1e-6)


def test_random_weights_are_reproducible_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    a = essence.get_encoder("clip-vitb32", weights="random", architecture=TINY_VIT, device="cpu")
    assert torch.equal(torch.get_rng_state(), state)
    b = essence.get_encoder("clip-vitb32", weights="random", architecture=TINY_VIT, device="cpu")
    assert a.weights_id == "random"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_non_square_images_are_refused(encoder):
    with pytest.raises(EssenceError, match="square"):
        encoder.embed(torch.zeros(1, 3, 64, 48))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"device": "cuda"}, EssenceError, "sees no CUDA GPU"),
        ({"device": "banana"}, ConfigError, "Unknown device"),
        ({"precision": "fp16"}, ConfigError, "needs a CUDA device"),
        ({"resample": "nearest"}, ConfigError, "resample"),
        ({"architecture": {"vision_heads": 3}}, ConfigError, "vision_heads"),
        ({"architecture": {"vision_layers": [1, 1, 1, 1]}}, ConfigError, "family"),
    ],
)
def test_configuration_mistakes(overrides, error, message):
    config = {"weights": "random", "device": "cpu", "architecture": TINY_VIT, **overrides}
    if "architecture" in overrides:
        config["architecture"] = {**TINY_VIT, **overrides["architecture"]}
    with pytest.raises(error, match=message):
        essence.get_encoder("clip-vitb32", **config)


def test_architecture_with_a_weights_file_is_refused(tmp_path):
    torch.save(tiny_openai("vit").state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ConfigError, match="architecture"):
        essence.get_encoder("clip-vitb32", weights=str(tmp_path / "sd.pt"), architecture=TINY_VIT, device="cpu")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"weights": "random", "pretrained": "openai"}, "not both"),
        ({"arch": "ViT-B-32-quickgelu", "pretrained": "no-such-tag"}, "no-such-tag"),
        ({"arch": "ViT-B-23", "weights": "random"}, "ViT-B-32"),
        ({"arch": "ViT-L-14"}, "no default weights"),
    ],
)
def test_openclip_configuration_mistakes(overrides, message):
    with pytest.raises(ConfigError, match=message):
        essence.get_encoder("openclip", device="cpu", **overrides)


def test_openclip_defaults_to_openais_weights(essence_home, fresh_plugins):
    """No weights and no tag: OpenAI's ViT-B/32 from essence's cache, which is empty here."""
    with pytest.raises(essence.WeightsError, match="clip-vitb32"):
        essence.get_encoder("openclip", device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_cuda_stays_close_to_fp32(precision):
    config = {"weights": "random", "architecture": TINY_VIT, "device": "cuda", "resample": "area"}
    reference = essence.get_encoder("clip-vitb32", **config)
    encoder = essence.get_encoder("clip-vitb32", precision=precision, **config)
    images = (torch.rand(2, 3, 256, 256, device="cuda") * 2 - 1).requires_grad_(True)
    emb = encoder.embed(images)
    assert emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2, device="cuda"), atol=1e-5)
    with torch.no_grad():
        assert (emb.detach() - reference.embed(images)).abs().max() < 3e-2
    emb.sum().backward()
    assert images.grad.dtype == torch.float32 and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
