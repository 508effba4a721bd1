"""CLIP weights files: read them without executing their code, convert them once, infer their architecture.

OpenAI publishes CLIP as TorchScript archives (a zip holding ``data.pkl``, ``constants.pkl``, ``code/``
and raw tensor storages ``data/N``). ``torch.jit.load`` would compile and run the archive's code;
instead ``data.pkl`` is read with an unpickler that only knows TorchScript objects, tensors and
storages, and refuses everything else. Plain ``torch.save`` files go through
``torch.load(weights_only=True)``; safetensors through ``safetensors``.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

import essence
from essence import WeightsError
from essence.core.files import check_zip_sizes

#: ``format`` in the metadata of files written by :func:`convert`.
CONVERTED_FORMAT = "essence-clip"
#: Buffers of OpenAI's archives that hold architecture facts, not weights.
INFO_KEYS = ("input_resolution", "context_length", "vocab_size")

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Stands in for any ``__torch__.*`` class (a scripted module): keeps its state, runs nothing."""

    __slots__ = ("state",)

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _StorageType:
    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return storage.as_strided(tuple(size), tuple(stride), offset)


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str, where: Path) -> None:
        super().__init__(file)
        self.archive, self.prefix, self.where = archive, prefix, where
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise WeightsError(
            f"{self.where}: the archive asks for {module}.{name}, which a CLIP checkpoint never needs; "
            "refusing to load it (it may run code)."
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise WeightsError(f"{self.where}: unexpected storage reference {pid!r} in the archive.")
        _, stype, key, _location, numel = pid
        if key not in self.storages:
            try:
                data = self.archive.read(f"{self.prefix}data/{key}")
            except KeyError:
                raise WeightsError(f"{self.where}: the archive lacks the storage data/{key}; is it complete?") from None
            with warnings.catch_warnings():  # the buffer is read-only; tensors are copied before use
                warnings.simplefilter("ignore", UserWarning)
                flat = torch.frombuffer(data, dtype=stype.dtype) if data else torch.empty(0, dtype=stype.dtype)
            if flat.numel() < numel:
                raise WeightsError(f"{self.where}: storage data/{key} is truncated.")
            self.storages[key] = flat
        return self.storages[key]


def _collect(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = obj.state if isinstance(obj, _ScriptObject) else obj
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{name}.", out)


def _archive_prefix(archive: zipfile.ZipFile) -> str | None:
    for name in archive.namelist():
        if name.count("/") == 1 and name.endswith("/data.pkl"):
            return name[: -len("data.pkl")]
    return None


def _is_torchscript(archive: zipfile.ZipFile, prefix: str) -> bool:
    names = archive.namelist()
    return f"{prefix}constants.pkl" in names or any(n.startswith(f"{prefix}code/") for n in names)


def read_torchscript(archive: zipfile.ZipFile, where: Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive, by state-dict key (storages shared, as stored)."""
    prefix = _archive_prefix(archive)
    if prefix is None:
        raise WeightsError(f"{where}: a zip file, but not a PyTorch archive (no data.pkl).")
    names = archive.namelist()
    if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
        raise WeightsError(f"{where}: big-endian archives are not supported.")
    unpickler = _ArchiveUnpickler(io.BytesIO(archive.read(f"{prefix}data.pkl")), archive, prefix, where)
    try:
        root = unpickler.load()
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"{where}: cannot read the TorchScript archive ({type(exc).__name__}: {exc}).") from None
    out: dict[str, torch.Tensor] = {}
    _collect(root, "", out)
    return out


def _sniff(path: Path, head: bytes) -> str:
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        return "torch"
    return "unknown"


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A CLIP weights file -> (state dict with float32 floating tensors, info about the file).

    Accepts OpenAI's TorchScript archives, ``torch.save`` state dicts (optionally under
    ``"state_dict"``, optionally with ``module.`` prefixes) and safetensors (ours or plain).
    ``info``: ``format``, ``sha256`` (of the original download when known), ``openai`` (whether
    it is OpenAI's original layout, trained with QuickGELU), ``metadata`` and the architecture
    buffers that OpenAI's archives carry.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise WeightsError(f"Cannot read weights file {path}: {exc}") from None
    kind = _sniff(path, head)
    info: dict[str, Any] = {"path": str(path), "metadata": {}}
    if kind == "safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), "pt") as f:
                info["metadata"] = dict(f.metadata() or {})
            raw = load_file(str(path))
        except Exception as exc:
            raise WeightsError(f"{path}: not a readable safetensors file ({exc}).") from None
        meta = info["metadata"]
        info["format"] = meta.get("format", "safetensors")
        info["sha256"] = meta.get("source_sha256") or essence.sha256_file(path)
        info["openai"] = meta.get("quick_gelu") == "true"
    else:
        data = path.read_bytes()
        info["sha256"] = hashlib.sha256(data).hexdigest()
        if kind == "zip":
            check_zip_sizes(path)
            try:
                archive = zipfile.ZipFile(io.BytesIO(data))
            except zipfile.BadZipFile:
                raise WeightsError(f"{path}: a damaged zip archive; download it again.") from None
            prefix = _archive_prefix(archive)
            if prefix is not None and _is_torchscript(archive, prefix):
                info["format"], info["openai"] = "torchscript", True
                raw = read_torchscript(archive, path)
            else:
                info["format"], info["openai"] = "torch", False
                raw = _torch_load(data, path)
        elif kind == "torch":
            info["format"], info["openai"] = "torch", False
            raw = _torch_load(data, path)
        else:
            raise WeightsError(
                f"{path}: not a CLIP weights file (expected a TorchScript archive, a torch.save state dict "
                "or safetensors)."
            )
    state, info["source_dtypes"] = _clean_state_dict(raw, path)
    for key in INFO_KEYS:
        if key in state:
            info[key] = int(state.pop(key).reshape(-1)[0])
    return state, info


def _torch_load(data: bytes, path: Path) -> Any:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"{path}: cannot read it as a plain state dict ({type(exc).__name__}: {str(exc).splitlines()[0]})."
        ) from None


def _clean_state_dict(raw: Any, path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors.")
    if all(str(k).startswith("module.") for k in raw):
        raw = {k[len("module.") :]: v for k, v in raw.items()}
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in raw.values()})
    out = {}
    for key, value in raw.items():
        if value.is_floating_point():
            out[str(key)] = value.to(torch.float32, copy=True).contiguous()
        else:
            out[str(key)] = value.clone().contiguous()
    return out, dtypes


def _blocks(state: dict[str, torch.Tensor], prefix: str, index: int) -> int:
    return len({k.split(".")[index] for k in state if k.startswith(prefix)})


def infer_architecture(state: dict[str, torch.Tensor], where: Any = "weights") -> dict[str, Any]:
    """``clip.model.CLIP`` arguments for the image tower (and the text tower, when present)."""
    try:
        if "visual.proj" in state:
            conv = state["visual.conv1.weight"]
            patch = int(conv.shape[-1])
            grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
            layers = len(
                [
                    k
                    for k in state
                    if k.startswith("visual.transformer.resblocks.") and k.endswith(".attn.in_proj_weight")
                ]
            )
            arch: dict[str, Any] = {
                "embed_dim": int(state["visual.proj"].shape[1]),
                "image_resolution": patch * grid,
                "vision_layers": layers,
                "vision_width": int(conv.shape[0]),
                "vision_patch_size": patch,
            }
        elif "visual.attnpool.positional_embedding" in state:
            grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
            arch = {
                "embed_dim": int(state["visual.attnpool.c_proj.weight"].shape[0]),
                "image_resolution": 32 * grid,
                "vision_layers": [_blocks(state, f"visual.layer{b}.", 2) for b in (1, 2, 3, 4)],
                "vision_width": int(state["visual.layer1.0.conv1.weight"].shape[0]),
                "vision_patch_size": None,
            }
        else:
            raise WeightsError(
                f"{where}: not a CLIP image tower in OpenAI's layout (no visual.proj or visual.attnpool keys)."
            )
        if "text_projection" in state:
            width = int(state["ln_final.weight"].shape[0])
            arch.update(
                context_length=int(state["positional_embedding"].shape[0]),
                vocab_size=int(state["token_embedding.weight"].shape[0]),
                transformer_width=width,
                transformer_heads=width // 64,
                transformer_layers=_blocks(state, "transformer.resblocks.", 2),
            )
    except KeyError as exc:
        raise WeightsError(f"{where}: incomplete CLIP state dict (missing {exc}).") from None
    return arch


# -- the "openai-clip" converter ------------------------------------------------------------------

def detect(path: str | Path) -> bool:
    """An OpenAI CLIP checkpoint (TorchScript archive or torch.save state dict)? Reads only data.pkl's bytes."""
    check_zip_sizes(path)
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive)
            if prefix is None:
                return False
            entry = archive.getinfo(f"{prefix}data.pkl")
            if entry.file_size > 64 << 20:
                return False
            data = archive.read(entry)
    except (OSError, zipfile.BadZipFile, KeyError):
        return False
    return b"visual" in data and (b"class_embedding" in data or b"attnpool" in data)


def convert(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """OpenAI CLIP checkpoint -> float32 safetensors with the architecture in its metadata."""
    from safetensors.torch import save_file

    state, info = read_weights(src)
    arch = infer_architecture(state, src)
    metadata = {
        "format": CONVERTED_FORMAT,
        "source_format": info["format"],
        "source_sha256": info["sha256"],
        "architecture": json.dumps(arch),
        "quick_gelu": "true",
    }
    save_file(state, str(dst), metadata=metadata)
    return {
        "format": f"openai-clip ({info['format']})",
        "architecture": "ResNet" if arch["vision_patch_size"] is None else "ViT",
        **arch,
        "tensors": len(state),
        "parameters": sum(t.numel() for t in state.values() if t.is_floating_point()),
        "source_dtypes": info["source_dtypes"],
        "source_sha256": info["sha256"],
    }
