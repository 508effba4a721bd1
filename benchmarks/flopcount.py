"""FLOPs counted from shapes, per op, and the fp32 matmul peak: shared by the speed benchmarks.

``OpMeter`` is a ``TorchDispatchMode``: every aten op that runs under it (forward and backward) is put in
a category (conv 3x3, conv transpose, depthwise blur / upsample, matmul, attention, activation,
elementwise, reduction, copy/layout), its FLOPs counted analytically from its shapes (multiply-add = 2
FLOPs; an elementwise op = 1 FLOP per output element) and, with ``timed=True``, its wall time taken
around the call (CPU ops are synchronous). ``convolution_backward`` counts only the gradients it is
asked for (its output mask), and the meter records every weight gradient asked for, so a benchmark can
check that none is computed when the weights are frozen.

Imported by the scripts beside it (``python benchmarks/x.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def matmul_peak(n: int = 2048, repeat: int = 5, clock=time.perf_counter) -> float:
    """GFLOP/s of the best of ``repeat`` fp32 ``n x n`` matmuls (one warm-up) in this process.

    ``clock=time.process_time`` (with one thread) measures CPU time, steadier on a shared machine."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeat):
        t = clock()
        torch.mm(a, b, out=out)
        best = min(best, clock() - t)
    return 2 * n**3 / best / 1e9


def _numel(shape) -> int:
    return math.prod(shape)


def _conv_flops(x_shape, w_shape, out_shape, transposed: bool) -> float:
    """2 x the multiply-adds of a (grouped, possibly transposed) convolution."""
    taps = _numel(w_shape[2:])
    if transposed:  # weight (Cin, Cout/groups, k, k): every input element meets Cout/groups x taps weights
        return 2.0 * _numel(x_shape) * w_shape[1] * taps
    return 2.0 * _numel(out_shape) * w_shape[1] * taps  # weight (Cout, Cin/groups, k, k)


def _conv_kind(w_shape, groups: int, transposed: bool) -> str:
    if groups > 1 and w_shape[1] == 1:
        return "depthwise upsample (transposed)" if transposed else "depthwise blur"
    k = "x".join(str(s) for s in w_shape[2:])
    return f"conv transpose {k}" if transposed else f"conv {k}"


ELEMENTWISE = {
    "mul", "add", "sub", "div", "addcmul", "rsqrt", "sqrt", "square", "pow", "neg", "exp", "log", "clamp",
    "where", "reciprocal", "sigmoid", "tanh", "abs", "sign", "lerp", "addcdiv", "maximum", "minimum",
}
ACTIVATION = {"leaky_relu", "leaky_relu_backward", "gelu", "gelu_backward", "relu", "threshold_backward", "silu"}
REDUCTION = {"sum", "mean", "amax", "amin", "max", "min", "norm", "linalg_vector_norm", "var_mean", "std", "var"}
MATMUL = {"mm", "addmm", "bmm", "baddbmm", "matmul", "dot", "mv"}
NORM = {"native_layer_norm", "native_layer_norm_backward", "_softmax", "_softmax_backward_data", "softmax"}
COPY = {"clone", "copy", "contiguous", "cat", "stack", "_to_copy", "empty_like", "zeros_like", "ones_like",
        "fill", "zero", "new_zeros", "new_empty", "empty", "zeros", "ones", "full", "new_full", "index", "gather",
        "constant_pad_nd", "upsample_bilinear2d", "upsample_bicubic2d", "_upsample_bilinear2d_aa",
        "upsample_bilinear2d_backward", "upsample_bicubic2d_backward", "_upsample_bilinear2d_aa_backward",
        "embedding", "repeat", "expand_copy", "masked_fill", "scatter", "index_select", "slice_backward",
        "select_backward", "_unsafe_view", "unbind", "split", "split_with_sizes"}


def _shape(t):
    return tuple(t.shape) if isinstance(t, torch.Tensor) else None


@dataclass
class Stat:
    count: int = 0
    flops: float = 0.0
    seconds: float = 0.0


@dataclass
class OpMeter(TorchDispatchMode):
    """Counts (and with ``timed``, times) every aten op run under it, by category."""

    timed: bool = False
    clock: object = time.perf_counter
    stats: dict[str, Stat] = field(default_factory=lambda: defaultdict(Stat))
    weight_grads: list[tuple] = field(default_factory=list)

    def __post_init__(self):
        super().__init__()

    def classify(self, func, args, kwargs, out) -> tuple[str, float]:
        name = func._overloadpacket.__name__.rstrip("_") if hasattr(func, "_overloadpacket") else str(func)
        if name == "convolution":
            x, w = args[0], args[1]
            transposed, groups = bool(args[6]), int(args[8])
            return _conv_kind(w.shape, groups, transposed), _conv_flops(x.shape, w.shape, out.shape, transposed)
        if name == "convolution_backward":
            grad, x, w = args[0], args[1], args[2]
            transposed, groups, mask = bool(args[7]), int(args[9]), args[10]
            fwd = _conv_flops(x.shape, w.shape, grad.shape, transposed)
            if mask[1]:
                self.weight_grads.append(tuple(w.shape))
            kind = _conv_kind(w.shape, groups, transposed)
            return f"{kind} backward", fwd * (int(mask[0]) + int(mask[1]))
        if name in MATMUL:
            a = args[1] if name in ("addmm", "baddbmm") else args[0]
            return "matmul", 2.0 * _numel(out.shape) * a.shape[-1]
        if "scaled_dot_product" in name or "flash_attention" in name:
            q, k = args[0], args[1]
            f = 4.0 * _numel(q.shape[:-1]) * k.shape[-2] * q.shape[-1]
            return ("attention backward", 2 * f) if "backward" in name else ("attention", f)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        size = sum(o.numel() for o in outs if isinstance(o, torch.Tensor))
        if name in ACTIVATION:
            return "activation", float(size)
        if name in ELEMENTWISE:
            return "elementwise", float(size)
        if name in REDUCTION:
            inputs = sum(a.numel() for a in args if isinstance(a, torch.Tensor))
            return "reduction", float(inputs)
        if name in NORM:
            return "norm/softmax", 5.0 * size
        if name in COPY:
            return "copy/layout", 0.0
        return f"other ({name})", 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.timed:
            t = self.clock()
            out = func(*args, **kwargs)
            dt = self.clock() - t
        else:
            out, dt = func(*args, **kwargs), 0.0
        if func in (aten.detach.default, aten.view.default, aten._unsafe_view.default) or _is_view(func):
            return out
        kind, flops = self.classify(func, args, kwargs, out)
        stat = self.stats[kind]
        stat.count += 1
        stat.flops += flops
        stat.seconds += dt
        return out

    @property
    def flops(self) -> float:
        return sum(s.flops for s in self.stats.values())

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stats.values())

    def table(self, peak: float, wall: float | None = None) -> str:
        """The per-category table: count, GFLOP, seconds, share of the time, GFLOP/s and % of ``peak``."""
        rows = sorted(self.stats.items(), key=lambda kv: -kv[1].seconds)
        total = self.seconds or 1e-12
        lines = [f"{'op':<34}{'count':>7}{'GFLOP':>9}{'s':>9}{'time %':>8}{'GFLOP/s':>9}{'% peak':>8}"]
        for kind, s in rows:
            rate = s.flops / 1e9 / s.seconds if s.seconds else 0.0
            rate_s = f"{rate:>9.1f}" if s.flops else f"{'-':>9}"
            pct_s = f"{100 * rate / peak:>7.0f}%" if s.flops else f"{'-':>8}"
            lines.append(
                f"{kind:<34}{s.count:>7}{s.flops / 1e9:>9.2f}{s.seconds:>9.3f}{100 * s.seconds / total:>7.1f}%"
                f"{rate_s}{pct_s}"
            )
        rate = self.flops / 1e9 / total
        lines.append(
            f"{'total (sum of ops)':<34}{sum(s.count for s in self.stats.values()):>7}{self.flops / 1e9:>9.2f}"
            f"{total:>9.3f}{100.0:>7.1f}%{rate:>9.1f}{100 * rate / peak:>7.0f}%"
        )
        if wall is not None:
            rate = self.flops / 1e9 / wall
            lines.append(f"{'wall time of the pass (no meter)':<34}{'':>7}{'':>9}{wall:>9.3f}{'':>8}{rate:>9.1f}"
                         f"{100 * rate / peak:>7.0f}%")
        return "\n".join(lines)


def _is_view(func) -> bool:
    try:
        return bool(func.is_view)
    except AttributeError:
        return False


def count_flops(fn) -> tuple[float, OpMeter]:
    """FLOPs of one call of ``fn`` (untimed meter)."""
    meter = OpMeter(timed=False)
    with meter:
        fn()
    return meter.flops, meter
