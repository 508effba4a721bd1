"""StyleGAN2 checkpoint readers: synthetic NVIDIA TF and ada pickles built here, rosinality .pt files,
our safetensors layout, refusal of anything that would run code, and clear errors for bad files."""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
import types

import numpy as np
import pytest
import torch
from safetensors import safe_open

import essence
from essence.weights.assets import get_assets, get_converters
from essence.plugins.generators.stylegan2.checkpoints import convert, read_checkpoint, sniff
from essence.plugins.generators.stylegan2.config import Architecture
from essence.plugins.generators.stylegan2.model import StyleGAN2Generator

ARCH = Architecture(size=16, style_dim=8, n_mlp=2, channels={4: 8, 8: 6, 16: 4})
BLOCKS = [8, 16]  # resolutions after 4x4
RNG = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def random_state(arch: Architecture = ARCH, seed: int = 0) -> dict[str, torch.Tensor]:
    """A generator state dict with every bias and noise strength non-zero (so misplacements show)."""
    torch.manual_seed(seed)
    gen = StyleGAN2Generator(arch)
    return {k: (v + torch.randn_like(v) if v.dim() <= 1 else v).clone() for k, v in gen.state_dict().items()}


def build_generator_from(path, **config):
    return essence.get_generator("stylegan2", weights=str(path), device="cpu", **config)


@pytest.fixture
def fake_module(monkeypatch):
    """Registers stand-in modules so the test can *write* pickles naming NVIDIA's globals."""

    def make(name: str, **attrs):
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            if sub not in sys.modules:
                monkeypatch.setitem(sys.modules, sub, types.ModuleType(sub))
        for attr, obj in attrs.items():
            obj.__module__ = name
            obj.__qualname__ = attr
            setattr(sys.modules[name], attr, obj)
        return sys.modules[name]

    return make


def marker_source(marker) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('executed')\n"


# -- NVIDIA TensorFlow pickles ----------------------------------------------------------------------------
def tf_variables() -> dict[str, np.ndarray]:
    """Random TF ``Gs`` variables of ARCH, named and shaped as in spec section 3.3."""
    c, sd = ARCH.channels, ARCH.style_dim
    v = {"dlatent_avg": rand(sd), "lod": np.float32(0.0) * rand(1).reshape(())}
    for i in range(ARCH.n_mlp):
        v[f"mapping/Dense{i}/weight"], v[f"mapping/Dense{i}/bias"] = rand(sd, sd), rand(sd)
    v["synthesis/4x4/Const/const"] = rand(1, c[4], 4, 4)

    def conv(scope, cin, cout, k=3, noise=True):
        v[f"{scope}/weight"], v[f"{scope}/mod_weight"] = rand(k, k, cin, cout), rand(sd, cin)
        v[f"{scope}/mod_bias"] = rand(cin)
        v[f"{scope}/bias"] = rand(cout)
        if noise:
            v[f"{scope}/noise_strength"] = rand(1).reshape(())

    conv("synthesis/4x4/Conv", c[4], c[4])
    conv("synthesis/4x4/ToRGB", c[4], 3, k=1, noise=False)
    for r in BLOCKS:
        conv(f"synthesis/{r}x{r}/Conv0_up", c[r // 2], c[r])
        conv(f"synthesis/{r}x{r}/Conv1", c[r], c[r])
        conv(f"synthesis/{r}x{r}/ToRGB", c[r], 3, k=1, noise=False)
    for i in range(ARCH.num_layers):
        side = 2 ** ((i + 5) // 2)
        v[f"synthesis/noise{i}"] = rand(1, 1, side, side)
    return v


def expected_from_tf(v: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Spec 3.4, stated independently of the converter."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    out = {}
    for i in range(ARCH.n_mlp):
        out[f"style.{i + 1}.weight"] = t(v[f"mapping/Dense{i}/weight"]).T
        out[f"style.{i + 1}.bias"] = t(v[f"mapping/Dense{i}/bias"])
    out["input.input"] = t(v["synthesis/4x4/Const/const"])

    def conv(scope, ours, flip=False, rgb=False):
        w = t(v[f"{scope}/weight"]).permute(3, 2, 0, 1)[None]
        out[f"{ours}.conv.weight"] = w.flip(3, 4) if flip else w
        out[f"{ours}.conv.modulation.weight"] = t(v[f"{scope}/mod_weight"]).T
        out[f"{ours}.conv.modulation.bias"] = t(v[f"{scope}/mod_bias"]) + 1
        if rgb:
            out[f"{ours}.bias"] = t(v[f"{scope}/bias"]).reshape(1, 3, 1, 1)
        else:
            out[f"{ours}.noise.weight"] = t(v[f"{scope}/noise_strength"]).reshape(1)
            out[f"{ours}.activate.bias"] = t(v[f"{scope}/bias"])

    conv("synthesis/4x4/Conv", "conv1")
    conv("synthesis/4x4/ToRGB", "to_rgb1", rgb=True)
    for k, r in enumerate(BLOCKS):
        conv(f"synthesis/{r}x{r}/Conv0_up", f"convs.{2 * k}", flip=True)
        conv(f"synthesis/{r}x{r}/Conv1", f"convs.{2 * k + 1}")
        conv(f"synthesis/{r}x{r}/ToRGB", f"to_rgbs.{k}", rgb=True)
    for i in range(ARCH.num_layers):
        out[f"noises.noise_{i}"] = t(v[f"synthesis/noise{i}"])
    return out


@pytest.fixture
def tf_network_class(fake_module):
    class Network:
        def __init__(self, state):
            self._state = state

        def __getstate__(self):
            return self._state

    fake_module("dnnlib.tflib.network", Network=Network)
    return Network


def write_tf_pickle(path, Network, variables, module_src="", extra=None):
    mapping = {k[len("mapping/") :]: a for k, a in variables.items() if k.startswith("mapping/")}
    synthesis = {k[len("synthesis/") :]: a for k, a in variables.items() if k.startswith("synthesis/")}
    own = {k: a for k, a in variables.items() if "/" not in k}

    def net(name, own_vars, components=None):
        return Network(
            {
                "version": 4,
                "name": name,
                "static_kwargs": {"resolution": ARCH.size, **(extra or {})},
                "components": components or {},
                "build_module_src": module_src,
                "build_func_name": f"G_{name}",
                "variables": list(own_vars.items()),
            }
        )

    gs = net("Gs", own, {"mapping": net("G_mapping", mapping), "synthesis": net("G_synthesis", synthesis)})
    d = net("D", {"Output/weight": rand(4, 1)})
    with open(path, "wb") as f:
        pickle.dump((gs, d, gs), f, protocol=4)


def test_tf_pickle_converts_exactly(tmp_path, tf_network_class):
    marker = tmp_path / "marker"
    variables = tf_variables()
    src, dst = tmp_path / "stylegan2-tiny-config-f.pkl", tmp_path / "out.safetensors"
    write_tf_pickle(src, tf_network_class, variables, module_src=marker_source(marker))
    assert sniff(src) == "stylegan2-tf-pkl"
    info = convert(src, dst)
    assert not marker.exists(), "the network source embedded in the pickle was executed"

    ckpt = read_checkpoint(dst)
    expected = expected_from_tf(variables)
    for key, value in expected.items():
        assert torch.equal(ckpt.state_dict[key], value), key
    assert torch.equal(ckpt.latent_avg, torch.from_numpy(variables["dlatent_avg"]))
    # The two rules that are easy to get wrong, checked element by element.
    tf_up = variables["synthesis/8x8/Conv0_up/weight"]  # [kh, kw, in, out]
    assert ckpt.state_dict["convs.0.conv.weight"][0, 5, 3, 2, 0].item() == tf_up[0, 2, 3, 5]
    tf_plain = variables["synthesis/8x8/Conv1/weight"]
    assert ckpt.state_dict["convs.1.conv.weight"][0, 5, 3, 2, 0].item() == tf_plain[2, 0, 3, 5]
    assert ckpt.state_dict["to_rgb1.conv.modulation.bias"][1].item() == variables["synthesis/4x4/ToRGB/mod_bias"][1] + 1

    assert info == {
        "format": "stylegan2-tf-pkl",
        "resolution": 16,
        "num_ws": 6,
        "style_dim": 8,
        "n_mlp": 2,
        "channels": {4: 8, 8: 6, 16: 4},
        "parameters": sum(p.numel() for p in StyleGAN2Generator(ARCH).parameters()),
        "latent_avg": True,
        "conv_clamp": None,
    }
    with safe_open(str(dst), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "essence-stylegan2" and meta["source_format"] == "stylegan2-tf-pkl"
    assert meta["latent_avg"] == "true" and meta["size"] == "16"


def test_tf_pickle_loads_directly_and_uses_dlatent_avg(tmp_path, tf_network_class):
    variables = tf_variables()
    src = tmp_path / "g.pkl"
    write_tf_pickle(src, tf_network_class, variables)
    gen = build_generator_from(src)
    assert (gen.resolution, gen.num_ws, gen.arch.channels) == (16, 6, ARCH.channels)
    assert torch.equal(gen.mean_w, torch.from_numpy(variables["dlatent_avg"])[None])
    assert re.fullmatch(r"[0-9a-f]{16}", gen.weights_id)
    converted = tmp_path / "g.safetensors"
    convert(src, converted)
    ws = gen.sample_ws(2, seed=1, truncation=0.5)
    assert torch.equal(gen.synthesize(ws), build_generator_from(converted).synthesize(ws))


def test_tf_pickle_of_another_architecture_is_refused(tmp_path, tf_network_class):
    variables = tf_variables()
    variables["synthesis/16x16/Skip/weight"] = rand(1, 1, 6, 4)
    src = tmp_path / "resnet.pkl"
    write_tf_pickle(src, tf_network_class, variables)
    with pytest.raises(essence.WeightsError, match="different architecture") as err:
        read_checkpoint(src)
    assert str(src) in str(err.value)


# -- stylegan2-ada-pytorch / stylegan3 pickles -----------------------------------------------------------
class EasyDict(dict):
    pass


def ada_record_tree(fake_module, module_src: str, conv_clamp=None):
    """(G_ema record, the flat tensors it holds) written with ada's persistence format."""
    from collections import OrderedDict

    def reconstruct(meta):  # only its name is pickled; the loader under test supplies its own
        raise AssertionError

    fake_module("torch_utils.persistence", _reconstruct_persistent_obj=reconstruct)
    fake_module("dnnlib.util", EasyDict=EasyDict)
    c, sd = ARCH.channels, ARCH.style_dim
    flat: dict[str, torch.Tensor] = {}
    filt = torch.tensor([1.0, 3, 3, 1])
    filt = (filt[:, None] * filt[None, :]) / 64

    class Rec:
        def __init__(self, path, class_name, params=None, buffers=None, modules=None, **attrs):
            self.class_name = class_name
            params = (params or {}).items()
            self.params = OrderedDict((k, torch.nn.Parameter(v, requires_grad=False)) for k, v in params)
            self.buffers = OrderedDict(buffers or {})
            self.modules = OrderedDict(modules or {})
            self.attrs = attrs
            for k, v in [*self.params.items(), *self.buffers.items()]:
                flat[f"{path}{k}"] = v.detach()

        def __reduce__(self):
            state = {
                "training": False,
                "_parameters": self.params,
                "_buffers": self.buffers,
                "_non_persistent_buffers_set": set(),
                "_modules": self.modules,
                "_forward_hooks": OrderedDict(),
                "_init_args": (),
                "_init_kwargs": EasyDict(z_dim=sd, w_dim=sd, mapping_kwargs=EasyDict(num_layers=ARCH.n_mlp)),
                **self.attrs,
            }
            meta = {"type": "class", "version": 6, "module_src": module_src, "class_name": self.class_name}
            meta["state"] = state
            return (reconstruct, (meta,))

    t = lambda *s: torch.from_numpy(rand(*s))  # noqa: E731

    def fc(path, cin, cout):
        params = {"weight": t(cout, cin), "bias": t(cout)}
        return Rec(path, "FullyConnectedLayer", params, weight_gain=np.float64(cin**-0.5))

    def layer(path, cin, cout, res, up):
        return Rec(
            path,
            "SynthesisLayer",
            {"weight": t(cout, cin, 3, 3), "noise_strength": t(1).reshape(()), "bias": t(cout)},
            {"resample_filter": filt.clone(), "noise_const": t(res, res)},
            {"affine": fc(f"{path}affine.", sd, cin)},
            up=up,
            conv_clamp=conv_clamp,
            activation="lrelu",
        )

    def torgb(path, cin):
        return Rec(
            path, "ToRGBLayer", {"weight": t(3, cin, 1, 1), "bias": t(3)}, None,
            {"affine": fc(f"{path}affine.", sd, cin)}, conv_clamp=conv_clamp,
        )

    blocks = {
        "b4": Rec(
            "synthesis.b4.", "SynthesisBlock", {"const": t(c[4], 4, 4)}, {"resample_filter": filt.clone()},
            {"conv1": layer("synthesis.b4.conv1.", c[4], c[4], 4, 1), "torgb": torgb("synthesis.b4.torgb.", c[4])},
            architecture="skip", img_channels=3, use_fp16=False,
        )
    }
    for r in BLOCKS:
        p = f"synthesis.b{r}."
        blocks[f"b{r}"] = Rec(
            p, "SynthesisBlock", None, {"resample_filter": filt.clone()},
            {
                "conv0": layer(f"{p}conv0.", c[r // 2], c[r], r, 2),
                "conv1": layer(f"{p}conv1.", c[r], c[r], r, 1),
                "torgb": torgb(f"{p}torgb.", c[r]),
            },
            architecture="skip", img_channels=3, use_fp16=False,
        )
    synthesis = Rec("synthesis.", "SynthesisNetwork", None, None, blocks, img_resolution=ARCH.size)
    mapping = Rec(
        "mapping.", "MappingNetwork", None, {"w_avg": t(sd)},
        {f"fc{i}": fc(f"mapping.fc{i}.", sd, sd) for i in range(ARCH.n_mlp)},
    )
    g_ema = Rec("", "Generator", None, None, {"synthesis": synthesis, "mapping": mapping})
    return g_ema, flat, Rec


def expected_from_ada(flat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Spec 4.3, stated independently of the converter: no flip, +1 already in the affine biases."""
    out = {}
    for i in range(ARCH.n_mlp):
        out[f"style.{i + 1}.weight"] = flat[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = flat[f"mapping.fc{i}.bias"]
    out["input.input"] = flat["synthesis.b4.const"][None]

    def layer(a, ours):
        out[f"{ours}.conv.weight"] = flat[f"{a}.weight"][None]
        out[f"{ours}.conv.modulation.weight"] = flat[f"{a}.affine.weight"]
        out[f"{ours}.conv.modulation.bias"] = flat[f"{a}.affine.bias"]
        out[f"{ours}.noise.weight"] = flat[f"{a}.noise_strength"].reshape(1)
        out[f"{ours}.activate.bias"] = flat[f"{a}.bias"]

    def rgb(a, ours):
        out[f"{ours}.conv.weight"] = flat[f"{a}.weight"][None]
        out[f"{ours}.conv.modulation.weight"] = flat[f"{a}.affine.weight"]
        out[f"{ours}.conv.modulation.bias"] = flat[f"{a}.affine.bias"]
        out[f"{ours}.bias"] = flat[f"{a}.bias"].reshape(1, 3, 1, 1)

    layer("synthesis.b4.conv1", "conv1")
    rgb("synthesis.b4.torgb", "to_rgb1")
    out["noises.noise_0"] = flat["synthesis.b4.conv1.noise_const"][None, None]
    for k, r in enumerate(BLOCKS):
        layer(f"synthesis.b{r}.conv0", f"convs.{2 * k}")
        layer(f"synthesis.b{r}.conv1", f"convs.{2 * k + 1}")
        rgb(f"synthesis.b{r}.torgb", f"to_rgbs.{k}")
        out[f"noises.noise_{2 * k + 1}"] = flat[f"synthesis.b{r}.conv0.noise_const"][None, None]
        out[f"noises.noise_{2 * k + 2}"] = flat[f"synthesis.b{r}.conv1.noise_const"][None, None]
    return out


def write_ada_pickle(path, g_ema, protocol, extra=None):
    with open(path, "wb") as f:
        data = {"G": g_ema, "D": None, "G_ema": g_ema, "augment_pipe": None, "training_set_kwargs": EasyDict()}
        pickle.dump({**data, **(extra or {})}, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [3, 4])  # ada wrote protocol 3 (Python 3.7); newer tools write 4+
def test_ada_pickle_converts_exactly_without_running_its_source(tmp_path, fake_module, protocol):
    marker = tmp_path / "marker"
    g_ema, flat, _ = ada_record_tree(fake_module, marker_source(marker))
    src, dst = tmp_path / "network-snapshot.pkl", tmp_path / "out.safetensors"
    write_ada_pickle(src, g_ema, protocol)
    assert sniff(src) == "stylegan2-ada-pkl"
    info = convert(src, dst)
    assert not marker.exists(), "module_src embedded in the pickle was executed"
    ckpt = read_checkpoint(dst)
    for key, value in expected_from_ada(flat).items():
        assert torch.equal(ckpt.state_dict[key], value), key
    assert torch.equal(ckpt.latent_avg, flat["mapping.w_avg"])
    assert info["format"] == "stylegan2-ada-pkl" and info["conv_clamp"] is None and info["resolution"] == 16


def test_ada_conv_clamp_is_honoured(tmp_path, fake_module):
    g_ema, _, _ = ada_record_tree(fake_module, "", conv_clamp=256)
    src = tmp_path / "ada-clamped.pkl"
    write_ada_pickle(src, g_ema, 4)
    gen = build_generator_from(src)
    assert gen.arch.conv_clamp == 256
    assert gen.conv1.conv_clamp == 256 and gen.to_rgbs[-1].conv_clamp == 256
    dst = tmp_path / "clamped.safetensors"
    assert convert(src, dst)["conv_clamp"] == 256
    assert build_generator_from(dst).convs[0].conv_clamp == 256


def test_stylegan3_generator_is_refused_clearly(tmp_path, fake_module):
    _, _, Rec = ada_record_tree(fake_module, "")
    sg3_input = Rec("synthesis.input.", "SynthesisInput", {"freqs": torch.zeros(4, 2)})
    synthesis = Rec("synthesis.", "SynthesisNetwork", None, None, {"input": sg3_input})
    sg3 = Rec("", "Generator", None, None, {"synthesis": synthesis})
    src = tmp_path / "stylegan3-t.pkl"
    write_ada_pickle(src, sg3, 4)
    with pytest.raises(essence.WeightsError, match="StyleGAN3"):
        read_checkpoint(src)


# -- pickles that try to run code -----------------------------------------------------------------------
class Evil:
    def __init__(self, call, arg):
        self.call, self.arg = call, arg

    def __reduce__(self):
        return (self.call, (self.arg,))


@pytest.mark.parametrize("fmt", ["tf", "ada"])
@pytest.mark.parametrize("attack", ["os.system", "builtins.exec"])
def test_pickle_calling_anything_else_is_refused_and_never_runs(tmp_path, fake_module, tf_network_class, fmt, attack):
    marker = tmp_path / "pwned"
    evil = (
        Evil(os.system, f"touch {marker}")
        if attack == "os.system"
        else Evil(exec, f"open({str(marker)!r}, 'w').write('x')")
    )
    src = tmp_path / f"evil-{fmt}.pkl"
    if fmt == "tf":
        write_tf_pickle(src, tf_network_class, tf_variables(), extra={"payload": evil})
    else:
        g_ema, _, _ = ada_record_tree(fake_module, "")
        write_ada_pickle(src, g_ema, 4, extra={"payload": evil})
    assert get_converters()["stylegan2"].detect(src)  # looks like a checkpoint by its first bytes...
    refused = r"Refusing to load .*((posix|os|nt)\.system|builtins\.exec)"
    with pytest.raises(essence.WeightsError, match=refused) as err:
        convert(src, tmp_path / "out.safetensors")  # ...but is refused when read
    assert "Nothing from the file was executed" in str(err.value)
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_torch_file_with_objects_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pt"
    torch.save({"g_ema": random_state(), "payload": Evil(os.system, f"touch {marker}")}, src)
    with pytest.raises(essence.WeightsError, match="Refusing to load .*Nothing from the file was executed"):
        build_generator_from(src)
    assert not marker.exists()


# -- rosinality .pt and our safetensors ---------------------------------------------------------------------
def test_rosinality_training_snapshot_ignores_extra_keys(tmp_path):
    g_ema = random_state()
    src = tmp_path / "100000.pt"
    generator = StyleGAN2Generator(ARCH)
    optim = torch.optim.Adam(generator.parameters())
    torch.save(
        {
            "g": random_state(seed=1),
            "d": {"convs.0.0.weight": torch.randn(3, 3)},
            "g_ema": g_ema,
            "g_optim": optim.state_dict(),
            "args": argparse.Namespace(size=16, channel_multiplier=2),
            "ada_aug_p": 0.25,
            "latent_avg": torch.randn(8),
        },
        src,
    )
    assert sniff(src) == "rosinality-pt"
    gen = build_generator_from(src)
    assert all(torch.equal(gen.state_dict()[k], v) for k, v in g_ema.items())
    assert gen.weights_id != "random"


def test_converted_file_alone_builds_the_generator(tmp_path):
    state = random_state(Architecture(size=32, style_dim=8, n_mlp=3, channels={4: 8, 8: 8, 16: 4, 32: 4}))
    src, dst = tmp_path / "g.pt", tmp_path / "g.safetensors"
    torch.save({"g_ema": state}, src)
    assert convert(src, dst)["latent_avg"] is False
    gen = build_generator_from(dst)
    assert (gen.resolution, gen.num_ws, gen.arch.n_mlp) == (32, 8, 3)
    with safe_open(str(dst), "pt") as f:
        assert set(f.keys()) == set(state)
    direct = build_generator_from(src)
    ws = direct.sample_ws(1, seed=0)
    assert torch.equal(direct.synthesize(ws), gen.synthesize(ws))


def test_plain_state_dict_safetensors_with_g_ema_prefix_is_read(tmp_path):
    from safetensors.torch import save_file

    state = random_state()
    src = tmp_path / "rosinality.safetensors"
    save_file({f"g_ema.{k}": v.contiguous() for k, v in state.items() if not k.endswith("kernel")}, str(src))
    assert get_converters()["stylegan2"].detect(src)
    gen = build_generator_from(src)
    assert torch.equal(gen.state_dict()["convs.3.conv.weight"], state["convs.3.conv.weight"])


def test_detect_rejects_other_files(tmp_path):
    from safetensors.torch import save_file

    detect = get_converters()["stylegan2"].detect
    other = tmp_path / "clip.safetensors"
    save_file({"visual.proj": torch.zeros(2, 2)}, str(other))
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    plain = tmp_path / "list.pkl"
    plain.write_bytes(pickle.dumps([1, 2, 3]))
    assert not any(detect(p) for p in (other, png, plain, tmp_path / "missing.pt"))
    with pytest.raises(essence.WeightsError, match="not a StyleGAN2 checkpoint"):
        read_checkpoint(plain)


# -- wrong and damaged files ---------------------------------------------------------------------------------
def test_checkpoint_of_the_wrong_size_names_file_and_expectation(tmp_path):
    big = Architecture(size=32, style_dim=8, n_mlp=2, channels={4: 8, 8: 6, 16: 4, 32: 4})
    src = tmp_path / "size32.pt"
    torch.save({"g_ema": random_state(big)}, src)
    with pytest.raises(essence.WeightsError) as err:
        essence.get_generator(
            "stylegan2-church", weights=str(src), size=16, style_dim=8, n_mlp=2, channels=ARCH.channels
        )
    msg = str(err.value)
    assert str(src) in msg and "32-px" in msg and "16-px" in msg and "'stylegan2-church'" in msg
    assert len(msg) < 600


def test_tensor_of_the_wrong_shape_is_reported_briefly(tmp_path):
    state = random_state()
    state["convs.1.conv.weight"] = torch.randn(1, 6, 5, 3, 3)
    for i in range(ARCH.n_mlp):
        state.pop(f"style.{i + 1}.bias")
    src = tmp_path / "bad.pt"
    torch.save({"g_ema": state}, src)
    with pytest.raises(essence.WeightsError) as err:
        build_generator_from(src)
    msg = str(err.value)
    assert str(src) in msg and "16-px StyleGAN2" in msg
    assert "2 missing tensor(s)" in msg and "wrong shape" in msg and "[1, 6, 5, 3, 3]" in msg
    assert len(msg) < 600


@pytest.mark.parametrize("kind", ["safetensors", "pt", "tf-pkl", "ada-pkl"])
def test_truncated_file_gives_a_clear_error(tmp_path, fake_module, tf_network_class, kind):
    src = tmp_path / f"full.{kind}"
    if kind == "safetensors":
        torch.save({"g_ema": random_state()}, tmp_path / "g.pt")
        convert(tmp_path / "g.pt", src)
    elif kind == "pt":
        torch.save({"g_ema": random_state()}, src)
    elif kind == "tf-pkl":
        write_tf_pickle(src, tf_network_class, tf_variables())
    else:
        write_ada_pickle(src, ada_record_tree(fake_module, "")[0], 4)
    cut = tmp_path / f"cut.{kind}"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(essence.WeightsError) as err:
        build_generator_from(cut)
    msg = str(err.value)
    assert str(cut) in msg and "truncated" in msg
    assert len(msg) < 600


# -- registered assets ----------------------------------------------------------------------------------------
def test_assets_are_registered_with_licence_and_converter():
    assets = get_assets()
    for name, filename in [
        ("stylegan2-ffhq", "stylegan2-ffhq-config-f.pkl"),
        ("stylegan2-church", "stylegan2-church-config-f.pkl"),
        ("stylegan2-ada-ffhq", "ffhq.pkl"),
    ]:
        asset = assets[name]
        assert asset.kind == "generator" and asset.filename == filename and asset.convert == "stylegan2"
        assert "NVIDIA Source Code License-NC" in asset.license and asset.license_url
        assert asset.urls and all(u.endswith(filename) for u in asset.urls)
        assert asset.sha256 is None and asset.size is None  # unknown: recorded on first download, never guessed
    assert len(assets["stylegan2-ffhq"].urls) == 2  # NVIDIA's CDN and the older mirror


def test_preset_without_weights_points_to_the_pull_command(essence_home, monkeypatch):
    monkeypatch.setenv("ESSENCE_OFFLINE", "1")  # uncached default weights would otherwise be downloaded
    with pytest.raises(essence.WeightsError, match="essence weights pull stylegan2-ffhq"):
        essence.get_generator("stylegan2-ffhq")
