"""Tiny differentiable stand-ins for StyleGAN2 and CLIP, registered as a test plugin.

They implement essence.Generator / essence.Encoder the way the real plugins do (W+ in, images in [-1, 1]
out; embeddings L2-normalised; the encoder's ``normalize``/``resample`` options), at a size where a
step takes milliseconds. Add them to a fresh plugin host with :func:`install`.
"""

from __future__ import annotations

import sys
from typing import Literal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import essence


class TinyGeneratorConfig(essence.ComponentConfig):
    seed: int = 0
    w_dim: int = 8
    channels: int = 8
    device: str = "cpu"


class TinyGenerator(nn.Module, essence.Generator):
    """Mapping MLP, then 4 style-modulated conv layers (two 2x upsamples) from a learned 4x4 constant."""

    resolution = 16
    num_ws = 4
    #: Photos go through the projector at a test size (no LPIPS, few steps), never a download.
    default_inverter = "tiny-projector"

    #: How many were built: tests use it to prove a bad input failed before any model was built.
    built = 0

    def __init__(self, config: TinyGeneratorConfig) -> None:
        super().__init__()
        TinyGenerator.built += 1
        torch.manual_seed(config.seed)
        self.w_dim = self.z_dim = config.w_dim
        c = config.channels
        self.weights_id = f"random-seed{config.seed}"
        self.map = nn.Sequential(nn.Linear(self.z_dim, self.w_dim), nn.LeakyReLU(0.2), nn.Linear(self.w_dim, self.w_dim))
        self.const = nn.Parameter(torch.randn(1, c, 4, 4))
        self.affine = nn.ModuleList(nn.Linear(self.w_dim, c) for _ in range(self.num_ws))
        self.convs = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(self.num_ws))
        self.to_rgb = nn.Conv2d(c, 3, 1)
        for module in self.modules():  # variance-preserving init, so that w visibly changes the image
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                fan_in = module.weight[0].numel()
                nn.init.normal_(module.weight, std=(2 / fan_in) ** 0.5)
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            z = torch.randn(256, self.z_dim, generator=torch.Generator().manual_seed(1234))
            self.register_buffer("_mean_w", self.map(z).mean(0, keepdim=True))
        self.requires_grad_(False)
        self.to(config.device)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.map(z)

    @property
    def mean_w(self) -> torch.Tensor:
        return self._mean_w

    def synthesize(self, ws: torch.Tensor, noise: essence.NoiseMode = "const") -> torch.Tensor:
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        for k, (affine, conv) in enumerate(zip(self.affine, self.convs)):
            style = 1 + 0.5 * affine(ws[:, k])
            x = F.leaky_relu(conv(x * style[:, :, None, None]), 0.2)
            if k in (1, 3) and x.shape[-1] < self.resolution:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        return torch.tanh(self.to_rgb(x))


class TinyEncoderConfig(essence.ComponentConfig):
    seed: int = 0
    embed_dim: int = 16
    normalize: bool = True
    resample: Literal["area", "bicubic"] = "area"
    device: str = "cpu"


MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


class TinyEncoder(nn.Module, essence.Encoder):
    """Two strided convs and a linear head on 16x16 inputs, with CLIP's input conventions."""

    input_resolution = 16

    def __init__(self, config: TinyEncoderConfig) -> None:
        super().__init__()
        torch.manual_seed(1000 + config.seed)
        self.config = config
        self.embed_dim = config.embed_dim
        self.weights_id = f"random-seed{config.seed}"
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.GELU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.GELU()
        )
        self.head = nn.Linear(32 * 4 * 4, config.embed_dim)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.to(config.device)

    def embed_preprocessed(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.net(inputs)
        return F.normalize(self.head((features - features.mean((1, 2, 3), keepdim=True)).flatten(1)), dim=-1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        r = self.input_resolution
        if self.config.resample == "area":
            x = F.adaptive_avg_pool2d(images, r)
        else:
            x = F.interpolate(images, size=(r, r), mode="bicubic", align_corners=False, antialias=True)
        if self.config.normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        return self.embed_preprocessed(x)

    def preprocess(self, image):
        import numpy as np

        img = image.convert("RGB").resize((self.input_resolution, self.input_resolution))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        return ((x - self.mean.cpu()) / self.std.cpu()).to(self.mean.device)


@essence.hookimpl
def register_generators(register):
    register("tiny-gen", TinyGenerator, config=TinyGeneratorConfig, description="Test double of StyleGAN2.", tiny={})


@essence.hookimpl
def register_encoders(register):
    register("tiny-enc", TinyEncoder, config=TinyEncoderConfig, description="Test double of CLIP.", tiny={})


def tiny_projector(config):
    """The real projector at a test size: pixel MSE only, few steps."""
    return essence.get_registry().get("inverter", "projector").factory(config)


@essence.hookimpl
def register_inverters(register):
    from essence.plugins.inverters.projector import ProjectorConfig

    register(
        "tiny-projector", tiny_projector, config=ProjectorConfig,
        defaults={"steps": 25, "perceptual": "none", "w_avg_samples": 256, "device": "cpu"}, tiny={},
    )


def install() -> None:
    """Add this module as a plugin to the (fresh) plugin host."""
    from essence.core import plugins

    plugins.get_host().add(sys.modules[__name__], "engine-doubles", None, builtin=False)


class NanAtConfig(essence.ComponentConfig):
    step: int = 3


class NanAt(essence.LossTerm):
    """A loss term that is 0 until ``step``, then NaN: drives the engine's non-finite handling."""

    def __call__(self, ctx: essence.LossContext) -> torch.Tensor:
        value = ctx.shifted.sum() * 0
        return value + float("nan") if ctx.step >= self.config.step else value


class SigintAt(essence.LossTerm):
    """A zero loss term that sends this process SIGINT (a user's Ctrl-C) at ``step`` of restart 0."""

    def __call__(self, ctx: essence.LossContext) -> torch.Tensor:
        import os
        import signal

        if ctx.step == self.config.step and ctx.extras.get("restart") == 0:
            os.kill(os.getpid(), signal.SIGINT)
        return ctx.shifted.sum() * 0


@essence.hookimpl
def register_losses(register):
    register("nan-at", NanAt, config=NanAtConfig, description="Test loss: NaN from a given step.", tiny={})
    register("sigint-at", SigintAt, config=NanAtConfig, description="Test loss: Ctrl-C at a given step.")


@pytest.fixture
def doubles(fresh_plugins):
    """A fresh plugin host with the doubles installed, on one CPU thread (the shared machine is busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    install()
    yield sys.modules[__name__]
    torch.set_num_threads(threads)


@pytest.fixture
def components(doubles):
    """(generator, encoder) built through the registry, as a run builds them."""
    return essence.get_generator("tiny-gen"), essence.get_encoder("tiny-enc")


@pytest.fixture
def target_file(tmp_path):
    from PIL import Image

    path = tmp_path / "target.png"
    Image.new("RGB", (40, 30), (200, 30, 40)).save(path)
    return path
