"""The projector inverter and its LPIPS loss: the StyleGAN2-ADA schedule, reconstruction on the test
generator, W vs W+, starting from another inverter, and LPIPS weights read safely (a VGG16 asset fetched
from a local server and converted; the lpips package's linear layers; the fallback without the package)."""

from __future__ import annotations

import io

import pytest
import torch
from engine_doubles import doubles  # noqa: F401 (fixtures)
from weights_support import plugin, server, sha256  # noqa: F401 (fixtures)

import essence
from essence.plugins.inverters.projector import perceptual
from essence.plugins.inverters.projector.projector import lr_at, noise_at

TEST = {"perceptual": "none", "w_avg_samples": 256, "device": "cpu"}


def test_the_schedule_is_the_stylegan2_ada_recipe():
    lrs = [lr_at(i / 100, 0.1, 0.05, 0.25) for i in range(100)]
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(0.1 * 0.4)  # linear warm-up over the first 5%
    assert all(v == pytest.approx(0.1) for v in lrs[5:76])  # flat until the last 25%
    assert all(a > b for a, b in zip(lrs[76:], lrs[77:])) and lrs[-1] < 0.001  # cosine ramp-down
    assert noise_at(0.0, 2.0, 0.05, 0.75) == pytest.approx(0.1)
    assert noise_at(0.375, 2.0, 0.05, 0.75) == pytest.approx(0.1 * 0.25)
    assert noise_at(0.75, 2.0, 0.05, 0.75) == 0.0 and noise_at(0.9, 2.0, 0.05, 0.75) == 0.0


def test_the_projector_reconstructs_an_image_the_generator_made(doubles):
    generator = essence.get_generator("tiny-gen")
    target_ws = generator.sample_ws(2, seed=5, truncation=0.7)
    with torch.no_grad():
        images = generator.synthesize(target_ws)
        start = generator.synthesize(generator.mean_w[:, None].repeat(2, generator.num_ws, 1))
    steps = []
    projector = essence.get_inverter("projector", steps=80, lr=0.1, space="w+", **TEST)
    ws = projector.invert(images, generator, callback=lambda i, n, loss: steps.append((i, n, loss)))
    with torch.no_grad():
        error = float((generator.synthesize(ws) - images).square().mean())
    assert error < 0.3 * float((start - images).square().mean())
    assert [s[0] for s in steps] == list(range(80)) and all(s[1] == 80 for s in steps)
    in_w = essence.get_inverter("projector", steps=5, space="w", **TEST).invert(images, generator)
    assert in_w.shape == (2, 4, 8) and torch.equal(in_w, in_w[:, :1].expand_as(in_w))  # one w on every row


class Fixed(essence.Inverter):
    """A stand-in feed-forward inverter: every image -> one fixed latent."""

    def invert(self, images, generator, *, callback=None):
        return generator.sample_ws(images.shape[0], seed=9)


class FixedPlugin:
    @essence.hookimpl
    def register_inverters(self, register):
        register("fixed", lambda config: Fixed(), tiny={})


def test_the_projector_can_start_from_another_inverter(doubles):
    from essence.core.plugins import get_host

    get_host().add(FixedPlugin(), "fixed", None, builtin=False)
    generator = essence.get_generator("tiny-gen")
    images = torch.zeros(2, 3, 16, 16)
    # one step at lr 0 (the schedule starts there): the start is returned unchanged
    ws = essence.get_inverter("projector", steps=1, space="w+", init="fixed", **TEST).invert(images, generator)
    assert torch.allclose(ws, generator.sample_ws(2, seed=9))
    with pytest.raises(essence.ConfigError, match="not the projector itself"):
        essence.get_inverter("projector", init="projector", **TEST)


# -- LPIPS ---------------------------------------------------------------------------------------------------


def test_lpips_is_zero_for_the_same_image_and_grows_with_the_difference():
    lpips = perceptual.build_lpips("random", "random", width=8)
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    noise = torch.randn(2, 3, 32, 32, generator=gen)
    assert torch.allclose(lpips(a, a), torch.zeros(2), atol=1e-6)
    small, large = lpips(a, (a + 0.05 * noise).clamp(-1, 1)), lpips(a, (a + 0.5 * noise).clamp(-1, 1))
    assert (small > 0).all() and (large > small).all()
    assert torch.allclose(lpips(a, a.flip(0)), lpips(a.flip(0), a), atol=1e-6)


def test_lpips_linear_layers_load_from_an_lpips_weights_file(tmp_path):
    widths = perceptual.tap_channels(8)
    state = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(widths)}
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    lpips = perceptual.build_lpips("random", str(path), width=8)
    for k in range(5):
        assert torch.equal(lpips.lins[k].weight, state[f"lin{k}.model.1.weight"])
    evil = tmp_path / "evil.pth"
    torch.save({"lin0.model.1.weight": io.BytesIO(b"code")}, evil)  # not a plain tensor: weights_only refuses it
    with pytest.raises(essence.WeightsError, match="Cannot read LPIPS linear layers"):
        perceptual.build_lpips("random", str(evil), width=8)


def test_without_the_lpips_package_the_projector_says_so_and_uses_pixels(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(perceptual.importlib.metadata, "distribution", missing)
    with pytest.warns(UserWarning, match=r'pip install "essence-transfer\[lpips\]".*pixel MSE only'):
        projector = essence.get_inverter("projector", vgg_weights="random", width=8, device="cpu")
    assert projector.perceptual is None and projector.weights_id == "mse"


def fake_torchvision_vgg16() -> bytes:
    """A checkpoint in the layout of torchvision's vgg16-397923af.pth (random values, float16 to stay small)."""
    gen = torch.Generator().manual_seed(0)
    state = {f"features.{k}": torch.randn(v.shape, generator=gen).half() * 0.05 for k, v in perceptual.vgg16_features(64).state_dict().items()}
    state.update({"classifier.0.weight": torch.zeros(4, 4), "classifier.6.weight": torch.zeros(10, 4), "classifier.6.bias": torch.zeros(10)})
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_the_vgg16_asset_is_downloaded_converted_and_loaded(server, plugin, tmp_path):
    data = fake_torchvision_vgg16()
    url = server.serve("vgg16-test.pth", data)
    shipped = essence.load_assets(perceptual.Path(perceptual.__file__).with_name("assets.json"))[0]
    plugin.add(shipped.model_copy(update={"name": "vgg16-test", "urls": [url], "size": len(data), "sha256": sha256(data)}))
    lpips = perceptual.build_lpips("vgg16-test", "random")
    from essence.weights.cache import cache_entry

    entry = cache_entry("vgg16-test")
    assert entry.status == "cached" and entry.path.suffix == ".safetensors"
    assert entry.record["converted"]["info"]["tensors"] == 26  # 13 convolutions, weight and bias
    assert torch.equal(lpips.features[28].weight, torch.load(io.BytesIO(data), weights_only=True)["features.28.weight"].float())
    a = torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(lpips(a, -a)) > 0
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    assert perceptual.detect_vgg16(tmp_path / "other.pt") is False
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3), "features.28.weight": torch.zeros(1), "classifier.6.weight": torch.zeros(1)}, wrong)
    with pytest.raises(essence.WeightsError, match="is not torchvision's VGG16"):
        perceptual.convert_vgg16(wrong, tmp_path / "out.safetensors")


def test_the_cli_prints_the_extra_to_install_in_one_line(doubles, monkeypatch, tmp_path):
    import importlib.metadata

    from PIL import Image
    from typer.testing import CliRunner

    from essence.cli import build_app

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(perceptual.importlib.metadata, "distribution", missing)
    Image.new("RGB", (16, 16), (10, 200, 30)).save(tmp_path / "p.png")
    sets = [a for kv in ("vgg_weights=random", "width=8", "steps=2", "w_avg_samples=64") for a in ("--set", f"inversion.inverter.config.{kv}")]
    args = ["invert", str(tmp_path / "p.png"), "-g", "tiny-gen", "--inverter", "projector", *sets, "-o", str(tmp_path / "w.pt"), "-q"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert 'Warning: LPIPS (the projector\'s perceptual loss) (needs lpips) is not installed: pip install "essence-transfer[lpips]"' in " ".join(result.output.split())
