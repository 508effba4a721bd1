"""Configuration and architecture facts of the StyleGAN2 generator. Torch-free (imported by listing)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator, model_validator

import essence


def default_channels(size: int, channel_multiplier: int = 2) -> dict[int, int]:
    """The config-f channel table: 512 up to 32 px, then 256*m, 128*m, ... (spec section 1.2)."""
    table = {4: 512, 8: 512, 16: 512, 32: 512}
    res, width = 64, 256 * channel_multiplier
    while res <= max(size, 64):
        table[res] = width
        res, width = res * 2, width // 2
    return {r: c for r, c in table.items() if r <= size}


def log2_exact(n: int) -> int | None:
    return n.bit_length() - 1 if n > 0 and n & (n - 1) == 0 else None


@dataclass(frozen=True)
class Architecture:
    """What a weights file must agree with: everything that fixes the tensor shapes, plus conv_clamp."""

    size: int
    style_dim: int = 512
    n_mlp: int = 8
    channels: dict[int, int] = field(default_factory=dict)
    #: ada/SG3 clamp of every layer's output (None: no clamp, as in TF config-f).
    conv_clamp: float | None = None

    def __post_init__(self) -> None:
        if not self.channels:
            object.__setattr__(self, "channels", default_channels(self.size))

    @property
    def log_size(self) -> int:
        return self.size.bit_length() - 1

    @property
    def num_ws(self) -> int:
        """Rows of W+ (rosinality n_latent)."""
        return 2 * self.log_size - 2

    @property
    def num_layers(self) -> int:
        """Styled conv layers, and noise maps."""
        return 2 * (self.log_size - 2) + 1

    def describe(self) -> str:
        return f"{self.size}-px StyleGAN2 ({self.num_ws} ws, style_dim {self.style_dim}, {self.n_mlp} mapping layers)"

    def to_metadata(self) -> dict[str, str]:
        return {
            "size": str(self.size),
            "style_dim": str(self.style_dim),
            "n_mlp": str(self.n_mlp),
            "channels": json.dumps({str(r): c for r, c in sorted(self.channels.items())}),
            "conv_clamp": json.dumps(self.conv_clamp),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> Architecture:
        """The architecture recorded in our safetensors; a missing, malformed or absurd value is a WeightsError
        (the reader adds the file's name), never a KeyError or a model of a billion channels."""
        try:
            size, style_dim, n_mlp = int(meta["size"]), int(meta["style_dim"]), int(meta["n_mlp"])
            raw = json.loads(meta["channels"])
            clamp = json.loads(meta.get("conv_clamp", "null"))
            if not isinstance(raw, dict):
                raise ValueError("channels is not a table")
            channels = {int(r): int(c) for r, c in raw.items()}
        except KeyError as exc:
            raise essence.WeightsError(f"its architecture metadata lacks {exc.args[0]!r}; convert it again.") from None
        except (TypeError, ValueError) as exc:
            raise essence.WeightsError(f"its architecture metadata is malformed ({exc}); convert it again.") from None
        problems = []
        if log2_exact(size) is None or not 4 <= size <= 4096:
            problems.append(f"size {size}")
        if not 1 <= style_dim <= 8192:
            problems.append(f"style_dim {style_dim}")
        if not 1 <= n_mlp <= 64:
            problems.append(f"n_mlp {n_mlp}")
        if any(log2_exact(r) is None or not 1 <= c <= 8192 for r, c in channels.items()):
            problems.append(f"channels {raw}")
        if clamp is not None and (isinstance(clamp, bool) or not isinstance(clamp, (int, float)) or not 0 < clamp < 1e6):
            problems.append(f"conv_clamp {clamp!r}")
        if problems:
            raise essence.WeightsError(f"its architecture metadata is not a StyleGAN2 ({', '.join(problems)}); convert it again.")
        return cls(size=size, style_dim=style_dim, n_mlp=n_mlp, channels=channels, conv_clamp=clamp)


def header_metadata(path: str) -> dict[str, str] | None:
    """The ``__metadata__`` of a safetensors file, from its JSON header alone (no tensor is read, no torch);
    None when the file is not one (or unreadable)."""
    import struct
    from pathlib import Path

    p = Path(path).expanduser()
    try:
        with p.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if not 2 <= n <= 100_000_000:
                return None
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else None


def wplus_of(config: StyleGAN2Config) -> tuple[int, int] | None:
    """W+ ``(num_ws, w_dim)`` of a StyleGAN2 config without building it: from ``size`` and ``style_dim``,
    else from the architecture our safetensors weights file records in its header, else from a cached
    asset's header; None when the file must be read in full (another format) or is not there."""
    size, style_dim = config.size, config.style_dim
    if size is None or style_dim is None:
        meta = header_metadata(config.weights)
        if meta is None:
            try:  # a registered name that is already in the cache (never downloads)
                from essence.weights.assets import get_assets
                from essence.weights.cache import cache_entry

                asset = get_assets().get(config.weights)
                entry = cache_entry(asset) if asset is not None else None
                meta = header_metadata(str(entry.path)) if entry is not None and entry.status == "cached" else None
            except Exception:
                meta = None
        try:
            size = size or (int(meta["size"]) if meta else None)
            style_dim = style_dim or (int(meta["style_dim"]) if meta else None)
        except (KeyError, TypeError, ValueError):
            return None
    if size is None:
        return None
    return 2 * (size.bit_length() - 1) - 2, style_dim or 512


class StyleGAN2Config(essence.ComponentConfig):
    """StyleGAN2 config-f generator. Architecture fields left empty are read from the weights file."""

    weights: str = Field(
        description="A weights file (safetensors, rosinality .pt, NVIDIA .pkl), a registered weights name, "
        "or 'random' (seeded random weights, for tests and benchmarks)."
    )
    size: int | None = Field(None, description="Output resolution in pixels; None: from the weights file.")
    style_dim: int | None = Field(None, ge=1, description="z and w dimension; None: from the file, else 512.")
    n_mlp: int | None = Field(None, ge=1, description="Mapping layers; None: from the file, else 8.")
    lr_mlp: float = Field(0.01, gt=0, description="Learning-rate multiplier of the mapping network (config-f: 0.01).")
    channel_multiplier: int | None = Field(
        None, ge=1, description="Channel table of config-f (2) or configs A-E (1); None: from the file, else 2."
    )
    channels: dict[int, int] | None = Field(
        None, description="Explicit channel table {resolution: channels}; overrides channel_multiplier."
    )
    device: str = Field("auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:1', ...")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="Precision of synthesis: float32, or bfloat16/float16 autocast (weights stay float32).",
    )
    compile: bool = Field(False, description="Run synthesis through torch.compile (worth it on a GPU).")
    alignment: essence.Alignment = Field(
        "none",
        description="The crop of a photo its images are like: ffhq (FFHQ face alignment), center (a centre "
        "crop) or none (the whole image, resized); photos go through an aligner of this alignment.",
    )
    default_inverter: str = Field("projector", description="The inverter photos go through by default.")

    @field_validator("size")
    @classmethod
    def _power_of_two(cls, v: int | None) -> int | None:
        if v is not None and (v < 4 or log2_exact(v) is None):
            raise ValueError("must be a power of two, at least 4")
        return v

    @model_validator(mode="after")
    def _channels_cover_size(self) -> StyleGAN2Config:
        if self.channels is not None:
            if self.size is None:
                raise ValueError("an explicit channels table needs an explicit size")
            missing = [r for r in resolutions(self.size) if r not in self.channels]
            if missing:
                raise ValueError(f"channels has no entry for resolution(s) {missing} (needs 4 ... {self.size})")
            if any(c < 1 for c in self.channels.values()):
                raise ValueError("channel counts must be positive")
        return self

    def expected(self, found: Architecture | None = None) -> Architecture:
        """The architecture asked for: set fields win; unset ones come from the file ``found``, or default."""
        size = self.size or (found.size if found else None)
        if size is None:
            raise essence.ConfigError("weights='random' needs an explicit size (for example size=256).")
        if self.channels is not None:
            channels = {r: self.channels[r] for r in resolutions(size)}
        elif self.channel_multiplier is None and found is not None:
            channels = dict(found.channels)
        else:
            channels = default_channels(size, self.channel_multiplier or 2)
        return Architecture(
            size=size,
            style_dim=self.style_dim or (found.style_dim if found else 512),
            n_mlp=self.n_mlp or (found.n_mlp if found else 8),
            channels=channels,
            conv_clamp=found.conv_clamp if found else None,
        )


def resolutions(size: int) -> list[int]:
    return [2**i for i in range(2, size.bit_length())]
