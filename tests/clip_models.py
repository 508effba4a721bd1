"""Tiny random CLIP models for the CLIP encoder tests (built here; no weights are downloaded).

Dimensions follow shared/specs/clip.md §1.4: the ViT has 2 heads (an even count, so attention takes
the same code paths as the real 12-head model); the ResNet's BatchNorm weights and running statistics
are randomised, since CLIP's own init zeroes every bottleneck's last BN and would hide those paths.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from essence.plugins.encoders.clip.backends import import_clip, import_open_clip

TEXT = dict(context_length=77, vocab_size=512, transformer_width=64, transformer_heads=1, transformer_layers=1)
VIT = dict(embed_dim=32, image_resolution=224, vision_layers=2, vision_width=128, vision_patch_size=32)
RN = dict(embed_dim=32, image_resolution=224, vision_layers=(1, 1, 1, 1), vision_width=8, vision_patch_size=None)
#: open_clip's spelling of the same architectures (create_model keyword overrides).
OPEN_CLIP_VIT = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 128, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 512, "width": 64, "heads": 1, "layers": 1},
}
OPEN_CLIP_RN = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    "text_cfg": {"context_length": 77, "vocab_size": 512, "width": 64, "heads": 1, "layers": 1},
}


def tiny_openai(kind: str, seed: int = 0) -> torch.nn.Module:
    """A tiny openai-clip CLIP (float32, eval) with random weights."""
    clip = import_clip()
    torch.manual_seed(seed)
    model = clip.model.CLIP(**(VIT if kind == "vit" else RN), **TEXT).float().eval()
    if kind == "rn":
        with torch.no_grad():
            for m in model.visual.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.2)
                    m.running_mean.normal_(0, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
    return model


def tiny_open_clip(kind: str, state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The same architecture in open_clip (QuickGELU, as OpenAI's), loaded strictly from ``state_dict``."""
    open_clip = import_open_clip()
    arch, overrides = ("ViT-B-32-quickgelu", OPEN_CLIP_VIT) if kind == "vit" else ("RN50-quickgelu", OPEN_CLIP_RN)
    model = open_clip.create_model(arch, pretrained=None, **overrides)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def save_torchscript(model: torch.nn.Module, path: Path) -> Path:
    """Save ``model`` the way OpenAI's files are: fp16-mixed weights, an ``input_resolution`` buffer,
    traced, ``torch.jit.save``."""
    import copy

    clip = import_clip()
    scripted = copy.deepcopy(model)
    clip.model.convert_weights(scripted)
    scripted.register_buffer("input_resolution", torch.tensor(224))
    dtype = scripted.visual.conv1.weight.dtype
    image = torch.randn(1, 3, 224, 224).to(dtype)
    text = torch.zeros(1, 77, dtype=torch.long)
    with warnings.catch_warnings():  # tracing warns about Python control flow in attention
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(scripted, {"encode_image": (image,), "encode_text": (text,)}, check_trace=False)
        torch.jit.save(traced, str(path))
    return path


def golden_clip(path: Path) -> torch.nn.Module:
    """The golden tiny ViT: built with the constructor in its metadata, visual weights loaded."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    clip = import_clip()
    with safe_open(str(path), "pt") as f:
        constructor = f.metadata()["constructor"]
    kwargs = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", constructor)}
    model = clip.model.CLIP(**kwargs).float()
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    assert not unexpected and all(not k.startswith("visual.") for k in missing)
    return model.eval()
