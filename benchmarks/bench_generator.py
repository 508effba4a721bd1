"""StyleGAN2 generator speed: seconds per image for synthesis (forward) and forward+backward to ws.

Random weights (the architecture alone fixes the cost), constant noise, best of ``--repeat`` runs after
one warm-up. Examples::

    python benchmarks/bench_generator.py                        # 256 and 1024 px on the CPU
    python benchmarks/bench_generator.py --keep-freed-memory    # with glibc keeping freed memory
    python benchmarks/bench_generator.py --device cuda --dtype bfloat16 --compile
"""

from __future__ import annotations

import argparse
import platform
import time


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

        fwd = timed(forward, args.repeat, sync, clock) / args.batch
        both = None if args.forward_only else timed(forward_backward, args.repeat, sync, clock) / args.batch
        rows.append((size, str(device), args.dtype + (" +compile" if args.compile else ""), fwd, both))
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
            rows.append((size, str(device), f"reference ({err:.0e})", fwd, both))
        del gen

    print(f"{'size':>5} {'device':>8} {'precision':>18} {'forward s/img':>14} {'fwd+bwd s/img':>14}")
    for size, device, prec, fwd, both in rows:
        both_s = "-" if both is None else f"{both:.3f}"
        print(f"{size:>5} {device:>8} {prec:>18} {fwd:>14.3f} {both_s:>14}")


if __name__ == "__main__":
    main()
