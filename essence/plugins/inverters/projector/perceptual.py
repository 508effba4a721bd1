"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018)
on a VGG16 backbone, in plain PyTorch.

The distance between two images: both are shifted and scaled per channel (LPIPS v0.1's input scaling of
[-1, 1] images), run through VGG16's convolutional layers; at the five taps (relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3) each feature vector is unit-normalised over channels, the squared difference is
weighted per channel by the learned linear layer of that tap (a 1x1 convolution to one channel) and
averaged over the image; the five values are summed.

Weights, never executed: the VGG16 backbone is torchvision's ImageNet checkpoint, fetched by the weights
manager (asset ``vgg16-imagenet``) and converted once to safetensors (``convert_vgg16``); the linear
layers are the ``vgg.pth`` (v0.1) file that ships inside the ``lpips`` package's wheel, read with
``torch.load(weights_only=True)`` without importing the package. ``"random"`` gives seeded random weights
(tests; ``width`` shrinks the network for them).
"""

from __future__ import annotations

import importlib.metadata
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

import essence
from essence.core.files import check_zip_sizes, torch_load

#: LPIPS v0.1's input scaling (its published constants): x -> (x - shift) / scale, per RGB channel.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
#: VGG16's convolutional layers in torchvision's ``features`` order: channels, or "M" for a 2x2 max pool.
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
#: Indices in ``features`` after which LPIPS reads the activations (relu1_2 ... relu5_3).
TAPS = (3, 8, 15, 22, 29)
#: The linear layers' file inside the lpips package.
LPIPS_FILE = "lpips/weights/v0.1/vgg.pth"


def vgg16_features(width: int = 64) -> nn.Sequential:
    """torchvision's ``vgg16().features`` layout (same indices, so its checkpoint keys load), up to relu5_3;
    ``width`` scales every layer's channels (64: the real network)."""
    layers: list[nn.Module] = []
    cin = 3
    for item in VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            cout = int(item) * width // 64
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=False)]
            cin = cout
    return nn.Sequential(*layers)


def tap_channels(width: int = 64) -> list[int]:
    return [c * width // 64 for c in (64, 128, 256, 512, 512)]


class LPIPS(nn.Module):
    """``lpips(a, b)``: the perceptual distance ``(n,)`` of images ``(n, 3, H, W)`` in [-1, 1]."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.width = width
        self.features = vgg16_features(width)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in tap_channels(width))
        with torch.no_grad():  # the learned weights are non-negative (a distance); random ones are made so too
            for lin in self.lins:
                lin.weight.abs_()
        self.register_buffer("shift", torch.tensor(SHIFT)[None, :, None, None])
        self.register_buffer("scale", torch.tensor(SCALE)[None, :, None, None])
        self.requires_grad_(False).eval()

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, out = (x - self.shift) / self.scale, []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in TAPS:
                out.append(h)
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = a.new_zeros(a.shape[0])
        for lin, fa, fb in zip(self.lins, self.taps(a), self.taps(b)):
            diff = (unit(fa) - unit(fb)).square()
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total


def unit(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Each spatial position's feature vector divided by its length (LPIPS's channel normalisation)."""
    return f / (f.square().sum(dim=1, keepdim=True).sqrt() + eps)


# -- weights -----------------------------------------------------------------------------------------


def lpips_linear_file() -> Path:
    """The lpips package's ``vgg.pth`` (found through its installed metadata: the package is not imported)."""
    try:
        dist = importlib.metadata.distribution("lpips")
    except importlib.metadata.PackageNotFoundError:
        raise essence.MissingExtraError("LPIPS (the projector's perceptual loss)", "lpips", ["lpips"]) from None
    path = Path(str(dist.locate_file(LPIPS_FILE)))
    if not path.is_file():
        raise essence.WeightsError(f"The installed lpips package has no {LPIPS_FILE}; reinstall it: pip install --force-reinstall lpips")
    return path


def load_linear_layers(path: Path) -> dict[str, torch.Tensor]:
    """``lin{k}.model.1.weight`` of an lpips weights file -> our ``lins.{k}.weight``."""
    try:
        state = torch_load(path)
    except Exception as exc:
        raise essence.WeightsError(f"Cannot read LPIPS linear layers {path}: {type(exc).__name__}: {exc}") from None
    out = {}
    for k in range(len(TAPS)):
        key = f"lin{k}.model.1.weight"
        if key not in state:
            raise essence.WeightsError(f"{path} is not an LPIPS VGG weights file: it has no {key!r}.")
        out[f"lins.{k}.weight"] = state[key].float()
    return out


def load_backbone(path: Path) -> dict[str, torch.Tensor]:
    """Our converted VGG16 safetensors (``features.*``) -> a state dict for :func:`vgg16_features`."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:
        raise essence.WeightsError(
            f"{path} is not a converted VGG16 file ({type(exc).__name__}: {exc}); run `essence weights pull vgg16-imagenet`."
        ) from None
    return {k: v.float() for k, v in state.items() if k.startswith("features.")}


def build_lpips(backbone: str, linear: str, *, width: int = 64, device: Any = "cpu") -> LPIPS:
    """LPIPS with the backbone ``backbone`` (an asset name, a file, or ``"random"``) and the linear layers
    ``linear`` (``"lpips"``: the installed package's, a file, or ``"random"``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LPIPS(width)
    state: dict[str, torch.Tensor] = {}
    if linear != "random":
        state.update(load_linear_layers(lpips_linear_file() if linear == "lpips" else Path(linear)))
    if backbone != "random":
        state.update(load_backbone(essence.resolve_weights(backbone, kind="other")))
    if state:
        missing, unexpected = model.load_state_dict(state, strict=False)
        wrong = [k for k in missing if (k.startswith("features.") and backbone != "random") or (k.startswith("lins.") and linear != "random")]
        if wrong or unexpected:
            raise essence.WeightsError(
                f"LPIPS weights do not fit a width-{width} VGG16: missing {wrong[:3]}, unexpected {unexpected[:3]}."
            )
    return model.requires_grad_(False).eval().to(device)


# -- the converter: torchvision's vgg16-*.pth -> safetensors -------------------------------------------


def detect_vgg16(path: Path) -> bool:
    """A torch zip checkpoint whose pickle names VGG16's ``features.0.weight`` and ``classifier.6.weight``
    (the pickle's bytes are searched, never unpickled)."""
    if not zipfile.is_zipfile(path):
        return False
    check_zip_sizes(path)
    with zipfile.ZipFile(path) as z:
        pickles = [n for n in z.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            return False
        head = z.read(pickles[0])[: 1 << 20]
    return b"features.0.weight" in head and b"classifier.6.weight" in head and b"features.28.weight" in head


def convert_vgg16(src: Path, dst: Path) -> dict[str, Any]:
    """torchvision's VGG16 ImageNet checkpoint -> the convolutional layers as float32 safetensors."""
    from safetensors.torch import save_file

    try:
        state = torch_load(src)
    except Exception as exc:
        raise essence.WeightsError(f"Cannot read {src} as a torch checkpoint: {type(exc).__name__}: {exc}") from None
    if not isinstance(state, dict):
        raise essence.WeightsError(f"{src} holds a {type(state).__name__}, not a VGG16 state dict.")
    features = {k: v.float().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor) and k.startswith("features.")}
    probe = vgg16_features(64)
    expected = {f"features.{k}": tuple(v.shape) for k, v in probe.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in features.items()}
    if got != expected:
        wrong = sorted(set(expected) ^ set(got)) or [k for k in expected if expected[k] != got[k]]
        raise essence.WeightsError(f"{src} is not torchvision's VGG16: its convolutional layers differ ({wrong[:3]}).")
    save_file(features, str(dst), metadata={"format": "vgg16-features"})
    return {"format": "torchvision vgg16", "tensors": len(features), "parameters": sum(v.numel() for v in features.values())}
