"""Import other tools' files into ours: TargetCLIP directions, latent tensors, e4e-style latent files.

Other tools save W+ latents in many containers: a plain tensor (TargetCLIP's ``opt_latents.pt``,
e4e's ``latents.pt``), a dict holding one under a key (``{"latents": ..., "names": [...]}``, the
StyleGAN2-ADA projector's ``projected_w.npz`` with ``w``), or a dict of image name -> latent. Importing
reads any of these without executing code (``torch.load(weights_only=True)``, numpy without pickles) and
writes our formats with metadata that says where the data came from: a direction file
(``direction.safetensors`` layout) or a ``.safetensors`` latent file (tensor ``ws``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence.core.errors import EssenceError
from essence.core.files import sha256_file, torch_load

if TYPE_CHECKING:
    import torch

#: Suffixes an imported file may have.
IMPORT_SUFFIXES = (".pt", ".pth", ".npy", ".npz", ".safetensors")
#: Keys of a dict-like file that hold the latents, tried in order.
LATENT_KEYS = ("ws", "latents", "latent", "w", "w_plus", "wp", "latent_codes", "codes", "projected_w")
#: Keys of a dict-like file that hold the names of the latents (image files), in the same order.
NAME_KEYS = ("names", "image_names", "paths", "files")


@dataclass
class ImportedLatents:
    """W+ latents ``(N, num_ws, w_dim)`` read from another tool's file, and what the file looked like."""

    ws: torch.Tensor
    container: str  # "tensor", "list", "dict[<key>]", "dict of N named latents"
    source_shape: tuple[int, ...]
    names: list[str] = field(default_factory=list)


def _read_any(p: Path, what: str) -> Any:
    """The file's content: a tensor, a list, or a dict of tensors (and names); never unpickles code."""
    import torch

    suffix = p.suffix.lower()
    if not p.is_file():
        raise EssenceError(f"{what} not found: {p}")
    if suffix not in IMPORT_SUFFIXES:
        raise EssenceError(f"{what} {p}: unsupported format; use one of {', '.join(IMPORT_SUFFIXES)}.")
    try:
        if suffix in (".pt", ".pth"):
            # map_location: files saved on a GPU (TargetCLIP's opt_latents.pt) load on any machine.
            return torch_load(p)
        if suffix in (".npy", ".npz"):
            import numpy as np

            loaded = np.load(p, allow_pickle=False)
            if suffix == ".npy":
                return torch.from_numpy(np.array(loaded))
            with loaded:
                return {k: torch.from_numpy(np.array(loaded[k])) for k in loaded.files}
        from safetensors.torch import load_file

        return load_file(str(p))
    except Exception as exc:
        hint = ""
        if suffix in (".pt", ".pth") and "weights_only" in str(exc):
            hint = " It holds Python objects beyond tensors, lists and dicts: re-save the latents as a plain tensor."
        elif suffix in (".npy", ".npz") and "pickle" in str(exc).lower():
            hint = " It holds pickled Python objects: re-save the latents as a plain float array."
        raise EssenceError(f"Cannot read {what.lower()} {p}: {type(exc).__name__}: {exc}.{hint}") from None


def _as_wplus(t: torch.Tensor, p: Path, what: str, where: str = "") -> torch.Tensor:
    """Any of (N, num_ws, w_dim), (num_ws, w_dim), (N, 1, num_ws, w_dim) -> (N, num_ws, w_dim)."""
    import torch

    if not isinstance(t, torch.Tensor):
        raise EssenceError(f"{what} {p}{where} holds {type(t).__name__}, not a tensor of latents.")
    shape = tuple(t.shape)
    if t.dim() == 4 and t.shape[1] == 1:
        t = t[:, 0]
    elif t.dim() == 2:
        t = t[None]
    if t.dim() != 3:
        raise EssenceError(f"{what} {p}{where} holds a tensor of shape {shape}; expected W+ latents (N, num_ws, w_dim).")
    from essence.method.artifacts import checked_values

    return checked_values(t, p, what, where)


def read_latents(path: str | os.PathLike[str], *, what: str = "Latent file") -> ImportedLatents:
    """Read W+ latents from any supported container (see the module docstring)."""
    import torch

    p = Path(path)
    obj = _read_any(p, what)
    names: list[str] = []
    if isinstance(obj, torch.Tensor):
        ws, container, shape = _as_wplus(obj, p, what), "tensor", tuple(obj.shape)
    elif isinstance(obj, (list, tuple)) and obj and all(isinstance(t, torch.Tensor) for t in obj):
        parts = [_as_wplus(t, p, what, f" (item {i})") for i, t in enumerate(obj)]
        ws, container, shape = _cat(parts, p, what), "list", (len(obj), *obj[0].shape)
    elif isinstance(obj, Mapping):
        ws, container, shape, names = _from_mapping(obj, p, what)
    else:
        raise EssenceError(f"{what} {p} does not hold latents (found {type(obj).__name__}).")
    return ImportedLatents(ws.detach().float().contiguous(), container, tuple(int(s) for s in shape), names)


def _cat(parts: list[torch.Tensor], p: Path, what: str) -> torch.Tensor:
    import torch

    shapes = {tuple(t.shape[1:]) for t in parts}
    if len(shapes) > 1:
        raise EssenceError(f"{what} {p} mixes latents of shapes {sorted(shapes)}; one file must be for one generator.")
    return torch.cat(parts)


def _from_mapping(obj: Mapping[Any, Any], p: Path, what: str) -> tuple[torch.Tensor, str, tuple[int, ...], list[str]]:
    import torch

    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for key in LATENT_KEYS:
        if key in tensors:
            ws = _as_wplus(tensors[key], p, what, f" [{key!r}]")
            names = next((list(map(str, obj[k])) for k in NAME_KEYS if isinstance(obj.get(k), (list, tuple))), [])
            if names and len(names) != ws.shape[0]:
                names = []
            return ws, f"dict[{key!r}]", tuple(tensors[key].shape), names
    if len(tensors) == 1:
        key, t = next(iter(tensors.items()))
        return _as_wplus(t, p, what, f" [{key!r}]"), f"dict[{key!r}]", tuple(t.shape), []
    if not tensors:
        raise EssenceError(f"{what} {p} holds a dict without tensors (keys: {', '.join(map(str, obj))}).")
    # Several tensors: a dict of image name -> latent, in the file's order.
    parts = [_as_wplus(t, p, what, f" [{k!r}]") for k, t in tensors.items()]
    names = [k for k, t in zip(tensors, parts) for _ in range(t.shape[0])]
    ws = _cat(parts, p, what)
    return ws, f"dict of {len(tensors)} named latents", (len(tensors), *next(iter(tensors.values())).shape), names


def _check_generator(generator: str | None, ws: torch.Tensor | None = None, p: Path | None = None, what: str = "") -> None:
    """A typo in --generator is caught here, and latents ``(N, num_ws, w_dim)`` that do not fit its W+ (known
    from its config and registry metadata: no model is built, no weights are loaded)."""
    if generator is None:
        return
    from essence.core.registry import get_registry

    reg = get_registry().get("generator", generator)
    expected = reg.wplus_shape()
    if expected is None or ws is None:
        return
    found = tuple(int(n) for n in ws.shape[1:])
    if found != tuple(expected):
        raise EssenceError(
            f"{what} {p} holds {'a direction' if what.startswith('Direction') else 'latents'} of W+ shape {found} "
            f"(num_ws x w_dim), but {generator}'s W+ is {tuple(expected)}. Give the generator it was made for "
            "(`essence list generators`), or leave out -g."
        )


def _provenance(p: Path, fmt: str, container: str, shape: tuple[int, ...]) -> dict[str, Any]:
    return {
        "imported_from": str(p.resolve()),
        "imported_format": fmt,
        "imported_container": container,
        "imported_shape": list(shape),
        "imported_sha256": sha256_file(p),
    }


def import_direction(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    generator: str | None = None,
    target: str | None = None,
) -> Path:
    """A direction saved by another tool -> our ``.safetensors`` direction file, values unchanged.

    TargetCLIP's ``.npy`` files are ``(1, num_ws, w_dim)`` and named after their targets, so ``target``
    defaults to the file's stem.
    """
    from essence.method.artifacts import save_direction

    p = Path(src)
    imported = read_latents(p, what="Direction file")
    if imported.ws.shape[0] != 1:
        raise EssenceError(
            f"Direction file {p} holds {imported.ws.shape[0]} latents of shape {tuple(imported.ws.shape[1:])}; "
            "a direction is one (num_ws, w_dim). To import sources, use `essence import latents`."
        )
    _check_generator(generator, imported.ws, p, "Direction file")
    fmt = "targetclip-npy" if p.suffix.lower() == ".npy" and imported.source_shape[:1] == (1,) else f"tensor{p.suffix.lower()}"
    meta = _provenance(p, fmt, imported.container, imported.source_shape)
    meta["target"] = target if target is not None else p.stem
    return save_direction(dst, imported.ws[0], generator=generator, extra=meta)


def import_latents(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, generator: str | None = None
) -> tuple[Path, ImportedLatents]:
    """Latents saved by another tool -> our ``.safetensors`` latent file (``ws`` ``(N, num_ws, w_dim)``)."""
    import json

    from essence.version import __version__
    from essence.method.artifacts import save_latents

    p = Path(src)
    imported = read_latents(p)
    _check_generator(generator, imported.ws, p, "Latent file")
    meta: dict[str, Any] = {
        "format": "essence-latents",
        "essence_version": __version__,
        "count": imported.ws.shape[0],
        "num_ws": imported.ws.shape[1],
        "w_dim": imported.ws.shape[2],
        "generator": generator,
        **_provenance(p, f"tensor{p.suffix.lower()}", imported.container, imported.source_shape),
        "names": imported.names or None,
    }
    strings = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items() if v is not None}
    return save_latents(dst, imported.ws, metadata=strings), imported


def read_latent_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of one of our ``.safetensors`` latent files (empty for other formats)."""
    p = Path(path)
    if p.suffix.lower() != ".safetensors":
        return {}
    from safetensors import safe_open

    with safe_open(str(p), framework="pt") as fh:
        raw = fh.metadata() or {}
    from essence.method.artifacts import decode_metadata

    return decode_metadata(raw)
