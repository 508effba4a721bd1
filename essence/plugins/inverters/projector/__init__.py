"""The ``projector`` inverter (optimisation in W or W+, for any generator), with its LPIPS loss's VGG16
weights as a known asset and the converter of torchvision's checkpoint. Torch loads when it is built."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, model_validator

import essence

ASSETS = Path(__file__).with_name("assets.json")


class ProjectorConfig(essence.ComponentConfig):
    """StyleGAN2-ADA's projector recipe; the defaults are its published constants."""

    steps: int = Field(1000, ge=1, description="Adam steps.")
    lr: float = Field(0.1, gt=0, description="Peak learning rate.")
    lr_rampup: float = Field(0.05, gt=0, le=1, description="Fraction of the steps the lr ramps up over.")
    lr_rampdown: float = Field(0.25, gt=0, le=1, description="Fraction of the steps the lr ramps down over (cosine).")
    noise: float = Field(0.05, ge=0, description="Latent noise at the start, as a fraction of the mapped ws' spread.")
    noise_ramp: float = Field(0.75, gt=0, le=1, description="Fraction of the steps after which the noise is zero.")
    w_avg_samples: int = Field(10000, ge=2, description="Mapped samples that measure the ws' spread.")
    space: Literal["w", "w+"] = Field("w", description="w: one latent on every row (edits well); w+: every row free.")
    perceptual: Literal["lpips", "none"] = Field(
        "lpips", description="lpips (needs the [lpips] extra and the vgg16-imagenet weights) or none."
    )
    perceptual_weight: float = Field(1.0, ge=0, description="Weight of LPIPS.")
    pixel: float = Field(1.0, ge=0, description="Weight of the pixel MSE (images in [-1, 1]).")
    encoder: Optional[str] = Field(None, description="A registered encoder for a 1 - cos term (none by default).")
    encoder_weight: float = Field(1.0, ge=0, description="Weight of the encoder term.")
    init: Optional[str] = Field(None, description="Start from this inverter's output (e4e, toy-encoder) instead of the mean latent.")
    size: int = Field(256, ge=8, description="Compare images at most at this resolution.")
    vgg_weights: str = Field("vgg16-imagenet", description="VGG16 backbone of LPIPS: an asset name, a file or 'random'.")
    lpips_weights: str = Field("lpips", description="LPIPS linear layers: 'lpips' (the installed package's), a file or 'random'.")
    width: int = Field(64, ge=8, description="VGG16's first-layer channels (64: the real network; less for tests).")
    seed: int = Field(0, description="Seed of the latent noise.")
    device: str = Field("auto", description="Where LPIPS and the encoder run: auto, cpu, cuda ...")

    @model_validator(mode="after")
    def _checks(self) -> ProjectorConfig:
        if self.init == "projector":
            raise ValueError("init names another inverter (e4e, toy-encoder ...), not the projector itself")
        if not (self.pixel or (self.perceptual == "lpips" and self.perceptual_weight) or (self.encoder and self.encoder_weight)):
            raise ValueError("the projector needs a loss: a non-zero pixel, perceptual_weight or encoder weight")
        return self


def _component(kind: str, name: str, device: str) -> Any:
    reg = essence.get_registry().get(kind, name)
    return reg.build(**({"device": device} if "device" in reg.config.model_fields else {}))


def build_projector(config: ProjectorConfig) -> Any:
    """StyleGAN2-ADA's projector: LPIPS + pixel MSE (+ an encoder term), in W or W+, for any generator."""
    from essence.plugins.inverters.projector.perceptual import build_lpips
    from essence.plugins.inverters.projector.projector import Projector

    device = essence.resolve_device(config.device)
    perceptual = None
    if config.perceptual == "lpips":
        try:
            perceptual = build_lpips(config.vgg_weights, config.lpips_weights, width=config.width, device=device)
        except essence.MissingExtraError as exc:
            warnings.warn(f"{exc}. The projector goes on with pixel MSE{' and the encoder term' if config.encoder else ''} only.", stacklevel=2)
    encoder = _component("encoder", config.encoder, str(device)) if config.encoder else None
    init = _component("inverter", config.init, str(device)) if config.init else None
    return Projector(config, perceptual=perceptual, encoder=encoder, init=init)


def _detect(path: Any) -> bool:
    from essence.plugins.inverters.projector.perceptual import detect_vgg16

    return detect_vgg16(path)


def _convert(src: Any, dst: Any) -> dict[str, Any]:
    from essence.plugins.inverters.projector.perceptual import convert_vgg16

    return convert_vgg16(src, dst)


@essence.hookimpl
def register_inverters(register):
    register(
        "projector",
        build_projector,
        config=ProjectorConfig,
        tiny={"steps": 3, "w_avg_samples": 64, "vgg_weights": "random", "lpips_weights": "random", "width": 8, "device": "cpu"},
    )


@essence.hookimpl
def register_assets(register):
    register(essence.load_assets(ASSETS))


@essence.hookimpl
def register_converters(register):
    register("vgg16", _detect, _convert, description="torchvision's VGG16 .pth -> its convolutional layers (weights_only=True).")
