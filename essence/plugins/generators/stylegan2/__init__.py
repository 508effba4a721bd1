"""StyleGAN2 config-f generator plugin: presets, known weights and the checkpoint converter.

Only hook implementations live here; torch and the model load when a generator is built.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import essence
from essence.plugins.generators.stylegan2.config import StyleGAN2Config, wplus_of

ASSETS = Path(__file__).with_name("assets.json")

#: A few-kilobyte model with the full architecture (every layer kind, 2 blocks), built in milliseconds.
TINY = {"weights": "random", "size": 16, "style_dim": 32, "n_mlp": 2, "channels": {4: 32, 8: 16, 16: 8}}

PRESETS: dict[str, dict[str, Any]] = {
    "stylegan2": {},
    "stylegan2-ffhq": {
        "weights": "stylegan2-ffhq", "size": 1024, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2,
        "alignment": "ffhq", "default_inverter": "e4e",
    },
    "stylegan2-church": {
        "weights": "stylegan2-church", "size": 256, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2,
        "alignment": "center", "default_inverter": "projector",
    },
}
DESCRIPTIONS = {
    "stylegan2": "StyleGAN2 config-f; size and channels from the weights file (any supported format).",
    "stylegan2-ffhq": "StyleGAN2 config-f FFHQ faces, 1024 px, 18 ws (NVIDIA, non-commercial licence).",
    "stylegan2-church": "StyleGAN2 config-f LSUN Church, 256 px, 14 ws (NVIDIA, non-commercial licence).",
}


def build_preset(config: StyleGAN2Config, name: str = "stylegan2") -> Any:
    from essence.plugins.generators.stylegan2.build import build_generator

    return build_generator(config, name)


def _detect(path: Any) -> bool:
    from essence.plugins.generators.stylegan2.checkpoints import detect

    return detect(path)


def _convert(src: Any, dst: Any) -> dict[str, Any]:
    from essence.plugins.generators.stylegan2.checkpoints import convert

    return convert(src, dst)


@essence.hookimpl
def register_generators(register):
    for name, defaults in PRESETS.items():
        register(
            name,
            partial(build_preset, name=name),
            config=StyleGAN2Config,
            defaults=defaults,
            description=DESCRIPTIONS[name],
            tiny=TINY,
            wplus=wplus_of,
        )


@essence.hookimpl
def register_assets(register):
    register(essence.load_assets(ASSETS))


@essence.hookimpl
def register_converters(register):
    register(
        "stylegan2",
        _detect,
        _convert,
        description="StyleGAN2 generators: rosinality .pt, NVIDIA TF .pkl, stylegan2-ada/stylegan3 .pkl "
        "-> safetensors (restricted unpicklers; nothing in the file is executed).",
    )
