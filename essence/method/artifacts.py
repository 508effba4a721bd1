"""The method's files: W+ latent files, direction files and the per-step trace.

Directions are ``direction.safetensors`` with ``b`` ``(num_ws, w_dim)`` (the essence latent), ``d``
``(embed_dim,)`` (the unit edit it makes in the encoder's space) and string metadata. Latent files are
``(N, num_ws, w_dim)`` tensors in ``.pt`` (plain tensors only, read with ``weights_only=True``), ``.npy``
(no pickles) or ``.safetensors``. Every file is written atomically.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence.core.errors import EssenceError
from essence.core.files import torch_load, write_atomic

if TYPE_CHECKING:
    import torch

DIRECTION_FORMAT = "essence-direction"
DIRECTION_FORMAT_VERSION = "1"
LATENT_SUFFIXES = (".pt", ".pth", ".npy", ".safetensors")
#: Keys tried, in order, in a dict-like latent file holding more than one tensor.
LATENT_KEYS = ("ws", "latents", "latent", "w")
#: Metadata values that are always strings (others are JSON): a name or hash must not turn into a number.
STRING_METADATA = frozenset(
    {
        "format", "essence_version", "generator", "encoder", "generator_weights_id",
        "encoder_weights_id", "status", "target", "method", "imported_from", "imported_format",
        "imported_container", "imported_sha256",
    }
)


def decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """safetensors metadata (all strings) -> values: JSON decoded, except the keys that are plain strings."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            out[key] = value if key in STRING_METADATA else json.loads(value)
        except (ValueError, RecursionError):  # not JSON (or absurdly nested): kept as the string it is
            out[key] = value
    return out


# -- latents ---------------------------------------------------------------------------------------


def load_latents(
    path: str | os.PathLike[str], *, num_ws: int | None = None, w_dim: int | None = None, what: str = "Latent file"
) -> torch.Tensor:
    """A W+ latent file -> float32 ``(N, num_ws, w_dim)`` on the CPU; ``(num_ws, w_dim)`` counts as N = 1.

    With ``num_ws``/``w_dim`` given, a file of another shape is refused with a message saying what fits.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        _not_a_file(p, what)
    suffix = p.suffix.lower()
    if suffix not in LATENT_SUFFIXES:
        raise EssenceError(f"{what} {p}: unsupported format; use one of {', '.join(LATENT_SUFFIXES)}.")
    try:
        if suffix in (".pt", ".pth"):
            obj = torch_load(p)
        elif suffix == ".npy":
            import numpy as np

            obj = torch.from_numpy(np.load(p, allow_pickle=False))
        else:
            from safetensors.torch import load_file

            obj = load_file(str(p))
    except Exception as exc:
        raise EssenceError(f"Cannot read {what.lower()} {p}: {type(exc).__name__}: {exc}") from None
    ws = _one_tensor(obj, p, what)
    if ws.dim() == 2:
        ws = ws[None]
    expected = f"(N, {num_ws or 'num_ws'}, {w_dim or 'w_dim'})"
    if ws.dim() != 3:
        raise EssenceError(f"{what} {p} holds a tensor of shape {tuple(ws.shape)}; expected W+ latents {expected}.")
    if (num_ws is not None and ws.shape[1] != num_ws) or (w_dim is not None and ws.shape[2] != w_dim):
        raise EssenceError(
            f"{what} {p} has shape {tuple(ws.shape)}, but the generator needs {expected}: "
            "it was made for another generator."
        )
    return checked_values(ws, p, what).contiguous()


def checked_values(t: torch.Tensor, p: Path | str, what: str, where: str = "", *, rows: str = "latents") -> torch.Tensor:
    """``t`` as float32 once it is known to be usable: floating-point, not empty, and finite in float32
    (a float64 value beyond float32's range is refused here, not turned into inf). Else an EssenceError
    naming the file."""
    import torch

    if not t.is_floating_point():
        raise EssenceError(f"{what} {p}{where} holds {t.dtype} values; expected floating-point {rows}.")
    if t.numel() == 0:
        raise EssenceError(f"{what} {p}{where} is empty (shape {tuple(t.shape)}): it holds no {rows}.")
    t = t.detach().float()
    finite = torch.isfinite(t)
    if not finite.all():
        bad = int((~finite).sum())
        raise EssenceError(
            f"{what} {p}{where} contains {bad} NaN or infinite value(s) in float32 (beyond +-3.4e38); "
            "the file is corrupt or was written by a diverged optimisation."
        )
    return t


def _not_a_file(p: Path, what: str) -> None:
    """Why ``p`` (not a regular file) cannot be read: missing, a folder, or a device, FIFO or socket."""
    if not p.exists():
        raise EssenceError(f"{what} not found: {p}")
    kind = "a folder" if p.is_dir() else "a device, FIFO or socket"
    raise EssenceError(f"{what} {p} is {kind}, not a regular file.")


def source_latents(generator: Any, sources: Any, seed: int) -> torch.Tensor:
    """The sources a ``sources`` setting names (``count``, ``truncation``, ``latents``): random ones drawn and
    truncated exactly as ``essence run`` draws them, or a latent file's rows; on the CPU."""
    if sources.latents:
        return load_latents(sources.latents, num_ws=generator.num_ws, w_dim=generator.w_dim, what="Sources latent file")
    return generator.sample_ws(sources.count, seed=seed, truncation=sources.truncation).cpu()


def _one_tensor(obj: Any, p: Path, what: str) -> torch.Tensor:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(t, torch.Tensor) for t in obj):
        return torch.stack(list(obj))
    if isinstance(obj, Mapping):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        for key in LATENT_KEYS:
            if key in tensors:
                return tensors[key]
        if len(tensors) == 1:
            return next(iter(tensors.values()))
        raise EssenceError(
            f"{what} {p} holds several tensors ({', '.join(sorted(map(str, tensors)))}); "
            f"name the latents one of {', '.join(LATENT_KEYS)}."
        )
    raise EssenceError(f"{what} {p} does not hold a tensor (found {type(obj).__name__}).")


def save_latents(path: str | os.PathLike[str], ws: torch.Tensor, metadata: Mapping[str, str] | None = None) -> Path:
    """Write W+ latents in the format the suffix names (.safetensors keeps them under ``ws``)."""
    import torch

    p = Path(path)
    ws = ws.detach().float().cpu().contiguous()
    suffix = p.suffix.lower()
    if suffix not in LATENT_SUFFIXES:
        raise EssenceError(f"Cannot save latents as {p}: use one of {', '.join(LATENT_SUFFIXES)}.")

    def write(tmp: Path) -> None:
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({"ws": ws}, str(tmp), metadata=dict(metadata or {}))
        elif suffix in (".pt", ".pth"):
            torch.save(ws, tmp)
        else:
            import numpy as np

            with open(tmp, "wb") as fh:
                np.save(fh, ws.numpy())

    return write_atomic(p, write)


# -- directions ------------------------------------------------------------------------------------


@dataclass
class Direction:
    """An essence direction: ``b`` in W+, ``d`` its unit edit in the encoder's space, and where it came from."""

    b: torch.Tensor
    d: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_ws(self) -> int:
        return int(self.b.shape[0])

    @property
    def w_dim(self) -> int:
        return int(self.b.shape[1])

    @property
    def apply_alpha(self) -> float | None:
        """The strength its run recorded to apply it with (a preset's ``apply_alpha``), or None."""
        value = self.metadata.get("apply_alpha")
        try:
            value = float(value) if value is not None else None
        except (TypeError, ValueError):
            return None
        return value if value is not None and math.isfinite(value) else None

    def check_fits(self, generator: Any, source: str = "The direction") -> None:
        """Refuse a direction made for a generator with another W+ shape."""
        if (self.num_ws, self.w_dim) != (generator.num_ws, generator.w_dim):
            made_for = self.metadata.get("generator")
            extra = f" (it was made for {made_for!r})" if made_for else ""
            raise EssenceError(
                f"{source} has shape ({self.num_ws}, {self.w_dim}){extra}, but this generator's W+ is "
                f"({generator.num_ws}, {generator.w_dim})."
            )


def save_direction(
    path: str | os.PathLike[str],
    b: torch.Tensor,
    d: torch.Tensor | None = None,
    *,
    generator: str | None = None,
    encoder: str | None = None,
    generator_weights_id: str | None = None,
    encoder_weights_id: str | None = None,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``direction.safetensors`` atomically. Metadata values are strings (JSON for structures)."""
    from safetensors.torch import save_file

    from essence.version import __version__

    b = b.detach().float().cpu().contiguous()
    if b.dim() == 3 and b.shape[0] == 1:
        b = b[0]
    if b.dim() != 2:
        raise ValueError(f"a direction is (num_ws, w_dim); got {tuple(b.shape)}")
    tensors = {"b": b}
    if d is not None:
        tensors["d"] = d.detach().float().cpu().reshape(-1).contiguous()
    meta: dict[str, Any] = {
        "format": DIRECTION_FORMAT,
        "format_version": DIRECTION_FORMAT_VERSION,
        "essence_version": __version__,
        "num_ws": b.shape[0],
        "w_dim": b.shape[1],
        "generator": generator,
        "generator_weights_id": generator_weights_id,
        "encoder": encoder,
        "encoder_weights_id": encoder_weights_id,
        "embed_dim": tensors["d"].numel() if "d" in tensors else None,
        "config": dict(config) if config is not None else None,
        **dict(extra or {}),
    }
    strings = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items() if v is not None}
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=strings))


def load_direction(path: str | os.PathLike[str]) -> Direction:
    """Read a direction: our ``.safetensors``, or a bare ``(1, num_ws, w_dim)`` / ``(num_ws, w_dim)`` tensor
    (TargetCLIP's ``.npy``, a ``.pt``) with no metadata."""
    p = Path(path)
    if not p.is_file():
        _not_a_file(p, "Direction file")
    if p.suffix.lower() != ".safetensors":
        b = load_latents(p, what="Direction file")
        if b.shape[0] != 1:
            raise EssenceError(f"Direction file {p} holds {b.shape[0]} latents; a direction is one (num_ws, w_dim).")
        return Direction(b=b[0], metadata={"source_file": str(p)})
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as fh:
            raw_meta = fh.metadata() or {}
            keys = set(fh.keys())
            if "b" not in keys:
                raise EssenceError(f"{p} is not a direction file: it has no tensor 'b'.")
            b = fh.get_tensor("b")
            d = fh.get_tensor("d") if "d" in keys else None
    except EssenceError:
        raise
    except Exception as exc:
        raise EssenceError(f"Cannot read direction file {p}: {exc}") from None
    meta = decode_metadata(raw_meta)
    if "config" in meta and not isinstance(meta["config"], dict):  # a direction from anyone: checked like options
        raise EssenceError(f"Direction file {p}: its metadata 'config' is not a JSON table; is it a file essence wrote?")
    if b.dim() != 2:
        raise EssenceError(f"Direction file {p}: 'b' has shape {tuple(b.shape)}; expected (num_ws, w_dim).")
    b = checked_values(b, p, "Direction file", " ('b')", rows="direction values")
    if d is not None:
        d = checked_values(d, p, "Direction file", " ('d')", rows="embedding values")
    return Direction(b=b, d=d, metadata=meta)


# -- traces ----------------------------------------------------------------------------------------


def write_trace_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """One row per step; columns are the union of the records' keys, fixed ones first."""
    first = ["restart", "step", "lr", "loss", "transfer", "consistency", "direction_norm", "mean_coefficient"]
    extra = sorted({k for r in rows for k in r} - set(first))

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=first + extra, restval="")
            writer.writeheader()
            for r in rows:
                writer.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in r.items()})

    write_atomic(path, write)


def read_trace_csv(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]
