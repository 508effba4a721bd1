"""User photos in, safely: one RGB image of bounded size per file, or a one-line EssenceError.

- Only regular files are opened (folders, FIFOs, devices and sockets are refused from ``stat``, and the
  open itself cannot block), so a pipe passed by mistake never hangs a batch.
- The pixel count is read from the header and checked before anything is decoded (a decompression bomb
  is refused with a clear message, not PIL's warning or a MemoryError).
- Huge photos are downscaled while decoding where the format allows it (JPEG's DCT scaling through
  ``Image.draft``: memory stays near the reduced size), else right after decoding, to ``max_side``.
- EXIF orientation is applied; grey, palette, CMYK, alpha and 16-bit images become 8-bit RGB
  (``essence.to_rgb``: alpha composited on white).
"""

from __future__ import annotations

import math
import os
import stat
import struct
import warnings
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageOps, UnidentifiedImageError

from essence import EssenceError, to_rgb

#: Photos with more pixels than this are refused before decoding (the largest camera sensors are ~100 MP).
DEFAULT_MAX_PIXELS = 120_000_000
#: Longer side of the image aligners work on; larger photos are downscaled while loading.
DEFAULT_MAX_SIDE = 4096
#: EXIF orientations that swap width and height.
_TRANSPOSED = (5, 6, 7, 8)


class Photo(NamedTuple):
    """A loaded photo: ``image`` (RGB, EXIF orientation applied), ``scale`` (original pixels per pixel
    of ``image``; 1.0 when not downscaled: multiply image coordinates by it for the original's),
    ``original_size`` (width, height of the original, upright) and ``warnings`` for the user."""

    image: Image.Image
    scale: float
    original_size: tuple[int, int]
    warnings: list[str]


def open_regular_file(path: str | os.PathLike[str]):
    """Open ``path`` for binary reading if it is a regular, non-empty file; else an EssenceError.

    The open uses O_NONBLOCK, so a file replaced by a FIFO between the check and the open cannot block;
    the opened descriptor is checked again with ``fstat``.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise EssenceError(f"Photo not found: {p}") from None
    except OSError as exc:
        raise EssenceError(f"Cannot read {p}: {exc.strerror or exc}.") from None
    _check_kind(p, st)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise EssenceError(f"Cannot read {p}: {exc.strerror or exc}.") from None
    try:
        _check_kind(p, os.fstat(fd))
    except EssenceError:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _check_kind(p: Path, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise EssenceError(f"Expected a photo file, got a folder: {p}")
    if not stat.S_ISREG(st.st_mode):
        what = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise EssenceError(f"{p} is {what}, not a regular file: photos are read from files only.")
    if st.st_size == 0:
        raise EssenceError(f"{p} is empty (0 bytes): not a photo.")


def load_photo(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> Photo:
    """Read a photo as RGB, upright, with its longer side at most ``max_side`` (None: full size).

    Refuses (EssenceError, one line, naming the file) what is not a regular file, not an image,
    truncated, or larger than ``max_pixels`` by its header (None: no limit beyond PIL's own).
    """
    p = Path(path)
    with open_regular_file(p) as fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(fh)
        except Image.DecompressionBombError:
            raise EssenceError(_too_large(p, None, max_pixels)) from None
        except UnidentifiedImageError:
            raise EssenceError(f"Not an image file (or an unsupported format): {p}") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise EssenceError(f"Cannot read image {p}: {exc}.") from None
        with img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise EssenceError(_too_large(p, (width, height), max_pixels))
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
            except (OSError, ValueError, SyntaxError) as exc:
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


def _too_large(p: Path, size: tuple[int, int] | None, max_pixels: int | None) -> str:
    limit = f"{max_pixels / 1e6:.0f}" if max_pixels else "PIL's"
    what = f"{size[0]} x {size[1]} = {size[0] * size[1] / 1e6:.0f} megapixels" if size else "too many pixels"
    return (
        f"{p} has {what}, more than the {limit} megapixel limit (a decompression bomb?): "
        "downscale it first, or raise max_pixels."
    )
