"""User photos in, safely, for the aligners: the kernel's one robust reader (``essence.core.images``), with
photos downscaled while decoding to the size aligners work on.

- Only regular files are opened (folders, FIFOs, devices and sockets are refused from ``stat``, and the
  open itself cannot block), so a pipe passed by mistake never hangs a batch.
- The pixel count is read from the header and checked before anything is decoded (a decompression bomb
  is refused with a clear message, not PIL's warning or a MemoryError).
- Huge photos are downscaled while decoding where the format allows it (JPEG's DCT scaling through
  ``Image.draft``: memory stays near the reduced size), else right after decoding, to ``max_side``.
- EXIF orientation is applied; grey, palette, CMYK, alpha and 16-bit images become 8-bit RGB.
"""

from __future__ import annotations

import os

from essence.core.images import DEFAULT_MAX_PIXELS, Photo, open_regular_file, read_image

#: Longer side of the image aligners work on; larger photos are downscaled while loading.
DEFAULT_MAX_SIDE = 4096


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
    return read_image(path, max_pixels=max_pixels, max_side=max_side, what="Photo")


__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_MAX_SIDE", "Photo", "load_photo", "open_regular_file"]
