"""Speed of the CLIP encoders on generator-sized images: embed forward and forward+backward.

Six 1024 px images in [-1, 1] (the resize to 224 included) through ViT-B/32 and RN50 with random
full-size weights, and the resize alone, for three ways of resizing: the area resampler as two (224 x 1024) matmuls, the
official TargetCLIP path (nearest upsample x7 to 7168 px, then 32 x 32 average pooling; the same
linear map) and antialiased bicubic. Each case runs in its own process, so that its peak memory
(RSS high-water mark, or CUDA peak allocation) is its own.

    PYTHONPATH=. python benchmarks/bench_encoder.py [--device auto] [--repeats 3] [--size 1024]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

#: "resize" times the resize and normalisation alone (a ViT-B/32 encoder whose tower is skipped).
MODELS = {"ViT-B/32": "clip-vitb32", "RN50": "clip-rn50", "resize": "clip-vitb32"}
METHODS = ("area-matmul", "upsample-x7", "bicubic")


def run_case(model: str, method: str, args: argparse.Namespace) -> dict:
    """One (model, method) case in this process; returns best-of-``repeats`` timings and peak memory."""
    import resource

    import torch

    import essence
    from essence.plugins.encoders.clip.resample import upsample_pool

    torch.manual_seed(0)
    encoder = essence.get_encoder(
        MODELS[model],
        weights="random",
        architecture={"vision_layers": 1, "vision_width": 64} if model == "resize" else None,
        device=args.device,
        precision=args.precision,
        resample="bicubic" if method == "bicubic" else "area",
    )
    device = encoder.device
    images = torch.rand(args.batch, 3, args.size, args.size, device=device) * 2 - 1

    if model == "resize":
        encoder.embed_preprocessed = lambda x: x  # the resized, normalised images themselves
    if method == "upsample-x7":

        def embed(x):
            y = upsample_pool(x)
            return encoder.embed_preprocessed(((y + 1) * 0.5 - encoder.mean) / encoder.std)
    else:
        embed = encoder.embed

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def forward():
        with torch.no_grad():
            embed(images)

    def forward_backward():
        x = images.clone().requires_grad_(True)
        embed(x).sum().backward()

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"model": model, "method": method, "device": str(device)}
    for name, fn in (("fwd", forward), ("fwd+bwd", forward_backward)):
        fn()  # warm-up
        sync()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        result[name] = min(times)
    if device.type == "cuda":
        result["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result["peak_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--size", type=int, default=1024, help="image size (a multiple of 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case; the best is shown")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--case", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:
        print(json.dumps(run_case(*args.case, args)))
        return

    base = [sys.executable, __file__, "--device", args.device, "--precision", args.precision, "--batch",
            str(args.batch), "--size", str(args.size), "--repeats", str(args.repeats)]
    rows = []
    for model in args.models:
        for method in args.methods:
            out = subprocess.run([*base, "--case", model, method], capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                raise SystemExit(f"case {model} / {method} failed")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(".", end="", flush=True, file=sys.stderr)
    print(file=sys.stderr)

    import torch

    print(f"{args.batch} images of {args.size} px, {args.precision}, device {rows[0]['device']}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; best of {args.repeats}")
    header = f"{'model':<9} {'resize':<12} {'fwd s':>8} {'fwd+bwd s':>10} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<9} {r['method']:<12} {r['fwd']:>8.3f} {r['fwd+bwd']:>10.3f} {r['peak_mib']:>9.0f}")


if __name__ == "__main__":
    main()
