"""CLIP image encoders (the C of TargetCLIP) through openai-clip and open_clip.

Registers the encoders ``clip-vitb32`` and ``clip-rn50`` (OpenAI's weights, openai-clip's model code)
and ``openclip`` (any open_clip architecture), the assets ``clip-vitb32`` / ``clip-rn50`` (OpenAI's
TorchScript files) and the ``openai-clip`` converter that turns those into float32 safetensors.

Importing this module loads no torch: the factories import the heavy submodules when called.
``CLIPEncoder`` (``from essence.plugins.encoders.clip import CLIPEncoder``) wraps any already built
CLIP model with ``CLIPEncoder.from_model(model, resample=..., normalize=...)``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

import essence
from essence.plugins.encoders.clip.options import check_openclip_model_config

ASSETS_FILE = Path(__file__).with_name("assets.json")

#: Tiny random towers for contract tests (2 even heads, so attention takes the same paths as the real models);
#: their text towers keep the real vocabulary, so the real tokenizers work with them.
TINY_TEXT: dict[str, Any] = {"transformer_width": 64, "transformer_heads": 1, "transformer_layers": 1}
TINY_VIT: dict[str, Any] = {"embed_dim": 32, "vision_layers": 2, "vision_width": 128, "vision_patch_size": 32, **TINY_TEXT}
TINY_RN: dict[str, Any] = {"embed_dim": 32, "vision_layers": [1, 1, 1, 1], "vision_width": 8, **TINY_TEXT}
TINY_OPENCLIP: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 128, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1},
}


class CLIPConfig(essence.ComponentConfig):
    weights: str = Field(
        description="A weights file (OpenAI TorchScript archive, .pt state dict or safetensors), "
        "a registered weights name, or 'random'."
    )
    device: str = Field("auto", description="'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'.")
    precision: Literal["fp32", "fp16", "bf16"] = Field(
        "fp32",
        description="fp16/bf16 run the tower under CUDA autocast (CUDA only); resizing, normalisation "
        "and the output stay fp32.",
    )
    resample: Literal["area", "bicubic"] = Field(
        "bicubic",
        description="How generator images reach the input size: 'area' (exact box average, the official "
        "TargetCLIP map) or 'bicubic' (antialiased, like CLIP's own preprocessing).",
    )
    normalize: bool = Field(
        True,
        description="Apply CLIP's mean/std to generator images; false feeds [-1, 1] images as the "
        "official TargetCLIP code does.",
    )
    architecture: dict[str, Any] | None = Field(
        None,
        description="With weights='random' only: image-tower overrides in clip.model.CLIP's argument "
        "names (embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size), e.g. tiny "
        "models for tests.",
    )


class OpenCLIPConfig(CLIPConfig):
    arch: str = Field(
        "ViT-B-32-quickgelu",
        description="An open_clip architecture (open_clip.list_models()), or 'hf-hub:...' / 'local-dir:...'.",
    )
    pretrained: str | None = Field(
        None,
        description="An open_clip pretrained tag (downloaded by open_clip) or a local checkpoint file.",
    )
    weights: str | None = Field(  # type: ignore[assignment]
        None,
        description="A weights file, a registered weights name, or 'random'. Unset with pretrained unset: "
        "OpenAI's weights for ViT-B-32 / RN50 (with QuickGELU, as trained).",
    )
    architecture: dict[str, Any] | None = Field(
        None,
        description="Overrides of open_clip's model config, passed to open_clip.create_model "
        "(embed_dim, vision_cfg, text_cfg; a sub-dict replaces the whole entry), e.g. tiny models for tests. "
        "No option that names a file (pretrained_image_path, weights_only, hf_/timm_ pretrained ...).",
    )

    @field_validator("architecture")
    @classmethod
    def _model_keys_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_openclip_model_config(value)

    @field_validator("arch")
    @classmethod
    def _no_remote_arch(cls, value: str) -> str:
        if value.startswith("hf-hub:"):
            raise ValueError(
                "hf-hub: models are downloaded and unpickled by open_clip itself; download the folder "
                "(open_clip_config.json and a weights file) and use arch='local-dir:FOLDER'"
            )
        return value


def _vitb32(config: CLIPConfig) -> Any:
    """OpenAI CLIP ViT-B/32 image encoder (openai-clip model code)."""
    from essence.plugins.encoders.clip.backends import VIT_B32
    from essence.plugins.encoders.clip.build import build_openai

    return build_openai(config, VIT_B32)


def _rn50(config: CLIPConfig) -> Any:
    """OpenAI CLIP RN50 image encoder (openai-clip model code)."""
    from essence.plugins.encoders.clip.backends import RN50
    from essence.plugins.encoders.clip.build import build_openai

    return build_openai(config, RN50)


def _openclip(config: OpenCLIPConfig) -> Any:
    """Any open_clip image encoder: pretrained tag, weights file or random."""
    from essence.plugins.encoders.clip.build import build_openclip

    return build_openclip(config)


def _detect(path: Path) -> bool:
    from essence.plugins.encoders.clip.checkpoint import detect

    return detect(path)


def _convert(src: Path, dst: Path) -> dict[str, Any]:
    from essence.plugins.encoders.clip.checkpoint import convert

    return convert(src, dst)


@essence.hookimpl
def register_encoders(register):
    register(
        "clip-vitb32",
        _vitb32,
        config=CLIPConfig,
        defaults={"weights": "clip-vitb32"},
        description="OpenAI CLIP ViT-B/32 image encoder (openai-clip), as in the TargetCLIP paper.",
        tiny={"weights": "random", "architecture": TINY_VIT},
    )
    register(
        "clip-rn50",
        _rn50,
        config=CLIPConfig,
        defaults={"weights": "clip-rn50"},
        description="OpenAI CLIP RN50 image encoder (openai-clip).",
        tiny={"weights": "random", "architecture": TINY_RN},
    )
    register(
        "openclip",
        _openclip,
        config=OpenCLIPConfig,
        description="Any open_clip image encoder (arch + pretrained tag, weights file, or OpenAI's weights).",
        tiny={"weights": "random", "arch": "ViT-B-32-quickgelu", "architecture": TINY_OPENCLIP},
    )


@essence.hookimpl
def register_assets(register):
    register(essence.load_assets(ASSETS_FILE))


@essence.hookimpl
def register_converters(register):
    register(
        "openai-clip",
        _detect,
        _convert,
        description="OpenAI CLIP checkpoint (TorchScript archive or state dict) -> float32 safetensors, "
        "read without running the archive's code.",
    )


# The heavy public names, imported on first access (never by the plugin host).
_LAZY = {
    "CLIPEncoder": "essence.plugins.encoders.clip.encoder",
    "import_clip": "essence.plugins.encoders.clip.backends",
    "import_open_clip": "essence.plugins.encoders.clip.backends",
    "area_resample": "essence.plugins.encoders.clip.resample",
    "read_weights": "essence.plugins.encoders.clip.checkpoint",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
