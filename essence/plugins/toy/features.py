"""``toy-clip-features``: the toy world's stand-in for VGG19 in the Gatys baseline.

The conv features of toy-clip's image tower (a tiny ModifiedResNet, the RN50 design at 32 px): the stem,
then each of the four stages. Why this network: VGG19's ImageNet weights cannot be had offline, and a
32-px sprite is far below the scale VGG19's filters were trained on; toy-clip is the one trained image
network of the world, and its filters respond to what makes a sprite's style (colour, pattern,
background), which is what Gram matrices summarise. Maps at 32 px input: 8x8 (stem, stage 1), 4x4, 2x2,
1x1. Style is matched at the stem and stages 1-3; content is kept at stage 1 (8x8: where the sprite is).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import essence


class ToyClipFeatures(nn.Module, essence.FeatureNet):
    style_layers = (0, 1, 2, 3)
    content_layers = (1,)

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        tower = encoder.tower
        for name in ("conv1", "bn1", "act1", "conv2", "bn2", "act2", "conv3", "bn3", "act3", "avgpool", "layer1", "layer4"):
            if not hasattr(tower, name):
                raise essence.EssenceError(f"toy-clip's image tower has no {name!r}: is it still a ModifiedResNet?")
        self.tower = tower
        self.resolution = int(encoder.input_resolution)
        self.weights_id = f"toy-clip-{encoder.weights_id}"
        self.register_buffer("mean", encoder.mean.detach().clone(), persistent=False)
        self.register_buffer("std", encoder.std.detach().clone(), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ToyClipFeatures:
        return super().train(False)  # BatchNorm keeps its running statistics

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        t = self.tower
        x = images.float().to(self.mean.device)
        if x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bicubic", align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std
        x = t.act1(t.bn1(t.conv1(x)))
        x = t.act2(t.bn2(t.conv2(x)))
        x = t.avgpool(t.act3(t.bn3(t.conv3(x))))
        out = [x]
        for stage in (t.layer1, t.layer2, t.layer3, t.layer4):
            x = stage(x)
            out.append(x)
        return out
