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
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Any


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
    args = parser.parse_args(argv)

    import torch
    from PIL import Image

    from essence.method.engine import TransferOptimizer, evaluate_terms, step_together
    from essence.core.interfaces import LossContext
    from essence.method.runconfig import validate_run_config
    from essence.core.devices import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
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
    for _ in range(args.warmup):
        step_together(engine.renderer, pack)
    step_times = []
    for _ in range(args.steps):
        _sync(device)
        t = time.perf_counter()
        step_together(engine.renderer, pack)
        _sync(device)
        step_times.append(time.perf_counter() - t)

    parts: dict[str, list[float]] = {"generator forward": [], "encoder forward + loss": [], "backward": []}
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if args.precision == "bf16"
        else torch.autocast(device_type=device.type, enabled=False)
    )
    rss_after_steps = _peak_rss_gib()
    for _ in range(0 if args.no_breakdown else args.steps):
        ws = search.shifted_ws()
        _sync(device)
        t0 = time.perf_counter()
        with autocast:
            images = G.synthesize(ws)
        _sync(device)
        t1 = time.perf_counter()
        with autocast:
            shifted = C.embed(images)
        ctx = LossContext(engine.target, engine.source_embeddings, shifted.float(), search.direction, search.coefficients)
        loss, _ = evaluate_terms(engine.terms, ctx)
        _sync(device)
        t2 = time.perf_counter()
        loss.backward()
        _sync(device)
        t3 = time.perf_counter()
        search.optimizer.zero_grad(set_to_none=True)
        for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
            parts[name].append(dt)

    best, median = min(step_times), statistics.median(step_times)
    print(f"generator {args.generator} ({_params(G)}, {G.resolution} px, W+ {G.num_ws}x{G.w_dim}) {gen_cfg}")
    print(f"encoder   {args.encoder} ({_params(C)}) {enc_cfg}")
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(
        f"device {device}, threads {threads}, N = {args.sources}, pack {args.pack}, precision {args.precision}, "
        f"compile {args.compile}, chunk {args.chunk}, {args.steps} timed steps after {args.warmup} warm-up"
    )
    print()
    print(f"{'part':<26}{'best s':>10}{'median s':>10}")
    for name, values in parts.items():
        if values:
            print(f"{name:<26}{min(values):>10.4f}{statistics.median(values):>10.4f}")
    print(f"{'engine step (total)':<26}{best:>10.4f}{median:>10.4f}")
    print(f"{'steps/s':<26}{1 / best:>10.2f}{1 / median:>10.2f}")
    if args.pack > 1:
        print(f"{'directions x steps/s':<26}{args.pack / best:>10.2f}{args.pack / median:>10.2f}  (--pack {args.pack})")
    print(f"peak RSS after the engine steps: {rss_after_steps:.2f} GiB (whole process, ru_maxrss)")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
