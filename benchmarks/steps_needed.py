"""How many steps each preset needs, and what ``--steps auto`` saves, in the toy world.

For each preset and target (clean sprites for the in-domain presets, sketches for the out-of-domain ones):

1. a run of ``--max-steps`` (1000) steps whose held-out loss (the best direction so far on the run's held-out
   sources, the ``--steps auto`` check) is computed every ``--every`` steps; the first step whose held-out
   loss is within 2 % of the last one is "steps to 2 %";
2. the same run with ``--steps auto`` (the preset's ``auto_stop`` rule, at most ``--max-steps``): steps done,
   seconds, its held-out loss against the long run's.

    python benchmarks/steps_needed.py --presets paper,essence-in,paper-ood,essence-ood --targets 1 --out steps.json
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

DOMAIN = {"paper": "clean", "essence-in": "clean", "targetclip": "clean", "paper-ood": "sketch", "essence-ood": "sketch"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="paper,essence-in,paper-ood,essence-ood")
    p.add_argument("--targets", type=int, default=1, help="targets per preset")
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--heldout", type=int, default=8)
    p.add_argument("--within", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("steps_needed.json"))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from PIL import Image

    import essence
    from essence.method.engine import TransferOptimizer, evaluate_direction
    from essence.method.photos import InversionSettings, invert_photos
    from essence.method.runconfig import validate_run_config
    from essence.plugins.toy import world

    generator = essence.get_generator("toy-sprites", device="cpu")
    encoder = essence.get_encoder("toy-clip", device="cpu")
    rng = np.random.default_rng(args.seed)
    sprites = world.sample_sprites(args.targets, rng)
    tmp = Path(tempfile.mkdtemp(prefix="essence-steps-"))
    results = []
    for preset in [x.strip() for x in args.presets.split(",")]:
        style = DOMAIN[preset]
        for k, sprite in enumerate(sprites):
            path = tmp / f"{style}_{k}.png"
            Image.fromarray(world.render(sprite, style)).save(path)
            base = {"preset": preset, "seed": args.seed + 10 + k, "heldout": {"count": args.heldout}}
            cfg = validate_run_config(base)
            init = None
            if cfg.init.mode == "target":
                inv = InversionSettings(inverter={"name": None})
                init = invert_photos([(str(path), Image.open(path).convert("RGB"))], generator, "toy-sprites", inv).ws[0]

            long = TransferOptimizer(generator, encoder, path, config={**base, "steps": args.max_steps}, init=init)
            curve = []

            def check(event, o=long) -> None:
                if (event.step + 1) % args.every == 0:
                    s = o.search
                    report = evaluate_direction(o.renderer, o.terms, o.target, o.heldout_ws, s.best)
                    curve.append((event.step + 1, float(report["loss"])))

            long.callback = check
            t0 = time.perf_counter()
            long.run()
            long_seconds = time.perf_counter() - t0
            final = curve[-1][1]
            within = next(step for step, loss in curve if loss <= final * (1 + args.within))

            t0 = time.perf_counter()
            auto = TransferOptimizer(
                generator, encoder, path, init=init,
                config={**base, "steps": "auto", "auto_stop": {"max_steps": args.max_steps}},
            ).run()
            auto_seconds = time.perf_counter() - t0
            stopping = auto.restarts[0].stopping
            row = {
                "preset": preset, "style": style, "target": k, "preset_steps": cfg.steps,
                "heldout_loss_at_max": final, "steps_to_within": within,
                "heldout_loss_at_preset_steps": next((loss for step, loss in curve if step == cfg.steps), None),
                "long_seconds": long_seconds,
                "auto_steps": stopping["steps_done"], "auto_reason": stopping["reason"],
                "auto_heldout_loss": auto.heldout["loss"], "auto_seconds": auto_seconds,
                "curve": curve,
            }
            results.append(row)
            print(
                f"{preset} target {k}: within {args.within:.0%} of the {args.max_steps}-step held-out loss "
                f"({final:.4f}) at step {within}; --steps auto stopped at {row['auto_steps']} "
                f"(held-out {row['auto_heldout_loss']:.4f}, {auto_seconds:.0f} s vs {long_seconds:.0f} s)", flush=True,
            )
            args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
