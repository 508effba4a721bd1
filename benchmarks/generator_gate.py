"""The toy-sprites generator's quality gate (issue 8), judged by the world's factor classifiers.

    python benchmarks/generator_gate.py                      # 1000 samples, psi 0.7 (the engine's default)
    python benchmarks/generator_gate.py --truncation 1 --samples 200 --seed 7
    python benchmarks/generator_gate.py --record    # also write the numbers into the weights' JSON record

Gate: every essence value appears at >= 1/3 of its uniform share, and >= 90% of samples are judged
with confidence >= 0.9 on every essence factor (clean, not mush). Also reports identity coverage: how
the judged position and size of the samples spread over the world's ranges.
Needs the judges' weights (``benchmarks/world_judges.safetensors``, written by
``benchmarks/train_world_judges.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

CONFIDENCE = 0.9
CONFIDENT_SHARE = 0.9
MIN_SHARE = 1 / 3


def sample_images(generator, n: int, seed: int, truncation: float, chunk: int = 250) -> np.ndarray:
    """``n`` samples of ``generator`` as uint8 (N, H, W, 3), drawn as the engine draws sources, saved as runs save images."""
    import torch

    from essence.core.images import to_uint8

    ws = generator.sample_ws(n, seed=seed, truncation=truncation)
    out = []
    with torch.no_grad():
        for i in range(0, n, chunk):
            out.append(to_uint8(generator.synthesize(ws[i : i + chunk])))
    return np.concatenate(out)


def measure(images: np.ndarray, judged: dict[str, np.ndarray]) -> dict:
    """Gate numbers from the judges' verdicts on ``images`` (the judges' ``judge`` output)."""
    from essence.plugins.toy import world

    n = len(images)
    confident = np.all([judged[f + "_confidence"] >= CONFIDENCE for f in world.ESSENCE_FACTORS], axis=0)
    shares = {
        factor: dict(zip(values, (np.bincount(judged[factor], minlength=len(values)) / n * len(values)).tolist()))
        for factor, values in world.ESSENCE_FACTORS.items()
    }
    per_factor_confident = {f: float((judged[f + "_confidence"] >= CONFIDENCE).mean()) for f in world.ESSENCE_FACTORS}
    identity = {}
    for factor, (lo, hi) in world.IDENTITY_FACTORS.items():
        v = judged[factor][confident] if confident.any() else judged[factor]
        p5, p50, p95 = np.percentile(v, [5, 50, 95])
        identity[factor] = {
            "range": [lo, hi],
            "min": float(v.min()), "p5": float(p5), "median": float(p50), "p95": float(p95), "max": float(v.max()),
            # 1.0: as spread as the world's uniform draw; the p5-p95 span of a uniform draw is 0.9 of the range.
            "std_vs_uniform": float(v.std() / ((hi - lo) / np.sqrt(12))),
            "p5_p95_span_vs_uniform": float((p95 - p5) / (0.9 * (hi - lo))),
        }
    covered = all(min(s.values()) >= MIN_SHARE for s in shares.values())
    share = float(confident.mean())
    return {
        "samples": n,
        "confident_share": share,
        "confident_per_factor": per_factor_confident,
        "value_shares": shares,
        "identity": identity,
        "pass": bool(covered and share >= CONFIDENT_SHARE),
    }


def judge_images(images: np.ndarray) -> dict[str, np.ndarray]:
    """The judges' verdicts. The one place that knows the judges' API (``benchmarks/world_judges.py``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import world_judges

    return world_judges.judge(world_judges.load(), images)


def report(result: dict) -> None:
    ok = lambda b: "pass" if b else "FAIL"  # noqa: E731
    print(f"samples: {result['samples']}")
    for factor, shares in result["value_shares"].items():
        low = min(shares.values())
        print(f"  {factor:<11}" + " ".join(f"{v}={s:.2f}" for v, s in shares.items())
              + f"   (share / uniform share; gate min >= {MIN_SHARE:.2f}: {ok(low >= MIN_SHARE)})")
    per = "  ".join(f"{f} {v:.3f}" for f, v in result["confident_per_factor"].items())
    print(f"  confident (p >= {CONFIDENCE}) on every essence factor: {result['confident_share']:.3f}   "
          f"gate >= {CONFIDENT_SHARE}: {ok(result['confident_share'] >= CONFIDENT_SHARE)}   ({per})")
    print("  identity of confident samples (judged; fractions of the image side):")
    print(f"    {'factor':<6}{'world range':>14}{'min':>7}{'p5':>7}{'median':>8}{'p95':>7}{'max':>7}"
          f"{'std/unif':>10}{'p5-p95/unif':>13}")
    for f, r in result["identity"].items():
        print(f"    {f:<6}{r['range'][0]:>7.2f}-{r['range'][1]:<6.2f}{r['min']:>7.3f}{r['p5']:>7.3f}{r['median']:>8.3f}"
              f"{r['p95']:>7.3f}{r['max']:>7.3f}{r['std_vs_uniform']:>10.2f}{r['p5_p95_span_vs_uniform']:>13.2f}")
    print("gate passes" if result["pass"] else "gate FAILS")


def write_record(args, result: dict, argv: list[str]) -> None:
    """Merge the gate's numbers into the training record (``<weights>.json``), keyed by truncation."""
    import json
    import shlex

    if args.weights:
        record_path = Path(args.weights).with_suffix(".json")
    else:
        from essence.plugins.toy import SPRITES_WEIGHTS

        record_path = SPRITES_WEIGHTS.with_suffix(".json")
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    command = " ".join(["python benchmarks/generator_gate.py", *(shlex.quote(a) for a in argv if a != "--record")])
    record.setdefault("gate", {})[f"truncation {args.truncation:g}"] = {"command": command, "seed": args.seed, **result}
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote the gate's numbers to {record_path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generator", default="toy-sprites")
    p.add_argument("--weights", default=None, help="judge this StyleGAN2 weights file instead (e.g. a new training)")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truncation", type=float, default=0.7)
    p.add_argument("--save", type=Path, default=None, help="also save the samples (.npy, N x H x W x 3 uint8)")
    p.add_argument("--record", action="store_true", help="add the numbers to the JSON record beside the weights")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    import essence

    torch.set_num_threads(args.threads)
    start = time.time()
    if args.weights:
        args.generator = "stylegan2"
        generator = essence.get_generator("stylegan2", weights=args.weights, device="cpu")
    else:
        generator = essence.get_generator(args.generator, device="cpu")
    images = sample_images(generator, args.samples, args.seed, args.truncation)
    if args.save:
        np.save(args.save, images)
    result = measure(images, judge_images(images))
    print(f"{args.generator}, seed {args.seed}, truncation {args.truncation}")
    report(result)
    print(f"({time.time() - start:.1f} s)")
    if args.record:
        write_record(args, result, sys.argv[1:] if argv is None else argv)
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
