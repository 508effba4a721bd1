"""VGG19's convolutional layers in torchvision's layout, and its checkpoints read without executing code.

torchvision's ``vgg19`` holds ``features`` (an ``nn.Sequential``: 16 3x3 convolutions, each followed by a
ReLU, with 5 max-pools) and a classifier. The state dict keys are ``features.{i}.weight`` / ``.bias`` with
``i`` the index in that sequence (0, 2, 5, 7, 10, ...). This module builds the same sequence (only up to
relu5_1, the deepest layer Gatys et al. read) and returns the maps after relu1_1, relu2_1, relu3_1,
relu4_1, relu4_2 and relu5_1: style at the five ``reluN_1``, content at relu4_2, as in the paper.

Our safetensors layout ("essence-vgg19", version 1): the ``features.*`` tensors of the 16 convolutions;
metadata ``format``, ``format_version`` and ``source_format``.
"""

from __future__ import annotations

import os
import zipfile
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import essence

FORMAT = "essence-vgg19"
FORMAT_VERSION = "1"
#: torchvision's configuration "E" (VGG19): output channels, "M" a 2x2 max-pool.
CFG: tuple[Any, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
#: Indices in ``features`` of relu1_1, relu2_1, relu3_1, relu4_1, relu4_2, relu5_1.
TAPS = (1, 6, 11, 20, 22, 29)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_indices() -> list[int]:
    """Indices of the convolutions in torchvision's ``features`` sequence."""
    out, i = [], 0
    for v in CFG:
        if v == "M":
            i += 1
        else:
            out.append(i)
            i += 2
    return out


class VGG19Features(nn.Module, essence.FeatureNet):
    """Frozen VGG19 conv layers; ``features(images in [-1, 1])`` -> the six maps of :data:`TAPS`."""

    style_layers = (0, 1, 2, 3, 5)
    content_layers = (4,)

    def __init__(self, channels: list[int], *, resolution: int | None = 256, weights_id: str = "unknown") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        convs = iter(channels)
        c_in = 3
        for v in CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c_out = next(convs)
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = c_out
        self.body = nn.Sequential(*layers[: TAPS[-1] + 1])  # torchvision's ``features`` (that name is the method)
        self.resolution = resolution
        self.weights_id = weights_id
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def random(cls, width: float = 1.0, *, resolution: int | None = 256, seed: int = 0) -> VGG19Features:
        channels = [max(1, round(v * width)) for v in CFG if v != "M"]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = cls(channels, resolution=resolution, weights_id=f"random-{seed}-w{width:g}")
        return net

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images.float().to(self.mean.device)
        if self.resolution is not None and x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False, antialias=True)
        x = ((x + 1) / 2 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in TAPS:
                out.append(x)
        return out


# -- checkpoints -------------------------------------------------------------------------------------


def _zip_pickle_names(path: str | os.PathLike[str]) -> bytes:
    with zipfile.ZipFile(path) as z:
        name = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if name is None or z.getinfo(name).file_size > (8 << 20):
            return b""
        return z.read(name)


def detect(path: str | os.PathLike[str]) -> bool:
    """Converter hook: torchvision's VGG19 ``.pth`` (a torch zip whose keys are ``features.*`` and
    ``classifier.*``, with ``features.34``, the 16th conv) or our conversion. Reads bytes, unpickles nothing."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
        if len(head) > 9 and head[8:9] == b"{":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as st:
                return (st.metadata() or {}).get("format") == FORMAT
        if head.startswith(b"PK\x03\x04"):
            names = _zip_pickle_names(path)
            return b"features.34.weight" in names and b"classifier." in names and b"features.35" not in names
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return False


def read_state(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], str]:
    """The 16 convolutions' tensors of a VGG19 file (safetensors or .pth via ``torch.load(weights_only=True)``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise essence.WeightsError(f"Cannot read VGG19 weights {path}: {exc.strerror or exc}.") from None
    if len(head) > 9 and head[8:9] == b"{":
        from safetensors.torch import load_file

        state, source = load_file(str(path)), "safetensors"
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable or unsafe file is the user's to fix
            raise essence.WeightsError(
                f"{path} is not a VGG19 checkpoint torch can read safely ({type(exc).__name__}): give torchvision's "
                "vgg19-dcbb9e9d.pth or its safetensors conversion."
            ) from None
        source = "torchvision .pth"
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise essence.WeightsError(f"{path} holds no state dict: give torchvision's vgg19-dcbb9e9d.pth.")
    keys = [f"features.{i}.{p}" for i in conv_indices() for p in ("weight", "bias")]
    missing = [k for k in keys if k not in state]
    if missing:
        raise essence.WeightsError(
            f"{path} is not a VGG19 (torchvision layout): {len(missing)} conv tensors missing, e.g. {missing[0]}."
        )
    return {k: state[k].float().contiguous() for k in keys}, source


def convert(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> dict[str, Any]:
    """Converter hook: torchvision's VGG19 .pth -> our safetensors (the conv layers only)."""
    from safetensors.torch import save_file

    state, source = read_state(src)
    save_file(state, str(dst), metadata={"format": FORMAT, "format_version": FORMAT_VERSION, "source_format": source})
    return {"format": f"VGG19 ({source})", "tensors": len(state), "parameters": sum(t.numel() for t in state.values())}


def load_vgg19(path: str | os.PathLike[str], *, resolution: int | None = 256, weights_id: str = "unknown") -> VGG19Features:
    state, _ = read_state(path)
    channels = [state[f"features.{i}.weight"].shape[0] for i in conv_indices()]
    net = VGG19Features(channels, resolution=resolution, weights_id=weights_id)
    wanted = {"body." + k.partition(".")[2]: v for k, v in state.items() if int(k.split(".")[1]) <= TAPS[-1]}
    try:
        net.load_state_dict(wanted, strict=True)
    except RuntimeError as exc:
        raise essence.WeightsError(f"{path}: the VGG19 tensors do not fit together ({str(exc).splitlines()[0]}).") from None
    return net
