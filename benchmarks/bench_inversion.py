"""Inversion quality and speed in the toy world, on images the generator never made.

Held-out world renders (``world.render`` of sampled sprites; the toy encoder trained on other seeds) are
inverted into toy-sprites' W+ by three inverters:

* ``toy-encoder``: the shipped feed-forward encoder (one pass);
* ``projector``: the StyleGAN2-ADA recipe from the mean latent (W space, pixel MSE: LPIPS's VGG16 sees
  little at 32 px and its weights are not on this machine);
* ``toy-encoder + projector``: the projector started from the encoder's latent (``init = "toy-encoder"``).

For each: pixel MSE of G(w) against the render (images in [-1, 1]); the factor judges'
(``world_judges.py``) accuracy on the reconstructions against the sprites' true essence factors; the
identity error, how far the judged position and size of the reconstruction are from the judged render, in
pixels; seconds per image. The renders themselves are judged too, as the reference.

    python benchmarks/bench_inversion.py --renders 200 --projector-steps 150
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def scores(judged: dict, truth: dict, reference: dict | None) -> dict[str, float]:
    from essence.plugins.toy import world

    out = {f: float((judged[f] == truth[f]).mean()) for f in world.ESSENCE_FACTORS}
    out["essence"] = float(np.mean([out[f] for f in world.ESSENCE_FACTORS]))
    if reference is not None:
        px = [np.abs(judged[f] - reference[f]).mean() * world.RESOLUTION for f in world.IDENTITY_FACTORS]
        out["identity_px"] = float(np.mean(px))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--renders", type=int, default=200, help="held-out world renders")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--projector-steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=50, help="images per projector call")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("inversion.json"))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    import world_judges as wj

    import essence
    from essence.core.images import to_uint8
    from essence.plugins.toy import world

    generator = essence.get_generator("toy-sprites", device="cpu")
    judges = wj.load()
    sprites = world.sample_sprites(args.renders, [args.seed, 7])
    renders = world.render(sprites)
    images = torch.from_numpy(renders).permute(0, 3, 1, 2).float() / 127.5 - 1
    truth = world.labels(sprites)
    reference = wj.judge(judges, renders)
    projector = {"steps": args.projector_steps, "perceptual": "none", "device": "cpu"}
    inverters = {
        "toy-encoder": ("toy-encoder", {"device": "cpu"}),
        "projector": ("projector", projector),
        "toy-encoder + projector": ("projector", {**projector, "init": "toy-encoder"}),
    }
    rows = {"renders (reference)": {"pixel_mse": 0.0, **scores(reference, truth, reference), "seconds_per_image": 0.0}}
    for label, (name, config) in inverters.items():
        inverter = essence.get_inverter(name, **config)
        start = time.perf_counter()
        ws = torch.cat([inverter.invert(images[i : i + args.batch], generator) for i in range(0, len(images), args.batch)])
        seconds = time.perf_counter() - start
        with torch.no_grad():
            recon = torch.cat([generator.synthesize(ws[i : i + 100]) for i in range(0, len(ws), 100)])
        mse = float((recon - images).square().mean())
        rows[label] = {"pixel_mse": mse, **scores(wj.judge(judges, to_uint8(recon)), truth, reference),
                       "seconds_per_image": seconds / len(images)}
        print(f"{label}: pixel MSE {mse:.4f}, essence {rows[label]['essence']:.3f}, "
              f"identity {rows[label]['identity_px']:.2f} px, {seconds / len(images):.3f} s/image", flush=True)

    factors = list(world.ESSENCE_FACTORS)
    print(f"\n{'inverter':<26}{'pixel MSE':>10}{'essence':>9}" + "".join(f"{f:>11}" for f in factors) + f"{'identity px':>13}{'s/image':>9}")
    for label, r in rows.items():
        print(f"{label:<26}{r['pixel_mse']:>10.4f}{r['essence']:>9.3f}" + "".join(f"{r[f]:>11.3f}" for f in factors)
              + f"{r['identity_px']:>13.2f}{r['seconds_per_image']:>9.3f}")
    record = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, load {os.getloadavg()[0]:.2f}",
        "rows": rows,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nWritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
