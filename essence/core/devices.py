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


def available_memory(device: str | torch.device) -> int | None:
    """Bytes free for new tensors on ``device``: a CUDA GPU's free memory, or on a Linux CPU the memory the
    kernel says is available (``MemAvailable``), within the cgroup's limit when there is one; None when it
    cannot be told (macOS, MPS)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    if device.type != "cpu":
        return None
    free = _meminfo_available()
    limit = _cgroup_headroom()
    if free is None:
        return limit
    return free if limit is None else min(free, limit)


#: Where a Linux CPU's free memory and a cgroup v2 limit are read from.
MEMINFO = "/proc/meminfo"
CGROUP = "/sys/fs/cgroup"


def _meminfo_available() -> int | None:
    try:
        with open(MEMINFO, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    """cgroup v2: memory.max minus memory.current, when a limit is set."""
    try:
        with open(f"{CGROUP}/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open(f"{CGROUP}/memory.current", encoding="ascii") as f:
            current = int(f.read().strip())
        return max(0, int(limit) - current)
    except (OSError, ValueError):
        return None
