"""Feature networks for the Gatys baseline: ``vgg19`` (torchvision's VGG19 layout, ImageNet weights).

``vgg19`` reads torchvision's ``vgg19-dcbb9e9d.pth`` (the asset ``vgg19-imagenet``, converted once to
safetensors; the ``.pth`` itself is read with ``torch.load(weights_only=True)``), a converted file, or
``random`` weights (for tests). The toy world's stand-in, ``toy-clip-features``, lives with the toy world
in ``plugins/toy``. Heavy imports stay in ``vgg.py``: importing this package loads no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from pydantic import Field

import essence

ASSETS = Path(__file__).with_name("assets.json")


class VGG19Config(essence.ComponentConfig):
    weights: str = Field(
        "vgg19-imagenet", description="An asset name (essence weights list), torchvision's vgg19 .pth, its "
        "safetensors conversion, or 'random' (seeded random weights, for tests)."
    )
    width: float = Field(1.0, gt=0, description="With weights='random': channel multiplier (1: VGG19's 64..512).")
    resolution: Union[int, None] = Field(
        256, ge=16, description="Images are resized to this side before the network (None: as they come)."
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps ...")


def build_vgg19(config: VGG19Config) -> Any:
    """VGG19's convolutional layers (torchvision layout): relu1_1, relu2_1, relu3_1, relu4_1, relu4_2, relu5_1."""
    from essence.plugins.features.vgg import VGG19Features, load_vgg19

    device = essence.resolve_device(config.device)
    if config.weights == "random":
        return VGG19Features.random(config.width, resolution=config.resolution).to(device)
    if config.width != 1.0:
        raise essence.ConfigError("width is only for weights='random': a weights file says its own channels.")
    path = essence.resolve_weights(config.weights, kind="features")
    return load_vgg19(path, resolution=config.resolution, weights_id=essence.sha256_file(path)[:16]).to(device)


def _detect(path: Any) -> bool:
    from essence.plugins.features.vgg import detect

    return detect(path)


def _convert(src: Any, dst: Any) -> dict[str, Any]:
    from essence.plugins.features.vgg import convert

    return convert(src, dst)


@essence.hookimpl
def register_features(register):
    register(
        "vgg19", build_vgg19, config=VGG19Config, tiny={"weights": "random", "width": 0.0625, "device": "cpu"},
        description="VGG19 conv features (torchvision layout, ImageNet weights): the Gatys baseline's network.",
    )


@essence.hookimpl
def register_assets(register):
    register(essence.load_assets(ASSETS))


@essence.hookimpl
def register_converters(register):
    register("torchvision-vgg19", _detect, _convert,
             description="torchvision VGG19 .pth (read with weights_only=True) -> safetensors (conv layers only).")
