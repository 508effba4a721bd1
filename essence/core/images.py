"""Image I/O: robust loading of user images, and generator output to uint8 the way NVIDIA does it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from essence.core.errors import EssenceError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file as RGB; grey, palette, alpha and 16-bit images included.

    A missing, unreadable or non-image file raises an EssenceError naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise EssenceError(f"Image file not found: {p}")
    if p.is_dir():
        raise EssenceError(f"Expected an image file, got a folder: {p}")
    try:
        with Image.open(p) as img:
            img.load()
            return to_rgb(img)
    except UnidentifiedImageError:
        raise EssenceError(f"Not an image file (or an unsupported format): {p}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise EssenceError(f"Cannot read image {p}: {exc}. Is the file complete?") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; alpha is composited on white, 16/32-bit data rescaled."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F" and arr.max() <= 1.0:
            hi = 1.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator images ``(n, 3, H, W)`` in [-1, 1] -> uint8 ``(n, H, W, 3)``: floor(x*127.5+128)."""
    import torch

    x = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    from PIL import Image

    return [Image.fromarray(a) for a in to_uint8(images)]


def save_image(img: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Write a PNG atomically: a kill never leaves a truncated image behind."""
    from essence.core.files import write_atomic

    return write_atomic(path, lambda tmp: img.save(tmp, format="PNG"))
