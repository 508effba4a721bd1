"""The StyleGAN2 generator: golden vectors of the reference implementation, the layer math, presets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

import essence
from essence.plugins.generators.stylegan2.checkpoints import complete, expected_shapes, from_rosinality
from essence.plugins.generators.stylegan2.config import Architecture, default_channels
from essence.plugins.generators.stylegan2.model import (
    Blur,
    NoiseBiasLeakyReLU,
    RGBProject,
    StyleGAN2Generator,
    Upsample,
    make_kernel,
    row_products,
)
from essence.testing import check_component

GOLDEN = Path(__file__).parent / "fixtures" / "golden"

GOLDEN_G = GOLDEN / "stylegan2_tiny64_golden.safetensors"
MANIFEST = json.loads((GOLDEN / "stylegan2_config_f_keys.json").read_text())
TINY_ARCH = Architecture(size=16, style_dim=16, n_mlp=2, channels={4: 16, 8: 8, 16: 8})


@pytest.fixture(scope="module")
def golden():
    with safe_open(str(GOLDEN_G), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(GOLDEN_G))
    arch = Architecture(
        size=int(meta["size"]),
        style_dim=int(meta["style_dim"]),
        n_mlp=int(meta["n_mlp"]),
        channels={int(r): c for r, c in json.loads(meta["channels"]).items()},
    )
    assert arch.num_ws == int(meta["n_latent"])
    g_ema = {k[len("g_ema.") :]: v for k, v in tensors.items() if k.startswith("g_ema.")}
    ckpt = complete(from_rosinality({"g_ema": g_ema}), "golden")
    gen = StyleGAN2Generator(ckpt.arch, lr_mlp=float(meta["lr_mlp"])).requires_grad_(False).eval()
    gen.load_state_dict(ckpt.state_dict, strict=True)
    return gen, tensors, meta


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# -- golden ---------------------------------------------------------------------------------------------
def test_golden_z_to_image(golden):
    gen, t, _ = golden
    w = gen.mapping(t["case.z"])
    assert max_err(w[:, None].expand(-1, gen.num_ws, -1), t["case.z.wplus"]) < 1e-4
    assert max_err(gen.synthesize(t["case.z.wplus"]), t["case.z.image"]) < 1e-4


def test_golden_truncation_with_given_mean_w(golden):
    gen, t, meta = golden
    assert max_err(gen.mapping(t["case.z_mean_samples"]).mean(0, keepdim=True), t["case.mean_w"]) < 1e-5
    saved = gen.latent_avg
    try:
        gen.mean_w = t["case.mean_w"]
        wplus = gen.truncate(gen.mapping(t["case.z"]), float(meta["truncation"]))[:, None].repeat(1, gen.num_ws, 1)
        assert max_err(wplus, t["case.trunc07.wplus"]) < 1e-4
        assert max_err(gen.synthesize(wplus), t["case.trunc07.image"]) < 1e-4
    finally:
        gen.latent_avg = saved


def test_golden_wplus_input(golden):
    gen, t, _ = golden
    assert max_err(gen.synthesize(t["case.wplus.input"]), t["case.wplus.image"]) < 1e-4


def test_golden_style_mixing_inject_index_3(golden):
    gen, t, meta = golden
    inject = int(meta["mix.inject_index"])
    assert inject == 3
    w1, w2 = gen.mapping(t["case.z"]), gen.mapping(t["case.mix.z2"])
    wplus = torch.cat([w1[:, None].repeat(1, inject, 1), w2[:, None].repeat(1, gen.num_ws - inject, 1)], dim=1)
    assert max_err(wplus, t["case.mix.wplus"]) < 1e-4
    assert max_err(gen.synthesize(wplus), t["case.mix.image"]) < 1e-4


def test_batch_rows_are_independent(golden):
    gen, t, _ = golden
    ws = t["case.z.wplus"]
    whole = gen.synthesize(ws)
    for i in range(ws.shape[0]):
        assert max_err(gen.synthesize(ws[i : i + 1])[0], whole[i]) < 1e-5


# -- an independent statement of the layer math (per-sample weights, zero-insert upsampling) -------------
def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[..., ::up, ::up] = x
        x = z
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, kernel.flip(0, 1)[None, None].repeat(c, 1, 1, 1), groups=c)


def reference_synthesis(sd, ws, noises, clamp=None):
    def modconv(prefix, x, w, demod=True, up=False):
        weight = sd[f"{prefix}.weight"][0]
        cout, cin, k, _ = weight.shape
        s = F.linear(w, sd[f"{prefix}.modulation.weight"] / math.sqrt(w.shape[1]), sd[f"{prefix}.modulation.bias"])
        out = []
        for i in range(x.shape[0]):
            wi = weight / math.sqrt(cin * k * k) * s[i][None, :, None, None]
            if demod:
                wi = wi * torch.rsqrt(wi.square().sum((1, 2, 3), keepdim=True) + 1e-8)
            if up:
                o = F.conv_transpose2d(x[i : i + 1], wi.transpose(0, 1), stride=2)
                o = upfirdn2d(o, sd[f"{prefix}.blur.kernel"], pad=(1, 1))
            else:
                o = F.conv2d(x[i : i + 1], wi, padding=k // 2)
            out.append(o)
        return torch.cat(out)

    def styled(name, x, w, noise, up=False):
        o = modconv(f"{name}.conv", x, w, up=up) + sd[f"{name}.noise.weight"] * noise
        o = F.leaky_relu(o + sd[f"{name}.activate.bias"][None, :, None, None], 0.2) * math.sqrt(2)
        return o.clamp(-clamp, clamp) if clamp else o

    def to_rgb(name, x, w, skip):
        o = modconv(f"{name}.conv", x, w, demod=False) + sd[f"{name}.bias"]
        o = o.clamp(-clamp, clamp) if clamp else o
        return o if skip is None else o + upfirdn2d(skip, sd[f"{name}.upsample.kernel"], up=2, pad=(2, 1))

    x = sd["input.input"].repeat(ws.shape[0], 1, 1, 1)
    x = styled("conv1", x, ws[:, 0], noises[0])
    skip = to_rgb("to_rgb1", x, ws[:, 1], None)
    k = 0
    while f"to_rgbs.{k}.bias" in sd:
        x = styled(f"convs.{2 * k}", x, ws[:, 2 * k + 1], noises[2 * k + 1], up=True)
        x = styled(f"convs.{2 * k + 1}", x, ws[:, 2 * k + 2], noises[2 * k + 2])
        skip = to_rgb(f"to_rgbs.{k}", x, ws[:, 2 * k + 3], skip)
        k += 1
    return skip


def test_reference_math_matches_golden(golden):
    """The test's own reference is right (so the conv_clamp comparison below means something)."""
    gen, t, _ = golden
    sd = gen.state_dict()
    noises = [sd[f"noises.noise_{i}"] for i in range(gen.arch.num_layers)]
    assert max_err(reference_synthesis(sd, t["case.wplus.input"], noises), t["case.wplus.image"]) < 1e-4


def test_conv_clamp_matches_reference(golden):
    gen, t, _ = golden
    sd = gen.state_dict()
    noises = [sd[f"noises.noise_{i}"] for i in range(gen.arch.num_layers)]
    ws = t["case.wplus.input"]
    try:
        gen.set_conv_clamp(0.5)
        clamped = gen.synthesize(ws)
        assert max_err(clamped, reference_synthesis(sd, ws, noises, clamp=0.5)) < 1e-4
        assert max_err(clamped, t["case.wplus.image"]) > 0.1  # the clamp is active at 0.5
    finally:
        gen.set_conv_clamp(None)


def test_noise_modes(golden):
    gen, t, _ = golden
    ws = t["case.wplus.input"]
    const = gen.synthesize(ws, noise="const")
    assert torch.equal(const, gen.synthesize(ws))
    assert max_err(gen.synthesize(ws, noise="none"), const) > 1e-3
    torch.manual_seed(1)
    r1 = gen.synthesize(ws, noise="random")
    assert max_err(r1, gen.synthesize(ws, noise="random")) > 1e-3
    with pytest.raises(essence.EssenceError, match="noise must be"):
        gen.synthesize(ws, noise="fixed")


def test_wrong_latent_shape_is_a_clear_error(golden):
    gen, t, _ = golden
    with pytest.raises(essence.EssenceError, match=r"\(n, 10, 64\)"):
        gen.synthesize(t["case.z"])


def test_gradient_reaches_ws_not_weights(golden):
    gen, t, _ = golden
    ws = t["case.wplus.input"].clone().requires_grad_(True)
    gen.synthesize(ws).square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in gen.parameters())
    assert not gen.training


def test_gradient_matches_reference(golden):
    gen, t, _ = golden
    sd = gen.state_dict()
    noises = [sd[f"noises.noise_{i}"] for i in range(gen.arch.num_layers)]
    ws = t["case.wplus.input"][:1].clone().requires_grad_(True)
    gen.synthesize(ws).square().mean().backward()
    ours = ws.grad.clone()
    ws.grad = None
    reference_synthesis(sd, ws, noises).square().mean().backward()
    assert max_err(ours, ws.grad) < 1e-4 * max(1.0, ws.grad.abs().max().item())


# -- resampling ops ---------------------------------------------------------------------------------------
def test_resampling_filters_and_padding():
    x = torch.randn(2, 3, 5, 5)
    up = Upsample()
    assert up.kernel.sum().item() == pytest.approx(4.0)
    assert torch.allclose(up(x), upfirdn2d(x, up.kernel, up=2, pad=(2, 1)), atol=1e-6)
    assert up(x).shape[-1] == 10
    blur = Blur()
    y = torch.randn(2, 3, 11, 11)  # a transposed-conv output: 2H + 1
    assert torch.allclose(blur(y), upfirdn2d(y, blur.kernel, pad=(1, 1)), atol=1e-6)
    assert blur(y).shape[-1] == 10
    assert torch.allclose(make_kernel(), torch.tensor([1.0, 3, 3, 1])[:, None] * torch.tensor([1.0, 3, 3, 1]) / 16)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("noise_batch", [None, 1, 2])
def test_epilogue_gradients(layout, noise_batch):
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=gen).contiguous(memory_format=layout)
    noise = None if noise_batch is None else torch.randn(noise_batch, 1, 4, 5, dtype=torch.float64, generator=gen)
    a, b = (torch.randn(2, 3, dtype=torch.float64, generator=gen) for _ in range(2))
    inputs = (h.requires_grad_(True), a.requires_grad_(True), b.requires_grad_(True))

    def fn(h, a, b):
        return NoiseBiasLeakyReLU.apply(h.clone(), noise, a, b)

    assert torch.autograd.gradcheck(fn, inputs)
    plain = F.leaky_relu(h + (0 if noise is None else noise * a[:, :, None, None]) + b[:, :, None, None], 0.2)
    assert torch.allclose(fn(*inputs), plain)



@pytest.mark.parametrize("length", [20, 3072, 4096, 5000])
def test_row_products_in_chunks_equal_the_batched_matmul(length):
    gen = torch.Generator().manual_seed(1)
    rows = torch.randn(2, 3, length, dtype=torch.float64, generator=gen)
    flat = torch.randn(2, length, 5, dtype=torch.float64, generator=gen)
    assert torch.allclose(row_products(rows, flat), torch.bmm(rows, flat))
    assert torch.allclose(row_products(rows[:, :1], flat), torch.bmm(rows[:, :1], flat))


@pytest.mark.parametrize("noise_batch", [None, 1])
def test_epilogue_and_torgb_gradients_where_the_sums_are_chunked(noise_batch):
    """At 64x64 the backward's sums over pixels run in chunks: the same gradients as plain autograd."""
    gen = torch.Generator().manual_seed(2)
    h = torch.randn(2, 8, 64, 64, dtype=torch.float64, generator=gen).contiguous(memory_format=torch.channels_last)
    noise = None if noise_batch is None else torch.randn(1, 1, 64, 64, dtype=torch.float64, generator=gen)
    a, b = (torch.randn(2, 8, dtype=torch.float64, generator=gen).requires_grad_(True) for _ in range(2))
    up = torch.randn(2, 8, 64, 64, dtype=torch.float64, generator=gen)
    out = NoiseBiasLeakyReLU.apply(h.clone(), noise, a, b)
    used = (b,) if noise is None else (a, b)
    ours = torch.autograd.grad((out * up).sum(), used)
    plain = F.leaky_relu(h + (0 if noise is None else noise * a[:, :, None, None]) + b[:, :, None, None], 0.2)
    want = torch.autograd.grad((plain * up).sum(), used)
    assert all(torch.allclose(o, w) for o, w in zip(ours, want))

    x = torch.randn(2, 4096, 8, dtype=torch.float64, generator=gen).requires_grad_(True)
    weight = torch.randn(2, 3, 8, dtype=torch.float64, generator=gen).requires_grad_(True)
    grad = torch.randn(2, 4096, 3, dtype=torch.float64, generator=gen)
    ours = torch.autograd.grad((RGBProject.apply(x, weight) * grad).sum(), (x, weight))
    want = torch.autograd.grad((torch.bmm(x, weight.transpose(1, 2)) * grad).sum(), (x, weight))
    assert all(torch.allclose(o, w) for o, w in zip(ours, want))
    small = (torch.randn(1, 20, 4, dtype=torch.float64), torch.randn(1, 3, 4, dtype=torch.float64))
    assert torch.autograd.gradcheck(RGBProject.apply, tuple(t.requires_grad_(True) for t in small))

# -- presets and registrations ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["stylegan2", "stylegan2-ffhq", "stylegan2-church"])
def test_contract(name):
    gen = check_component(essence.get_registry().get("generator", name))
    assert gen.weights_id == "random"


@pytest.mark.parametrize(
    ("preset", "manifest"),
    [("stylegan2-ffhq", "stylegan2-ffhq-config-f"), ("stylegan2-church", "stylegan2-church-config-f")],
)
def test_full_size_presets_match_the_manifest(preset, manifest):
    facts = MANIFEST[manifest]
    gen = essence.get_generator(preset, weights="random", device="cpu")
    assert (gen.resolution, gen.num_ws, gen.w_dim) == (facts["size"], facts["n_latent"], facts["style_dim"])
    state = gen.state_dict()
    assert list(state) == list(facts["state_dict"])
    assert {k: list(v.shape) for k, v in state.items()} == facts["state_dict"]
    assert sum(p.numel() for p in gen.parameters()) == facts["parameters"]
    zeros = {k: torch.zeros(s) for k, s in facts["state_dict"].items()}
    gen.load_state_dict(zeros, strict=True)
    assert gen.arch.channels == default_channels(facts["size"], facts["channel_multiplier"])


def test_random_weights_are_seeded():
    a = essence.get_generator("stylegan2", weights="random", size=16, style_dim=16, channels={4: 16, 8: 8, 16: 8})
    b = essence.get_generator("stylegan2", weights="random", size=16, style_dim=16, channels={4: 16, 8: 8, 16: 8})
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.equal(a.mean_w, b.mean_w)


def test_mean_w_without_tracked_average_is_mean_of_4096_mapped_samples():
    gen = StyleGAN2Generator(TINY_ARCH)
    z = torch.randn(4096, 16, generator=torch.Generator().manual_seed(4096))
    assert torch.allclose(gen.mean_w, gen.mapping(z).mean(0, keepdim=True), atol=1e-6)
    assert gen.mean_w.shape == (1, 16)


def test_config_errors():
    with pytest.raises(essence.ConfigError, match="power of two"):
        essence.get_generator("stylegan2", weights="random", size=48)
    with pytest.raises(essence.ConfigError, match="no entry for resolution"):
        essence.get_generator("stylegan2", weights="random", size=16, channels={4: 8, 8: 8})
    with pytest.raises(essence.ConfigError, match="explicit size"):
        essence.get_generator("stylegan2", weights="random")
    with pytest.raises(essence.ConfigError, match="style_dim"):
        essence.get_generator("stylegan2", weights="random", size=8, style_dim=0)
    with pytest.raises(essence.ConfigError, match="Unknown device .gpu-please."):
        essence.get_generator("stylegan2", weights="random", size=8, device="gpu-please")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_is_a_clear_error():
    with pytest.raises(essence.EssenceError, match="no CUDA GPU"):
        essence.get_generator("stylegan2", weights="random", size=8, device="cuda")


def test_bfloat16_autocast_runs_and_stays_close():
    arch = {"weights": "random", "size": 16, "style_dim": 16, "channels": {4: 16, 8: 8, 16: 8}, "device": "cpu"}
    full = essence.get_generator("stylegan2", **arch)
    half = essence.get_generator("stylegan2", dtype="bfloat16", **arch)
    ws = full.sample_ws(2, seed=3)
    a, b = full.synthesize(ws), half.synthesize(ws)
    assert b.dtype == torch.float32
    assert max_err(a, b) < 0.1 * a.abs().max().item()


def test_expected_shapes_equal_manifest_for_config_f():
    for facts in MANIFEST.values():
        arch = Architecture(size=facts["size"], channels=default_channels(facts["size"], facts["channel_multiplier"]))
        assert {k: list(s) for k, s in expected_shapes(arch).items()} == facts["state_dict"]


def test_new_weights_invalidate_the_prepared_weight_cache():
    first = StyleGAN2Generator(TINY_ARCH).requires_grad_(False)
    torch.manual_seed(5)
    second = StyleGAN2Generator(TINY_ARCH).requires_grad_(False)
    ws = first.sample_ws(1, seed=0)
    before = first.synthesize(ws)  # fills the cache
    first.load_state_dict(second.state_dict())
    assert torch.equal(first.synthesize(ws), second.synthesize(ws))
    with torch.no_grad():
        first.convs[0].conv.weight.add_(torch.randn_like(first.convs[0].conv.weight))  # not a scale: demod undoes those
    assert not torch.equal(first.synthesize(ws), second.synthesize(ws))
    assert not torch.equal(before, second.synthesize(ws))


def test_trainable_weights_get_gradients():
    gen = StyleGAN2Generator(TINY_ARCH).requires_grad_(True)
    gen.synthesize(gen.sample_ws(2, seed=0)).square().mean().backward()
    assert gen.convs[0].conv.weight.grad is not None and gen.convs[0].conv.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_compiled_synthesis_matches_eager():
    kw = {"weights": "random", "size": 16, "style_dim": 16, "channels": {4: 16, 8: 8, 16: 8}, "device": "cpu"}
    eager, compiled = essence.get_generator("stylegan2", **kw), essence.get_generator("stylegan2", compile=True, **kw)
    ws = eager.sample_ws(2, seed=0).requires_grad_(True)
    out = compiled.synthesize(ws)
    assert max_err(out, eager.synthesize(ws)) < 1e-4
    out.sum().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all()


def test_inference_leaves_weights_and_buffers_untouched(golden):
    gen, t, _ = golden
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    with torch.no_grad():
        first = gen.synthesize(t["case.wplus.input"])
    with torch.inference_mode():
        second = gen.synthesize(t["case.wplus.input"])
    assert torch.equal(first, second)
    assert all(torch.equal(v, before[k]) for k, v in gen.state_dict().items())
