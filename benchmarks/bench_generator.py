"""StyleGAN2 generator speed: seconds per image for synthesis (forward) and forward+backward to ws.

Random weights (the architecture alone fixes the cost), constant noise, best of ``--repeat`` runs after
one warm-up. Examples::

    python benchmarks/bench_generator.py                        # 256 and 1024 px on the CPU
    python benchmarks/bench_generator.py --keep-freed-memory    # with glibc keeping freed memory
    python benchmarks/bench_generator.py --device cuda --dtype bfloat16 --compile
    python benchmarks/bench_generator.py --against main --efficiency --keep-freed-memory

``--against REV`` loads ``essence/plugins/generators/stylegan2/model.py`` as it is at git revision REV
into its own module, gives it the same weights, and times it interleaved with the current model (old,
new, old, new, ...), so before and after come from one process under the same load. ``--efficiency``
counts the FLOPs from shapes (benchmarks/flopcount.py) and measures the fp32 matmul peak in the same
process: GFLOP/s and % of peak per row.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
MODEL_PATH = "essence/plugins/generators/stylegan2/model.py"


def model_at(rev: str):
    """The StyleGAN2 model module as it is at git revision ``rev``, imported under its own name."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "-C", str(root), "show", f"{rev}:{MODEL_PATH}"], check=True, capture_output=True, text=True
    ).stdout
    name = f"_stylegan2_model_at_{abs(hash(rev))}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = f"{rev}:{MODEL_PATH}"
    sys.modules[name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def same_weights(module, gen):
    """A generator of ``module`` holding ``gen``'s weights, frozen and in eval mode like ``gen``."""
    old = module.StyleGAN2Generator(gen.arch).requires_grad_(False).eval()
    old.load_state_dict(gen.state_dict(), strict=True)
    old.latent_avg = gen.latent_avg
    return old.to(gen.device)


def timed_pair(fns, repeat: int, sync, clock) -> list[float]:
    """Best of ``repeat`` for each of ``fns``, run interleaved (one warm-up each)."""
    for fn in fns:
        fn()
    sync()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = clock()
            fn()
            sync()
            best[i] = min(best[i], clock() - start)
    return best


def reference_synthesis(gen, ws):
    """The reference's arithmetic (rosinality's fused path with its CPU upfirdn2d fallback), for comparison:
    per-sample modulated weights, NCHW, zero-insertion upsampling, a grouped conv over the batch."""
    import math

    import torch
    import torch.nn.functional as F

    sd = gen.state_dict()
    n = ws.shape[0]

    def upfirdn(x, kernel, up, pad):
        c, h, w = x.shape[1:]
        if up > 1:
            x = F.pad(x.reshape(-1, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(-1, c, h * up, w * up)
        x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
        return F.conv2d(x, kernel.flip(0, 1)[None, None].repeat(c, 1, 1, 1), groups=c)

    def modconv(prefix, x, w, demod=True, up=False):
        weight = sd[f"{prefix}.weight"]
        _, cout, cin, k, _ = weight.shape
        s = F.linear(w, sd[f"{prefix}.modulation.weight"] / math.sqrt(w.shape[1]), sd[f"{prefix}.modulation.bias"])
        wt = weight / math.sqrt(cin * k * k) * s[:, None, :, None, None]
        if demod:
            wt = wt * torch.rsqrt(wt.square().sum((2, 3, 4), keepdim=True) + 1e-8)
        x = x.reshape(1, n * cin, *x.shape[2:])
        if up:
            wt = wt.transpose(1, 2).reshape(n * cin, cout, k, k)
            out = F.conv_transpose2d(x, wt, stride=2, groups=n)
            return upfirdn(out.reshape(n, cout, *out.shape[2:]), sd[f"{prefix}.blur.kernel"], 1, (1, 1))
        out = F.conv2d(x, wt.reshape(n * cout, cin, k, k), padding=k // 2, groups=n)
        return out.reshape(n, cout, *out.shape[2:])

    def styled(name, x, w, noise, up=False):
        o = modconv(f"{name}.conv", x, w, up=up) + sd[f"{name}.noise.weight"] * noise
        return F.leaky_relu(o + sd[f"{name}.activate.bias"][None, :, None, None], 0.2) * math.sqrt(2)

    def to_rgb(name, x, w, skip):
        o = modconv(f"{name}.conv", x, w, demod=False) + sd[f"{name}.bias"]
        return o if skip is None else o + upfirdn(skip, sd[f"{name}.upsample.kernel"], 2, (2, 1))

    noises = [sd[f"noises.noise_{i}"] for i in range(gen.arch.num_layers)]
    x = styled("conv1", sd["input.input"].repeat(n, 1, 1, 1), ws[:, 0], noises[0])
    skip = to_rgb("to_rgb1", x, ws[:, 1], None)
    for k in range(len(gen.to_rgbs)):
        x = styled(f"convs.{2 * k}", x, ws[:, 2 * k + 1], noises[2 * k + 1], up=True)
        x = styled(f"convs.{2 * k + 1}", x, ws[:, 2 * k + 2], noises[2 * k + 2])
        skip = to_rgb(f"to_rgbs.{k}", x, ws[:, 2 * k + 3], skip)
    return skip


def timed(fn, repeat: int, sync, clock) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        start = clock()
        fn()
        sync()
        best = min(best, clock() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--batch", type=int, default=1, help="images per call (times are per image)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement; the best is kept")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the synthesis network")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--keep-freed-memory", action="store_true", help="essence.core.perf.keep_freed_memory()")
    parser.add_argument("--forward-only", action="store_true")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time, steadier than wall time on a shared machine (use with --threads 1)",
    )
    parser.add_argument(
        "--reference", action="store_true", help="also time the reference's arithmetic on the same weights"
    )
    parser.add_argument("--against", metavar="REV", help="also time model.py at git revision REV, interleaved")
    parser.add_argument("--efficiency", action="store_true", help="GFLOP/s and %% of the fp32 matmul peak")
    args = parser.parse_args()

    import torch

    import essence
    from essence.core.perf import keep_freed_memory

    if args.threads:
        torch.set_num_threads(args.threads)
    kept = keep_freed_memory() if args.keep_freed_memory else False
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(
        f"torch {torch.__version__} | {platform.processor() or platform.machine()} | threads {torch.get_num_threads()}"
        f" | keep_freed_memory {kept} | batch {args.batch} | best of {args.repeat} | {args.clock} clock"
    )
    peak = None
    if args.efficiency:
        from flopcount import matmul_peak

        peak = matmul_peak(clock=clock)
        print(f"fp32 matmul peak (2048^3 sgemm, best of 5, this process, {args.clock} clock): {peak:.1f} GFLOP/s")
    old_module = model_at(args.against) if args.against else None
    rows = []
    for size in args.sizes:
        gen = essence.get_generator(
            "stylegan2", weights="random", size=size, device=args.device, dtype=args.dtype, compile=args.compile
        )
        device = gen.device
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        ws = gen.sample_ws(args.batch, seed=0)

        def forward():
            with torch.no_grad():
                gen.synthesize(ws)

        def forward_backward():
            w = ws.clone().requires_grad_(True)
            gen.synthesize(w).square().mean().backward()

        flops = (None, None)
        if args.efficiency:
            from flopcount import count_flops

            w = ws.clone().requires_grad_(True)
            flops = (count_flops(forward)[0] / args.batch,
                     count_flops(lambda: gen.synthesize(w).square().mean().backward())[0] / args.batch)
        label = args.dtype + (" +compile" if args.compile else "")
        if old_module is None:
            fwd = timed(forward, args.repeat, sync, clock) / args.batch
            both = None if args.forward_only else timed(forward_backward, args.repeat, sync, clock) / args.batch
            rows.append((size, str(device), label, fwd, both, flops))
        else:
            old = same_weights(old_module, gen)
            old.autocast_dtype, old.use_compile = gen.autocast_dtype, gen.use_compile
            with torch.no_grad():
                err = (old.synthesize(ws) - gen.synthesize(ws)).abs().max().item()

            def old_forward():
                with torch.no_grad():
                    old.synthesize(ws)

            def old_forward_backward():
                w = ws.clone().requires_grad_(True)
                old.synthesize(w).square().mean().backward()

            fwd_old, fwd = timed_pair([old_forward, forward], args.repeat, sync, clock)
            both_old, both = (None, None) if args.forward_only else timed_pair(
                [old_forward_backward, forward_backward], args.repeat, sync, clock
            )
            rows.append((size, str(device), f"{label} @{args.against}", fwd_old / args.batch,
                         None if both_old is None else both_old / args.batch, flops))
            rows.append((size, str(device), f"{label} now ({err:.0e})", fwd / args.batch,
                         None if both is None else both / args.batch, flops))
            del old
        if args.reference:
            image = gen.synthesize(ws)
            err = (reference_synthesis(gen, ws) - image).abs().max().item()

            def ref_forward():
                with torch.no_grad():
                    reference_synthesis(gen, ws)

            def ref_forward_backward():
                w = ws.clone().requires_grad_(True)
                reference_synthesis(gen, w).square().mean().backward()

            fwd = timed(ref_forward, args.repeat, sync, clock) / args.batch
            both = None if args.forward_only else timed(ref_forward_backward, args.repeat, sync, clock) / args.batch
            rows.append((size, str(device), f"reference ({err:.0e})", fwd, both, flops))
        del gen

    if peak is not None:  # the peak again at the end: the best of both, as the times are bests
        peak = max(peak, matmul_peak(clock=clock))
        print(f"fp32 matmul peak, best of start and end: {peak:.1f} GFLOP/s")
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"load average at the end: {load}")
    eff = "" if peak is None else f" {'GFLOP fwd':>10} {'fwd %peak':>10} {'fwd+bwd %peak':>14}"
    print(f"{'size':>5} {'device':>8} {'precision':>26} {'forward s/img':>14} {'fwd+bwd s/img':>14}{eff}")
    for size, device, prec, fwd, both, (f_fwd, f_both) in rows:
        both_s = "-" if both is None else f"{both:.3f}"
        line = f"{size:>5} {device:>8} {prec:>26} {fwd:>14.3f} {both_s:>14}"
        if peak is not None:
            pct_both = "-" if both is None else f"{100 * f_both / 1e9 / both / peak:.0f}%"
            line += f" {f_fwd / 1e9:>10.1f} {100 * f_fwd / 1e9 / fwd / peak:>9.0f}% {pct_both:>14}"
        print(line)


if __name__ == "__main__":
    main()
