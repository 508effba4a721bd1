"""Checks of a real setup: the pretrained weights in the cache load and behave (``pytest -m weights``).

Each test runs when its asset is in the weights cache (``essence weights list``; ESSENCE_HOME picks the
cache) and is skipped otherwise, naming the asset and how to get it. Nothing is downloaded
(ESSENCE_OFFLINE=1). Everything runs on the CPU unless ESSENCE_TEST_DEVICE names another device.
"""

from __future__ import annotations

import os

import pytest

import essence

pytestmark = pytest.mark.weights

DEVICE = os.environ.get("ESSENCE_TEST_DEVICE", "cpu")


def cached(name: str) -> None:
    """Skip unless the asset ``name`` is in the cache (no download is ever tried)."""
    from essence.weights.cache import cache_entry, weights_root

    entry = cache_entry(name)
    if entry.status != "cached":
        pytest.skip(
            f"the asset {name!r} is not in the weights cache ({weights_root()}): `essence weights pull {name}`, "
            f"or `essence weights import {name} FILE` for a file fetched by hand"
        )


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("ESSENCE_OFFLINE", "1")


@pytest.fixture(scope="module")
def ffhq():
    cached("stylegan2-ffhq")
    return essence.get_generator("stylegan2-ffhq", device=DEVICE)


@pytest.fixture(scope="module")
def vitb32():
    cached("clip-vitb32")
    return essence.get_encoder("clip-vitb32", device=DEVICE)


def test_ffhq_generator_shapes_values_and_determinism(ffhq):
    import torch

    assert (ffhq.resolution, ffhq.num_ws, ffhq.w_dim, ffhq.z_dim) == (1024, 18, 512, 512)
    assert ffhq.weights_id not in ("unknown", "random")
    ws = ffhq.sample_ws(2, seed=0, truncation=0.7)
    with torch.no_grad():
        images = ffhq.synthesize(ws)
        again = ffhq.synthesize(ws[:1])
    assert images.shape == (2, 3, 1024, 1024) and torch.isfinite(images).all()
    assert torch.allclose(images[:1], again, atol=1e-4)  # noise "const": the same latent, the same image
    # Real weights make pictures: pixels fill the range with structure, two seeds give two different faces.
    assert -1.5 < float(images.min()) < -0.5 and 0.5 < float(images.max()) < 1.5 and float(images.std()) > 0.2
    assert float((images[0] - images[1]).abs().mean()) > 0.05


def test_vitb32_shapes_and_a_known_property(vitb32):
    import torch
    from PIL import Image
    from skimage.data import astronaut

    assert (vitb32.embed_dim, vitb32.input_resolution) == (512, 224)
    photo = Image.fromarray(astronaut())
    image = vitb32.embed_pil(photo).float()
    texts = vitb32.embed_text(["a photo of an astronaut", "a photo of a cat", "a photo of a bowl of soup"]).float()
    assert image.shape == (1, 512) and texts.shape == (3, 512)
    assert torch.allclose(image.norm(dim=-1), torch.ones(1), atol=1e-3)
    cos = (image.to(texts) @ texts.T)[0]
    assert int(cos.argmax()) == 0  # real CLIP: the astronaut photo is closest to "an astronaut"
    # embed (generator images in [-1, 1]) agrees with the standard preprocessing on the same picture
    x = torch.from_numpy(astronaut()).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(DEVICE)
    assert float((vitb32.embed(x).float().cpu() * image.cpu()).sum()) > 0.9


def test_ffhq_and_vitb32_together_see_a_face(ffhq, vitb32):
    import torch

    with torch.no_grad():
        face = ffhq.synthesize(ffhq.sample_ws(1, seed=1, truncation=0.5))
        emb = vitb32.embed(face).float()
    texts = vitb32.embed_text(["a photo of a person's face", "a photo of a car", "a photo of a landscape"]).float()
    assert int((emb.to(texts) @ texts.T)[0].argmax()) == 0
