"""The toy world: procedural sprites with known factors, and the small models trained on them.

Submodules import numpy/torch; this package imports neither, so listing plugins stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

import essence

#: The shipped toy-sprites generator, trained by ``scripts/train_toy_sprites.py`` (record beside it).
SPRITES_WEIGHTS = Path(__file__).with_name("toy-sprites.safetensors")


class ToySpritesConfig(essence.ComponentConfig):
    """The shipped 32-px StyleGAN2 of clean toy sprites; samples at the engine's psi 0.7 stay clean."""

    device: str = Field("auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:1', ...")


def build_sprites(config: ToySpritesConfig) -> Any:
    if not SPRITES_WEIGHTS.is_file():
        raise essence.WeightsError(
            f"The toy-sprites weights are missing from the installed package ({SPRITES_WEIGHTS}); reinstall "
            "essence-transfer, or train them with scripts/train_toy_sprites.py."
        )
    return essence.get_generator("stylegan2", weights=str(SPRITES_WEIGHTS), device=config.device)


@essence.hookimpl
def register_generators(register):
    register(
        "toy-sprites",
        build_sprites,
        config=ToySpritesConfig,
        description="Toy sprites (shape, colour, pattern, background; position, size): a shipped 32-px "
        "StyleGAN2, 8 ws, 2 MB, for the demo and benchmarks with ground truth.",
        tiny={"device": "cpu"},
    )
