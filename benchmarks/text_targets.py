"""Text targets in the toy world: does ``--target-text "a blue sprite"`` make held-out sources blue, and only blue?

For each named factor value (the four colours, two patterns, three backgrounds) and the same held-out
toy-sprites sources, directions are found (``paper`` preset, 6 training sources) for:

* text: one prompt naming only that value (``world.prompts(factor, value)[k]``, a fixed choice);
* texts: every such prompt at once (several text targets, one essence: the mean of their transfer losses);
* image: clean sprites that have that value, other factors random (one run each; ``--images`` of them).

The factor judges (``world_judges.py``, independent of toy-clip) read the held-out results: **named** is the
share of results showing the named value (for the unedited sources: its base rate); **others kept** the share
whose other three essence factors are still the source's; **identity px** how far position and size moved.
Runs are packed (``--pack``), which changes nothing but speed. Prints a table and writes JSON.

    python benchmarks/text_targets.py --steps 300 --images 2 --heldout 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

NAMED = [("colour", v) for v in ("red", "yellow", "green", "blue")]
NAMED += [("pattern", "striped"), ("pattern", "checked")]
NAMED += [("background", v) for v in ("black", "grey", "purple")]
METHODS = ("sources", "text", "texts", "image")


def scores(judged, sources_judged, factor, value) -> dict[str, float]:
    from essence.plugins.toy import world

    named = float((judged[factor] == world.ESSENCE_FACTORS[factor].index(value)).mean())
    others = [f for f in world.ESSENCE_FACTORS if f != factor]
    kept = float(np.all([judged[f] == sources_judged[f] for f in others], axis=0).mean())
    px = float(np.mean([np.abs(judged[f] - sources_judged[f]).mean() for f in world.IDENTITY_FACTORS]) * world.RESOLUTION)
    return {"named": named, "others_kept": kept, "identity_px": px}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--images", type=int, default=2, help="image targets per named value")
    p.add_argument("--heldout", type=int, default=8)
    p.add_argument("--prompt", type=int, default=2, help="which of world.prompts(...) is the single text target")
    p.add_argument("--pack", type=int, default=9)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("text_targets.json"))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    import world_judges as wj
    from PIL import Image

    import essence
    from essence.core.images import to_uint8
    from essence.method.engine import TransferOptimizer, optimize_together
    from essence.plugins.toy import world

    generator = essence.get_generator("toy-sprites", device="cpu")
    encoder = essence.get_encoder("toy-clip", device="cpu")
    judges = wj.load()
    heldout = generator.sample_ws(args.heldout, seed=args.seed + 1_000_000, truncation=0.7)
    with torch.no_grad():
        source_images = to_uint8(generator.synthesize(heldout))
    j_sources = wj.judge(judges, source_images)

    rng = np.random.default_rng(args.seed)
    jobs = []  # (factor, value, method, target images, texts)
    for factor, value in NAMED:
        prompts = world.prompts(factor, value)
        jobs.append((factor, value, "text", [], [prompts[args.prompt % len(prompts)]]))
        jobs.append((factor, value, "texts", [], prompts))
        for sprite in world.sample_sprites(args.images, rng):
            image = Image.fromarray(world.render(sprite.replace(**{factor: value})))
            jobs.append((factor, value, "image", [image], []))

    config = {"preset": "paper", "steps": args.steps, "seed": args.seed, "heldout": {"count": 0}}
    results = []
    started = time.perf_counter()
    for i in range(0, len(jobs), args.pack):
        pack = jobs[i : i + args.pack]
        engines = [TransferOptimizer(generator, encoder, images or None, config=config, texts=texts) for *_, images, texts in pack]
        for job, result in zip(pack, optimize_together(engines)):
            with torch.no_grad():
                edited = to_uint8(generator.synthesize(heldout + result.direction[None]))
            results.append((job, scores(wj.judge(judges, edited), j_sources, job[0], job[1])))
        print(f"{min(i + args.pack, len(jobs))}/{len(jobs)} runs, {time.perf_counter() - started:.0f} s", flush=True)

    rows = []
    for factor, value in NAMED:
        rows.append({"factor": factor, "value": value, "method": "sources", **scores(j_sources, j_sources, factor, value)})
        for method in METHODS[1:]:
            sel = [s for (f, v, m, *_), s in results if (f, v, m) == (factor, value, method)]
            rows.append({"factor": factor, "value": value, "method": method, "runs": len(sel),
                         **{k: float(np.mean([s[k] for s in sel])) for k in sel[0]}})

    print(f"\n{'named value':<20}{'method':<9}{'named':>7}{'others kept':>13}{'identity px':>13}")
    for r in rows:
        print(f"{r['factor'] + ' ' + r['value']:<20}{r['method']:<9}{r['named']:>7.2f}{r['others_kept']:>13.2f}{r['identity_px']:>13.2f}")
    summary = {}
    print(f"\n{'all named values':<20}{'method':<9}{'named':>7}{'others kept':>13}{'identity px':>13}")
    for method in METHODS:
        sel = [r for r in rows if r["method"] == method]
        summary[method] = {k: float(np.mean([r[k] for r in sel])) for k in ("named", "others_kept", "identity_px")}
        s = summary[method]
        print(f"{'mean of ' + str(len(sel)):<20}{method:<9}{s['named']:>7.2f}{s['others_kept']:>13.2f}{s['identity_px']:>13.2f}")
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary, "rows": rows}, indent=2))
    print(f"\nWritten to {args.out} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
