"""The golden tiny CLIP ViT (tests/fixtures/golden, from the reference code): our encoder computes what
the raw model computes, and with ``normalize=False, resample="area"`` exactly the official TargetCLIP map."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from clip_models import golden_clip

import essence
from essence.plugins.encoders.clip import CLIPEncoder
from essence.plugins.encoders.clip.resample import upsample_pool

GOLDEN_CLIP = Path(__file__).parent / "fixtures" / "golden" / "clip_tiny_vit_random.safetensors"


@pytest.fixture(scope="module")
def model():
    return golden_clip(GOLDEN_CLIP)


def raw_embedding(model, inputs):
    with torch.no_grad():
        return F.normalize(model.encode_image(inputs), dim=-1)


def test_wrapped_golden_model_equals_raw_model(model):
    inputs = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    encoder = CLIPEncoder.from_model(model)
    assert encoder.embed_dim == 32 and encoder.input_resolution == 224
    with torch.no_grad():
        assert (encoder.embed_preprocessed(inputs) - raw_embedding(model, inputs)).abs().max() < 1e-6


def test_golden_file_as_weights_equals_raw_model(model):
    """A visual-only safetensors file given as ``weights`` builds the same tower."""
    encoder = essence.get_encoder("clip-vitb32", weights=str(GOLDEN_CLIP), device="cpu")
    inputs = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (encoder.embed_preprocessed(inputs) - raw_embedding(model, inputs)).abs().max() < 1e-6


@pytest.mark.parametrize("size", [64, 256])
def test_targetclip_settings_reproduce_the_official_pipeline(model, size):
    """Official: encode_image(AvgPool(size // 32)(Upsample(x7)(img))) on [-1, 1] images, no mean/std."""
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size)) * 2 - 1
    encoder = CLIPEncoder.from_model(model, resample="area", normalize=False)
    with torch.no_grad():
        assert (encoder.embed(images) - raw_embedding(model, upsample_pool(images))).abs().max() < 1e-5


def test_normalize_applies_clip_mean_and_std(model):
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(3)) * 2 - 1
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    encoder = CLIPEncoder.from_model(model, normalize=True)
    with torch.no_grad():
        expected = raw_embedding(model, ((images + 1) / 2 - mean) / std)
        assert (encoder.embed(images) - expected).abs().max() < 1e-5
