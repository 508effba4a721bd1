"""Factor classifiers ("judges") for the toy world: a small CNN reading every factor off an image.

It predicts each essence factor (shape, colour, pattern, background: classes) and the identity factors
(x, y, size: regression, in fractions of the image side). The quality gates use it as ground truth for
images that have none (generator samples, transfer results). Trained by ``train_world_judges.py`` on
clean renderings; the weights live here in benchmarks/, not in the package.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from essence.plugins.toy import world

WEIGHTS = Path(__file__).with_name("world_judges.safetensors")
ESSENCE = list(world.ESSENCE_FACTORS)
IDENTITY = list(world.IDENTITY_FACTORS)


class Judges(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()

        def block(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        w = width
        self.features = nn.Sequential(
            *block(3, w, 1), *block(w, 2 * w, 2), *block(2 * w, 2 * w, 1),
            *block(2 * w, 4 * w, 2), *block(4 * w, 4 * w, 2), nn.Flatten(),
            nn.Linear(4 * w * 16, 256), nn.ReLU(inplace=True),
        )  # flattening (not pooling) keeps where things are, for the identity heads
        self.heads = nn.ModuleDict({f: nn.Linear(256, len(v)) for f, v in world.ESSENCE_FACTORS.items()})
        self.identity = nn.Linear(256, len(IDENTITY))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (N, 3, 32, 32) in [0, 1]. Returns logits per essence factor and identity values."""
        h = self.features(x * 2 - 1)
        out = {f: head(h) for f, head in self.heads.items()}
        out["identity"] = self.identity(h)
        return out


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255


def load(path: Path = WEIGHTS) -> Judges:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model = Judges(width=json.loads(meta["width"]))
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def judge(model: Judges, images: np.ndarray, batch: int = 500) -> dict[str, np.ndarray]:
    """Per image: predicted class id and its probability for each essence factor, and x/y/size."""
    out: dict[str, list] = {}
    for i in range(0, len(images), batch):
        pred = model(to_input(images[i : i + batch]))
        for f in ESSENCE:
            prob = pred[f].softmax(1)
            conf, cls = prob.max(1)
            out.setdefault(f, []).append(cls.numpy())
            out.setdefault(f + "_confidence", []).append(conf.numpy())
        for k, f in enumerate(IDENTITY):
            out.setdefault(f, []).append(pred["identity"][:, k].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def accuracy(model: Judges, sprites, style: str = "clean") -> dict[str, float]:
    """Held-out scores: accuracy per essence factor and mean absolute error in pixels per identity factor."""
    got = judge(model, world.render(sprites, style))
    truth = world.labels(sprites)
    scores = {f: float((got[f] == truth[f]).mean()) for f in ESSENCE}
    for f in IDENTITY:
        scores[f + "_mae_px"] = float(np.abs(got[f] - truth[f]).mean() * world.RESOLUTION)
    return scores
