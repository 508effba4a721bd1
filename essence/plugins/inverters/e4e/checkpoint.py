"""e4e / pSp checkpoints: read the official files without executing code, convert them once to safetensors.

The official ``e4e_ffhq_encode.pt`` and ``psp_ffhq_encode.pt`` are ``torch.save`` dicts holding

* ``state_dict``: the whole pSp framework, the encoder under ``encoder.`` beside the StyleGAN2 generator
  under ``decoder.`` (which this reader ignores: the generator comes from its own weights);
* ``latent_avg``: the generator's average w, one row per W+ row, added to the encoder's output;
* ``opts``: the training options as a plain dict; ``encoder_type`` says which encoder it is
  ("Encoder4Editing": e4e, "GradualStyleEncoder": pSp; both have the same tensors).

They are read with ``torch.load(weights_only=True)``, which builds only tensors and plain containers and
refuses anything else, so nothing in a weights file runs.

Our safetensors layout ("essence-e4e", version 1):

* tensors: the encoder's state dict (the official key names, without ``encoder.``) and ``latent_avg``
  ``(num_ws, w_dim)``, already zero when the checkpoint's options say not to add it;
* metadata: ``format``, ``format_version``, ``kind`` ("e4e" or "psp"), ``num_ws``, ``w_dim``, ``arch``
  (JSON: num_ws, units, widths), ``encoder_type``, ``source_format`` and ``opts`` (JSON: the few options
  that describe the model, never the paths of the machine it was trained on).
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence import WeightsError
from essence.core.files import check_zip_sizes
from essence.plugins.inverters.e4e.model import ENCODER_TYPES, EncoderArch, build_encoder, num_ws_for

if TYPE_CHECKING:
    import torch

    from essence.plugins.inverters.e4e.model import E4EInverter

FORMAT = "essence-e4e"
FORMAT_VERSION = "1"
#: Options kept in the converted file's metadata.
KEPT_OPTS = ("encoder_type", "dataset_type", "stylegan_size", "output_size", "start_from_latent_avg", "input_nc")
#: The generator an official checkpoint inverts for, by its ``opts["dataset_type"]``.
GENERATORS = {"ffhq_encode": ("stylegan2-ffhq",)}
#: Bytes that every e4e / pSp checkpoint's pickle holds: the names of its first encoder tensors.
_MARKERS = (b"encoder.input_layer.0.weight", b"encoder.styles.0.")
_TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_MAX_PICKLE = 64 << 20
_LEGACY_HEAD = 1 << 20
_OFFICIAL = "an e4e or pSp checkpoint (such as e4e_ffhq_encode.pt or psp_ffhq_encode.pt)"


# -- detection ---------------------------------------------------------------------------------------
def sniff(path: str | os.PathLike[str]) -> str | None:
    """"safetensors", "torch-zip" or "torch-legacy" from the first bytes of ``path``, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        return None
    if len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 0:
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head[:1] == b"\x80" and _TORCH_LEGACY_MAGIC in head:
        return "torch-legacy"
    return None


def detect(path: str | os.PathLike[str]) -> bool:
    """Converter hook: is ``path`` an e4e / pSp checkpoint, or our conversion of one? Reads bytes, unpickles nothing."""
    fmt = sniff(path)
    check_zip_sizes(path)
    try:
        if fmt == "safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                return (f.metadata() or {}).get("format") == FORMAT
        if fmt == "torch-zip":
            with zipfile.ZipFile(path) as archive:
                entry = next((e for e in archive.infolist() if e.filename.rsplit("/", 1)[-1] == "data.pkl"), None)
                if entry is None or entry.file_size > _MAX_PICKLE:
                    return False
                data = archive.read(entry)
        elif fmt == "torch-legacy":
            with open(path, "rb") as f:
                data = f.read(_LEGACY_HEAD)  # the pickled dict, its keys first, comes before the tensor data
        else:
            return False
    except Exception:
        return False
    return all(marker in data for marker in _MARKERS)


# -- reading -----------------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, Any]]:
    """An official e4e / pSp checkpoint, or our safetensors of one -> ``(state_dict, latent_avg, info)``.

    ``state_dict`` is the encoder's (official key names, checked against the architecture), ``latent_avg``
    is ``(num_ws, w_dim)`` (what to add to the encoder's output), ``info`` holds ``kind``
    ("e4e"/"psp"), ``arch`` (:class:`~.model.EncoderArch`), ``num_ws``, ``w_dim``, ``encoder_type``,
    ``source_format``, ``start_from_latent_avg`` and ``opts`` (the options that describe the model).
    """
    path = Path(path)
    fmt = sniff(path)
    if fmt is None:
        if not path.is_file():
            raise WeightsError(f"Cannot read {path}: no such file.")
        raise WeightsError(f"{path} is not {_OFFICIAL}, nor our safetensors conversion of one.")
    if fmt == "safetensors":
        return _read_safetensors(path)
    check_zip_sizes(path)
    ckpt = _torch_load(path, mmap=fmt == "torch-zip")
    return from_official(ckpt, where=path, source_format=fmt)


def _torch_load(path: Path, mmap: bool) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise WeightsError(f"{path}: damaged pickle data ({str(exc)[:200]}). Download it again.") from None
        detail = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), "")
        raise WeightsError(
            f"Refusing to load {path}: it holds pickled objects other than tensors and plain containers"
            f"{f' ({detail})' if detail else ''}, which torch.load(weights_only=True) will not build. Nothing "
            "from the file was executed. Use the official file, or, if you trust this one, re-save its "
            "'state_dict', 'latent_avg' and 'opts' (as a plain dict) with torch.save."
        ) from None
    except Exception as exc:
        raise WeightsError(
            f"Could not read {path} as a torch.save file: it looks truncated or corrupt "
            f"({type(exc).__name__}: {str(exc)[:200]}). Download it again."
        ) from None


def from_official(
    ckpt: Any, where: Any = "checkpoint", source_format: str = "torch"
) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, Any]]:
    """The loaded dict of an official checkpoint -> ``(state_dict, latent_avg, info)`` (see ``read_checkpoint``)."""
    import torch

    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        found = ", ".join(sorted(map(str, ckpt))[:6]) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise WeightsError(f"{where} has no 'state_dict' (found: {found}); it is not {_OFFICIAL}.")
    state = {}
    for key, value in ckpt["state_dict"].items():
        if isinstance(key, str) and key.startswith("encoder."):
            if not isinstance(value, torch.Tensor):
                raise WeightsError(f"{where}: state_dict[{key!r}] is not a tensor.")
            state[key[len("encoder.") :]] = value.float() if value.is_floating_point() else value
    if not state:
        raise WeightsError(f"{where}: its state_dict holds no 'encoder.*' tensors; it is not {_OFFICIAL}.")

    opts = ckpt.get("opts")
    if not isinstance(opts, dict):
        raise WeightsError(
            f"{where} has no 'opts' dict, so it does not say whether it is e4e or pSp (opts['encoder_type'])."
        )
    encoder_type = opts.get("encoder_type")
    if encoder_type not in ENCODER_TYPES:
        raise WeightsError(
            f"{where}: opts['encoder_type'] is {encoder_type!r}; only Encoder4Editing (e4e) and "
            "GradualStyleEncoder (pSp) are supported."
        )
    kind = ENCODER_TYPES[encoder_type]
    arch = check_state_dict(state, kind, where)
    size = opts.get("stylegan_size", opts.get("output_size"))
    if isinstance(size, int) and size > 0 and num_ws_for(size) != arch.num_ws:
        raise WeightsError(
            f"{where}: its options name a {size}-px generator ({num_ws_for(size)} W+ rows), but the encoder has "
            f"{arch.num_ws} style heads; the file is inconsistent."
        )

    start_from_avg = bool(opts.get("start_from_latent_avg", True))
    if not start_from_avg:  # the official forward adds nothing then
        latent_avg = torch.zeros(arch.num_ws, arch.w_dim)
    elif isinstance(ckpt.get("latent_avg"), torch.Tensor):
        latent_avg = _latent_rows(ckpt["latent_avg"], arch, where)
    else:
        raise WeightsError(
            f"{where} has no 'latent_avg' tensor, but its options say the encoder's output is added to it "
            "(start_from_latent_avg); the file is incomplete."
        )
    info = {
        "kind": kind,
        "arch": arch,
        "num_ws": arch.num_ws,
        "w_dim": arch.w_dim,
        "encoder_type": encoder_type,
        "source_format": source_format,
        "start_from_latent_avg": start_from_avg,
        "opts": {k: opts[k] for k in KEPT_OPTS if k in opts and isinstance(opts[k], (str, int, float, bool))},
    }
    return state, latent_avg, info


def _latent_rows(latent_avg: torch.Tensor, arch: EncoderArch, where: Any) -> torch.Tensor:
    """``latent_avg`` as ``(num_ws, w_dim)``: stored with one row per W+ row, or as one w for all rows."""
    avg = latent_avg.detach().float()
    if avg.shape in ((arch.w_dim,), (1, arch.w_dim)):
        avg = avg.reshape(1, arch.w_dim).expand(arch.num_ws, arch.w_dim)
    if tuple(avg.shape) != (arch.num_ws, arch.w_dim):
        raise WeightsError(
            f"{where}: latent_avg has shape {tuple(latent_avg.shape)}; expected ({arch.num_ws}, {arch.w_dim}) "
            f"or ({arch.w_dim},)."
        )
    return avg.contiguous().clone()


# -- the architecture --------------------------------------------------------------------------------
def infer_architecture(state: dict[str, torch.Tensor]) -> EncoderArch:
    """Stages, widths and W+ rows from the tensors' shapes (a stage starts where a unit changes width)."""
    units: list[int] = []
    widths: list[int] = []
    i = 0
    while f"body.{i}.res_layer.1.weight" in state:
        out_channels, in_channels = state[f"body.{i}.res_layer.1.weight"].shape[:2]
        if not widths or in_channels != out_channels:
            units.append(0)
            widths.append(int(out_channels))
        units[-1] += 1
        i += 1
    num_ws = len({k.split(".")[1] for k in state if k.startswith("styles.") and k.endswith(".linear.weight")})
    return EncoderArch(num_ws, tuple(units), tuple(widths))


def expected_layout(kind: str, arch: EncoderArch) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every state-dict key of the encoder, with its shape and dtype (built on the meta device: no memory)."""
    import torch

    with torch.device("meta"):
        encoder = build_encoder(kind, arch)  # type: ignore[arg-type]
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in encoder.state_dict().items()}


def check_state_dict(state: dict[str, torch.Tensor], kind: str, where: Any = "checkpoint") -> EncoderArch:
    """The architecture of ``state``, after checking that it has exactly that architecture's keys and shapes."""
    first = state.get("input_layer.0.weight")
    if first is not None and first.ndim == 4 and first.shape[1] != 3:
        raise WeightsError(
            f"{where}: the encoder takes {first.shape[1]}-channel inputs, not RGB photos (a pSp model for "
            "sketches or segmentation maps?); use an inversion checkpoint."
        )
    try:
        arch = infer_architecture(state)
    except ValueError:
        arch = EncoderArch()  # too broken to tell: compare with the official layout
    expected = expected_layout(kind, arch)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {expected[k][0]})"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k][0]
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{label} {len(keys)}: {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        raise WeightsError(
            f"{where}: the encoder's tensors do not match the {kind} architecture ({arch.num_ws} W+ rows, "
            f"units {list(arch.units)}, widths {list(arch.widths)}): {'; '.join(parts)}. Is it {_OFFICIAL}?"
        )
    return arch


# -- our safetensors ---------------------------------------------------------------------------------
def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, Any]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path))
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc}). Convert it again.") from None
    if meta.get("format") != FORMAT:
        raise WeightsError(
            f"{path} is a safetensors file, but not an e4e / pSp conversion (format {meta.get('format')!r}). "
            "Convert the official checkpoint with `essence weights convert`."
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{path}: format version {meta.get('format_version')!r} is not one this essence reads.")
    kind = meta.get("kind")
    if kind not in ("e4e", "psp"):
        raise WeightsError(f"{path}: its metadata names kind {kind!r}, not 'e4e' or 'psp'. Convert it again.")
    try:
        opts = json.loads(meta.get("opts", "{}"))
    except ValueError:
        opts = None
    if not isinstance(opts, dict):
        raise WeightsError(f"{path}: its metadata 'opts' is not a JSON table. Convert it again.")
    latent_avg = state.pop("latent_avg", None)
    arch = check_state_dict(state, kind, path)
    if latent_avg is None or tuple(latent_avg.shape) != (arch.num_ws, arch.w_dim):
        raise WeightsError(f"{path}: latent_avg is missing or of the wrong shape. Convert it again.")
    info = {
        "kind": kind,
        "arch": arch,
        "num_ws": arch.num_ws,
        "w_dim": arch.w_dim,
        "encoder_type": meta.get("encoder_type", ""),
        "source_format": meta.get("source_format", "?"),
        "start_from_latent_avg": meta.get("start_from_latent_avg", "true") == "true",
        "opts": opts,
    }
    return state, latent_avg, info


def convert(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> dict[str, Any]:
    """Converter hook: an official e4e / pSp checkpoint -> our safetensors (encoder and latent_avg only)."""
    from safetensors.torch import save_file

    state, latent_avg, info = read_checkpoint(src)
    arch: EncoderArch = info["arch"]
    tensors, seen = {}, set()
    for key, value in {**state, "latent_avg": latent_avg}.items():
        value = value.contiguous()
        if value.untyped_storage().data_ptr() in seen:  # safetensors stores no shared memory
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        tensors[key] = value
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": info["kind"],
        "num_ws": str(arch.num_ws),
        "w_dim": str(arch.w_dim),
        "arch": json.dumps({"num_ws": arch.num_ws, "units": list(arch.units), "widths": list(arch.widths)}),
        "encoder_type": info["encoder_type"],
        "source_format": info["source_format"],
        "start_from_latent_avg": "true" if info["start_from_latent_avg"] else "false",
        "opts": json.dumps(info["opts"], sort_keys=True),
    }
    save_file(tensors, str(dst), metadata=metadata)
    return {
        "format": f"{info['encoder_type']} checkpoint ({info['source_format']})",
        "kind": info["kind"],
        "num_ws": arch.num_ws,
        "w_dim": arch.w_dim,
        "tensors": len(state),
        "parameters": sum(t.numel() for t in state.values() if t.is_floating_point()),
        "latent_avg": "added" if info["start_from_latent_avg"] else "not used (zeros)",
    }


def load_inverter(
    path: str | os.PathLike[str],
    *,
    device: Any = None,
    weights_id: str | None = None,
    generators: tuple[str, ...] | None = None,
) -> E4EInverter:
    """An :class:`~.model.E4EInverter` from an official checkpoint or our safetensors of one.

    ``generators`` (what it inverts for) defaults to what the checkpoint's ``dataset_type`` says
    (``ffhq_encode``: ``stylegan2-ffhq``); ``weights_id`` to the file's name.
    """
    import torch

    from essence.plugins.inverters.e4e.model import E4EInverter

    state, latent_avg, info = read_checkpoint(path)
    with torch.device("meta"):
        encoder = build_encoder(info["kind"], info["arch"])
    encoder.load_state_dict(state, strict=True, assign=True)
    if generators is None:
        generators = GENERATORS.get(str(info["opts"].get("dataset_type")), ())
    inverter = E4EInverter(
        encoder, latent_avg, kind=info["kind"], weights_id=weights_id or Path(path).name, generators=generators
    )
    return inverter.to(device) if device is not None else inverter
