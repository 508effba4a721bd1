"""essence: image-based, CLIP-guided essence transfer (TargetCLIP) with plugins.

The public API. Importing it loads no torch and no plugin; the registry fills on first use.
"""

from __future__ import annotations

from typing import Any

from essence.core.config import ComponentConfig
from essence.core.errors import (
    ConfigError,
    DuplicateNameError,
    EssenceError,
    MissingExtraError,
    PluginLoadWarning,
    UnknownComponentError,
    WeightsError,
)
from essence.core.devices import resolve_device
from essence.core.hookspecs import hookimpl
from essence.core.files import sha256_file
from essence.core.images import load_image, to_rgb
from essence.core.interfaces import (
    AlignedFace,
    Aligner,
    Alignment,
    Encoder,
    Face,
    FeatureNet,
    Generator,
    Inverter,
    LossContext,
    LossTerm,
    Metric,
    MetricContext,
    NoiseMode,
)
from essence.core.registry import (
    get_aligner,
    get_encoder,
    get_features,
    get_generator,
    get_inverter,
    get_loss,
    get_metric,
    get_registry,
    list_components,
)
from essence.weights.assets import Asset, load_assets
from essence.weights.resolve import resolve_weights
from essence.version import __version__


__all__ = [
    "AlignedFace",
    "Aligner",
    "Alignment",
    "Asset",
    "ComponentConfig",
    "ConfigError",
    "DuplicateNameError",
    "Encoder",
    "EssenceError",
    "Face",
    "FeatureNet",
    "Generator",
    "Inverter",
    "LossContext",
    "LossTerm",
    "Metric",
    "MetricContext",
    "MissingExtraError",
    "NoiseMode",
    "PluginLoadWarning",
    "UnknownComponentError",
    "WeightsError",
    "__version__",
    "get_aligner",
    "get_encoder",
    "get_generator",
    "get_features",
    "get_inverter",
    "get_loss",
    "get_metric",
    "get_registry",
    "hookimpl",
    "list_components",
    "load_assets",
    "load_image",
    "resolve_device",
    "resolve_weights",
    "sha256_file",
    "to_rgb",
]

# Heavy parts of the API, imported on first access.
_LAZY: dict[str, str] = {
    # the engine (essence.method.engine / runconfig / runner / artifacts)
    "optimize_direction": "essence.method.engine",
    "TransferResult": "essence.method.engine",
    "TraceRecord": "essence.method.engine",
    "StepEvent": "essence.method.engine",
    "RunConfig": "essence.method.runconfig",
    "build_run_config": "essence.method.runconfig",
    "list_presets": "essence.method.runconfig",
    "execute_run": "essence.method.runner",
    "resume_run": "essence.method.runner",
    "Direction": "essence.method.artifacts",
    "load_direction": "essence.method.artifacts",
    "save_direction": "essence.method.artifacts",
    "load_latents": "essence.method.artifacts",
    "save_latents": "essence.method.artifacts",
    "ensure_writable_dir": "essence.method.rundir",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'essence' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
