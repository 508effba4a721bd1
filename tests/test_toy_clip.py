"""toy-clip: the file format round trip, its errors, and the shipped weights passing small gates."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from essence import WeightsError
from essence.plugins.toy import evaluate, toyclip, world

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 1, "head_width": 64},
    "text_cfg": {"context_length": 20, "width": 64, "heads": 1, "layers": 1},
    "quick_gelu": True,
}


@pytest.fixture(scope="module")
def shipped():
    return toyclip.load_toy_clip()


def test_round_trip_of_a_tiny_model(tmp_path):
    torch.manual_seed(0)
    tok = toyclip.Tokenizer(world.vocabulary(), 20)
    model = toyclip.build_model(TINY, tok.vocab_size).eval()
    path = tmp_path / "tiny.safetensors"
    toyclip.save_toy_clip(model, tok, TINY, path, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    toy = toyclip.load_toy_clip(path)
    assert toy.input_resolution == 32 and toy.mean == (0.5, 0.5, 0.5) and toy.std == (0.25, 0.25, 0.25)
    assert toy.tokenizer.words == tok.words and not toy.model.training
    assert all(p.dtype == torch.float32 for p in toy.model.parameters())
    images = world.render(world.sample_sprites(4, 0))
    x = toy.preprocess(images)
    assert x.shape == (4, 3, 32, 32)
    with torch.no_grad():
        ref = model.half().float().encode_image(x, normalize=True)  # the file stores fp16
        np.testing.assert_allclose(toy.encode_images(images), ref, atol=1e-5)
        text = ["a red circle", "a sprite on grey"]
        np.testing.assert_allclose(toy.encode_texts(text), model.encode_text(tok(text), normalize=True), atol=1e-5)


def test_load_errors(tmp_path):
    with pytest.raises(WeightsError, match="train them"):
        toyclip.load_toy_clip(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(WeightsError, match="not a toy-clip file"):
        toyclip.load_toy_clip(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors at all")
    with pytest.raises(WeightsError, match="Cannot read"):
        toyclip.load_toy_clip(junk)


def test_shipped_weights_are_small_and_recorded():
    import json

    assert toyclip.WEIGHTS.stat().st_size < 6_000_000
    record = json.loads(toyclip.RECORD.read_text())
    assert record["weights_bytes"] == toyclip.WEIGHTS.stat().st_size
    for key in ("command", "seed", "train_wall_seconds", "final_metrics"):
        assert key in record


def test_shipped_state_dict_has_the_openai_layout(shipped, monkeypatch):
    """openai-clip's build_model infers the same architecture from the state dict alone."""
    import packaging
    import packaging.version  # openai-clip 1.0.1 imports pkg_resources only for packaging.version

    monkeypatch.setitem(sys.modules, "pkg_resources", types.SimpleNamespace(packaging=packaging))
    from clip.model import build_model

    model = build_model({k: v.clone() for k, v in shipped.model.state_dict().items()}).float().eval()
    images = world.render(world.sample_sprites(3, 1))
    with torch.no_grad():
        theirs = torch.nn.functional.normalize(model.encode_image(shipped.preprocess(images)), dim=-1)
    np.testing.assert_allclose(theirs, shipped.encode_images(images), atol=2e-3)


def test_shipped_weights_pass_small_gates(shipped):
    sprites = world.sample_sprites(60, 31337)
    for style in world.STYLES:
        accuracy = evaluate.zero_shot(shipped, sprites, style)
        assert min(accuracy.values()) >= 0.9, (style, accuracy)
    cos = evaluate.pair_cosines(shipped, 40, 31338)
    assert cos["identity"].mean() >= 0.85
    assert cos["identity"].mean() > cos["essence"].mean() + 0.1  # it sees essence, not identity
