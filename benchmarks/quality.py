"""Quality of essence transfer against ground truth, in the toy world.

For each target (a world sprite, clean for in-domain targets, sketched for out-of-domain ones) and the
same held-out sources (toy-sprites samples the direction never saw), three methods edit every source:

* ours: the paper's method (``paper`` preset in-domain, ``paper-ood`` for sketches), optimised on 6
  training sources, then G(w + b) on the held-out sources;
* ours, init target (in-domain targets only): the same, with b starting at the inverted target (the
  paper's in-domain initialisation, ``essence run --init target``) instead of a random latent;
* StyleGAN blend: the average of each source's latent and the target's (the target inverted by the
  generator's inverter, toy-encoder, as ``essence blend`` does);
* CLIP blend: per source, the latent whose toy-clip embedding best matches the average of the source's
  and the target's embeddings.

The factor classifiers of ``world_judges.py`` (trained on the procedural images, independent of the
models under test) read every result: **essence adopted** is the share of the target's essence factor
values the result shows; **identity error** is how far the result's position and size moved from its
source's, in pixels. The unedited sources are the chance-level reference. Prints a table and writes JSON.

    python benchmarks/quality.py --targets 20 --ood-targets 10 --heldout 8 --steps 300
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

METHODS = ("sources", "ours", "ours-init-target", "stylegan-blend", "clip-blend")
#: Methods for in-domain targets only (an out-of-domain target has no latent to start from).
IN_DOMAIN_ONLY = ("ours-init-target",)


def judged(judges, images) -> dict[str, np.ndarray]:
    import world_judges as wj

    return wj.judge(judges, images)


def score(j_results, j_sources, target) -> dict[str, float]:
    from essence.plugins.toy import world

    out = {}
    for factor, values in world.ESSENCE_FACTORS.items():
        out[factor] = float((j_results[factor] == values.index(getattr(target, factor))).mean())
    out["essence"] = float(np.mean([out[f] for f in world.ESSENCE_FACTORS]))
    for factor in world.IDENTITY_FACTORS:
        out[f"{factor}_px"] = float(np.abs(j_results[factor] - j_sources[factor]).mean() * world.RESOLUTION)
    out["identity_px"] = float(np.mean([out[f"{f}_px"] for f in world.IDENTITY_FACTORS]))
    out["confident"] = float(
        np.all([j_results[f + "_confidence"] >= 0.9 for f in world.ESSENCE_FACTORS], axis=0).mean()
    )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=int, default=20, help="in-domain (clean) targets")
    p.add_argument("--ood-targets", type=int, default=10, help="out-of-domain (sketch) targets")
    p.add_argument("--heldout", type=int, default=8, help="held-out sources per target")
    p.add_argument("--steps", type=int, default=300, help="optimisation steps of ours and of the CLIP blend")
    p.add_argument("--inverter", default=None, help="inverter of the targets (default: the generator's, toy-encoder)")
    p.add_argument("--methods", default=",".join(METHODS[1:]), help="comma-separated methods to run (the sources always are)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("quality.json"))
    args = p.parse_args(argv)
    methods = {"sources", *(m.strip() for m in args.methods.split(","))}
    unknown = methods - set(METHODS)
    if unknown:
        p.error(f"unknown method(s) {', '.join(sorted(unknown))}; choose from {', '.join(METHODS[1:])}")

    import torch

    torch.set_num_threads(args.threads)
    import world_judges as wj
    from PIL import Image

    import essence
    from essence.workflows.blend import clip_blend, mean_target, stylegan_blend
    from essence.core.images import to_uint8
    from essence.method.photos import InversionSettings, invert_photos
    from essence.plugins.toy import world

    generator = essence.get_generator("toy-sprites", device="cpu")
    encoder = essence.get_encoder("toy-clip", device="cpu")
    judges = wj.load()

    rng = np.random.default_rng(args.seed)
    cases = [(s, "clean") for s in world.sample_sprites(args.targets, rng)]
    cases += [(s, "sketch") for s in world.sample_sprites(args.ood_targets, rng)]
    heldout = generator.sample_ws(args.heldout, seed=args.seed + 1, truncation=0.7)
    with torch.no_grad():
        source_images = to_uint8(generator.synthesize(heldout))
    j_sources = judged(judges, source_images)

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="essence-quality-"))
    for k, (target, style) in enumerate(cases):
        path = tmp / f"target_{k:02d}.png"
        Image.fromarray(world.render(target, style)).save(path)
        preset = "paper" if style == "clean" else "paper-ood"
        results, seconds = {"sources": source_images}, {}

        t0 = time.perf_counter()
        target_image = Image.open(path).convert("RGB")
        inversion = InversionSettings(inverter={"name": args.inverter})
        target_ws = invert_photos([(str(path), target_image)], generator, "toy-sprites", inversion).ws
        seconds["inversion"] = time.perf_counter() - t0

        starts = {"ours": None, **({"ours-init-target": target_ws[0]} if style == "clean" else {})}
        for method, init in ((m, i) for m, i in starts.items() if m in methods):
            t0 = time.perf_counter()
            run = essence.optimize_direction(
                generator, encoder, path, None, init=init,
                config={"preset": preset, "steps": args.steps, "seed": args.seed + 10 + k, "heldout": {"count": 0}},
            )
            with torch.no_grad():
                results[method] = to_uint8(generator.synthesize(heldout + run.direction[None].to(heldout)))
            seconds[method] = time.perf_counter() - t0 + (seconds["inversion"] if init is not None else 0.0)

        if "stylegan-blend" in methods:
            t0 = time.perf_counter()
            with torch.no_grad():
                results["stylegan-blend"] = to_uint8(generator.synthesize(stylegan_blend(heldout, target_ws)))
            seconds["stylegan-blend"] = time.perf_counter() - t0 + seconds["inversion"]

        if "clip-blend" in methods:
            t0 = time.perf_counter()
            with torch.no_grad():
                target_embedding = mean_target(encoder.embed_file(path))
            blended, _ = clip_blend(generator, encoder, target_embedding, heldout, steps=args.steps)
            with torch.no_grad():
                results["clip-blend"] = to_uint8(generator.synthesize(blended))
            seconds["clip-blend"] = time.perf_counter() - t0

        for method in (m for m in METHODS if m in results):
            row = {"target": k, "style": style, "method": method, **target.essence}
            row.update(score(judged(judges, results[method]), j_sources, target))
            row["seconds"] = seconds.get(method, 0.0)
            rows.append(row)
        done = ", ".join(
            f"{r['method']} essence {r['essence']:.2f} identity {r['identity_px']:.2f} px"
            for r in rows[-len(results):] if r["method"] != "sources"
        )
        print(f"target {k + 1}/{len(cases)} ({style}): {done} ({sum(seconds.values()):.0f} s)", flush=True)

    summary = {}
    print()
    header = f"{'targets':<9}{'method':<16}{'essence':>8}" + "".join(f"{f:>11}" for f in world.ESSENCE_FACTORS)
    header += f"{'identity px':>13}{'x px':>7}{'y px':>7}{'size px':>9}{'clean':>7}"
    print(header)
    for style in ("clean", "sketch"):
        for method in METHODS:
            sel = [r for r in rows if r["style"] == style and r["method"] == method]
            if not sel:
                continue
            mean = {key: float(np.mean([r[key] for r in sel])) for key in sel[0] if isinstance(sel[0][key], float)}
            summary[f"{style}/{method}"] = {"targets": len(sel), **mean}
            print(
                f"{style:<9}{method:<16}{mean['essence']:>8.3f}"
                + "".join(f"{mean[f]:>11.3f}" for f in world.ESSENCE_FACTORS)
                + f"{mean['identity_px']:>13.2f}{mean['x_px']:>7.2f}{mean['y_px']:>7.2f}{mean['size_px']:>9.2f}"
                + f"{mean['confident']:>7.2f}"
            )
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary, "rows": rows}, indent=2))
    print(f"\n'essence': share of the target's essence values adopted (judged); 'identity px': mean |moved| of x, y,"
          f" size vs the source, in pixels; 'clean': share judged confidently. Written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
