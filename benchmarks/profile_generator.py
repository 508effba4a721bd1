"""Where one StyleGAN2 forward and forward+backward (to ws) spend their time on the CPU.

For each size: the generator with random weights (the FFHQ-1024 layout at 1024; the architecture alone
fixes the cost), constant noise, frozen weights as under the engine. Prints, per op category (forward
and backward ops apart), the count, the GFLOP counted from shapes (benchmarks/flopcount.py), the time
and GFLOP/s, against the fp32 matmul peak measured in the same process; the wall time of the passes
without instrumentation (best of ``--repeat``); a check that no weight gradient was computed; and the
top aten ops by self CPU time from ``torch.profiler``::

    python benchmarks/profile_generator.py                    # 256 and 1024 px
    python benchmarks/profile_generator.py --sizes 256 --threads 1 --no-torch-profiler
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def best_of(fn, repeat: int, clock) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="un-instrumented timed runs; the best is kept")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="cpu: process CPU time, steadier than wall time on a shared machine (use with --threads 1)",
    )
    parser.add_argument("--keep-freed-memory", action="store_true", help="essence.core.perf.keep_freed_memory()")
    parser.add_argument("--peak-n", type=int, default=2048, help="side of the square sgemm that measures the peak")
    parser.add_argument("--no-torch-profiler", action="store_true", help="skip the torch.profiler top-ops table")
    parser.add_argument("--top", type=int, default=12, help="rows of the torch.profiler table")
    args = parser.parse_args()

    import torch

    import essence
    from flopcount import OpMeter, matmul_peak

    from essence.core.perf import keep_freed_memory

    if args.threads:
        torch.set_num_threads(args.threads)
    kept = keep_freed_memory() if args.keep_freed_memory else False
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    peak = matmul_peak(args.peak_n, clock=clock)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(
        f"torch {torch.__version__} | {platform.processor() or platform.machine()} | threads "
        f"{torch.get_num_threads()} | batch {args.batch} | {args.clock} clock | keep_freed_memory {kept} | load {' '.join(f'{v:.2f}' for v in load)}"
    )
    print(f"fp32 matmul peak ({args.peak_n}^3 sgemm, best of 5, {args.clock} clock): {peak:.1f} GFLOP/s")
    for size in args.sizes:
        gen = essence.get_generator("stylegan2", weights="random", size=size, device="cpu")
        trainable = [n for n, p in gen.named_parameters() if p.requires_grad]
        ws = gen.sample_ws(args.batch, seed=0)

        def forward():
            with torch.no_grad():
                gen.synthesize(ws)

        def forward_backward():
            w = ws.clone().requires_grad_(True)
            gen.synthesize(w).square().mean().backward()

        fwd_wall = best_of(forward, args.repeat, clock)
        both_wall = best_of(forward_backward, args.repeat, clock)
        fwd_meter, both_meter = OpMeter(timed=True, clock=clock), OpMeter(timed=True, clock=clock)
        with fwd_meter:
            forward()
        w = ws.clone().requires_grad_(True)
        with both_meter:
            gen.synthesize(w).square().mean().backward()
        fwd_flops, both_flops = fwd_meter.flops, both_meter.flops
        print()
        print(f"== {size} px, {gen.num_ws} ws, {sum(p.numel() for p in gen.parameters()) / 1e6:.1f} M parameters ==")
        print(f"-- forward (no_grad): {fwd_flops / 1e9:.1f} GFLOP")
        print(fwd_meter.table(peak, wall=fwd_wall))
        print(f"-- forward + backward to ws: {both_flops / 1e9:.1f} GFLOP")
        print(both_meter.table(peak, wall=both_wall))
        print(
            f"weights requiring grad: {len(trainable)}; weight gradients computed by convolution_backward: "
            f"{len(both_meter.weight_grads)}"
        )
        for name, wall, flops in (("forward", fwd_wall, fwd_flops), ("forward+backward", both_wall, both_flops)):
            rate = flops / 1e9 / wall
            print(f"{size} px {name:<17} {wall:7.3f} s  {flops / 1e9:7.1f} GFLOP  {rate:6.1f} GFLOP/s  "
                  f"{100 * rate / peak:4.0f}% of peak")
        if not args.no_torch_profiler:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                forward_backward()
            print(f"-- torch.profiler, forward + backward, top {args.top} aten ops by self CPU time")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=40))
        del gen


if __name__ == "__main__":
    main()
