"""StyleGAN2 checkpoint readers (rosinality .pt, NVIDIA TF .pkl, ada/SG3 .pkl) and our safetensors layout.

Every reader returns a :class:`Checkpoint`: the generator's tensors under rosinality's ``g_ema`` key
names, the architecture read from the tensors themselves, and NVIDIA's tracked average w when present.

Our safetensors layout ("essence-stylegan2", version 1):

* tensors: exactly the state dict of :class:`~.model.StyleGAN2Generator` (rosinality ``g_ema`` names:
  ``style.{1..n_mlp}.weight``, ``input.input``, ``conv1.conv.weight``, ``convs.{j}.conv.modulation.bias``,
  ``to_rgbs.{k}.upsample.kernel``, ``noises.noise_{i}``, ...; spec section 2.2), plus ``latent_avg``
  ``[style_dim]`` when the source carried NVIDIA's tracked average w;
* metadata: ``format``, ``format_version``, ``source_format``, ``latent_avg`` ("true"/"false"),
  ``size``, ``style_dim``, ``n_mlp``, ``channels`` (JSON {resolution: channels}), ``conv_clamp`` (JSON),
  so a generator can be built from the file alone.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence import WeightsError
from essence.core.files import check_zip_sizes
from essence.plugins.generators.stylegan2.config import Architecture

if TYPE_CHECKING:
    import torch

FORMAT = "essence-stylegan2"
FORMAT_VERSION = "1"

#: Source formats, as ``sniff`` names them, with the words used in messages.
FORMATS = {
    "safetensors": "safetensors StyleGAN2 state dict",
    "rosinality-pt": "rosinality StyleGAN2 checkpoint (.pt)",
    "stylegan2-tf-pkl": "NVIDIA StyleGAN2 TensorFlow pickle",
    "stylegan2-ada-pkl": "NVIDIA stylegan2-ada-pytorch / stylegan3 pickle",
}
_TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_HEAD = 1 << 16


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    arch: Architecture
    latent_avg: torch.Tensor | None
    source_format: str


# -- detection ---------------------------------------------------------------------------------------
def sniff(path: str | os.PathLike[str]) -> str | None:
    """The source format of ``path`` from its first bytes (nothing is unpickled), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
    except OSError:
        return None
    if len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 0:
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        check_zip_sizes(path)
        try:
            with zipfile.ZipFile(path) as z:
                pkl = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
                return "rosinality-pt" if pkl is not None and b"g_ema" in z.read(pkl) else None
        except (zipfile.BadZipFile, OSError, EOFError):
            return "rosinality-pt"  # a damaged torch.save zip: let the reader say so
    if head[:1] != b"\x80":
        return None
    if b"dnnlib.tflib.network" in head:
        return "stylegan2-tf-pkl"
    if b"torch_utils.persistence" in head:
        return "stylegan2-ada-pkl"
    if _TORCH_LEGACY_MAGIC in head[:32] and b"g_ema" in head:
        return "rosinality-pt"
    return None


def detect(path: str | os.PathLike[str]) -> bool:
    """Converter hook: can ``read_checkpoint`` read this file? Cheap, by content."""
    fmt = sniff(path)
    if fmt != "safetensors":
        return fmt is not None
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            keys = set(f.keys())
        return "style.1.weight" in keys or "g_ema.style.1.weight" in keys
    except Exception:
        return False


# -- reading -----------------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read any supported StyleGAN2 checkpoint into our key layout, never executing code from it."""
    path = Path(path)
    fmt = sniff(path)
    if fmt is None:
        raise WeightsError(
            f"{path} is not a StyleGAN2 checkpoint this plugin can read. Expected our safetensors, a "
            "rosinality .pt (with 'g_ema'), NVIDIA's TensorFlow .pkl or a stylegan2-ada/stylegan3 .pkl."
        )
    try:
        if fmt == "safetensors":
            ckpt = _read_safetensors(path)
        elif fmt == "rosinality-pt":
            ckpt = from_rosinality(_torch_load(path), "rosinality-pt", path)
        elif fmt == "stylegan2-tf-pkl":
            ckpt = _read_tf_pickle(path)
        else:
            ckpt = _read_ada_pickle(path)
    except WeightsError as exc:
        msg = str(exc)
        raise WeightsError(msg if str(path) in msg else f"{path}: {msg}") from None
    except Exception as exc:
        raise WeightsError(
            f"Could not read {path} as a {FORMATS[fmt]}: the file looks truncated or corrupt "
            f"({type(exc).__name__}: {str(exc)[:200]}). Download or convert it again."
        ) from None
    return complete(ckpt, path)


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``, also admitting the ``argparse.Namespace`` of rosinality's
    training snapshots (an attribute bag: building one runs no code)."""
    import argparse
    import pickle

    import torch

    allow = getattr(torch.serialization, "safe_globals", None)
    try:
        if allow is None:  # torch < 2.5: snapshots with ``args`` are refused below
            return torch.load(path, map_location="cpu", weights_only=True)
        with allow([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise
        detail = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), "")
        raise WeightsError(
            f"Refusing to load {path}: it holds objects other than tensors, which torch.load(weights_only=True) "
            f"will not build{f' ({detail})' if detail else ''}. Nothing from the file was executed."
        ) from None


def _read_safetensors(path: Path) -> Checkpoint:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    tensors = load_file(str(path))
    if meta.get("format") == FORMAT:
        if meta.get("format_version") != FORMAT_VERSION:
            raise WeightsError(f"format version {meta.get('format_version')!r} is newer than this essence reads.")
        latent_avg = tensors.pop("latent_avg", None)
        return Checkpoint(tensors, Architecture.from_metadata(meta), latent_avg, meta.get("source_format", "?"))
    if any(k.startswith("g_ema.") for k in tensors):
        nested: dict[str, Any] = {"g_ema": {k[6:]: v for k, v in tensors.items() if k.startswith("g_ema.")}}
        if "latent_avg" in tensors:
            nested["latent_avg"] = tensors["latent_avg"]
        return from_rosinality(nested, "safetensors", path)
    latent_avg = tensors.pop("latent_avg", None)
    return from_rosinality({"g_ema": tensors, "latent_avg": latent_avg}, "safetensors", path)


def from_rosinality(
    ckpt: Mapping[str, Any], source_format: str = "rosinality-pt", where: Any = "checkpoint"
) -> Checkpoint:
    """A rosinality checkpoint dict: ``g_ema`` (state dict) and optional ``latent_avg``; other keys
    (``g``, ``d``, optimiser states, ``args``) are ignored."""
    import torch

    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("g_ema"), Mapping):
        keys = ", ".join(sorted(map(str, ckpt))[:5]) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise WeightsError(f"{where} has no 'g_ema' state dict (found: {keys}); it is not a rosinality checkpoint.")
    state = {}
    for key, value in ckpt["g_ema"].items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{where}: g_ema[{key!r}] is not a tensor.")
        state[key] = value.detach().to(torch.float32)
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is not None:
        latent_avg = torch.as_tensor(latent_avg, dtype=torch.float32).reshape(-1)
    return Checkpoint(state, infer_architecture(state, where), latent_avg, source_format)


def infer_architecture(state: Mapping[str, torch.Tensor], where: Any = "checkpoint") -> Architecture:
    """Size, style_dim, mapping depth and channel table from the shapes of a rosinality state dict."""
    try:
        style_dim = int(state["style.1.weight"].shape[1])
        n_mlp = 0
        while f"style.{n_mlp + 1}.weight" in state:
            n_mlp += 1
        channels = {4: int(state["input.input"].shape[1])}
        k = 0
        while f"to_rgbs.{k}.conv.weight" in state:
            channels[2 ** (k + 3)] = int(state[f"convs.{2 * k}.conv.weight"].shape[1])
            k += 1
    except (KeyError, IndexError) as exc:
        raise WeightsError(f"{where} is not a StyleGAN2 generator state dict (no usable {exc.args[0]!r}).") from None
    return Architecture(size=2 ** (k + 2), style_dim=style_dim, n_mlp=n_mlp, channels=channels)


# -- NVIDIA TensorFlow pickles -----------------------------------------------------------------------
def _read_tf_pickle(path: Path) -> Checkpoint:
    from essence.plugins.generators.stylegan2.unpickle import TFNetworkStub, restricted_load, tf_globals

    obj = restricted_load(path, tf_globals())
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(o, TFNetworkStub) for o in obj)):
        raise WeightsError("expected the tuple (G, D, Gs) of TF networks that NVIDIA's training writes.")
    version = getattr(obj[2], "version", None)
    if not isinstance(version, int) or version < 4:
        raise WeightsError(f"TF network pickle version {version!r} is too old (StyleGAN2 pickles are version 4).")
    return from_tf_variables(obj[2].all_variables())


def from_tf_variables(variables: Mapping[str, Any]) -> Checkpoint:
    """NVIDIA's TF ``Gs`` variables (``mapping/Dense0/weight``, ``synthesis/64x64/Conv0_up/weight``, ...)
    -> our layout. TF stores conv kernels ``[kh, kw, in, out]`` and dense weights ``[in, out]``; its
    ``mod_bias`` lacks the +1 that torch bakes in; its up-sampling kernels are flipped (spec 3.4)."""
    import numpy as np
    import torch

    names = set(variables)
    if any("ToRGB_lod" in n for n in names):
        raise WeightsError("this is a progressive-growing StyleGAN2 (configs A-D); only configs E and F are supported.")
    used: set[str] = {"lod"}

    def take(name: str) -> np.ndarray:
        if name not in variables:
            raise WeightsError(f"the TF generator has no variable {name!r}; it is not a StyleGAN2 config-f network.")
        value = variables[name]
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise WeightsError(f"TF variable {name!r} is not a floating-point array.")
        used.add(name)
        return value.astype(np.float32)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    resolutions = sorted(int(m.group(1)) for n in names if (m := re.fullmatch(r"synthesis/(\d+)x\1/ToRGB/weight", n)))
    n_mlp = sum(1 for n in names if re.fullmatch(r"mapping/Dense\d+/weight", n))
    if not resolutions or not n_mlp:
        raise WeightsError("the TF network has no ToRGB or mapping/Dense variables; it is not a StyleGAN2 generator.")
    size = resolutions[-1]
    sd: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        sd[f"style.{i + 1}.weight"] = tensor(take(f"mapping/Dense{i}/weight").T)
        sd[f"style.{i + 1}.bias"] = tensor(take(f"mapping/Dense{i}/bias"))
    z_dim, style_dim = sd["style.1.weight"].shape[1], sd[f"style.{n_mlp}.weight"].shape[0]
    if z_dim != style_dim:
        raise WeightsError(f"z_dim {z_dim} differs from w_dim {style_dim}; this layout needs them equal.")

    def modconv(tf: str, ours: str, flip: bool) -> None:
        w = take(f"{tf}/weight").transpose(3, 2, 0, 1)[None]
        sd[f"{ours}.conv.weight"] = tensor(w[..., ::-1, ::-1] if flip else w)
        sd[f"{ours}.conv.modulation.weight"] = tensor(take(f"{tf}/mod_weight").T)
        sd[f"{ours}.conv.modulation.bias"] = tensor(take(f"{tf}/mod_bias") + 1)

    def styled(tf: str, ours: str, flip: bool = False) -> None:
        modconv(tf, ours, flip)
        sd[f"{ours}.noise.weight"] = tensor(take(f"{tf}/noise_strength").reshape(1))
        sd[f"{ours}.activate.bias"] = tensor(take(f"{tf}/bias"))

    def to_rgb(tf: str, ours: str) -> None:
        modconv(tf, ours, flip=False)
        sd[f"{ours}.bias"] = tensor(take(f"{tf}/bias").reshape(1, 3, 1, 1))

    sd["input.input"] = tensor(take("synthesis/4x4/Const/const"))
    styled("synthesis/4x4/Conv", "conv1")
    to_rgb("synthesis/4x4/ToRGB", "to_rgb1")
    channels = {4: int(sd["input.input"].shape[1])}
    for k, res in enumerate(2**i for i in range(3, size.bit_length())):
        styled(f"synthesis/{res}x{res}/Conv0_up", f"convs.{2 * k}", flip=True)
        styled(f"synthesis/{res}x{res}/Conv1", f"convs.{2 * k + 1}")
        to_rgb(f"synthesis/{res}x{res}/ToRGB", f"to_rgbs.{k}")
        channels[res] = int(sd[f"convs.{2 * k}.conv.weight"].shape[1])
    arch = Architecture(size=size, style_dim=style_dim, n_mlp=n_mlp, channels=channels)
    for i in range(arch.num_layers):
        sd[f"noises.noise_{i}"] = tensor(take(f"synthesis/noise{i}"))
    latent_avg = tensor(take("dlatent_avg")) if "dlatent_avg" in names else None
    leftover = sorted(names - used)
    if leftover:
        raise WeightsError(
            f"the TF generator has variables a config-f StyleGAN2 does not ({', '.join(leftover[:3])}"
            f"{', ...' if len(leftover) > 3 else ''}); it is a different architecture."
        )
    return Checkpoint(sd, arch, latent_avg, "stylegan2-tf-pkl")


# -- stylegan2-ada-pytorch / stylegan3 pickles ---------------------------------------------------------
def _read_ada_pickle(path: Path) -> Checkpoint:
    from essence.plugins.generators.stylegan2.unpickle import PersistentRecord, ada_globals, restricted_load

    obj = restricted_load(path, ada_globals())
    if not isinstance(obj, dict) or not isinstance(obj.get("G_ema"), PersistentRecord):
        found = ", ".join(sorted(map(str, obj))[:5]) if isinstance(obj, dict) else type(obj).__name__
        raise WeightsError(f"expected a dict with the network 'G_ema' (found: {found}).")
    return from_ada_record(obj["G_ema"])


def from_ada_record(g_ema: Any) -> Checkpoint:
    """An ada/SG3 ``G_ema`` record -> our layout (spec 4.3): same orientation as rosinality, +1 already
    in the affine biases; ``const`` and per-layer tensors gain leading dims; ``w_avg`` is latent_avg."""
    import torch

    from essence.plugins.generators.stylegan2.model import make_kernel

    state = g_ema.tensors()
    names = set(state)
    if g_ema.class_name != "Generator" or "synthesis.b4.const" not in names:
        if any(n.startswith("synthesis.input.") for n in names):
            raise WeightsError("this is a StyleGAN3 (alias-free) generator, a different architecture; not supported.")
        raise WeightsError(f"G_ema is a {g_ema.class_name} without synthesis.b4.const; not a StyleGAN2 generator.")
    if "mapping.embed.weight" in names:
        raise WeightsError("this is a class-conditional generator (c_dim > 0); not supported.")
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in state:
            raise WeightsError(f"G_ema has no tensor {name!r}; it is not a StyleGAN2 config-f generator.")
        used.add(name)
        return state[name].detach().to(torch.float32).clone()

    records = g_ema.records()
    for name, rec in records.items():
        arch_kind = rec.state.get("architecture")
        if arch_kind not in (None, "skip"):
            raise WeightsError(f"{name} uses architecture {arch_kind!r}; only 'skip' (config-f) is supported.")
        if rec.state.get("img_channels", 3) != 3:
            raise WeightsError(f"{name} makes {rec.state.get('img_channels')}-channel images; only RGB is supported.")
    clamps = {rec.state.get("conv_clamp") for rec in records.values() if "conv_clamp" in rec.state}
    if len(clamps) > 1:
        raise WeightsError(f"layers use different conv_clamp values {sorted(map(str, clamps))}; not supported.")
    conv_clamp = clamps.pop() if clamps else None

    sizes = sorted(int(m.group(1)) for n in names if (m := re.fullmatch(r"synthesis\.b(\d+)\.torgb\.weight", n)))
    n_mlp = sum(1 for n in names if re.fullmatch(r"mapping\.fc\d+\.weight", n))
    sd: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        sd[f"style.{i + 1}.weight"] = take(f"mapping.fc{i}.weight")
        sd[f"style.{i + 1}.bias"] = take(f"mapping.fc{i}.bias")
    z_dim, style_dim = sd["style.1.weight"].shape[1], sd[f"style.{n_mlp}.weight"].shape[0]
    if z_dim != style_dim:
        raise WeightsError(f"z_dim {z_dim} differs from w_dim {style_dim}; this layout needs them equal.")

    def layer(ada: str, ours: str) -> None:
        sd[f"{ours}.conv.weight"] = take(f"{ada}.weight")[None]
        sd[f"{ours}.conv.modulation.weight"] = take(f"{ada}.affine.weight")
        sd[f"{ours}.conv.modulation.bias"] = take(f"{ada}.affine.bias")
        sd[f"{ours}.noise.weight"] = take(f"{ada}.noise_strength").reshape(1)
        sd[f"{ours}.activate.bias"] = take(f"{ada}.bias")

    def to_rgb(ada: str, ours: str) -> None:
        sd[f"{ours}.conv.weight"] = take(f"{ada}.weight")[None]
        sd[f"{ours}.conv.modulation.weight"] = take(f"{ada}.affine.weight")
        sd[f"{ours}.conv.modulation.bias"] = take(f"{ada}.affine.bias")
        sd[f"{ours}.bias"] = take(f"{ada}.bias").reshape(1, 3, 1, 1)

    sd["input.input"] = take("synthesis.b4.const")[None]
    layer("synthesis.b4.conv1", "conv1")
    to_rgb("synthesis.b4.torgb", "to_rgb1")
    sd["noises.noise_0"] = take("synthesis.b4.conv1.noise_const")[None, None]
    channels = {4: int(sd["input.input"].shape[1])}
    filt = make_kernel(gain=1.0)
    for k, res in enumerate(sizes[1:]):
        layer(f"synthesis.b{res}.conv0", f"convs.{2 * k}")
        layer(f"synthesis.b{res}.conv1", f"convs.{2 * k + 1}")
        to_rgb(f"synthesis.b{res}.torgb", f"to_rgbs.{k}")
        sd[f"noises.noise_{2 * k + 1}"] = take(f"synthesis.b{res}.conv0.noise_const")[None, None]
        sd[f"noises.noise_{2 * k + 2}"] = take(f"synthesis.b{res}.conv1.noise_const")[None, None]
        channels[res] = int(sd[f"convs.{2 * k}.conv.weight"].shape[1])
        for f in (f"synthesis.b{res}.resample_filter", f"synthesis.b{res}.conv0.resample_filter"):
            if f in state and not torch.allclose(take(f), filt, atol=1e-6):
                raise WeightsError(f"{f} is not the [1,3,3,1] filter of config-f; not supported.")
    used.update(n for n in names if n.endswith("resample_filter"))
    latent_avg = take("mapping.w_avg") if "mapping.w_avg" in names else None
    leftover = sorted(names - used)
    if leftover:
        raise WeightsError(
            f"G_ema has tensors a config-f StyleGAN2 does not ({', '.join(leftover[:3])}"
            f"{', ...' if len(leftover) > 3 else ''}); it is a different architecture."
        )
    arch = Architecture(size=sizes[-1], style_dim=style_dim, n_mlp=n_mlp, channels=channels, conv_clamp=conv_clamp)
    return Checkpoint(sd, arch, latent_avg, "stylegan2-ada-pkl")


# -- completeness --------------------------------------------------------------------------------------
def expected_shapes(arch: Architecture) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the generator for ``arch`` (built on the meta device: no memory, no time)."""
    import torch

    from essence.plugins.generators.stylegan2.model import StyleGAN2Generator

    with torch.device("meta"):
        model = StyleGAN2Generator(arch)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def complete(ckpt: Checkpoint, where: Any) -> Checkpoint:
    """Check the tensors against the architecture; add the fixed blur kernels formats leave out."""
    from essence.plugins.generators.stylegan2.model import make_kernel

    expected = expected_shapes(ckpt.arch)
    sd = dict(ckpt.state_dict)
    for key in expected:
        if key not in sd and key.endswith((".blur.kernel", ".upsample.kernel")):
            sd[key] = make_kernel()
    missing = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    wrong = [
        f"{k} {list(sd[k].shape)} (expected {list(s)})"
        for k, s in expected.items()
        if k in sd and tuple(sd[k].shape) != s
    ]

    def few(items: list[str], n: int, sep: str = ", ") -> str:
        return sep.join(items[:n]) + (f"{sep}..." if len(items) > n else "")

    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) ({few(missing, 3)})")
    if extra:
        problems.append(f"{len(extra)} unexpected tensor(s) ({few(extra, 3)})")
    if wrong:
        problems.append(f"{len(wrong)} tensor(s) of the wrong shape ({few(wrong, 2, '; ')})")
    if problems:
        raise WeightsError(
            f"{where} does not hold a complete {ckpt.arch.describe()}: {'; '.join(problems)}. "
            "It may be truncated, damaged, or of another architecture."
        )
    latent_avg = ckpt.latent_avg
    if latent_avg is not None and latent_avg.numel() != ckpt.arch.style_dim:
        raise WeightsError(f"{where}: latent_avg has {latent_avg.numel()} values, expected {ckpt.arch.style_dim}.")
    return Checkpoint(sd, ckpt.arch, latent_avg, ckpt.source_format)


# -- writing ---------------------------------------------------------------------------------------------
def save_checkpoint(ckpt: Checkpoint, dst: str | os.PathLike[str]) -> None:
    """Write ``ckpt`` in our safetensors layout (atomically: a partial file never has the final name)."""
    from safetensors.torch import save_file

    dst = Path(dst)
    tensors = {k: v.detach().contiguous() for k, v in ckpt.state_dict.items()}
    if ckpt.latent_avg is not None:
        tensors["latent_avg"] = ckpt.latent_avg.reshape(-1).contiguous()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source_format": ckpt.source_format,
        "latent_avg": json.dumps(ckpt.latent_avg is not None),
        **ckpt.arch.to_metadata(),
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dst.name, suffix=".part", dir=dst.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def summary(ckpt: Checkpoint) -> dict[str, Any]:
    """What a conversion found, for ``essence weights convert`` to print."""
    params = sum(
        v.numel() for k, v in ckpt.state_dict.items() if not k.startswith("noises.") and not k.endswith(".kernel")
    )
    return {
        "format": ckpt.source_format,
        "resolution": ckpt.arch.size,
        "num_ws": ckpt.arch.num_ws,
        "style_dim": ckpt.arch.style_dim,
        "n_mlp": ckpt.arch.n_mlp,
        "channels": dict(sorted(ckpt.arch.channels.items())),
        "parameters": params,
        "latent_avg": ckpt.latent_avg is not None,
        "conv_clamp": ckpt.arch.conv_clamp,
    }


def convert(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> dict[str, Any]:
    """Converter hook: read ``src`` (any supported format) and write our safetensors layout to ``dst``."""
    ckpt = read_checkpoint(src)
    save_checkpoint(ckpt, dst)
    return summary(ckpt)
