"""Seconds per optimisation step of the essence-transfer engine, with a breakdown.

Times full engine steps (DirectionSearch.step: batched render + embed + loss + backward + Adam) and,
separately, an instrumented step split into generator forward, encoder forward (with the loss terms)
and backward. Components come from the registry by name, with config overrides::

    python benchmarks/bench_engine.py --generator stylegan2-church --gen-set weights=random \\
        --encoder clip-vitb32 --enc-set weights=random --sources 6
    python benchmarks/bench_engine.py --generator stylegan2-church --gen-set weights=random \\
        --gen-set 'channels={"4": 64, "8": 64, "16": 64, "32": 64, "64": 32, "128": 16, "256": 8}' ...
    python benchmarks/bench_engine.py --plugin tests/engine_doubles.py --generator tiny-gen --encoder tiny-enc

``--plugin`` adds a module (a file path or a module name) as a plugin first, for components that are
not installed as entry points. On CUDA, ``--precision bf16`` and ``--compile`` time those options, and
the peak GPU memory is reported.

``--efficiency`` counts the FLOPs of one step from shapes (benchmarks/flopcount.py: generator forward and
backward to ws, encoder forward and backward, the loss) and measures the fp32 matmul peak in the same
process (at the start and the end; the best is kept), and prints GFLOP per step, GFLOP/s and % of that
peak. ``--against REV`` (a StyleGAN2 generator) also times steps with the generator's model.py as it is at
git revision REV, same weights, interleaved step by step with the current one::

    python benchmarks/bench_engine.py --generator stylegan2-ffhq --gen-set weights=random \
        --encoder clip-vitb32 --enc-set weights=random --sources 6 --efficiency --against main
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _load_plugin(spec: str) -> None:
    from essence.core import plugins

    path = Path(spec)
    if path.suffix == ".py" and path.is_file():
        sys.path.insert(0, str(path.resolve().parent))
        module = importlib.import_module(path.stem)
    else:
        module = importlib.import_module(spec)
    plugins.get_host().add(module, f"bench:{spec}", None, builtin=False)


def _component(kind: str, name: str, sets: list[str], device: str) -> Any:
    from essence.core.registry import get_registry
    from essence.core.config import parse_set

    reg = get_registry().get(kind, name)
    config = parse_set(sets)
    if "device" in reg.config.model_fields and "device" not in config:
        config["device"] = device
    return reg.build(**config), config


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _params(module: Any) -> str:
    try:
        return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f} M"
    except AttributeError:
        return "?"


def _peak_rss_gib() -> float:
    """The process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", required=True)
    parser.add_argument("--gen-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--enc-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--plugin", action="append", default=[], help="A plugin module or .py file to add first.")
    parser.add_argument("--sources", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5, help="Timed steps (after --warmup).")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
    parser.add_argument(
        "--no-breakdown", action="store_true", help="Skip the instrumented step (it renders all N images in one "
        "unchunked pass, so with --chunk it would dominate the peak memory)."
    )
    parser.add_argument(
        "--pack", type=int, default=1, help="Time steps of K directions at once (essence batch --pack K): one "
        "batch of K x N images; prints directions per second. The breakdown is of one direction."
    )
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="cpu: process CPU time, steadier than wall time on a shared machine (use with --threads 1)",
    )
    parser.add_argument("--efficiency", action="store_true", help="GFLOP per step and %% of the fp32 matmul peak")
    parser.add_argument("--against", metavar="REV", help="also time the generator's model.py at git revision REV")
    parser.add_argument(
        "--keep-freed-memory", action="store_true", help="essence.core.perf.keep_freed_memory(), as the CLI does"
    )
    args = parser.parse_args(argv)

    import torch
    from PIL import Image

    from essence.method.engine import TransferOptimizer, evaluate_terms, step_together
    from essence.core.interfaces import LossContext
    from essence.method.runconfig import validate_run_config
    from essence.core.devices import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    if args.keep_freed_memory:
        from essence.core.perf import keep_freed_memory

        keep_freed_memory()
    peak = None
    if args.efficiency:
        from flopcount import matmul_peak

        peak = matmul_peak(clock=clock)
    for spec in args.plugin:
        _load_plugin(spec)
    device_name = str(resolve_device(args.device))
    G, gen_cfg = _component("generator", args.generator, args.gen_set, device_name)
    C, enc_cfg = _component("encoder", args.encoder, args.enc_set, device_name)
    total = args.warmup + args.steps
    cfg = validate_run_config(
        {
            "generator": {"name": args.generator, "config": gen_cfg},
            "encoder": {"name": args.encoder, "config": enc_cfg},
            "sources": {"count": args.sources},
            "heldout": {"count": 0},
            "steps": total,
            "lr_schedule": "constant",
            "precision": args.precision,
            "compile": args.compile,
            "chunk": args.chunk,
        }
    )
    noise = torch.rand(224, 224, 3, generator=torch.Generator().manual_seed(0))
    target = Image.fromarray((noise * 255).to(torch.uint8).numpy())
    engine = TransferOptimizer(G, C, target, config=cfg)
    search = engine._new_search(0)
    device = engine.sources.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    pack = [search] + [TransferOptimizer(G, C, target, config=cfg)._new_search(0) for _ in range(args.pack - 1)]
    variants = [("now", engine.renderer, pack)]
    if args.against:
        from bench_generator import model_at, same_weights

        if not hasattr(G, "arch") or not hasattr(G, "noises"):
            parser.error(f"--against compares StyleGAN2 model.py revisions; {args.generator} is not a StyleGAN2 generator")
        G_old = same_weights(model_at(args.against), G)
        G_old.autocast_dtype, G_old.use_compile = G.autocast_dtype, G.use_compile
        for attr in ("alignment", "default_inverter", "weights_id"):
            setattr(G_old, attr, getattr(G, attr, None))
        old_engine = TransferOptimizer(G_old, C, target, config=cfg)
        old_pack = [old_engine._new_search(0)] + [
            TransferOptimizer(G_old, C, target, config=cfg)._new_search(0) for _ in range(args.pack - 1)
        ]
        variants.insert(0, (f"@{args.against}", old_engine.renderer, old_pack))
    for _ in range(args.warmup):
        for _, renderer, searches in variants:
            step_together(renderer, searches)
    times: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    for _ in range(args.steps):
        for label, renderer, searches in variants:
            _sync(device)
            t = clock()
            step_together(renderer, searches)
            _sync(device)
            times[label].append(clock() - t)
    step_times = times["now"]
    step_flops = None
    if args.efficiency:
        from flopcount import count_flops, matmul_peak

        step_flops, _ = count_flops(lambda: step_together(engine.renderer, pack))
        peak = max(peak, matmul_peak(clock=clock))

    parts: dict[str, list[float]] = {"generator forward": [], "encoder forward + loss": [], "backward": []}
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if args.precision == "bf16"
        else torch.autocast(device_type=device.type, enabled=False)
    )
    rss_after_steps = _peak_rss_gib()
    # The breakdown renders the whole batch at once: with --chunk (to bound memory) it is left out.
    for _ in range(0 if (args.no_breakdown or args.chunk) else args.steps):
        ws = search.shifted_ws()
        _sync(device)
        t0 = clock()
        with autocast:
            images = G.synthesize(ws)
        _sync(device)
        t1 = clock()
        with autocast:
            shifted = C.embed(images)
        ctx = LossContext(engine.target, engine.source_embeddings, shifted.float(), search.direction, search.coefficients)
        loss, _ = evaluate_terms(engine.terms, ctx)
        _sync(device)
        t2 = clock()
        loss.backward()
        _sync(device)
        t3 = clock()
        search.optimizer.zero_grad(set_to_none=True)
        for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
            parts[name].append(dt)

    best, median = min(step_times), statistics.median(step_times)
    print(f"generator {args.generator} ({_params(G)}, {G.resolution} px, W+ {G.num_ws}x{G.w_dim}) {gen_cfg}")
    print(f"encoder   {args.encoder} ({_params(C)}) {enc_cfg}")
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(
        f"device {device}, threads {threads}, N = {args.sources}, pack {args.pack}, precision {args.precision}, "
        f"compile {args.compile}, chunk {args.chunk}, {args.steps} timed steps after {args.warmup} warm-up, "
        f"{args.clock} clock, keep_freed_memory {args.keep_freed_memory}"
    )
    print()
    print(f"{'part':<26}{'best s':>10}{'median s':>10}")
    for name, values in parts.items():
        if values:
            print(f"{name:<26}{min(values):>10.4f}{statistics.median(values):>10.4f}")
    print(f"{'engine step (total)':<26}{best:>10.4f}{median:>10.4f}")
    print(f"{'steps/s':<26}{1 / best:>10.2f}{1 / median:>10.2f}")
    if args.against:
        print()
        print(f"{'engine step, side by side':<26}{'best s':>10}{'median s':>10}" + ("  % of peak (best)" if peak else ""))
        for label, values in times.items():
            line = f"{'generator ' + label:<26}{min(values):>10.4f}{statistics.median(values):>10.4f}"
            if step_flops and peak:
                line += f"  {100 * step_flops / 1e9 / min(values) / peak:>5.0f}%"
            print(line)
    if step_flops is not None:
        rate = step_flops / 1e9 / best
        print(
            f"efficiency: {step_flops / 1e9:.1f} GFLOP per step (counted from shapes), {rate:.1f} GFLOP/s at the best "
            f"step, {100 * rate / peak:.0f}% of the fp32 matmul peak {peak:.1f} GFLOP/s (this process)"
        )
    if hasattr(os, "getloadavg"):
        print("load average at the end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    if args.pack > 1:
        print(f"{'directions x steps/s':<26}{args.pack / best:>10.2f}{args.pack / median:>10.2f}  (--pack {args.pack})")
    print(f"peak RSS after the engine steps: {rss_after_steps:.2f} GiB (whole process, ru_maxrss)")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
