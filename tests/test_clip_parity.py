"""openai-clip and open_clip, loaded from one state dict, give the same embeddings and input gradients."""

from __future__ import annotations

import pytest
import torch
from clip_models import OPEN_CLIP_RN, OPEN_CLIP_VIT, tiny_open_clip, tiny_openai

import essence
from essence.plugins.encoders.clip import CLIPEncoder


def embed_with_grad(encoder, images):
    x = images.clone().requires_grad_(True)
    emb = encoder.embed(x)
    weights = torch.linspace(-1, 1, emb.shape[-1])
    (emb * weights).sum().backward()
    return emb.detach(), x.grad


@pytest.mark.parametrize("kind", ["vit", "rn"])
@pytest.mark.parametrize("resample", ["area", "bicubic"])
def test_wrapped_models_agree(kind, resample):
    openai_model = tiny_openai(kind)
    open_clip_model = tiny_open_clip(kind, openai_model.state_dict())
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    emb_a, grad_a = embed_with_grad(CLIPEncoder.from_model(openai_model, resample=resample), images)
    emb_b, grad_b = embed_with_grad(CLIPEncoder.from_model(open_clip_model, resample=resample), images)
    assert (emb_a - emb_b).abs().max() < 1e-5
    assert grad_a.abs().max() > 0
    assert (grad_a - grad_b).abs().max() < 1e-5


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_registered_encoders_agree_from_one_file(tmp_path, kind):
    """clip-vitb32 / clip-rn50 (openai-clip code) and openclip (open_clip code) on one .pt state dict."""
    path = tmp_path / "tiny.pt"
    torch.save(tiny_openai(kind).state_dict(), path)
    if kind == "vit":
        name, arch, overrides = "clip-vitb32", "ViT-B-32-quickgelu", OPEN_CLIP_VIT
    else:
        name, arch, overrides = "clip-rn50", "RN50-quickgelu", OPEN_CLIP_RN
    common = {"weights": str(path), "device": "cpu", "resample": "area"}
    ours = essence.get_encoder(name, **common)
    theirs = essence.get_encoder("openclip", arch=arch, architecture=overrides, **common)
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1
    emb_a, grad_a = embed_with_grad(ours, images)
    emb_b, grad_b = embed_with_grad(theirs, images)
    assert ours.weights_id == theirs.weights_id != "random"
    assert (emb_a - emb_b).abs().max() < 1e-5
    assert (grad_a - grad_b).abs().max() < 1e-5
