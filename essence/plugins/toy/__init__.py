"""The toy world: procedural sprites with known factors, and the small models trained on them.

Registers the ``toy-sprites`` generator, the ``toy-clip`` encoder, the ``toy-encoder`` inverter and the
``essence demo`` command.
Submodules import numpy/torch; this package imports neither, so listing plugins stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

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
    return essence.get_generator(
        "stylegan2", weights=str(SPRITES_WEIGHTS), device=config.device, alignment="none", default_inverter="toy-encoder"
    )


@essence.hookimpl
def register_generators(register):
    register(
        "toy-sprites",
        build_sprites,
        config=ToySpritesConfig,
        description="Toy sprites (shape, colour, pattern, background; position, size): a shipped 32-px "
        "StyleGAN2, 8 ws, 2 MB, for the demo and benchmarks with ground truth.",
        tiny={"device": "cpu"},
        wplus=_sprites_wplus,
    )


def _sprites_wplus(config: ToySpritesConfig) -> tuple[int, int] | None:
    """W+ of the shipped sprites generator, from its file's header (no weights loaded)."""
    return essence.get_registry().get("generator", "stylegan2").wplus_shape(weights=str(SPRITES_WEIGHTS))


#: toy-clip, trained by ``scripts/train_toy_clip.py`` (record beside it).
CLIP_WEIGHTS = Path(__file__).with_name("toy_clip.safetensors")


class ToyClipConfig(essence.ComponentConfig):
    device: str = Field("auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:1', ...")
    resample: Literal["area", "bicubic"] = Field("bicubic", description="How generator images reach 32 px.")
    normalize: bool = Field(True, description="Apply CLIP's mean/std to generator images (False: the official code's way).")


def build_toy_clip(config: ToyClipConfig) -> Any:
    """A tiny CLIP trained on the toy world: it sees shape, colour, pattern and background, not position or size."""
    import json

    from safetensors import safe_open

    if not CLIP_WEIGHTS.is_file():
        raise essence.WeightsError(f"The toy-clip weights are missing from the installed package ({CLIP_WEIGHTS}); reinstall essence-transfer.")
    with safe_open(str(CLIP_WEIGHTS), "pt") as f:
        arch = json.loads(f.metadata()["arch"])
    arch.pop("quick_gelu", None)  # the RN50-quickgelu base sets it
    encoder = essence.get_encoder(
        "openclip",
        arch="RN50-quickgelu",
        architecture=arch,
        weights=str(CLIP_WEIGHTS),
        device=config.device,
        resample=config.resample,
        normalize=config.normalize,
    )

    def text() -> Any:
        """The word tower, with toy-clip's own word-level tokenizer (open_clip's BPE does not fit it)."""
        from essence.plugins.toy.toyclip import load_toy_clip

        return load_toy_clip(CLIP_WEIGHTS, device=str(encoder.device)).encode_texts

    encoder.set_text(text)
    return encoder


@essence.hookimpl
def register_encoders(register):
    register(
        "toy-clip",
        build_toy_clip,
        config=ToyClipConfig,
        description="A tiny CLIP of the toy world (32 px, 3.6 MB, shipped): sees essence, not identity.",
        tiny={"device": "cpu"},
    )


class ToyFeaturesConfig(essence.ComponentConfig):
    device: str = Field("auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:1', ...")


def build_toy_features(config: ToyFeaturesConfig) -> Any:
    """toy-clip's image tower as a feature network: the toy world's stand-in for VGG19 (Gatys baseline)."""
    from essence.plugins.toy.features import ToyClipFeatures

    return ToyClipFeatures(build_toy_clip(ToyClipConfig(device=config.device)))


@essence.hookimpl
def register_features(register):
    register(
        "toy-clip-features",
        build_toy_features,
        config=ToyFeaturesConfig,
        description="The conv maps of toy-clip's image tower (stem + 4 stages): the toy world's VGG19 for Gatys.",
        tiny={"device": "cpu"},
    )


class ToyEncoderConfig(essence.ComponentConfig):
    weights: str = Field("shipped", description="'shipped' (trained by scripts/train_toy_encoder.py), a file, or 'random'.")
    device: str = Field("auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:1', ...")


def build_toy_encoder(config: ToyEncoderConfig) -> Any:
    """The shipped inverter of toy-sprites: a small CNN from a 32-px image to its W+ latent, in one pass."""
    from essence.plugins.toy.encoder import build_toy_encoder as build

    return build(config.weights, config.device)


@essence.hookimpl
def register_inverters(register):
    register(
        "toy-encoder",
        build_toy_encoder,
        config=ToyEncoderConfig,
        description="toy-sprites' shipped inverter (32 px image -> W+ in one pass, 0.8 MB): photos of sprites offline.",
        tiny={"weights": "random", "device": "cpu"},
    )


@essence.hookimpl
def register_commands(app):
    import typer

    @app.command("demo")
    def demo_command(
        out: Path = typer.Option(Path("essence-demo"), "--out", "-o", help="Folder for the two run folders."),
        target: Optional[list[str]] = typer.Option(
            None, "--target", "-t", help="in-domain and/or out-of-domain (default: both)."
        ),
        steps: Optional[int] = typer.Option(
            None, "--steps", min=1, help="Optimisation steps per target (default: 100 in-domain, 300 out-of-domain)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of sources, held-out sources and init."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only where the results are."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier demo in --out."),
    ) -> None:
        """See essence transfer work in about a minute: shipped toy models, bundled targets, no download."""
        from essence.plugins.toy.cli import demo

        demo(out=out, targets=target, steps=steps, seed=seed, quiet=quiet, overwrite=overwrite)
