"""Files a run reads and writes: latents, directions, the run folder's images and plots.

Directions are ``direction.safetensors`` with ``b`` ``(num_ws, w_dim)`` (the essence latent), ``d``
``(embed_dim,)`` (the unit edit it makes in the encoder's space) and string metadata. Latent files are
``(N, num_ws, w_dim)`` tensors in ``.pt`` (plain tensors only, read with ``weights_only=True``), ``.npy``
(no pickles) or ``.safetensors``. Plots are drawn with PIL: matplotlib is not a dependency.
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

if TYPE_CHECKING:
    import torch
    from PIL import Image

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
        except ValueError:
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
        raise EssenceError(f"{what} not found: {p}")
    suffix = p.suffix.lower()
    if suffix not in LATENT_SUFFIXES:
        raise EssenceError(f"{what} {p}: unsupported format; use one of {', '.join(LATENT_SUFFIXES)}.")
    try:
        if suffix in (".pt", ".pth"):
            obj = torch.load(p, map_location="cpu", weights_only=True)
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
    if not ws.is_floating_point():
        raise EssenceError(f"{what} {p} holds {ws.dtype} values; expected floating-point latents.")
    if not torch.isfinite(ws).all():
        raise EssenceError(f"{what} {p} contains NaN or infinite values.")
    return ws.float().contiguous()


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
    tmp = p.with_name(p.name + ".tmp")
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({"ws": ws}, str(tmp), metadata=dict(metadata or {}))
    elif suffix in (".pt", ".pth"):
        torch.save(ws, tmp)
    elif suffix == ".npy":
        import numpy as np

        with open(tmp, "wb") as fh:
            np.save(fh, ws.numpy())
    else:
        raise EssenceError(f"Cannot save latents as {p}: use one of {', '.join(LATENT_SUFFIXES)}.")
    os.replace(tmp, p)
    return p


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

    import essence

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
        "essence_version": essence.__version__,
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
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    save_file(tensors, str(tmp), metadata=strings)
    os.replace(tmp, p)
    return p


def load_direction(path: str | os.PathLike[str]) -> Direction:
    """Read a direction: our ``.safetensors``, or a bare ``(1, num_ws, w_dim)`` / ``(num_ws, w_dim)`` tensor
    (TargetCLIP's ``.npy``, a ``.pt``) with no metadata."""
    p = Path(path)
    if not p.is_file():
        raise EssenceError(f"Direction file not found: {p}")
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
            b = fh.get_tensor("b").float()
            d = fh.get_tensor("d").float() if "d" in keys else None
    except EssenceError:
        raise
    except Exception as exc:
        raise EssenceError(f"Cannot read direction file {p}: {exc}") from None
    meta = decode_metadata(raw_meta)
    if b.dim() != 2:
        raise EssenceError(f"Direction file {p}: 'b' has shape {tuple(b.shape)}; expected (num_ws, w_dim).")
    return Direction(b=b, d=d, metadata=meta)


# -- run folder helpers ----------------------------------------------------------------------------


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create the folder (and parents) and prove a file can be written there, before any compute."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise EssenceError(f"Output folder {p} is a file. Choose another --out.")
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".essence-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise EssenceError(f"Cannot write to output folder {p}: {exc.strerror or exc}. Choose another --out.") from None
    return p


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def write_trace_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """One row per step; columns are the union of the records' keys, fixed ones first."""
    first = ["restart", "step", "lr", "loss", "transfer", "consistency", "direction_norm", "mean_coefficient"]
    extra = sorted({k for r in rows for k in r} - set(first))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=first + extra, restval="")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in r.items()})
    os.replace(tmp, path)


def read_trace_csv(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]


# -- images ----------------------------------------------------------------------------------------


def square_tile(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square and resize, as the target is shown in the sheet."""
    from PIL import Image

    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return img.convert("RGB").crop(box).resize((size, size), Image.Resampling.LANCZOS)


def contact_sheet(
    targets: Sequence[Image.Image],
    sources: Sequence[Image.Image],
    results: Sequence[Image.Image],
    *,
    tile: int = 256,
    gap: int = 4,
) -> Image.Image:
    """The paper's layout: sources along the top row, results below them, the target at the left.

    Several targets are stacked in the left cell of the results row.
    """
    from PIL import Image, ImageDraw

    n = len(sources)
    if len(results) != n:
        raise ValueError("one result per source")
    label_h = 14
    width = (n + 1) * tile + (n + 2) * gap
    height = 2 * tile + 3 * gap + 2 * label_h
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)

    def x_of(col: int) -> int:
        return gap + col * (tile + gap)

    y_top = label_h + gap
    y_bottom = y_top + tile + gap + label_h
    draw.text((x_of(1), 2), "sources", fill=(0, 0, 0))
    draw.text((x_of(1), y_top + tile + gap), "results", fill=(0, 0, 0))
    draw.text((x_of(0), y_top + tile + gap), "target", fill=(0, 0, 0))
    for i, (src, res) in enumerate(zip(sources, results)):
        sheet.paste(_fit(src, tile), (x_of(i + 1), y_top))
        sheet.paste(_fit(res, tile), (x_of(i + 1), y_bottom))
    if targets:
        k = math.ceil(math.sqrt(len(targets)))
        sub = tile // k
        for j, t in enumerate(targets):
            sheet.paste(square_tile(t, sub), (x_of(0) + (j % k) * sub, y_bottom + (j // k) * sub))
    else:
        draw.rectangle([x_of(0), y_bottom, x_of(0) + tile - 1, y_bottom + tile - 1], fill=(200, 200, 200))
    return sheet


def _fit(img: Image.Image, tile: int) -> Image.Image:
    from PIL import Image

    up = img.width < tile
    return img.convert("RGB").resize((tile, tile), Image.Resampling.NEAREST if up else Image.Resampling.LANCZOS)


_SERIES_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))


def loss_plot(
    series: Mapping[str, Sequence[float]], *, size: tuple[int, int] = (720, 420), title: str = "loss"
) -> Image.Image:
    """A line plot of each series against the step, with axes, ticks and a legend."""
    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = 64, 16, 28, 40
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    finite = [v for vals in series.values() for v in vals if math.isfinite(v)]
    steps = max((len(v) for v in series.values()), default=0)
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    pw, ph = w - left - right, h - top - bottom

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (i / max(steps - 1, 1)) * pw
        y = top + (1 - (v - lo) / (hi - lo)) * ph
        return x, y

    draw.rectangle([left, top, left + pw, top + ph], outline=(0, 0, 0))
    for k in range(6):
        v = lo + (hi - lo) * k / 5
        _, y = xy(0, v)
        draw.line([left - 4, y, left, y], fill=(0, 0, 0))
        draw.line([left + 1, y, left + pw - 1, y], fill=(235, 235, 235))
        draw.text((4, y - 6), f"{v:.3g}", fill=(0, 0, 0))
    for k in range(6):
        i = round((steps - 1) * k / 5) if steps > 1 else 0
        x, _ = xy(i, lo)
        draw.line([x, top + ph, x, top + ph + 4], fill=(0, 0, 0))
        draw.text((x - 8, top + ph + 8), str(i), fill=(0, 0, 0))
    draw.text((left + pw // 2 - 12, h - 16), "step", fill=(0, 0, 0))
    draw.text((left, 8), title, fill=(0, 0, 0))
    for n, (name, vals) in enumerate(series.items()):
        colour = _SERIES_COLOURS[n % len(_SERIES_COLOURS)]
        points = [xy(i, v) for i, v in enumerate(vals) if math.isfinite(v)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        elif points:
            x, y = points[0]
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        lx = left + pw - 150
        ly = top + 8 + 14 * n
        draw.line([lx, ly + 6, lx + 20, ly + 6], fill=colour, width=2)
        draw.text((lx + 26, ly), name, fill=(0, 0, 0))
    return img


def image_grid(rows: Sequence[Sequence[Image.Image]], tile: int) -> Image.Image:
    """Tiles edge to edge, ``len(rows)`` x ``len(rows[0])`` of ``tile`` pixels: nothing else, so a grid's
    size says its layout and any tile can be cut out of it at ``(col * tile, row * tile)``."""
    from PIL import Image

    if not rows or not rows[0] or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("a grid needs rows of equal, non-zero length")
    grid = Image.new("RGB", (len(rows[0]) * tile, len(rows) * tile))
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            grid.paste(_fit(img, tile), (c * tile, r * tile))
    return grid


def comparison_figure(
    targets: Sequence[Image.Image],
    sources: Sequence[Image.Image],
    rows: Sequence[tuple[str, Sequence[Image.Image]]],
    *,
    tile: int = 256,
    gap: int = 4,
) -> Image.Image:
    """The paper's Figure 1: the target at the left of the top row, the sources along it, then one row of
    results per method with the method's name in its left cell."""
    from PIL import Image, ImageDraw

    n = len(sources)
    if any(len(images) != n for _, images in rows):
        raise ValueError("one result per source in every row")
    label_h = 14
    width = (n + 1) * tile + (n + 2) * gap
    height = label_h + gap + (len(rows) + 1) * (tile + gap)
    fig = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(fig)

    def x_of(col: int) -> int:
        return gap + col * (tile + gap)

    def y_of(row: int) -> int:
        return label_h + gap + row * (tile + gap)

    draw.text((x_of(0), 2), "target", fill=(0, 0, 0))
    draw.text((x_of(1), 2), "sources", fill=(0, 0, 0))
    if targets:
        k = math.ceil(math.sqrt(len(targets)))
        sub = tile // k
        for j, t in enumerate(targets):
            fig.paste(square_tile(t, sub), (x_of(0) + (j % k) * sub, y_of(0) + (j // k) * sub))
    for i, src in enumerate(sources):
        fig.paste(_fit(src, tile), (x_of(i + 1), y_of(0)))
    for r, (label, images) in enumerate(rows, start=1):
        draw.rectangle([x_of(0), y_of(r), x_of(0) + tile - 1, y_of(r) + tile - 1], fill=(235, 235, 235))
        draw.text((x_of(0) + 6, y_of(r) + tile // 2 - 6), label, fill=(0, 0, 0))
        for i, img in enumerate(images):
            fig.paste(_fit(img, tile), (x_of(i + 1), y_of(r)))
    return fig
