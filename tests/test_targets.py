"""Targets of every kind: several images of one essence, texts through the encoder's text tower, weighted
mixtures; how the transfer loss combines them (docs/method.md), and how much they agree."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from engine_doubles import components, doubles, target_file  # noqa: F401 (fixtures)
from PIL import Image

import essence
from essence.core.errors import ConfigError, EssenceError
from essence.core.interfaces import LossContext
from essence.method.engine import describe_targets, optimize_direction
from essence.plugins.losses.paper import Transfer

QUICK = {"steps": 12, "heldout": {"count": 3}, "sources": {"count": 3}}


def unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


# -- the transfer loss with several targets ---------------------------------------------------------


def test_transfer_is_the_weighted_mean_of_one_loss_per_target():
    targets, shifted = unit(3, 16, seed=1), unit(5, 16, seed=2)
    weights = torch.tensor([0.5, 0.3, 0.2])
    ctx = LossContext(target=targets, sources=shifted, shifted=shifted, target_weights=weights)
    per_target = [float(Transfer()(LossContext(target=t[None], sources=shifted, shifted=shifted))) for t in targets]
    assert float(Transfer()(ctx)) == pytest.approx(sum(w * v for w, v in zip(weights.tolist(), per_target)), abs=1e-6)
    # Equal weights are the plain mean over targets and sources, the loss runs always had.
    equal = LossContext(target=targets, sources=shifted, shifted=shifted, target_weights=torch.full((3,), 1 / 3))
    unweighted = LossContext(target=targets, sources=shifted, shifted=shifted)
    assert float(Transfer()(equal)) == pytest.approx(float(Transfer()(unweighted)), abs=1e-6)


def test_transfer_is_the_cosine_to_the_weighted_mean_embedding_scaled_by_its_length():
    """Why not a renormalised mean embedding: the two differ only by the mean's length |m|, which shrinks
    as targets disagree; renormalising would scale the transfer gradient by 1/|m|, without bound."""
    targets, shifted = unit(2, 16, seed=3), unit(4, 16, seed=4)
    weights = torch.tensor([0.7, 0.3])
    m = (weights[:, None] * targets).sum(0)
    ctx = LossContext(target=targets, sources=shifted, shifted=shifted, target_weights=weights)
    expected = (1 - m.norm() * (shifted @ F.normalize(m, dim=0))).mean()
    assert float(Transfer()(ctx)) == pytest.approx(float(expected), abs=1e-6)
    opposite = torch.stack([targets[0], -targets[0]])  # two targets that disagree completely
    ctx = LossContext(target=opposite, sources=shifted, shifted=shifted.clone().requires_grad_(True))
    Transfer()(ctx).backward()
    assert ctx.shifted.grad.abs().max() < 1e-6  # they cancel: no pull either way, not an amplified one


def test_a_zero_weight_drops_a_target(components, target_file, tmp_path):
    G, C = components
    other = tmp_path / "other.png"
    Image.new("RGB", (30, 30), (20, 200, 60)).save(other)
    alone = optimize_direction(G, C, target_file, config=QUICK)
    mixed = optimize_direction(G, C, [target_file, other], config={**QUICK, "target_weights": [1, 0]})
    assert torch.allclose(alone.direction, mixed.direction, atol=1e-6)
    equal = optimize_direction(G, C, [target_file, other], config=QUICK)
    assert not torch.allclose(equal.direction, alone.direction, atol=1e-4)
    halves = optimize_direction(G, C, [target_file, other], config={**QUICK, "target_weights": [2, 2]})
    assert torch.allclose(halves.direction, equal.direction, atol=1e-6)  # only the weights' ratios matter
    per_target = equal.heldout["transfer_per_target"]
    assert len(per_target) == 2 and all(len(pair) == 2 for pair in per_target)
    assert equal.heldout["transfer"] == pytest.approx(sum(edited for edited, _ in per_target) / 2, abs=1e-6)


def test_spread_of_the_targets():
    t = unit(1, 8, seed=5)
    same = describe_targets(torch.cat([t, t, t]))
    assert same["mean_pairwise_cosine"] == pytest.approx(1.0) and same["cosine_to_mean"] == pytest.approx([1.0] * 3)
    basis = torch.eye(4)[:3]
    report = describe_targets(basis, torch.tensor([0.5, 0.25, 0.25]))
    assert report["mean_pairwise_cosine"] == pytest.approx(0.0) and report["min_pairwise_cosine"] == pytest.approx(0.0)
    assert report["cosine_to_mean"][0] > report["cosine_to_mean"][1] == pytest.approx(report["cosine_to_mean"][2])
    assert describe_targets(t)["mean_pairwise_cosine"] is None


# -- the run config and the command line -----------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        ({"target": ["a.png"], "target_text": ["x"], "target_weights": [1]}, "1 target weight(s) for 2 target(s)"),
        ({"target": ["a.png"], "target_weights": [-1]}, ">= 0"),
        ({"target": ["a.png", "b.png"], "target_weights": [0, 0]}, "at least one > 0"),
        ({"target_text": ["  "]}, "empty"),
        ({"target": ["a.png"], "target_weights": "1,x"}, "numbers separated by commas"),
    ],
)
def test_bad_target_settings_are_clear_errors(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        essence.build_run_config(data)


def test_target_weights_from_a_string():
    cfg = essence.build_run_config({"target": ["a.png"], "target_text": "smiling", "target_weights": "1, 0.5"})
    assert cfg.target_text == ["smiling"] and cfg.target_weights == [1.0, 0.5]


def test_an_encoder_without_a_text_tower_says_so(cli, doubles, tmp_path):
    result = cli(
        "run", "-g", "tiny-gen", "-e", "tiny-enc", "--target-text", "an old man", "--steps", "2",
        "--heldout", "0", "--out", str(tmp_path / "run"),
    )
    assert result.exit_code == 2, result.output
    assert "has no text tower" in result.output and "Traceback" not in result.output


def test_text_and_image_mixture_run_on_the_toy_world(cli, tmp_path):
    from essence.plugins.toy import world

    image = tmp_path / "red.png"
    Image.fromarray(world.render(world.sample_sprites(1, seed=3)[0])).save(image)
    out = tmp_path / "run"
    result = cli(
        "run", "-g", "toy-sprites", "-e", "toy-clip", "--device", "cpu", "-t", str(image),
        "--target-text", "a blue circle", "--target-weights", "1,0.5", "--steps", "3", "--heldout", "2",
        "--sources", "2", "--out", str(out), "--quiet",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    t = metrics["targets"]
    assert t["texts"] == ["a blue circle"] and t["count"] == 2 and t["weights"] == pytest.approx([2 / 3, 1 / 3])
    assert len(metrics["heldout"]["transfer_per_target"]) == 2
    assert json.loads((out / "config.json").read_text())["target_text"] == ["a blue circle"]
    assert (out / "sheet.png").is_file() and (out / "images" / "target_00.png").is_file()


def test_a_text_only_run_names_its_folder_after_the_text(tmp_path, monkeypatch):
    from essence.method.runner import prepare

    monkeypatch.chdir(tmp_path)
    cfg = essence.build_run_config({"generator": "toy-sprites", "encoder": "toy-clip", "target_text": "A blue circle!"})
    assert prepare(cfg).out.name.startswith("a-blue-circle-")


def test_words_toy_clip_does_not_know_are_named():
    encoder = essence.get_encoder("toy-clip", device="cpu")
    with pytest.raises(ConfigError, match="'old', 'man'"):
        encoder.embed_text(["an old man"])


# -- the text towers -------------------------------------------------------------------------------


def test_toy_clip_text_embeddings_are_those_of_its_word_tower():
    from essence.plugins.toy.toyclip import load_toy_clip

    encoder = essence.get_encoder("toy-clip", device="cpu")
    assert encoder.has_text
    texts = ["a blue circle", "a striped square on a grey background"]
    assert torch.allclose(encoder.embed_text(texts), load_toy_clip().encode_texts(texts), atol=1e-6)


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory):
    """A tiny openai-clip CLIP with the real vocabulary (so its tokenizer fits), saved as OpenAI's files are."""
    from clip_models import VIT, save_torchscript

    from essence.plugins.encoders.clip.backends import import_clip

    torch.manual_seed(0)
    text = dict(context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1)
    model = import_clip().model.CLIP(**VIT, **text).float().eval()
    return save_torchscript(model, tmp_path_factory.mktemp("clip") / "tiny.pt")


def reference_text(path, texts):
    """openai-clip's own encode_text on the weights as read from the file."""
    from clip_models import VIT

    from essence.plugins.encoders.clip.backends import import_clip
    from essence.plugins.encoders.clip.checkpoint import read_weights

    clip = import_clip()
    state, _ = read_weights(path)
    text = dict(context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1)
    model = clip.model.CLIP(**VIT, **text).float().eval()
    model.load_state_dict(state)
    with torch.no_grad():
        return F.normalize(model.encode_text(clip.tokenize(texts)), dim=-1)


def test_openai_clip_text_tower_matches_openai_clip(tiny_clip_file):
    texts = ["an old man with white hair", "smiling"]
    encoder = essence.get_encoder("clip-vitb32", weights=str(tiny_clip_file), device="cpu")
    assert encoder.has_text
    assert torch.allclose(encoder.embed_text(texts), reference_text(tiny_clip_file, texts), atol=1e-5)


def test_open_clip_reads_the_text_tower_from_the_same_file(tiny_clip_file):
    from clip_models import OPEN_CLIP_VIT

    texts = ["an old man with white hair"]
    architecture = {**OPEN_CLIP_VIT, "text_cfg": {**OPEN_CLIP_VIT["text_cfg"], "vocab_size": 49408}}
    encoder = essence.get_encoder(
        "openclip", arch="ViT-B-32-quickgelu", weights=str(tiny_clip_file), architecture=architecture, device="cpu"
    )
    assert torch.allclose(encoder.embed_text(texts), reference_text(tiny_clip_file, texts), atol=1e-5)


def test_weights_without_a_text_tower_say_so(tiny_clip_file, tmp_path):
    from safetensors.torch import save_file

    from essence.plugins.encoders.clip.checkpoint import read_weights

    state, _ = read_weights(tiny_clip_file)
    visual_only = tmp_path / "visual.safetensors"
    save_file({k: v for k, v in state.items() if k.startswith("visual.")}, str(visual_only))
    encoder = essence.get_encoder("clip-vitb32", weights=str(visual_only), device="cpu")
    assert not encoder.has_text
    with pytest.raises(EssenceError, match="no text tower"):
        encoder.embed_text(["smiling"])


def test_too_long_a_text_is_a_clear_error():
    from essence.plugins.encoders.clip import TINY_VIT

    encoder = essence.get_encoder("clip-vitb32", weights="random", architecture=TINY_VIT, device="cpu")
    with pytest.raises(ConfigError, match="too long"):
        encoder.embed_text([" ".join(["word"] * 100)])


def test_eval_judges_a_text_run_with_the_text_tower(cli, tmp_path):
    out = tmp_path / "run"
    result = cli(
        "run", "-g", "toy-sprites", "-e", "toy-clip", "--device", "cpu", "--target-text", "a blue circle",
        "--steps", "2", "--heldout", "2", "--sources", "2", "--out", str(out), "--quiet",
    )
    assert result.exit_code == 0, result.output
    report = cli("eval", str(out), "--device", "cpu", "--json")
    assert report.exit_code == 0, report.output
    metrics = {m["metric"]: m for m in json.loads(report.stdout)["runs"][0]["metrics"]}
    assert metrics["target-similarity"]["value"] is not None
