"""Which open_clip options a config may set: torch-free, used by the config validator and the factory."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import essence

#: The open_clip model-config keys an ``architecture`` override may set. Everything else that
#: ``open_clip.create_model`` takes (``pretrained_image_path``, ``weights_only``, ``jit``, ``cache_dir``, ...)
#: makes open_clip read, download or unpickle a file itself, so it is never passed from a config.
OPENCLIP_MODEL_KEYS = frozenset({"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "init_logit_scale", "init_logit_bias"})
#: Keys inside vision_cfg / text_cfg that name files, downloads or other packages' pretrained weights.
_FILE_KEY = re.compile(r"pretrained|path|file|url|cache|checkpoint|dir|^hf_|^timm_", re.I)


def check_openclip_model_config(cfg: Any, where: str = "architecture") -> dict[str, Any]:
    """An open_clip model config (an override, or a ``local-dir:`` folder's ``model_cfg``) with only the keys
    that shape a model: nothing that would make open_clip (or timm, or transformers) load a file."""
    if not isinstance(cfg, Mapping):
        raise essence.ConfigError(f"{where} must be a table of open_clip model-config keys, got {type(cfg).__name__}.")
    unknown = sorted(str(k) for k in cfg if k not in OPENCLIP_MODEL_KEYS)
    if unknown:
        raise essence.ConfigError(
            f"{where}: {unknown} cannot be set (only {sorted(OPENCLIP_MODEL_KEYS)}); weights files go in "
            "`weights`, which essence reads without running code."
        )
    for tower in ("vision_cfg", "text_cfg"):
        sub = cfg.get(tower)
        if sub is None:
            continue
        if not isinstance(sub, Mapping):
            raise essence.ConfigError(f"{where}.{tower} must be a table, got {type(sub).__name__}.")
        bad = sorted(str(k) for k in sub if _FILE_KEY.search(str(k)))
        if bad:
            raise essence.ConfigError(
                f"{where}.{tower}: {bad} would make a library fetch or read weights itself; refused. "
                "Give weights files in `weights`."
            )
    return dict(cfg)
