"""Image I/O: one robust reader of user images (regular files only, bombs refused from the header, EXIF
orientation applied), and generator output to uint8 the way NVIDIA does it."""

from __future__ import annotations

import math
import os
import stat
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from essence.core.errors import EssenceError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image


#: Images with more pixels than this are refused from their header, before decoding (the largest camera
#: sensors are ~100 MP; a decompression bomb is a small file that claims billions).
DEFAULT_MAX_PIXELS = 120_000_000
#: EXIF orientations that swap width and height.
_TRANSPOSED = (5, 6, 7, 8)


class Photo(NamedTuple):
    """A loaded image: ``image`` (RGB, EXIF orientation applied), ``scale`` (original pixels per pixel
    of ``image``; 1.0 when not downscaled: multiply image coordinates by it for the original's),
    ``original_size`` (width, height of the original, upright) and ``warnings`` for the user."""

    image: Image.Image
    scale: float
    original_size: tuple[int, int]
    warnings: list[str]


def open_regular_file(path: str | os.PathLike[str], what: str = "Image file"):
    """Open ``path`` for binary reading if it is a regular, non-empty file; else an EssenceError.

    Folders, FIFOs, devices (``/dev/zero``) and sockets are refused from ``stat``. The open uses
    O_NONBLOCK, so a file replaced by a FIFO between the check and the open cannot block; the opened
    descriptor is checked again with ``fstat``.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise EssenceError(f"{what} not found: {p}") from None
    except (OSError, ValueError) as exc:
        raise EssenceError(f"Cannot read {p}: {getattr(exc, 'strerror', None) or exc}.") from None
    _check_kind(p, st, what)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise EssenceError(f"Cannot read {p}: {exc.strerror or exc}.") from None
    try:
        _check_kind(p, os.fstat(fd), what)
    except EssenceError:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _check_kind(p: Path, st: os.stat_result, what: str) -> None:
    noun = what.lower().removesuffix(" file")
    a_noun = ("an " if noun[:1] in "aeiou" else "a ") + noun
    if stat.S_ISDIR(st.st_mode):
        raise EssenceError(f"Expected {a_noun} file, got a folder: {p}")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise EssenceError(f"{p} is {kind}, not a regular file: {noun}s are read from files only.")
    if st.st_size == 0:
        raise EssenceError(f"{p} is empty (0 bytes): not {a_noun}.")


def read_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    what: str = "Image file",
) -> Photo:
    """Read an image file as 8-bit RGB, upright (EXIF orientation), with its longer side at most ``max_side``
    (None: full size; JPEGs are decoded at a reduced scale where that suffices).

    The one robust reader: everything that opens a user's image goes through it. Refuses (EssenceError,
    one line, naming the file) what is not a regular file (folders, FIFOs, devices), not an image,
    truncated, or larger than ``max_pixels`` by its header (None: no limit beyond PIL's own), before
    decoding any pixel.
    """
    from PIL import Image, ImageOps

    p = Path(path)
    with open_regular_file(p, what) as fh:
        with _open_header(fh, p, max_pixels) as img:
            width, height = img.size
            try:
                orientation = int(img.getexif().get(0x0112, 1) or 1)
            except (OSError, ValueError, TypeError, SyntaxError, struct.error):  # a broken EXIF block: keep the pixels
                orientation = 1
            upright = (height, width) if orientation in _TRANSPOSED else (width, height)
            if max_side and max(width, height) > max_side:
                k = max(width, height) / max_side
                # JPEG decodes at 1/2, 1/4 or 1/8 scale, the smallest still at least this size.
                img.draft(None, (math.ceil(width / k), math.ceil(height / k)))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    img.load()
                upright_img = ImageOps.exif_transpose(img) if orientation != 1 else img
                rgb = to_rgb(upright_img)
            except MemoryError:
                raise EssenceError(
                    f"Not enough memory to decode {p} ({width} x {height} px): downscale it first."
                ) from None
            except Image.DecompressionBombError:
                raise EssenceError(_too_large(p, (width, height), max_pixels)) from None
            except (OSError, ValueError, SyntaxError, struct.error) as exc:
                raise EssenceError(f"Cannot read image {p}: {exc}. Is the file complete?") from None

    notes: list[str] = []
    if max_side and max(rgb.size) > max_side:
        k = max(rgb.size) / max_side
        size = (max(1, round(rgb.width / k)), max(1, round(rgb.height / k)))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    scale = upright[0] / rgb.width
    if rgb.size != upright:
        notes.append(f"{p} is {upright[0]} x {upright[1]} px; aligned from a {rgb.width} x {rgb.height} copy.")
    rgb.info["essence.source"] = str(p)
    return Photo(image=rgb, scale=scale, original_size=upright, warnings=notes)


def check_image_file(
    path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS, what: str = "Image file"
) -> tuple[int, int]:
    """The (width, height) of an image file from its header, with every check of :func:`read_image` that
    needs no decoding (a regular file, an image, not a bomb): cheap, for checking inputs before any work."""
    p = Path(path)
    with open_regular_file(p, what) as fh, _open_header(fh, p, max_pixels) as img:
        return img.size


def _open_header(fh: Any, p: Path, max_pixels: int | None) -> Image.Image:
    """``Image.open`` of an open file (the header only, no pixel decoded), refusing a non-image, a
    broken header and an image larger than ``max_pixels`` (or PIL's bomb limit) with one line naming ``p``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fh)
    except Image.DecompressionBombError:
        raise EssenceError(_too_large(p, None, max_pixels)) from None
    except UnidentifiedImageError:
        raise EssenceError(f"Not an image file (or an unsupported format): {p}") from None
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        raise EssenceError(f"Cannot read image {p}: {exc}.") from None
    if max_pixels is not None and img.size[0] * img.size[1] > max_pixels:
        size = img.size
        img.close()
        raise EssenceError(_too_large(p, size, max_pixels))
    return img


def load_image(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image file as RGB (grey, palette, alpha and 16-bit images included), upright by its EXIF
    orientation, through :func:`read_image`.

    A missing, unreadable or non-image file, a folder, FIFO or device, or a decompression bomb raises an
    EssenceError naming the file, before any pixel is decoded.
    """
    return read_image(path, max_pixels=max_pixels).image


def _too_large(p: Path, size: tuple[int, int] | None, max_pixels: int | None) -> str:
    if size is None:  # PIL's own limit (twice Image.MAX_IMAGE_PIXELS) tripped while reading the header
        from PIL import Image

        pil = f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f}" if Image.MAX_IMAGE_PIXELS else "PIL's"
        return f"{p} has more pixels than PIL's {pil} megapixel limit (a decompression bomb?): downscale it first."
    limit = f"{max_pixels / 1e6:.0f}" if max_pixels else "PIL's"
    what = f"{size[0]} x {size[1]} = {size[0] * size[1] / 1e6:.0f} megapixels"
    return (
        f"{p} has {what}, more than the {limit} megapixel limit (a decompression bomb?): "
        "downscale it first, or raise max_pixels."
    )


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
