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


def timed(fn, repeat: int, sync) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
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
    args = parser.parse_args()

    import torch

    import essence
    from essence.core.perf import keep_freed_memory

    if args.threads:
        torch.set_num_threads(args.threads)
    kept = keep_freed_memory() if args.keep_freed_memory else False
    print(
        f"torch {torch.__version__} | {platform.processor() or platform.machine()} | threads {torch.get_num_threads()}"
        f" | keep_freed_memory {kept} | batch {args.batch} | best of {args.repeat}"
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

        fwd = timed(forward, args.repeat, sync) / args.batch
        both = None if args.forward_only else timed(forward_backward, args.repeat, sync) / args.batch
        rows.append((size, str(device), args.dtype + (" +compile" if args.compile else ""), fwd, both))
        del gen

    print(f"{'size':>5} {'device':>8} {'precision':>18} {'forward s/img':>14} {'fwd+bwd s/img':>14}")
    for size, device, prec, fwd, both in rows:
        both_s = "-" if both is None else f"{both:.3f}"
        print(f"{size:>5} {device:>8} {prec:>18} {fwd:>14.3f} {both_s:>14}")


if __name__ == "__main__":
    main()
