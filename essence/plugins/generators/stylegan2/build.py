"""Build a StyleGAN2 generator from its config: seeded random weights, or a checkpoint in any format.

Reading checkpoints (checkpoints.py) and the network (model.py) stay apart: this module joins them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

import essence
from essence.plugins.generators.stylegan2.checkpoints import read_checkpoint
from essence.plugins.generators.stylegan2.model import StyleGAN2Generator

if TYPE_CHECKING:
    from essence.plugins.generators.stylegan2.config import StyleGAN2Config


def file_id(path: Path) -> str:
    """SHA256 prefix of a weights file, recorded in direction files."""
    return essence.sha256_file(path)[:16]


def build_generator(config: StyleGAN2Config, name: str = "stylegan2") -> StyleGAN2Generator:
    """A frozen, eval-mode generator for ``config``: seeded random weights, or a checkpoint in any format."""
    device = essence.resolve_device(config.device)
    if config.weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            generator = StyleGAN2Generator(config.expected(), config.lr_mlp)
    else:
        path = essence.resolve_weights(config.weights, kind="generator")
        ckpt = read_checkpoint(path)
        arch = config.expected(ckpt.arch)
        if arch != ckpt.arch:
            raise essence.WeightsError(
                f"{path} holds a {ckpt.arch.describe()} with channels {ckpt.arch.channels}, but generator "
                f"{name!r} is configured for a {arch.describe()} with channels {arch.channels}. Pass the "
                "matching weights, or use generator 'stylegan2', which takes its architecture from the file."
            )
        with torch.device("meta"):
            generator = StyleGAN2Generator(arch, config.lr_mlp)
        generator.to_empty(device="cpu")
        generator.load_state_dict(ckpt.state_dict, strict=True)
        if ckpt.latent_avg is not None:
            generator.mean_w = ckpt.latent_avg
        generator.weights_id = file_id(path)
    generator.requires_grad_(False).eval().to(device)
    if config.dtype != "float32":
        generator.autocast_dtype = getattr(torch, config.dtype)
    generator.use_compile = config.compile
    generator.alignment, generator.default_inverter = config.alignment, config.default_inverter
    return generator
