"""toy-encoder: a feed-forward inverter for toy-sprites (a 32-px image -> its W+ latent), shipped so that the
whole photo path (align, invert, edit) runs offline.

A small CNN predicts one w, broadcast to every W+ row: toy-sprites was trained to decode one w per sprite
on every row (docs/toy-world.md), so single-w latents are the ones it renders cleanly and edits well (the
same reason e4e keeps its rows close together). ``scripts/train_toy_encoder.py`` trains it on the
generator's own samples (latent regression) and on world renders (reconstruction through the frozen
generator); the record of that run sits beside the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import essence

#: The shipped weights and the record of the run that trained them.
WEIGHTS = Path(__file__).with_name("toy-encoder.safetensors")
RESOLUTION = 32
NUM_WS = 8
W_DIM = 128


class SpriteEncoder(nn.Module):
    """Image ``(n, 3, 32, 32)`` in [-1, 1] -> w ``(n, w_dim)``.

    Strided 3x3 convolutions down to 4x4, then the map is flattened (not pooled: where the sprite is must
    survive to w) and two linear layers give w.
    """

    def __init__(self, width: int = 32, w_dim: int = W_DIM, hidden: int = 256) -> None:
        super().__init__()
        self.width, self.w_dim, self.hidden = width, w_dim, hidden

        def conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2)]

        w = width
        self.features = nn.Sequential(
            *conv(3, w, 1), *conv(w, 2 * w, 2), *conv(2 * w, 2 * w, 1), *conv(2 * w, 4 * w, 2),
            *conv(4 * w, 4 * w, 1), *conv(4 * w, 4 * w, 2), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(4 * w * 16, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, w_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))

    def arch(self) -> dict[str, int]:
        return {"width": self.width, "w_dim": self.w_dim, "hidden": self.hidden}


class ToyEncoderInverter(nn.Module, essence.Inverter):
    """Aligned toy images -> W+ latents of toy-sprites: one predicted w on all ``num_ws`` rows."""

    resolution = RESOLUTION

    def __init__(self, net: SpriteEncoder, *, num_ws: int = NUM_WS, weights_id: str = "random") -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.num_ws, self.w_dim = num_ws, net.w_dim
        self.weights_id = weights_id
        self.generators = ("toy-sprites",)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Differentiable w ``(n, w_dim)`` of images of any size (resized to 32 px with antialiasing)."""
        x = images.to(self.device, torch.float32)
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True)
        return self.net(x)

    @torch.no_grad()
    def invert(self, images: torch.Tensor, generator: Any, *, callback: Any = None) -> torch.Tensor:
        if (generator.num_ws, generator.w_dim) != (self.num_ws, self.w_dim):
            raise essence.EssenceError(
                f"toy-encoder makes W+ latents of {self.num_ws} x {self.w_dim} (for toy-sprites), but the generator "
                f"takes {generator.num_ws} x {generator.w_dim}: use it with toy-sprites, or choose another --inverter."
            )
        w = self.encode(images)
        return w[:, None, :].repeat(1, self.num_ws, 1).to(generator.device)


def save_encoder(net: SpriteEncoder, path: Path, metadata: dict[str, Any] | None = None) -> Path:
    """The weights in float16 (half the file) with the architecture in the metadata, written atomically."""
    from safetensors.torch import save_file

    from essence.core.files import write_atomic

    state = {k: v.detach().half().contiguous() for k, v in net.state_dict().items()}
    meta = {"format": "essence-toy-encoder", "arch": json.dumps(net.arch()), **(metadata or {})}
    return write_atomic(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


def load_encoder(path: Path) -> SpriteEncoder:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k).float() for k in f.keys()}
        net = SpriteEncoder(**json.loads(meta["arch"]))
        net.load_state_dict(state, strict=True)
    except Exception as exc:
        raise essence.WeightsError(f"{path} is not a toy-encoder weights file: {type(exc).__name__}: {exc}") from None
    return net


def build_toy_encoder(weights: str, device: str, width: int = 32) -> ToyEncoderInverter:
    """The shipped encoder (``weights="shipped"``), a file, or seeded random weights (``"random"``)."""
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net, weights_id = SpriteEncoder(width=width), "random"
    else:
        path = WEIGHTS if weights == "shipped" else Path(weights)
        if not path.is_file():
            raise essence.WeightsError(
                f"The toy-encoder weights are missing ({path}); reinstall essence-transfer, or train them with "
                "scripts/train_toy_encoder.py."
            )
        net, weights_id = load_encoder(path), essence.sha256_file(path)[:16]
    return ToyEncoderInverter(net, weights_id=weights_id).to(essence.resolve_device(device))
