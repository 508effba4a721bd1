"""e4e and pSp inverter speed: seconds per 256-px image for ``E4EInverter.invert`` (forward, no gradients).

Random seeded weights at the official size (IR-SE50, 18 W+ rows, 267M parameters: the architecture alone
fixes the cost), best of ``--repeat`` calls after one warm-up. Examples::

    python benchmarks/bench_inverters.py                        # e4e and psp, batch 1 and 4, on the CPU
    python benchmarks/bench_inverters.py --threads 1 --batch 1
    python benchmarks/bench_inverters.py --device cuda --batch 1 8
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["e4e", "psp"], choices=["e4e", "psp"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per case (the best one counts)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from essence.plugins.inverters.e4e.model import E4EInverter, build_encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(
        f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, load average {load}"
    )
    for kind in args.kinds:
        torch.manual_seed(0)
        inverter = E4EInverter(build_encoder(kind), torch.randn(18, 512), kind=kind).to(device)
        for n in args.batch:
            images = torch.rand(n, 3, 256, 256, generator=torch.Generator().manual_seed(n)).mul_(2).sub_(1)
            images = images.to(device)
            inverter.invert(images)  # warm-up
            times = []
            for _ in range(args.repeat):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                inverter.invert(images)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            best = min(times)
            print(
                f"{kind:4s} batch {n}: {best / n:.3f} s/image  (best of {args.repeat}: {best:.3f} s a call; "
                f"worst {max(times):.3f} s)"
            )


if __name__ == "__main__":
    main()
