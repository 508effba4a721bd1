"""The two CLIP packages: importing them safely and building image towers from architecture facts.

``architecture`` dicts use the argument names of ``clip.model.CLIP`` for the image tower:
``embed_dim``, ``image_resolution``, ``vision_layers`` (an int for a ViT, four ints for a ResNet),
``vision_width`` and ``vision_patch_size`` (ViT only); the text tower's are ``context_length``,
``vocab_size``, ``transformer_width``, ``transformer_heads`` and ``transformer_layers``. Head counts follow OpenAI's convention (a head
is 64 wide), because checkpoints do not record them.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from essence import ConfigError, EssenceError

#: The text tower of OpenAI's ViT-B/32 and RN50 (for text targets; built only when a text is embedded).
OPENAI_TEXT: dict[str, Any] = {
    "context_length": 77,
    "vocab_size": 49408,
    "transformer_width": 512,
    "transformer_heads": 8,
    "transformer_layers": 12,
}
VIT_B32: dict[str, Any] = {
    "embed_dim": 512,
    "image_resolution": 224,
    "vision_layers": 12,
    "vision_width": 768,
    "vision_patch_size": 32,
    **OPENAI_TEXT,
}
RN50: dict[str, Any] = {
    "embed_dim": 1024,
    "image_resolution": 224,
    "vision_layers": [3, 4, 6, 3],
    "vision_width": 64,
    "vision_patch_size": None,
    **OPENAI_TEXT,
}
ARCH_KEYS = frozenset(VIT_B32)

#: open_clip architectures whose OpenAI weights are the assets of this plugin, with the config
#: that reproduces them (QuickGELU, as OpenAI trained them).
OPENAI_PRESETS: dict[str, tuple[str, str]] = {
    "ViT-B-32": ("clip-vitb32", "ViT-B-32-quickgelu"),
    "ViT-B-32-quickgelu": ("clip-vitb32", "ViT-B-32-quickgelu"),
    "RN50": ("clip-rn50", "RN50-quickgelu"),
    "RN50-quickgelu": ("clip-rn50", "RN50-quickgelu"),
}


def import_clip() -> types.ModuleType:
    """``import clip`` (openai-clip 1.0.1), which needs ``pkg_resources.packaging``.

    clip uses nothing of it but ``packaging.version``. setuptools >= 81 no longer ships
    ``pkg_resources``, and older ones warn that it is deprecated and take a while to import it; so,
    unless something already imported the real one, a stub exposing the real ``packaging`` stands in
    while ``clip`` imports, and is removed afterwards so that nothing else mistakes it for the real module.
    """
    if "clip" in sys.modules:
        return sys.modules["clip"]
    shim = None
    if "pkg_resources" not in sys.modules:
        import packaging
        import packaging.version

        shim = types.ModuleType("pkg_resources")
        shim.packaging = packaging  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    try:
        import clip
    except ImportError as exc:
        raise EssenceError(
            f"Cannot import openai-clip ({exc}). Install it with `pip install openai-clip`."
        ) from None
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return clip


def import_open_clip() -> types.ModuleType:
    try:
        import open_clip
    except ImportError as exc:
        raise EssenceError(
            f"Cannot import open_clip ({exc}). Install it with `pip install open_clip_torch`."
        ) from None
    return open_clip


def is_resnet(arch: Mapping[str, Any]) -> bool:
    return isinstance(arch["vision_layers"], (list, tuple))


def merge_architecture(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The preset's image tower with ``overrides`` applied; unknown keys or a changed family are errors."""
    arch = dict(base)
    if not overrides:
        return arch
    unknown = sorted(set(overrides) - ARCH_KEYS)
    if unknown:
        raise ConfigError(
            f"Unknown architecture key(s) {unknown}; use {sorted(ARCH_KEYS)} (clip.model.CLIP's argument names)."
        )
    arch.update(overrides)
    if is_resnet(arch) != is_resnet(base):
        family = "a ResNet (vision_layers: four ints)" if is_resnet(base) else "a ViT (vision_layers: one int)"
        raise ConfigError(f"This encoder is {family}; the architecture override changes the family.")
    return arch


def openai_visual(arch: Mapping[str, Any]) -> torch.nn.Module:
    """An openai-clip image tower (fp32, random weights) for ``arch``."""
    model = import_clip().model
    width, res, dim = int(arch["vision_width"]), int(arch["image_resolution"]), int(arch["embed_dim"])
    if is_resnet(arch):
        layers = tuple(int(n) for n in arch["vision_layers"])
        if len(layers) != 4:
            raise ConfigError(f"A ResNet has four stages; vision_layers={list(layers)}.")
        if width * 32 % 64:
            raise ConfigError(f"A ResNet's vision_width must be even (got {width}).")
        return model.ModifiedResNet(
            layers=layers, output_dim=dim, heads=width * 32 // 64, input_resolution=res, width=width
        )
    if width < 64 or width % 64:
        raise ConfigError(f"A ViT's vision_width must be a multiple of 64 (got {width}): its heads are 64 wide.")
    return model.VisionTransformer(
        input_resolution=res,
        patch_size=int(arch["vision_patch_size"]),
        width=width,
        layers=int(arch["vision_layers"]),
        heads=width // 64,
        output_dim=dim,
    )


@contextlib.contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Random initialisation that is the same every time, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
