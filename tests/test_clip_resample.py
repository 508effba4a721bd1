"""Resizing generator images for CLIP: the matmul area resampler is the official upsample+pool map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from essence.plugins.encoders.clip.resample import area_matrix, area_resample, bicubic_resample, upsample_pool


@pytest.mark.parametrize("size", [32, 64, 256, 1024])
def test_area_equals_official_upsample_pool(size):
    gen = torch.Generator().manual_seed(size)
    n = 1 if size == 1024 else 3  # the official path's 7168 x 7168 intermediate is 200 MB per image channel
    x = torch.rand(n, n, size, size, generator=gen) * 2 - 1
    ours, official = area_resample(x, 224), upsample_pool(x)
    assert ours.shape == official.shape == (n, n, 224, 224)
    assert (ours - official).abs().max() < 1e-5


@pytest.mark.parametrize("size", [64, 256])
def test_area_gradient_equals_official(size):
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(2, 3, size, size, generator=gen) * 2 - 1).requires_grad_(True)
    y = x.detach().clone().requires_grad_(True)
    weights = torch.randn(2, 3, 224, 224, generator=gen)
    (area_resample(x, 224) * weights).sum().backward()
    (upsample_pool(y) * weights).sum().backward()
    assert (x.grad - y.grad).abs().max() < 1e-5


def test_area_is_differentiable():
    x = torch.rand(1, 1, 9, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: area_resample(t, 4), (x,))


@pytest.mark.parametrize("size, out", [(1024, 224), (100, 224), (300, 224), (224, 336)])
def test_area_matrix_averages_every_source_pixel_equally(size, out):
    r = area_matrix(size, out, torch.device("cpu"), torch.float64)
    assert torch.allclose(r.sum(1), torch.ones(out, dtype=torch.float64))  # each output is an average
    assert torch.allclose(r.sum(0), torch.full((size,), out / size, dtype=torch.float64))  # no pixel favoured
    assert (r >= 0).all()


def test_area_matrix_is_cached_per_size_device_dtype():
    cpu = torch.device("cpu")
    assert area_matrix(512, 224, cpu, torch.float32) is area_matrix(512, 224, cpu, torch.float32)
    assert area_matrix(512, 224, cpu, torch.float64).dtype == torch.float64


def test_bicubic_matches_pil_bicubic():
    """The differentiable path is the one CLIP's own preprocessing (PIL bicubic) takes, on float data."""
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(1, 1, 300, 300, generator=gen)
    pil = Image.fromarray(x[0, 0].numpy(), mode="F").resize((224, 224), Image.Resampling.BICUBIC)
    assert np.abs(bicubic_resample(x, 224)[0, 0].numpy() - np.asarray(pil)).max() < 1e-4


def test_same_size_is_identity():
    x = torch.rand(1, 3, 224, 224)
    assert area_resample(x, 224) is x and bicubic_resample(x, 224) is x
