"""The aligners that need no face detector: ``center-crop`` (alignment ``center``, as LSUN Church's images
were made) and ``resize`` (alignment ``none``: the whole image, for generators of whole scenes such as
toy-sprites). Both are pure PIL, so they run anywhere, offline."""

from __future__ import annotations

from typing import Any

import essence

#: High-quality downscaling that first reduces by whole factors (bounded time and memory on huge photos).
REDUCING_GAP = 3.0


def _resample() -> Any:
    from PIL import Image

    return Image.Resampling.LANCZOS


def _crop(image: Any, box: tuple[int, int, int, int], resolution: int) -> essence.AlignedFace:
    import numpy as np

    x0, y0, x1, y1 = box
    rgb = essence.to_rgb(image)
    crop = rgb.resize((resolution, resolution), _resample(), box=box, reducing_gap=REDUCING_GAP)
    warnings = []
    side = min(x1 - x0, y1 - y0)
    if side < resolution:
        warnings.append(
            f"the photo is only {side} px where the generator makes {resolution} px: it was upscaled, so the "
            "result will look soft"
        )
    quad = np.array([[x0, y0], [x0, y1], [x1, y1], [x1, y0]], dtype=np.float64)
    return essence.AlignedFace(image=crop, resolution=resolution, face=None, quad=quad, warnings=warnings)


class CenterCrop(essence.Aligner):
    """The largest centred square of the photo, resized to the generator's resolution."""

    alignment = "center"

    def align(self, image: Any, resolution: int, *, all_faces: bool = False) -> list[essence.AlignedFace]:
        w, h = image.size
        side = min(w, h)
        x0, y0 = (w - side) // 2, (h - side) // 2
        return [_crop(image, (x0, y0, x0 + side, y0 + side), resolution)]


class Resize(essence.Aligner):
    """The whole photo resized to the generator's square resolution (a non-square photo is stretched)."""

    alignment = "none"

    def align(self, image: Any, resolution: int, *, all_faces: bool = False) -> list[essence.AlignedFace]:
        w, h = image.size
        aligned = _crop(image, (0, 0, w, h), resolution)
        if max(w, h) > 1.05 * min(w, h):
            aligned.warnings.append(f"the photo is {w}x{h}, not square: it was stretched to {resolution}x{resolution}")
        return [aligned]
