"""Feature networks and the Gatys baseline: VGG19 checkpoints read safely, the style transfer moves the Gram
matrices towards the target's while the content stays, `essence blend --method gatys` and `essence eval`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import essence
from essence.cli import build_app
from essence.plugins.features import vgg
from essence.workflows.blend import gatys_transfer, gram


def tiny_torchvision_state(width: float = 0.0625) -> dict[str, torch.Tensor]:
    """A random state dict in torchvision's vgg19 layout (features.* and classifier.*), tiny channels."""
    g = torch.Generator().manual_seed(3)
    state, c_in = {}, 3
    for i, c in zip(vgg.conv_indices(), [v for v in vgg.CFG if v != "M"]):
        c = max(1, round(c * width))
        state[f"features.{i}.weight"] = torch.randn(c, c_in, 3, 3, generator=g) * 0.2
        state[f"features.{i}.bias"] = torch.randn(c, generator=g) * 0.01
        c_in = c
    state["classifier.0.weight"] = torch.randn(4, c_in, generator=g)
    state["classifier.0.bias"] = torch.zeros(4)
    return state


def test_vgg19_pth_is_detected_converted_and_loaded_the_same(tmp_path):
    state = tiny_torchvision_state()
    pth = tmp_path / "vgg19-tiny.pth"
    torch.save(state, pth)
    assert vgg.detect(pth)
    st = tmp_path / "vgg19-tiny.safetensors"
    info = vgg.convert(pth, st)
    assert info["tensors"] == 32 and vgg.detect(st)
    from_pth = essence.get_features("vgg19", weights=str(pth), resolution=32, device="cpu")
    from_st = essence.get_features("vgg19", weights=str(st), resolution=32, device="cpu")
    assert from_pth.body[0].weight.equal(state["features.0.weight"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for a, b in zip(from_pth.features(x), from_st.features(x)):
        assert torch.allclose(a, b)
    assert len(from_pth.features(x)) == 6 and from_pth.style_layers == (0, 1, 2, 3, 5)


def test_vgg19_refuses_files_that_are_not_vgg19(tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    assert not vgg.detect(other)
    with pytest.raises(essence.WeightsError, match="not a VGG19"):
        essence.get_features("vgg19", weights=str(other), device="cpu")

    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))

    evil = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Evil()}, evil)
    with pytest.raises(essence.WeightsError, match="safely"):
        essence.get_features("vgg19", weights=str(evil), device="cpu")


def test_the_vgg19_asset_is_torchvisions_file():
    from essence.weights.assets import get_assets

    asset = get_assets()["vgg19-imagenet"]
    assert asset.urls == ["https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"]
    assert asset.sha256.startswith("dcbb9e9d")  # torchvision names its files by the hash's first digits
    assert asset.kind == "features" and asset.convert == "torchvision-vgg19"


def test_gatys_moves_the_style_towards_the_target_and_keeps_the_content():
    net = essence.get_features("toy-clip-features", device="cpu")
    g = torch.Generator().manual_seed(0)
    sources = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    target = torch.rand(1, 3, 32, 32, generator=g) * 0.2 + 0.5  # a flat, bright image
    out, trace = gatys_transfer(net, sources, target, steps=30, lr=0.05)
    assert out.shape == sources.shape and out.min() >= -1 and out.max() <= 1
    assert len(trace) == 30 and trace[-1]["loss"] < trace[0]["loss"]
    with torch.no_grad():
        t, s, o = net.features(target), net.features(sources), net.features(out)
        before = sum(((gram(s[i]) - gram(t[i])) ** 2).sum() for i in net.style_layers)
        after = sum(((gram(o[i]) - gram(t[i])) ** 2).sum() for i in net.style_layers)
    assert after < 0.5 * before
    # no style weight: the content term alone keeps the sources where they are
    kept, _ = gatys_transfer(net, sources, target, steps=10, lr=0.05, style_weight=0.0)
    assert torch.allclose(kept, sources, atol=1e-6)


def test_essence_blend_gatys_and_eval_in_the_toy_world(tmp_path):
    from essence.plugins.toy import world

    sprite = world.sample_sprites(1, np.random.default_rng(0))[0]
    Image.fromarray(world.render(sprite, "clean")).save(tmp_path / "t.png")
    out = tmp_path / "g"
    args = ["blend", "-m", "gatys", "-g", "toy-sprites", "-e", "toy-clip", "--features", "toy-clip-features",
            "-t", str(tmp_path / "t.png"), "--sources", "2", "--steps", "5", "--heldout", "2", "--device", "cpu", "-o", str(out)]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "gatys" and "results.safetensors" not in metrics["files"]
    assert (out / "images" / "result_01.png").is_file()
    source = np.asarray(Image.open(out / "images" / "source_00.png"))
    assert not np.array_equal(source, np.asarray(Image.open(out / "images" / "result_00.png")))
    result = CliRunner().invoke(build_app(), ["eval", str(out), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["runs"][0]["method"] == "gatys" and report["runs"][0]["heldout"]["count"] == 2


def test_gatys_options_are_checked_before_any_model(tmp_path):
    runner = CliRunner()
    result = runner.invoke(build_app(), ["blend", "-m", "clip", "-t", "x.png", "--features", "vgg19"])
    assert result.exit_code == 2 and "--features is for --method gatys" in result.output
    Image.new("RGB", (32, 32)).save(tmp_path / "t.png")
    result = runner.invoke(build_app(), ["blend", "-m", "gatys", "-g", "toy-sprites", "-e", "toy-clip", "--features",
                                         "vgg91", "-t", str(tmp_path / "t.png"), "-o", str(tmp_path / "g")])
    assert result.exit_code == 2 and "Did you mean 'vgg19'?" in result.output
    assert not (tmp_path / "g").exists()
