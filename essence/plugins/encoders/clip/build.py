"""Factories of the registered CLIP encoders: validated config -> :class:`CLIPEncoder`."""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

import essence
from essence import ConfigError, WeightsError
from essence.plugins.encoders.clip.options import check_openclip_model_config
from essence.plugins.encoders.clip.backends import (
    OPENAI_PRESETS,
    import_clip,
    import_open_clip,
    is_resnet,
    merge_architecture,
    openai_visual,
    seeded,
)
from essence.plugins.encoders.clip.checkpoint import infer_architecture, read_weights
from essence.plugins.encoders.clip.encoder import CLIPEncoder, check_precision
from essence.plugins.encoders.clip.text import TEXT_KEYS, openai_text, openclip_text, text_state


def load_visual(tower: torch.nn.Module, state: Mapping[str, torch.Tensor], where: Any, assign: bool = False) -> None:
    """Load the ``visual.*`` part of a CLIP state dict into an image tower; any mismatch is a WeightsError."""
    visual = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise WeightsError(f"{where}: no image tower in this file (no 'visual.*' keys).")
    try:
        missing, unexpected = tower.load_state_dict(visual, strict=False, assign=assign)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[-1].strip()
        raise WeightsError(f"{where}: the weights do not fit the image tower ({detail}).") from None
    if missing or unexpected:
        raise WeightsError(
            f"{where}: the weights do not fit the image tower (missing {sorted(missing)[:4]}, "
            f"unexpected {sorted(unexpected)[:4]}). Is it a CLIP checkpoint of this architecture?"
        )


@contextlib.contextmanager
def _quiet_random_init_notice() -> Iterator[None]:
    """open_clip logs "No pretrained weights loaded" when it builds without a tag; here the weights
    are loaded right after (or random was asked for), so the notice would mislead."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _weights_id(info: Mapping[str, Any]) -> str:
    return f"sha256:{info['sha256'][:16]}"


def build_openai(config: Any, preset: Mapping[str, Any]) -> CLIPEncoder:
    """An openai-clip image tower: random (``preset`` plus ``architecture``) or from a weights file."""
    device = essence.resolve_device(config.device)
    check_precision(config.precision, device)
    import_clip()  # before any meta-device block: importing must create real tensors
    if config.weights == "random":
        arch = merge_architecture(preset, config.architecture)
        with seeded(0):
            tower = openai_visual(arch)
        weights_id = "random"

        def text() -> Any:
            return openai_text(arch, None, device, "random weights")
    else:
        if config.architecture:
            raise ConfigError(
                "`architecture` only applies to weights='random': a weights file carries its own architecture."
            )
        path = essence.resolve_weights(config.weights, kind="encoder")
        state, info = read_weights(path)
        arch = infer_architecture(state, path)
        if is_resnet(arch) != is_resnet(preset):
            has, wants = ("a ResNet", "a ViT") if is_resnet(arch) else ("a ViT", "a ResNet")
            other = "clip-rn50" if is_resnet(arch) else "clip-vitb32"
            raise WeightsError(f"{path} holds {has} CLIP, but this encoder is {wants}; use the {other!r} encoder.")
        with torch.device("meta"):
            tower = openai_visual(arch)
        load_visual(tower, state, path, assign=True)
        weights_id = _weights_id(info)
        del state
        # The text tower is read again from the file only if a text is embedded (most runs embed none);
        # an image-tower-only file has none.
        text = (lambda: openai_text(arch, read_weights(path)[0], device, path)) if "transformer_width" in arch else None
    return CLIPEncoder(
        tower,
        embed_dim=int(arch["embed_dim"]),
        input_resolution=int(arch["image_resolution"]),
        resample=config.resample,
        normalize=config.normalize,
        precision=config.precision,
        device=device,
        weights_id=weights_id,
        text=text,
    )


def build_openclip(config: Any) -> CLIPEncoder:
    """An open_clip model: an open_clip pretrained tag, a weights file or asset, or random."""
    device = essence.resolve_device(config.device)
    check_precision(config.precision, device)
    open_clip = import_open_clip()
    if config.pretrained and config.weights is not None:
        raise ConfigError(
            "Give either `weights` (a file, a weights name or 'random') or `pretrained` (an open_clip tag), not both."
        )
    arch, source, tag = config.arch, config.weights, None
    if config.pretrained:
        if Path(config.pretrained).expanduser().is_file():
            source = config.pretrained  # read by essence's safe reader, never by torch.jit/pickle
        else:
            tag = config.pretrained
    local = arch.startswith("local-dir:")
    if local:
        folder = local_dir_weights(arch)
        if tag is not None:
            raise ConfigError(f"arch {arch!r} is a folder with its own weights; a pretrained tag does not apply to it.")
        if source is None:
            source = str(folder) if folder is not None else "random"
    if source is None and tag is None:
        if arch not in OPENAI_PRESETS:
            raise ConfigError(
                f"openclip arch {arch!r} has no default weights: give weights= (a file, a weights name or "
                "'random') or pretrained= (an open_clip tag)."
            )
        source, arch = OPENAI_PRESETS[arch]
    if not local and arch not in open_clip.list_models():
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=1)
        tip = f" Did you mean {close[0]!r}?" if close else " See open_clip.list_models()."
        raise ConfigError(f"open_clip has no architecture {arch!r}.{tip}")

    state = path = None
    quick_gelu = False
    if source is not None and source != "random":
        path = essence.resolve_weights(source, kind="encoder")
        state, info = read_weights(path)
        quick_gelu = bool(info["openai"])  # OpenAI trained with QuickGELU; open_clip's plain configs use GELU
        weights_id = _weights_id(info)
    elif tag is not None:
        tag_cfg = open_clip.get_pretrained_cfg(arch, tag)
        if not tag_cfg:
            tags = open_clip.list_pretrained_tags_by_model(arch)
            raise ConfigError(
                f"open_clip has no pretrained weights {tag!r} for {arch!r} (it has: {', '.join(tags) or 'none'}), "
                "and it is not a file."
            )
        quick_gelu = bool(tag_cfg.get("quick_gelu", False))
        path = download_tag(open_clip, tag_cfg, arch, tag)  # open_clip fetches the file; essence reads it
        state, _ = read_weights(path)
        weights_id = f"open_clip:{arch}/{tag}"
    else:
        weights_id = "random"
    overrides = check_openclip_model_config(config.architecture or {})

    def create() -> Any:
        try:
            with seeded(0), _quiet_random_init_notice():
                # open_clip loads no file: every weights file goes through read_weights below.
                return open_clip.create_model(
                    arch,
                    pretrained=None,
                    load_weights=False,
                    pretrained_image=False,
                    pretrained_text=False,
                    weights_only=True,
                    jit=False,
                    force_quick_gelu=quick_gelu,
                    device="cpu",
                    precision="fp32",
                    **overrides,
                )
        except TypeError as exc:
            raise ConfigError(f"open_clip rejected the architecture overrides {config.architecture}: {exc}") from None
        except (RuntimeError, ValueError, OSError) as exc:
            raise WeightsError(f"open_clip could not build {arch!r}: {exc}") from None

    def text_from_file() -> Any:  # the text tower is built again, from the file, only if a text is embedded
        rebuilt = create()
        load_text(rebuilt, read_weights(path)[0], path)
        return openclip_text(rebuilt, arch, device)

    model = create()
    text: Any = None
    if state is not None:
        load_visual(model.visual, state, path)
        text = text_from_file if text_state(state) else None
    elif callable(getattr(model, "encode_text", None)):
        text = lambda: openclip_text(create(), arch, device)  # noqa: E731
    del state
    return CLIPEncoder.from_model(
        model,
        resample=config.resample,
        normalize=config.normalize,
        precision=config.precision,
        device=device,
        weights_id=weights_id,
        text=text,
    )


#: The weights file names open_clip looks for in a ``local-dir:`` folder, in its order (safetensors first).
LOCAL_WEIGHTS = (
    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "model.safetensors",
    "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
)


def local_dir_weights(arch: str) -> Path | None:
    """The weights file of a ``local-dir:`` folder (None: random), after checking its ``open_clip_config.json``
    as strictly as an ``architecture`` override: open_clip then builds the model and reads no file but that JSON."""
    import json

    folder = Path(arch[len("local-dir:") :]).expanduser()
    cfg_file = folder / "open_clip_config.json"
    if not folder.is_dir():
        raise ConfigError(f"arch {arch!r}: no folder {folder}.")
    try:
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"arch {arch!r}: {cfg_file} is missing (open_clip's model config).") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{cfg_file}: not a readable JSON file ({exc}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_cfg"), dict):
        raise ConfigError(f"{cfg_file}: no model_cfg table.")
    check_openclip_model_config(data["model_cfg"], where=str(cfg_file))
    for name in LOCAL_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    return None


def download_tag(open_clip: Any, tag_cfg: Any, arch: str, tag: str) -> Path:
    """The file of an open_clip pretrained tag (open_clip's cache, or a download); read by essence, not by open_clip."""
    try:
        found = open_clip.download_pretrained(tag_cfg)
    except Exception as exc:  # open_clip wraps hub and urllib errors alike
        raise WeightsError(f"open_clip could not fetch the weights {arch}/{tag}: {exc}") from None
    if not found:
        raise WeightsError(f"open_clip has no download for {arch}/{tag}; give its weights file as weights=.")
    return Path(found)


def load_text(model: torch.nn.Module, state: Mapping[str, torch.Tensor], where: Any) -> None:
    """Load the text tower's part of a CLIP state dict into an open_clip model; a mismatch is a WeightsError."""
    text = text_state(state)
    try:
        missing, unexpected = model.load_state_dict(text, strict=False)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[-1].strip()
        raise WeightsError(f"{where}: the text weights do not fit the text tower ({detail}).") from None
    missing = [k for k in missing if k.startswith(TEXT_KEYS)]
    if missing or unexpected:
        raise WeightsError(
            f"{where}: the text weights do not fit the text tower (missing {sorted(missing)[:4]}, "
            f"unexpected {sorted(unexpected)[:4]})."
        )
