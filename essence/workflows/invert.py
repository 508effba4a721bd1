"""A simple image inversion: find W+ latents whose image looks like a photo (for the StyleGAN blend).

Projection by optimisation, not an encoder such as e4e: W+ starts at the mean latent on every row and
Adam minimises ``pixel * MSE(G(w), image) + embedding * (1 - cos(C(G(w)), C(image)))`` at a resolution of
at most 256 (the image is centre-cropped to a square). It is slow and approximate: good enough for a
baseline, not for editing real photos. An inverted latent from a better tool can be given instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from essence.core.config import Strict

if TYPE_CHECKING:
    import torch
    from PIL import Image


class InversionConfig(Strict):
    steps: int = Field(200, ge=1, description="Adam steps.")
    lr: float = Field(0.05, gt=0, description="Adam's learning rate (constant).")
    pixel: float = Field(1.0, ge=0, description="Weight of the pixel MSE (images in [-1, 1]).")
    embedding: float = Field(1.0, ge=0, description="Weight of 1 - cos between the encoder's embeddings.")
    size: int = Field(256, ge=8, description="Compare pixels at most at this resolution.")

    @model_validator(mode="after")
    def _some_loss(self) -> InversionConfig:
        if not (self.pixel or self.embedding):
            raise ValueError("inversion needs a non-zero pixel or embedding weight")
        return self


@dataclass
class Inversion:
    ws: torch.Tensor  # (1, num_ws, w_dim): the best latent found
    loss: float
    trace: list[dict[str, float]]


def invert_image(
    generator: Any,
    encoder: Any,
    image: Image.Image,
    config: InversionConfig | None = None,
    *,
    callback: Callable[[int, float], None] | None = None,
) -> Inversion:
    """The W+ latent whose image best matches ``image`` by the loss above; ``callback(step, loss)`` per step."""
    import torch
    import torch.nn.functional as F

    from essence.method.figures import square_tile

    cfg = config or InversionConfig()
    device = generator.device
    size = min(int(generator.resolution), cfg.size)
    pixels = torch.from_numpy(_as_array(square_tile(image, size))).permute(2, 0, 1)[None].to(device)
    pixels = pixels.float() / 127.5 - 1
    with torch.no_grad():
        target = F.normalize(encoder.embed_pil(image).float(), dim=-1)
    w = generator.mean_w.detach().float().to(device)[:, None, :].repeat(1, generator.num_ws, 1).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=cfg.lr)
    best, best_loss, trace = w.detach().clone(), float("inf"), []
    for step in range(cfg.steps):
        images = generator.synthesize(w)
        loss = images.new_zeros(())
        pixel = embedding = 0.0
        if cfg.pixel:
            mse = F.mse_loss(F.adaptive_avg_pool2d(images, size).float(), pixels)
            loss, pixel = loss + cfg.pixel * mse, float(mse.detach())
        if cfg.embedding:
            cos = (F.normalize(encoder.embed(images).float(), dim=-1) * target).sum(-1).mean()
            loss, embedding = loss + cfg.embedding * (1 - cos), float(1 - cos.detach())
        value = float(loss.detach())
        if value < best_loss:
            best, best_loss = w.detach().clone(), value
        trace.append({"step": step, "lr": cfg.lr, "loss": value, "pixel": pixel, "embedding": embedding})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if callback is not None:
            callback(step, value)
    return Inversion(best.cpu(), best_loss, trace)


def _as_array(img: Image.Image) -> Any:
    import numpy as np

    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
