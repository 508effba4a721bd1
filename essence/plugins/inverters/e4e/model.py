"""e4e and pSp image encoders in pure PyTorch: an aligned face photo -> StyleGAN2 W+ latents.

References:

1) pSp: Richardson et al., "Encoding in Style: a StyleGAN Encoder for Image-to-Image Translation",
   CVPR 2021 (arXiv 2008.00951); official code github.com/eladrich/pixel2style2pixel (MIT).
2) e4e: Tov et al., "Designing an Encoder for StyleGAN Image Manipulation", SIGGRAPH 2021
   (arXiv 2102.02766); official code github.com/omertov/encoder4editing (MIT).
3) The IR-SE backbone: the "improved residual" unit of ArcFace (Deng et al., CVPR 2019) with
   squeeze-and-excitation (Hu et al., CVPR 2018), 50 layers; both encoders start from the ArcFace
   IR-SE50 weights that TreB1eN/InsightFace_Pytorch trained.

Both encoders share one body: an IR-SE50 backbone whose feature maps at strides 4, 8 and 16 (c1, c2,
c3) feed a small feature pyramid (p2 = up(c3) + lateral(c2), p1 = up(p2) + lateral(c1)), and one
"map2style" head per W+ row: strided 3x3 convs down to 1x1, then a linear layer. The coarse rows
(0-2) read c3, the middle rows (3-6) p2, the fine rows (7-) p1.

* pSp (``GradualStyleEncoder``) predicts every row on its own.
* e4e (``Encoder4Editing``) predicts one base latent w0 from row 0's head and, for every other row
  i, an offset: row i = w0 + delta_i. Training switches the deltas on one by one (its "progressive"
  stages) and keeps them small, so the latents stay near W and edit well; at inference all deltas are
  on, which is what this module computes.

Module and parameter names follow the official code, so the ``encoder.*`` tensors of
``e4e_ffhq_encode.pt`` / ``psp_ffhq_encode.pt`` load with ``strict=True``. Both return the raw codes;
an inverted latent is ``encoder(x) + latent_avg`` (:class:`E4EInverter` adds it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

import essence

Kind = Literal["e4e", "psp"]

#: W+ rows read from c3 (coarse) and from p2 (middle); the rest read p1 (fine).
COARSE_ROWS = 3
MIDDLE_ROWS = 7
#: Input side the encoders were trained at (the official inference transform: Resize((256, 256))).
RESOLUTION = 256


def num_ws_for(resolution: int) -> int:
    """W+ rows of a StyleGAN2 generator of this output size (1024 px -> 18), as the official code counts."""
    return 2 * int(math.log2(resolution)) - 2


@dataclass(frozen=True)
class EncoderArch:
    """The shape of an e4e / pSp encoder. The defaults are the official FFHQ encoders'."""

    num_ws: int = 18  # W+ rows of the generator it inverts for (18: StyleGAN2 at 1024 px)
    units: tuple[int, ...] = (3, 4, 14, 3)  # residual units per backbone stage (IR-SE50)
    widths: tuple[int, ...] = (64, 128, 256, 512)  # channels per stage; the last one is also w_dim

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", tuple(int(u) for u in self.units))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.num_ws <= MIDDLE_ROWS:
            raise ValueError(f"num_ws must be more than {MIDDLE_ROWS}, got {self.num_ws}")
        if len(self.units) != 4 or len(self.widths) != 4 or min(self.units) < 1:
            raise ValueError(f"four backbone stages of at least one unit each, got units={self.units}")
        # Stage boundaries must show in the weights (a channel change), and SE divides channels by 16.
        if self.widths[0] < 16 or any(a >= b for a, b in zip(self.widths, self.widths[1:])):
            raise ValueError(f"widths must be increasing and at least 16, got {self.widths}")

    @property
    def w_dim(self) -> int:
        return self.widths[-1]


# -- the backbone ------------------------------------------------------------------------------------
class SqueezeExcite(nn.Module):
    """Channel attention: scale each channel by a gate computed from the global average."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class Subsample(nn.Module):
    """The identity shortcut of a strided unit: every ``stride``-th pixel (a 1x1 max-pool)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]


class IRSEUnit(nn.Module):
    """Improved residual unit with SE: BN, 3x3 conv, PReLU, 3x3 conv (strided), BN, SE; plus a shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        if in_channels == channels:
            self.shortcut_layer: nn.Module = Subsample(stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                nn.BatchNorm2d(channels),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels),
            SqueezeExcite(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def ir_se_body(units: Sequence[int], widths: Sequence[int]) -> nn.Sequential:
    """The backbone's residual units, one flat sequence (the official ``body``); each stage starts with stride 2."""
    layers, in_channels = [], widths[0]
    for count, channels in zip(units, widths):
        layers.append(IRSEUnit(in_channels, channels, 2))
        layers += [IRSEUnit(channels, channels, 1) for _ in range(count - 1)]
        in_channels = channels
    return nn.Sequential(*layers)


# -- the heads ---------------------------------------------------------------------------------------
class EqualLinear(nn.Module):
    """Linear layer with StyleGAN's equalised learning rate: the weight is scaled by 1/sqrt(fan_in) at run time."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = 1 / math.sqrt(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class Map2Style(nn.Module):
    """One W+ row from a feature map: log2(spatial) strided 3x3 convs with leaky ReLU down to 1x1, then a
    linear layer (the official ``GradualStyleBlock``). ``spatial`` is the map's side at a 256-px input."""

    def __init__(self, channels: int, spatial: int):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        if x.shape[-2:] != (1, 1):
            raise ValueError(
                f"map2style reached {tuple(x.shape[-2:])}, not 1x1: the encoder takes inputs of at most "
                f"{RESOLUTION} px (resize first)"
            )
        return self.linear(x.flatten(1))


def _upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """A feature-pyramid merge: bilinear upsampling (corners aligned, as the official code) plus the lateral map."""
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


# -- the encoders ------------------------------------------------------------------------------------
class _PyramidEncoder(nn.Module):
    """What pSp and e4e share: backbone, lateral 1x1 convs and one map2style head per W+ row."""

    def __init__(self, arch: EncoderArch | None = None):
        super().__init__()
        self.arch = arch = arch or EncoderArch()
        self.num_ws, self.w_dim = arch.num_ws, arch.w_dim
        c0, c1, c2, c3 = arch.widths
        self.input_layer = nn.Sequential(nn.Conv2d(3, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0), nn.PReLU(c0))
        self.body = ir_se_body(arch.units, arch.widths)
        # c1 (stride 4), c2 (stride 8) and c3 (stride 16): the outputs of the last three stages' last units.
        self._taps = tuple(sum(arch.units[: i + 1]) - 1 for i in (1, 2, 3))
        self.styles = nn.ModuleList(
            Map2Style(c3, 16 if i < COARSE_ROWS else 32 if i < MIDDLE_ROWS else 64) for i in range(arch.num_ws)
        )
        self.latlayer1 = nn.Conv2d(c2, c3, 1)
        self.latlayer2 = nn.Conv2d(c1, c3, 1)

    def backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c1, c2, c3): the backbone's maps at strides 4, 8 and 16."""
        x = self.input_layer(x)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self._taps:
                taps.append(x)
        c1, c2, c3 = taps
        return c1, c2, c3

    def pyramid(self, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor) -> list[torch.Tensor]:
        """The map each W+ row reads: c3 for coarse rows, p2 for middle rows, p1 for fine rows."""
        p2 = _upsample_add(c3, self.latlayer1(c2))
        p1 = _upsample_add(p2, self.latlayer2(c1))
        return [c3 if i < COARSE_ROWS else p2 if i < MIDDLE_ROWS else p1 for i in range(self.num_ws)]


class GradualStyleEncoder(_PyramidEncoder):
    """pSp: every W+ row from its own head. ``(n, 3, H, W)`` in [-1, 1] -> ``(n, num_ws, w_dim)`` raw codes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.pyramid(*self.backbone(x))
        return torch.stack([head(m) for head, m in zip(self.styles, maps)], dim=1)


class Encoder4Editing(_PyramidEncoder):
    """e4e at inference: row 0 is w0, row i is w0 + delta_i. ``(n, 3, H, W)`` -> ``(n, num_ws, w_dim)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.pyramid(*self.backbone(x))
        w0 = self.styles[0](maps[0])
        rows = [w0] + [w0 + head(m) for head, m in zip(self.styles[1:], maps[1:])]
        return torch.stack(rows, dim=1)


ENCODERS: dict[str, type[_PyramidEncoder]] = {"e4e": Encoder4Editing, "psp": GradualStyleEncoder}
#: ``opts["encoder_type"]`` of the official checkpoints.
ENCODER_TYPES: dict[str, Kind] = {"Encoder4Editing": "e4e", "GradualStyleEncoder": "psp"}


def build_encoder(kind: Kind, arch: EncoderArch | None = None) -> _PyramidEncoder:
    """An untrained encoder of ``kind`` ("e4e" or "psp"), by default of the official FFHQ shape."""
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder kind {kind!r}; expected 'e4e' or 'psp'")
    return ENCODERS[kind](arch)


# -- the inverter ------------------------------------------------------------------------------------
class E4EInverter(nn.Module, essence.Inverter):
    """Aligned face photos -> W+ latents of the generator the encoder was trained with.

    ``invert`` resizes to 256 px the way the official inference transform does (``Resize((256, 256))``:
    bilinear with antialiasing), runs the encoder in eval mode without gradients and adds ``latent_avg``.
    """

    resolution: int = RESOLUTION

    def __init__(
        self,
        encoder: _PyramidEncoder,
        latent_avg: torch.Tensor,
        *,
        kind: Kind,
        weights_id: str = "random",
        generators: Sequence[str] = ("stylegan2-ffhq",),
    ):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.kind: Kind = kind
        self.num_ws, self.w_dim = encoder.num_ws, encoder.w_dim
        self.weights_id = weights_id
        self.generators: tuple[str, ...] = tuple(generators)
        latent_avg = torch.as_tensor(latent_avg, dtype=torch.float32)
        self.register_buffer("latent_avg", latent_avg.expand(self.num_ws, self.w_dim).clone())

    @property
    def device(self) -> torch.device:
        return self.latent_avg.device

    def train(self, mode: bool = True) -> E4EInverter:
        # Inference only: BatchNorm always uses its running statistics.
        return super().train(False)

    def check_generator(self, generator: Any) -> None:
        """Raise ``essence.EssenceError`` unless ``generator`` takes latents of our shape."""
        num_ws, w_dim = getattr(generator, "num_ws", None), getattr(generator, "w_dim", None)
        if (num_ws, w_dim) != (self.num_ws, self.w_dim):
            trained_for = ", ".join(self.generators) or "the generator it was trained with"
            raise essence.EssenceError(
                f"The {self.kind} inverter {self.weights_id!r} makes W+ latents of {self.num_ws} x {self.w_dim} "
                f"(for {trained_for}), but the generator takes {num_ws} x {w_dim}. Use {trained_for}, "
                "or an inverter trained for this generator."
            )

    @torch.no_grad()
    def invert(self, images: torch.Tensor, generator: Any = None, *, callback: Any = None) -> torch.Tensor:
        """Aligned images ``(n, 3, H, W)`` in [-1, 1], any size -> W+ latents ``(n, num_ws, w_dim)``."""
        if generator is not None:
            self.check_generator(generator)
        if images.ndim != 4 or images.shape[1] != 3:
            raise essence.EssenceError(
                f"The {self.kind} inverter takes RGB images shaped (n, 3, H, W), got {tuple(images.shape)}."
            )
        x = images.to(self.device, torch.float32)
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True)
        return self.encoder(x) + self.latent_avg

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.invert(images)
