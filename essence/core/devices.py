"""Devices: one rule for every component and command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from essence.core.errors import ConfigError, EssenceError

if TYPE_CHECKING:
    import torch


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> CUDA when available, else the CPU; a device that is not there is an EssenceError."""
    import torch

    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"Unknown device {spec!r}. Use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EssenceError(
                f"Device {spec!r} asked for, but this PyTorch sees no CUDA GPU. Use device='cpu' or 'auto'."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EssenceError(f"Device {spec!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s).")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise EssenceError(f"Device {spec!r} asked for, but MPS is not available here. Use device='cpu' or 'auto'.")
    elif device.type != "cpu":
        raise EssenceError(f"Device type {device.type!r} is not supported; use 'cpu', 'cuda' or 'mps'.")
    return device
