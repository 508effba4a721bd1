"""Differentiable resizing of generator images to CLIP's input size.

``area``: exact area (box) resampling with fractional pixel coverage, done as ``R @ x @ R.T`` with a
cached ``(out, size)`` matrix. For sizes that are multiples of 32 it is the same linear map as the
official TargetCLIP/StyleCLIP code, ``AvgPool2d(size // 32)(Upsample(scale_factor=7)(x))``, without
the ``7 * size`` square intermediate (3.4 GiB for six 1024 px images).
``bicubic``: antialiased bicubic, the differentiable stand-in for CLIP's own PIL bicubic resize.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F

Resample = Literal["area", "bicubic"]


@functools.lru_cache(maxsize=32)
def area_matrix(size: int, out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``R`` (out, size): output pixel i averages source pixels by how much of each it covers.

    In units of 1/(size*out) pixel, output i spans [i*size, (i+1)*size) and source s spans
    [s*out, (s+1)*out); the overlaps are integers, so R is exact up to the final division.
    """
    i = torch.arange(out, dtype=torch.int64)[:, None]
    s = torch.arange(size, dtype=torch.int64)[None, :]
    overlap = (torch.minimum((i + 1) * size, (s + 1) * out) - torch.maximum(i * size, s * out)).clamp(min=0)
    return (overlap.to(torch.float64) / size).to(device=device, dtype=dtype)


def area_resample(images: torch.Tensor, out: int) -> torch.Tensor:
    """Area-resample square images ``(n, c, size, size)`` to ``(n, c, out, out)``; differentiable."""
    size = images.shape[-1]
    if size == out:
        return images
    r = area_matrix(size, out, images.device, images.dtype)
    return r @ images @ r.T


def bicubic_resample(images: torch.Tensor, out: int) -> torch.Tensor:
    if images.shape[-1] == out:
        return images
    return F.interpolate(images, size=(out, out), mode="bicubic", align_corners=False, antialias=True)


def resample(images: torch.Tensor, out: int, mode: Resample) -> torch.Tensor:
    if mode == "area":
        return area_resample(images, out)
    if mode == "bicubic":
        return bicubic_resample(images, out)
    raise ValueError(f"unknown resample mode {mode!r}")


def upsample_pool(images: torch.Tensor) -> torch.Tensor:
    """The official code's map (nearest x7, then average pooling by size // 32): the reference the
    area resampler is tested and benchmarked against. Only defined for sizes that are multiples of 32."""
    size = images.shape[-1]
    return F.avg_pool2d(F.interpolate(images, scale_factor=7, mode="nearest"), kernel_size=size // 32)
