"""CLIPEncoder: any CLIP image tower as an :class:`essence.Encoder` (a frozen, eval-mode torch module)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

import essence
from essence import ConfigError, EssenceError
from essence.plugins.encoders.clip.resample import Resample, resample

if TYPE_CHECKING:
    from PIL import Image

#: CLIP's normalisation (OpenAI's training statistics), also open_clip's default.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

Precision = Literal["fp32", "fp16", "bf16"]
_AUTOCAST = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(precision: str, device: torch.device) -> torch.dtype | None:
    if precision not in _AUTOCAST:
        raise ConfigError(f"Unknown precision {precision!r}; use 'fp32', 'fp16' or 'bf16'.")
    if precision != "fp32" and device.type != "cuda":
        raise ConfigError(f"precision={precision!r} needs a CUDA device (got {str(device)!r}); use precision='fp32'.")
    return _AUTOCAST[precision]


class _EncodeImage(torch.nn.Module):
    """Makes a model with only ``encode_image`` look like an image tower."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)


def _compute_dtype(tower: torch.nn.Module) -> torch.dtype:
    """The dtype the tower's convolutions run in (fp16 for ``clip.load`` models on CUDA), as openai-clip does."""
    conv = getattr(tower, "conv1", None)
    if not isinstance(conv, torch.nn.Conv2d):
        conv = next((m for m in tower.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is not None:
        return conv.weight.dtype
    return next((p.dtype for p in tower.parameters() if p.is_floating_point()), torch.float32)


class CLIPEncoder(torch.nn.Module, essence.Encoder):
    """A CLIP image tower with CLIP's preprocessing; frozen and always in eval mode.

    ``embed`` resizes generator images (any square size, [-1, 1]) to the input resolution in fp32
    (``resample``: ``"area"`` or ``"bicubic"``), applies CLIP's mean/std when ``normalize`` (False
    feeds [-1, 1] images as the official TargetCLIP code does), runs the tower (under CUDA autocast
    for ``precision`` fp16/bf16) and L2-normalises in fp32. Gradients flow to the input only.

    ``text``, when given, builds the text tower on the first :meth:`embed_text` (a function
    ``texts -> features (T, D)``); without it the encoder has no text tower (``has_text`` is False).
    """

    def __init__(
        self,
        tower: torch.nn.Module,
        *,
        embed_dim: int | None = None,
        input_resolution: int | None = None,
        mean: Sequence[float] = OPENAI_MEAN,
        std: Sequence[float] = OPENAI_STD,
        resample: Resample = "bicubic",
        normalize: bool = True,
        precision: Precision = "fp32",
        device: str | torch.device | None = None,
        weights_id: str = "unknown",
        text: Callable[[], Callable[[Sequence[str]], torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self._text_factory = text
        self._text: Callable[[Sequence[str]], torch.Tensor] | None = None
        if resample not in ("area", "bicubic"):
            raise ConfigError(f"Unknown resample {resample!r}; use 'area' or 'bicubic'.")
        self.tower = tower
        self.resample = resample
        self.normalize = bool(normalize)
        self.weights_id = weights_id
        self.precision = precision
        self.input_resolution = int(input_resolution or _tower_resolution(tower))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        super().train(False)
        self.to(essence.resolve_device(device) if device is not None else _tower_device(tower))
        self._autocast = check_precision(precision, self.device)
        self.embed_dim = int(embed_dim or self._probe_embed_dim())

    @classmethod
    def from_model(cls, model: Any, **kwargs: Any) -> CLIPEncoder:
        """Wrap an already built CLIP model: openai-clip's or open_clip's (its ``visual`` tower is used),
        any module with ``encode_image``, or an image tower itself.

        The encoder takes over the tower: it is put in eval mode and its parameters are frozen.
        Keyword arguments are those of the constructor (``resample``, ``normalize``, ``precision``,
        ``device``, ``weights_id``, ...); mean, std and resolution default to what the model says
        (open_clip's ``preprocess_cfg``), else OpenAI's.
        """
        visual = getattr(model, "visual", None)
        if isinstance(visual, torch.nn.Module):
            tower = visual
        elif callable(getattr(model, "encode_image", None)) and isinstance(model, torch.nn.Module):
            tower = _EncodeImage(model)
        elif isinstance(model, torch.nn.Module):
            tower = model
        else:
            raise EssenceError(
                f"Cannot use a {type(model).__name__} as a CLIP model: expected a torch module with "
                "a `visual` tower or an `encode_image` method."
            )
        cfg = getattr(tower, "preprocess_cfg", None) or getattr(model, "preprocess_cfg", None) or {}
        kwargs.setdefault("mean", tuple(cfg.get("mean", OPENAI_MEAN)))
        kwargs.setdefault("std", tuple(cfg.get("std", OPENAI_STD)))
        if kwargs.get("embed_dim") is None:
            kwargs["embed_dim"] = getattr(tower, "output_dim", None)
        return cls(tower, **kwargs)

    # -- torch.nn.Module ---------------------------------------------------------------------------
    def train(self, mode: bool = True) -> CLIPEncoder:
        """Stays in eval mode: a loss network with BatchNorm must not use batch statistics."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    # -- essence.Encoder -----------------------------------------------------------------------------
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
            raise EssenceError(
                f"CLIP encoders take square RGB images (n, 3, H, H); got shape {tuple(images.shape)}."
            )
        x = resample(images.to(self.device, torch.float32), self.input_resolution, self.resample)
        if self.normalize:
            x = ((x + 1) * 0.5 - self.mean) / self.std
        return self.embed_preprocessed(x)

    def embed_preprocessed(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs.to(self.device).to(_compute_dtype(self.tower))
        if self._autocast is not None:
            with torch.autocast(device_type=self.device.type, dtype=self._autocast):
                features = self.tower(x)
        else:
            features = self.tower(x)
        return F.normalize(features.float(), dim=-1)

    @property
    def has_text(self) -> bool:
        return self._text_factory is not None

    def set_text(self, factory: Callable[[], Callable[[Sequence[str]], torch.Tensor]] | None) -> None:
        """Give the encoder a text tower: ``factory()`` returns ``texts -> features (T, D)`` in this image
        tower's space (a model with its own tokenizer, such as toy-clip, brings its own)."""
        self._text_factory, self._text = factory, None

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return super().embed_text(texts)
        if self._text_factory is None:
            raise EssenceError(
                "This CLIP encoder has no text tower (its weights hold only the image tower), so it cannot "
                "embed text targets: use image targets, or CLIP weights that include the text tower."
            )
        if self._text is None:
            self._text = self._text_factory()
        with torch.no_grad():
            return F.normalize(self._text(texts).float(), dim=-1).to(self.device)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """CLIP's standard transform: short side to R (bicubic), centre crop R, RGB, [0, 1], mean/std."""
        import numpy as np
        from PIL import Image

        r = self.input_resolution
        image = essence.to_rgb(image)
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        if short != r:
            new_long = int(r * long / short)
            image = image.resize((r, new_long) if w <= h else (new_long, r), Image.Resampling.BICUBIC)
            w, h = image.size
        top, left = int(round((h - r) / 2.0)), int(round((w - r) / 2.0))
        image = image.crop((left, top, left + r, top + r))
        x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(255)
        x = (x - self.mean[0].cpu()) / self.std[0].cpu()
        return x[None].to(self.device)

    # -- helpers -------------------------------------------------------------------------------------
    def _probe_embed_dim(self) -> int:
        r = self.input_resolution
        with torch.no_grad():
            return int(self.embed_preprocessed(torch.zeros(1, 3, r, r, device=self.device)).shape[-1])

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, input_resolution={self.input_resolution}, resample={self.resample!r}, "
            f"normalize={self.normalize}, precision={self.precision!r}, weights_id={self.weights_id!r}"
        )


def _tower_device(tower: torch.nn.Module) -> torch.device:
    for tensor in (*tower.parameters(), *tower.buffers()):
        return tensor.device
    return torch.device("cpu")


def _tower_resolution(tower: torch.nn.Module) -> int:
    for attr in ("input_resolution", "image_size"):
        value = getattr(tower, attr, None)
        if isinstance(value, (tuple, list)):
            value = value[0]
        if isinstance(value, int) and value > 0:
            return value
    return 224
