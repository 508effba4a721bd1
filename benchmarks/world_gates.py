"""Quality gates of the toy world (issue 8), on held-out images the training scripts never draw.

    python benchmarks/world_gates.py --clip        # toy-clip: zero-shot per factor, identity cosine
    python benchmarks/world_gates.py --judges      # the factor classifiers' own held-out scores
    python benchmarks/world_gates.py --samples s.npy   # a generator's samples, (N, 32, 32, 3) uint8

Gates: toy-clip zero-shot accuracy >= 95% per essence factor (clean and sketch reported apart) and mean
cosine >= 0.9 between embeddings of two clean images that differ only in position/size. Generator:
every essence value at >= 1/3 of its uniform share and >= 90% of samples judged with confidence >= 0.9
on every essence factor.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from essence.plugins.toy import evaluate, world

ZERO_SHOT_GATE = 0.95
COSINE_GATE = 0.9
CONFIDENCE = 0.9
CONFIDENT_SHARE = 0.9


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def clip_gates(args) -> bool:
    from essence.plugins.toy.toyclip import load_toy_clip

    toy = load_toy_clip(args.weights)
    start = time.time()
    sprites = world.sample_sprites(args.images, args.seed)
    rows = {style: evaluate.zero_shot(toy, sprites, style) for style in world.STYLES}
    joint = {style: evaluate.zero_shot_joint(toy, sprites, style) for style in world.STYLES}
    ok = True
    print(f"toy-clip zero-shot accuracy, {args.images} held-out sprites (seed {args.seed}) per style")
    print(f"{'factor':<12}{'clean':>8}{'sketch':>8}{'gate':>6}   {'joint clean':>11}{'joint sketch':>13}")
    for factor in world.ESSENCE_FACTORS:
        passed = min(rows["clean"][factor], rows["sketch"][factor]) >= ZERO_SHOT_GATE
        ok &= passed
        print(
            f"{factor:<12}{rows['clean'][factor]:>8.3f}{rows['sketch'][factor]:>8.3f}{verdict(passed):>6}   "
            f"{joint['clean'][factor]:>11.3f}{joint['sketch'][factor]:>13.3f}"
        )
    cos = evaluate.pair_cosines(toy, args.images, [args.seed, 1])
    passed = cos["identity"].mean() >= COSINE_GATE
    ok &= passed
    both = toy.encode_images(world.render(sprites, "clean")) * toy.encode_images(world.render(sprites, "sketch"))
    cross = both.sum(1).numpy()
    print(f"\ncosine between embeddings of image pairs ({args.images} pairs)       mean     p5    min")

    def row(name: str, values: np.ndarray) -> str:
        return f"  {name:<47}{values.mean():7.3f}{np.percentile(values, 5):7.3f}{values.min():7.3f}"

    print(row("only identity differs (position/size), clean", cos["identity"])
          + f"  gate >= {COSINE_GATE}: {verdict(passed)}")
    print(row("one essence factor differs (for scale)", cos["essence"]))
    print(row("same sprite, clean vs sketch", cross))
    print(f"\n({time.time() - start:.0f} s; zero-shot = single-factor prompt ensembles; joint = nearest of all "
          f"{int(np.prod([len(v) for v in world.ESSENCE_FACTORS.values()]))} full captions)")
    return ok


def judges_report(args) -> bool:
    import world_judges as wj

    model = wj.load()
    sprites = world.sample_sprites(args.images, args.seed)
    print(f"factor classifiers, {args.images} held-out sprites (seed {args.seed})")
    for style in world.STYLES:
        scores = wj.accuracy(model, sprites, style)
        print(f"  {style:<7}" + "  ".join(f"{k}={v:.4f}" for k, v in scores.items()))

    def confident(images: np.ndarray) -> float:
        got = wj.judge(model, images)
        return float(np.all([got[f + "_confidence"] >= CONFIDENCE for f in wj.ESSENCE], axis=0).mean())

    rng = np.random.default_rng([args.seed, 2])
    clean = world.render(sprites).astype(np.float32)
    other = world.render(world.sample_sprites(args.images, [args.seed, 3])).astype(np.float32)
    small = clean.reshape(-1, 8, 4, 8, 4, 3).mean(axis=(2, 4))
    cases = {
        "clean": clean,
        "clean + noise (std 8/255)": clean + rng.normal(0, 8, clean.shape),
        "70/30 blend of two sprites": 0.7 * clean + 0.3 * other,
        "50/50 blend of two sprites": 0.5 * clean + 0.5 * other,
        "4x downsampled, upsampled": small.repeat(4, axis=1).repeat(4, axis=2),
        "uniform noise": rng.uniform(0, 255, clean.shape),
    }
    print(f"share judged confidently (p >= {CONFIDENCE} on every essence factor): the generator gate's 'not mush' test")
    for name, images in cases.items():
        print(f"  {name:<28}{confident(np.clip(np.rint(images), 0, 255).astype(np.uint8)):7.3f}")
    return True


def samples_gate(args) -> bool:
    import world_judges as wj

    images = np.load(args.samples)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise SystemExit(f"{args.samples}: expected (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    got = wj.judge(wj.load(), images)
    n = len(images)
    confident = np.all([got[f + "_confidence"] >= CONFIDENCE for f in wj.ESSENCE], axis=0).mean()
    ok = confident >= CONFIDENT_SHARE
    print(f"generator samples: {n}")
    for factor, values in world.ESSENCE_FACTORS.items():
        share = np.bincount(got[factor], minlength=len(values)) / n * len(values)  # 1.0 = uniform share
        covered = share.min() >= 1 / 3
        ok &= covered
        print(f"  {factor:<11}" + " ".join(f"{v}={s:.2f}" for v, s in zip(values, share))
              + f"  (share / uniform; gate min >= 0.33: {verdict(covered)})")
    print(f"  confident on every essence factor (p >= {CONFIDENCE}): {confident:.3f}  gate >= {CONFIDENT_SHARE}: "
          f"{verdict(confident >= CONFIDENT_SHARE)}")
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", action="store_true", help="toy-clip gates")
    p.add_argument("--judges", action="store_true", help="the factor classifiers' held-out scores")
    p.add_argument("--samples", type=Path, help="generator samples (.npy, N x H x W x 3 uint8) to judge")
    p.add_argument("--weights", type=Path, default=None, help="toy-clip file (default: the shipped one)")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--seed", type=int, default=20240, help="held-out seed (training draws list seeds, never ints)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not (args.clip or args.judges or args.samples):
        p.error("choose at least one of --clip, --judges, --samples")
    torch.set_num_threads(args.threads)
    ok = True
    if args.judges:
        ok &= judges_report(args)
    if args.clip:
        ok &= clip_gates(args)
    if args.samples:
        ok &= samples_gate(args)
    print("\nall gates pass" if ok else "\nsome gates FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
