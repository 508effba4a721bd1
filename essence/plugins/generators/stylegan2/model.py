"""StyleGAN2 config-f generator in pure PyTorch, in the rosinality state-dict layout.

References: Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020);
docs/specs/stylegan2.md (architecture, checkpoint formats, fidelity). Module and parameter
names follow rosinality/stylegan2-pytorch, so its checkpoints load with ``strict=True``.

Speed without changing the function (float32 results agree with the reference to ~1e-5):

* Modulation is applied to the activations, not the weights ("non-fused"): ``conv(x * s, W) * d``
  equals the per-sample modulated, demodulated conv. One ordinary conv serves the whole batch, and
  since the weights are frozen, back-propagation to ``ws`` never computes weight gradients.
* Per-channel factors are carried between layers instead of applied: a layer returns ``(u, g)``
  with activation ``u * g``. Because the demodulation factor is positive and leaky ReLU is
  positively homogeneous, ``lrelu(h*d + noise + bias) * sqrt(2) = lrelu(h + (noise + bias)/d) *
  (sqrt(2)*d)``; the factor ``g`` is folded into the next layer's styles and into ToRGB's weight.
  That saves three full-size passes per layer.
* The noise + bias + leaky ReLU epilogue runs in place, with a hand-written backward.
* Activations are kept channels_last, where oneDNN convolutions are 1.5-2x faster on CPU.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

import essence
from essence.plugins.generators.stylegan2.config import Architecture

if TYPE_CHECKING:
    from essence import NoiseMode

SQRT2 = math.sqrt(2.0)
BLUR_KERNEL = (1.0, 3.0, 3.0, 1.0)
#: Seed of the 4096 z whose mapped mean is mean_w when the weights carry no tracked average.
MEAN_W_SEED = 4096
MEAN_W_SAMPLES = 4096


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


def full_precision(x: torch.Tensor):
    """Styles and demodulation stay float32 under autocast: they are tiny, and errors there compound."""
    return torch.autocast(x.device.type, enabled=False)


def make_kernel(taps: tuple[float, ...] = BLUR_KERNEL, gain: float = 4.0) -> torch.Tensor:
    """Outer product of ``taps`` normalised to sum ``gain`` (4 = the 2x upsampling gain)."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[:, None] * k[None, :]
    return k / k.sum() * gain


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weights stored unscaled, scaled at run time."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        if self.activate:
            out = F.leaky_relu(out, 0.2) * SQRT2
        return out


class Blur(nn.Module):
    """upfirdn2d(pad=(1, 1)) with the 4x4 kernel: the (2H+1) transposed-conv output -> 2H."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        k = self.kernel.flip(0, 1).to(x.dtype)[None, None].expand(c, 1, -1, -1)
        return F.conv2d(x, k, padding=1, groups=c)


class Upsample(nn.Module):
    """upfirdn2d(up=2, pad=(2, 1)): H -> 2H, as a depthwise transposed conv (no zero-inserted copy)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        k = self.kernel.to(x.dtype)[None, None].expand(c, 1, -1, -1)
        return F.conv_transpose2d(x, k, stride=2, padding=1, groups=c)


class ModulatedConv2d(nn.Module):
    """Holds a modulated conv's parameters; the arithmetic lives in StyledConv and ToRGB."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        if upsample:  # registered before modulation: the reference's state-dict order
            self.blur = Blur()
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.padding = kernel_size // 2
        self.upsample = upsample
        self._cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def prepared(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight as the conv op wants it, and its sum of squares over taps ``(Cout, Cin)``.

        Cached while the weight is frozen: recomputing them costs ~5% of a forward pass at 1024 px.
        ``_version`` changes on every in-place update (``load_state_dict``, ``copy_``), which invalidates it.
        """
        p = self.weight
        key = (p._version, p.data_ptr(), p.device, p.dtype)
        if self._cache is not None and self._cache[0] == key and not p.requires_grad:
            return self._cache[1], self._cache[2]
        weight = p[0].transpose(0, 1) if self.upsample else p[0]
        weight = weight.contiguous(memory_format=torch.channels_last)
        sumsq = p[0].square().sum(dim=(2, 3))
        if not p.requires_grad and not _compiling():
            self._cache = (key, weight, sumsq)
        return weight, sumsq


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class BiasAct(nn.Module):
    """The bias of the fused leaky ReLU (rosinality ``activate``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))


Carried = tuple[torch.Tensor, "torch.Tensor | None"]


class NoiseBiasLeakyReLU(torch.autograd.Function):
    """``lrelu(h + noise * a + b, 0.2)``, computed in place on ``h``, a fresh conv output that nothing
    else holds; ``a`` and ``b`` are per (sample, channel).

    Autograd would reduce the gradients of ``a`` and ``b`` with a broadcast product and two sums over
    full-size tensors; here one batched matmul reads the gradient once. About 10% of backward at 1024 px.
    """

    @staticmethod
    def forward(ctx, h, noise, a, b):
        if noise is not None:
            h.addcmul_(noise, a[:, :, None, None])
        h.add_(b[:, :, None, None])
        F.leaky_relu(h, 0.2, inplace=True)
        ctx.mark_dirty(h)
        ctx.save_for_backward(h, noise)
        return h

    @staticmethod
    def backward(ctx, grad):
        out, noise = ctx.saved_tensors
        g = torch.ops.aten.leaky_relu_backward(grad, out, 0.2, True)
        if not (ctx.needs_input_grad[2] or ctx.needs_input_grad[3]):
            return g, None, None, None
        n, c, height, width = g.shape
        if g.is_contiguous(memory_format=torch.channels_last):
            flat = g.permute(0, 2, 3, 1).reshape(n, height * width, c)
        else:
            flat = g.reshape(n, c, height * width).transpose(1, 2)
        rows = [torch.ones(1, height * width, dtype=g.dtype, device=g.device).expand(n, -1)]
        if noise is not None:
            rows.insert(0, noise.reshape(noise.shape[0], height * width).expand(n, -1))
        sums = row_products(torch.stack(rows, dim=1), flat)  # (n, 1 or 2, c)
        return g, None, sums[:, 0] if noise is not None else None, sums[:, -1]


def row_products(rows: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """``rows @ flat`` for a few rows ``(n, r, L)`` and a long ``(n, L, c)``: a sum over L, split in chunks.

    A batched matmul with r = 1..3 rows and L up to 10^6 runs at a few GB/s (the BLAS splits the
    work over the rows and columns, not over L); the same product as a batch of up to 64 chunks of L,
    summed, keeps every core busy: 3-10x faster at 256-1024 px.
    """
    n, r, length = rows.shape
    c = flat.shape[-1]
    parts = 1
    while parts < 64 and length % (parts * 2) == 0 and length // (parts * 2) >= 1024:
        parts *= 2
    if parts == 1:
        return torch.bmm(rows, flat)
    chunk = length // parts
    rows = rows.reshape(n, r, parts, chunk).transpose(1, 2).reshape(n * parts, r, chunk)
    return torch.bmm(rows, flat.reshape(n * parts, chunk, c)).view(n, parts, r, c).sum(dim=1)


class RGBProject(torch.autograd.Function):
    """``x @ weight^T``: per-sample ``(n, L, Cin) x (n, 3, Cin)^T -> (n, L, 3)``, ToRGB's 1x1 conv.

    Autograd's backward of the batched matmul reduces the weight gradient as ``x^T @ grad`` with a
    transposed, 3-column operand: ~0.4 s at 1024 px. Here it is ``grad^T @ x`` in chunks (row_products).
    """

    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return torch.bmm(x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = row_products(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w


class StyledConv(nn.Module):
    """Modulated, demodulated 3x3 conv (optionally 2x up) -> + noise -> + bias -> leaky ReLU x sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = BiasAct(out_ch)
        self.conv_clamp: float | None = None

    def forward(
        self, x: torch.Tensor, gain: torch.Tensor | None, w: torch.Tensor, noise: torch.Tensor | None
    ) -> Carried:
        """Input activation ``x * gain`` (gain ``(N, Cin)`` or None) -> ``(u, g)``, activation ``u * g``."""
        conv = self.conv
        weight, sumsq = conv.prepared()
        with full_precision(x):
            styles = conv.modulation(w)
            # Demodulation of the per-sample weight scale * W * s, without materialising it.
            demod = torch.rsqrt(conv.scale**2 * (styles.square() @ sumsq.T) + 1e-8)
        out_gain = conv.scale * demod
        in_scale = styles if gain is None else styles * gain
        scale = in_scale[:, :, None, None].to(x.dtype)
        # Outside autograd nothing reads x after this layer (ToRGB ran before), so scale it in place.
        h = x * scale if torch.is_grad_enabled() and (x.requires_grad or scale.requires_grad) else x.mul_(scale)
        if conv.upsample:
            h = conv.blur(F.conv_transpose2d(h, weight.to(h.dtype), stride=2))
        else:
            h = F.conv2d(h, weight.to(h.dtype), padding=conv.padding)
        inv = 1 / out_gain
        noise = None if noise is None else noise.to(h.dtype)
        a, b = (self.noise.weight * inv).to(h.dtype), (self.activate.bias * inv).to(h.dtype)
        h = NoiseBiasLeakyReLU.apply(h, noise, a, b)
        g = SQRT2 * out_gain
        if self.conv_clamp is not None:
            limit = (self.conv_clamp / g)[:, :, None, None].to(h.dtype)
            h = torch.clamp(h, -limit, limit)
        return h, g


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) + bias, added to the upsampled previous RGB."""

    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.conv_clamp: float | None = None

    def forward(
        self, x: torch.Tensor, gain: torch.Tensor | None, w: torch.Tensor, skip: torch.Tensor | None
    ) -> torch.Tensor:
        conv = self.conv
        with full_precision(x):
            styles = conv.modulation(w) * conv.scale
        if gain is not None:
            styles = styles * gain
        weight = (conv.weight[0, :, :, 0, 0][None] * styles[:, None, :]).to(x.dtype)  # (N, 3, Cin)
        n, c, h, w_ = x.shape
        # A batched (H*W, Cin) x (Cin, 3) product on the channels_last storage: no per-sample conv.
        rgb = RGBProject.apply(x.permute(0, 2, 3, 1).reshape(n, h * w_, c), weight)
        rgb = rgb.view(n, h, w_, 3).permute(0, 3, 1, 2) + self.bias.to(x.dtype)
        if self.conv_clamp is not None:
            rgb = rgb.clamp(-self.conv_clamp, self.conv_clamp)
        if skip is not None:
            rgb = rgb + self.upsample(skip)
        return rgb


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))


class StyleGAN2Generator(nn.Module, essence.Generator):
    """StyleGAN2 config-f: z -> mapping -> w; W+ ``(n, num_ws, w_dim)`` -> images in about [-1, 1]."""

    def __init__(self, arch: Architecture, lr_mlp: float = 0.01):
        super().__init__()
        self.arch = arch
        self.resolution = arch.size
        self.num_ws = arch.num_ws
        self.w_dim = self.z_dim = arch.style_dim
        self.weights_id = "random"
        ch, sd = arch.channels, arch.style_dim

        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(sd, sd, lr_mul=lr_mlp, activate=True) for _ in range(arch.n_mlp)]
        )
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], sd)
        self.to_rgb1 = ToRGB(ch[4], sd, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(arch.num_layers):
            side = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, side, side))
        prev = ch[4]
        for log_res in range(3, arch.log_size + 1):
            out = ch[2**log_res]
            self.convs.append(StyledConv(prev, out, sd, upsample=True))
            self.convs.append(StyledConv(out, out, sd))
            self.to_rgbs.append(ToRGB(out, sd))
            prev = out
        self.set_conv_clamp(arch.conv_clamp)
        # The tracked average w of NVIDIA checkpoints; None until known or computed (not in the state dict).
        self.register_buffer("latent_avg", None, persistent=False)
        self._compiled = None
        self.autocast_dtype: torch.dtype | None = None
        self.use_compile = False

    # -- configuration ---------------------------------------------------------------------------
    def set_conv_clamp(self, value: float | None) -> None:
        """ada/SG3 ``conv_clamp``: clamp every layer's output (and each RGB contribution) to +-value."""
        for m in (self.conv1, self.to_rgb1, *self.convs, *self.to_rgbs):
            m.conv_clamp = value
        self.arch = Architecture(self.arch.size, self.arch.style_dim, self.arch.n_mlp, self.arch.channels, value)

    @property
    def device(self) -> torch.device:
        return self.input.input.device

    # -- the Generator interface -------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.style(z.to(self.device, torch.float32))

    @property
    def mean_w(self) -> torch.Tensor:
        """The checkpoint's tracked average w, else the mean of 4096 mapped z drawn with a fixed seed."""
        if self.latent_avg is None:
            z = torch.randn(MEAN_W_SAMPLES, self.z_dim, generator=torch.Generator().manual_seed(MEAN_W_SEED))
            with torch.no_grad():
                self.latent_avg = self.mapping(z).mean(dim=0)
        return self.latent_avg.view(1, self.w_dim)

    @mean_w.setter
    def mean_w(self, value: torch.Tensor) -> None:
        self.latent_avg = value.detach().reshape(self.w_dim).to(self.device, torch.float32)

    def synthesize(self, ws: torch.Tensor, noise: NoiseMode = "const") -> torch.Tensor:
        if ws.dim() != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise essence.EssenceError(
                f"StyleGAN2 {self.resolution}px expects W+ latents of shape (n, {self.num_ws}, {self.w_dim}); "
                f"got {tuple(ws.shape)}."
            )
        if noise not in ("const", "random", "none"):
            raise essence.EssenceError(f"noise must be 'const', 'random' or 'none', not {noise!r}.")
        ws = ws.to(self.device, torch.float32)
        run = self._synthesis
        if self.use_compile:
            if self._compiled is None:
                self._compiled = torch.compile(self._synthesis)
            run = self._compiled
        ctx = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else nullcontext()
        )
        with ctx:
            image = run(ws, noise)
        return image.float().contiguous()

    def forward(self, ws: torch.Tensor, noise: NoiseMode = "const") -> torch.Tensor:
        return self.synthesize(ws, noise)

    # -- synthesis ---------------------------------------------------------------------------------
    def noise_maps(self, n: int, mode: NoiseMode) -> list[torch.Tensor | None]:
        buffers = [getattr(self.noises, f"noise_{i}") for i in range(self.arch.num_layers)]
        if mode == "const":
            return list(buffers)
        if mode == "none":
            return [None] * len(buffers)
        return [torch.randn(n, 1, b.shape[-2], b.shape[-1], device=b.device) for b in buffers]

    def _synthesis(self, ws: torch.Tensor, noise: NoiseMode) -> torch.Tensor:
        n = ws.shape[0]
        noises = self.noise_maps(n, noise)
        x = self.input.input.expand(n, -1, -1, -1).clone(memory_format=torch.channels_last)
        x, gain = self.conv1(x, None, ws[:, 0], noises[0])
        skip = self.to_rgb1(x, gain, ws[:, 1], None)
        for k, to_rgb in enumerate(self.to_rgbs):
            x, gain = self.convs[2 * k](x, gain, ws[:, 2 * k + 1], noises[2 * k + 1])
            x, gain = self.convs[2 * k + 1](x, gain, ws[:, 2 * k + 2], noises[2 * k + 2])
            skip = to_rgb(x, gain, ws[:, 2 * k + 3], skip)
        return skip
