"""The pixel-stats encoder: a differentiable function of the image, no weights."""

import essence
import torch
import torch.nn.functional as F


class PixelStatsEncoder(torch.nn.Module, essence.Encoder):
    input_resolution = 64
    weights_id = "none"

    def __init__(self, grid: int = 4, include_std: bool = True):
        super().__init__()
        self.grid = grid
        self.include_std = include_std
        self.embed_dim = 3 * grid * grid + (3 if include_std else 0)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Generator images (n, 3, H, W) in [-1, 1] -> (n, embed_dim), unit length."""
        parts = [F.adaptive_avg_pool2d(images, self.grid).flatten(1)]
        if self.include_std:
            parts.append(images.flatten(2).std(dim=2))
        return F.normalize(torch.cat(parts, dim=1), dim=-1)

    def preprocess(self, image) -> torch.Tensor:
        """A PIL image -> (1, 3, 64, 64) in [-1, 1], the same space as generator images."""
        import numpy as np

        small = image.convert("RGB").resize((self.input_resolution,) * 2)
        x = torch.from_numpy(np.asarray(small, dtype=np.float32)).permute(2, 0, 1)[None]
        return x / 127.5 - 1

    def embed_preprocessed(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.embed(inputs)
