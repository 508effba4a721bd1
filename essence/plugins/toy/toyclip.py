"""``toy-clip``: a tiny CLIP (open_clip's ``CLIP`` class, OpenAI layout) that knows the toy world's words.

The weights ship as ``toy_clip.safetensors`` beside this file (fp16 storage, float32 after loading);
its metadata holds the architecture, the word list and the image mean/std, so the model is rebuilt
from the file alone: no network, no TorchScript, no pickle. ``toy_clip.json`` records how it was trained.

The vision tower is CLIP's ModifiedResNet (the RN50 design, tiny: width 16, one block per stage) at
32 px, the world's resolution; on a shared 2-core CPU it trained several times faster than a ViT of
similar size. The state dict has OpenAI CLIP key names (``quick_gelu``, text heads = width // 64), so
``clip.model.build_model`` reads it too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence.core.errors import ConfigError, WeightsError

if TYPE_CHECKING:
    import numpy as np
    import torch

WEIGHTS = Path(__file__).with_name("toy_clip.safetensors")
RECORD = Path(__file__).with_name("toy_clip.json")
FORMAT = "essence-toy-clip/1"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

#: The shipped architecture (open_clip.CLIP arguments; vision_cfg/text_cfg as dicts).
ARCH: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16, "head_width": 64},
    "text_cfg": {"context_length": 20, "width": 128, "heads": 2, "layers": 2},
    "quick_gelu": True,
}


class Tokenizer:
    """Word-level tokenizer for the world's caption grammar: 0 pad, 1 start, words, then end (the highest id).

    The end token is the highest id because CLIP pools the text at ``argmax`` of the token ids.
    """

    PAD, SOT = 0, 1

    def __init__(self, words: Sequence[str], context_length: int):
        self.words = list(words)
        self.ids = {w: i + 2 for i, w in enumerate(self.words)}
        self.eot = len(self.words) + 2
        self.vocab_size = self.eot + 1
        self.context_length = context_length

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        import torch

        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            words = re.findall(r"[a-z]+", text.lower())
            unknown = [w for w in words if w not in self.ids]
            if unknown:
                raise ConfigError(
                    f"toy-clip does not know the word(s) {', '.join(map(repr, unknown))}; "
                    f"it knows only: {' '.join(self.words)}"
                )
            ids = [self.SOT, *(self.ids[w] for w in words), self.eot]
            if len(ids) > self.context_length:
                raise ConfigError(f"{text!r} is too long for toy-clip ({self.context_length - 2} words at most)")
            out[row, : len(ids)] = torch.tensor(ids)
        return out


def build_model(arch: dict[str, Any], vocab_size: int):
    """A randomly initialised open_clip.CLIP of the given architecture."""
    import open_clip

    text_cfg = dict(arch["text_cfg"], vocab_size=vocab_size)
    return open_clip.CLIP(
        arch["embed_dim"], dict(arch["vision_cfg"]), text_cfg, quick_gelu=arch.get("quick_gelu", True)
    )


@dataclass
class ToyClip:
    """The loaded model and what an encoder wrapper needs to feed it."""

    model: Any  # open_clip.CLIP, float32, eval mode
    tokenizer: Tokenizer
    input_resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    arch: dict[str, Any] = field(default_factory=dict)

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) or (H, W, 3) images -> normalised float (N, 3, H, W) on the model's device."""
        import torch

        x = torch.as_tensor(images)
        if x.ndim == 3:
            x = x[None]
        x = x.permute(0, 3, 1, 2).float() / 255
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (N, 3, H, W) -> the model's input."""
        import torch

        device = next(self.model.parameters()).device
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        return (x.to(device) - mean) / std

    def encode_images(self, images: np.ndarray, batch: int = 512) -> torch.Tensor:
        """L2-normalised embeddings of uint8 images, without gradients."""
        import torch

        with torch.no_grad():
            parts = [
                self.model.encode_image(self.preprocess(images[i : i + batch]), normalize=True)
                for i in range(0, len(images), batch)
            ]
        return torch.cat(parts)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised embeddings of captions, without gradients."""
        import torch

        device = next(self.model.parameters()).device
        with torch.no_grad():
            return self.model.encode_text(self.tokenizer(texts).to(device), normalize=True)


def save_toy_clip(model, tokenizer: Tokenizer, arch: dict[str, Any], path: str | Path,
                  mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD) -> None:
    """Write the weights in fp16 with everything needed to rebuild the model in the metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").half().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "arch": json.dumps(arch),
        "words": json.dumps(tokenizer.words),
        "mean": json.dumps(list(mean)),
        "std": json.dumps(list(std)),
    }
    save_file(tensors, str(path), metadata=metadata)


def load_toy_clip(path: str | Path | None = None, device: str = "cpu") -> ToyClip:
    """Rebuild toy-clip from its safetensors file (the shipped one by default), float32, eval mode."""
    from safetensors import safe_open

    path = Path(path) if path is not None else WEIGHTS
    if not path.is_file():
        raise WeightsError(
            f"toy-clip weights not found at {path}; train them with `python scripts/train_toy_clip.py`."
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise WeightsError(f"{path} is not a toy-clip file (format {meta.get('format')!r}).")
            tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"Cannot read toy-clip weights {path}: {exc}") from exc
    arch = json.loads(meta["arch"])
    tokenizer = Tokenizer(json.loads(meta["words"]), arch["text_cfg"]["context_length"])
    model = build_model(arch, tokenizer.vocab_size)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not match toy-clip's architecture (missing {missing}, unexpected {unexpected})."
        )
    model = model.to(device).eval()
    return ToyClip(
        model=model,
        tokenizer=tokenizer,
        input_resolution=int(arch["vision_cfg"]["image_size"]),
        mean=tuple(json.loads(meta["mean"])),
        std=tuple(json.loads(meta["std"])),
        arch=arch,
    )
