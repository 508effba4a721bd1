"""The ``projector`` inverter: optimise a latent until G(w) looks like the photo (any generator).

The recipe is StyleGAN2-ADA's projector (Karras et al. 2020, ``projector.py``): start at the mean latent;
Adam with a learning rate that ramps up over the first 5% of the steps and down (cosine) over the last
25%; Gaussian noise added to the latent while optimising, ``w_std * 0.05 * max(0, 1 - t / 0.75)^2`` at
progress t, where ``w_std`` is the spread of 10000 mapped samples about their mean; images compared at
most at 256 px (area downsampling). That recipe optimises W (one w on every row); ``space = "w+"``
optimises every row on its own (closer reconstructions, latents that edit less well). It also optimises
the generator's noise maps; essence's generators keep their noise fixed (``noise="const"``), so only the
latent moves. The loss per image is

    perceptual * LPIPS(G(w), x) + pixel * MSE(G(w), x) + encoder_weight * (1 - cos(C(G(w)), C(x)))

with LPIPS on VGG16 (``perceptual.py``), and the encoder term only when an encoder is named. ``init``
names another inverter (``e4e``, ``toy-encoder``) whose output is the start instead of the mean latent.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

import essence


def lr_at(t: float, lr: float, rampup: float, rampdown: float) -> float:
    """The learning rate at progress ``t`` in [0, 1): linear warm-up over ``rampup``, cosine ramp-down over
    the last ``rampdown`` of the steps."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / rampup)


def noise_at(t: float, w_std: float, factor: float, ramp: float) -> float:
    """The scale of the noise added to the latent at progress ``t``: zero after ``ramp`` of the steps."""
    return w_std * factor * max(0.0, 1.0 - t / ramp) ** 2


class Projector(essence.Inverter):
    """Optimisation in W or W+; ``perceptual`` is an LPIPS module or None (pixel MSE and the encoder term
    only), ``encoder`` an essence Encoder or None, ``init`` an Inverter whose output is the start, or None."""

    generators: tuple[str, ...] = ()

    def __init__(self, config: Any, *, perceptual: Any = None, encoder: Any = None, init: Any = None) -> None:
        self.config = config
        self.perceptual = perceptual
        self.encoder = encoder
        self.init = init
        parts = [f"lpips-{config.vgg_weights}" if perceptual is not None else "mse"]
        if encoder is not None:
            parts.append(f"encoder-{getattr(encoder, 'weights_id', 'unknown')}")
        self.weights_id = "+".join(parts)

    def perceptual_distance(self, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor | None:
        """LPIPS ``(n,)`` between images and their reconstructions, or None without LPIPS."""
        if self.perceptual is None:
            return None
        size = min(images.shape[-1], self.config.size)
        with torch.no_grad():
            device = self.perceptual.shift.device
            return self.perceptual(downsample(images.to(device), size), downsample(reconstructions.to(device), size)).cpu()

    def w_std(self, generator: Any) -> float:
        """The spread of mapped samples about their mean (a fixed seed: the same every call)."""
        n, chunk = self.config.w_avg_samples, 4096
        gen = torch.Generator().manual_seed(123456)
        z = torch.randn(n, generator.z_dim, generator=gen)
        with torch.no_grad():
            w = torch.cat([generator.mapping(z[i : i + chunk].to(generator.device)).float() for i in range(0, n, chunk)])
        return float(((w - w.mean(0, keepdim=True)).square().sum() / n).sqrt())

    def start(self, images: torch.Tensor, generator: Any) -> torch.Tensor:
        """The latent to start from ``(n, rows, w_dim)``: the init inverter's output, else the mean latent."""
        n, rows = images.shape[0], 1 if self.config.space == "w" else generator.num_ws
        if self.init is not None:
            ws = self.init.invert(images, generator).detach().float().to(generator.device)
            return ws.mean(1, keepdim=True) if rows == 1 else ws
        mean = generator.mean_w.detach().float().to(generator.device)
        return mean[:, None, :].repeat(n, rows, 1)

    def invert(self, images: torch.Tensor, generator: Any, *, callback: Any = None) -> torch.Tensor:
        cfg = self.config
        device = generator.device
        images = images.detach().float().to(device)
        size = min(int(generator.resolution), cfg.size)
        target = downsample(images, size)
        target_embedding = None
        if self.encoder is not None:
            with torch.no_grad():
                target_embedding = F.normalize(self.encoder.embed(images).float(), dim=-1)
        w_std = self.w_std(generator)
        w = self.start(images, generator).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=0.0, betas=(0.9, 0.999))
        noise = torch.Generator().manual_seed(cfg.seed)
        for step in range(cfg.steps):
            t = step / cfg.steps
            for group in opt.param_groups:
                group["lr"] = lr_at(t, cfg.lr, cfg.lr_rampup, cfg.lr_rampdown)
            scale = noise_at(t, w_std, cfg.noise, cfg.noise_ramp)
            jitter = torch.randn(w.shape, generator=noise).to(device) * scale
            ws = (w + jitter).expand(-1, generator.num_ws, -1)
            losses = self.losses(generator.synthesize(ws), target, size, target_embedding)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            if callback is not None:
                callback(step, cfg.steps, float(losses.detach().mean()))
        return w.detach().expand(-1, generator.num_ws, -1).contiguous()

    def losses(self, synth: torch.Tensor, target: torch.Tensor, size: int, target_embedding: Any) -> torch.Tensor:
        """The loss of every image ``(n,)``; summed for the step, so the images do not interact."""
        cfg = self.config
        small = downsample(synth.float(), size)
        total = cfg.pixel * (small - target).square().mean(dim=(1, 2, 3))
        if self.perceptual is not None:
            total = total + cfg.perceptual_weight * self.perceptual(small, target)
        if target_embedding is not None:
            emb = F.normalize(self.encoder.embed(synth).float(), dim=-1)
            total = total + cfg.encoder_weight * (1 - (emb * target_embedding).sum(-1))
        return total


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """Area downsampling to ``size`` (as the StyleGAN2-ADA projector); smaller images are left as they are."""
    if images.shape[-1] <= size:
        return images
    return F.interpolate(images, size=(size, size), mode="area")
