"""Train the toy world's factor classifiers (the judges of the quality gates) and report held-out scores.

Fresh clean sprites every step, with a little pixel noise so the judges tolerate generator grain.
Held-out evaluation uses seeds the training stream never draws.

    nice -n 10 python benchmarks/train_world_judges.py     # writes benchmarks/world_judges.{safetensors,json}
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import world_judges as wj
from essence.plugins.toy import world


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--noise", type=float, default=0.03, help="max std of added pixel noise")
    p.add_argument("--held-out", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1, help="torch threads; 1 is faster on shared cores")
    p.add_argument("--out", type=Path, default=wj.WEIGHTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = wj.Judges(args.width)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.1)
    start = time.time()
    for step in range(args.steps):
        rng = np.random.default_rng([args.seed, 5, step])
        sprites = world.sample_sprites(args.batch, rng)
        x = wj.to_input(world.render(sprites))
        x = (x + torch.randn_like(x) * torch.rand(len(x), 1, 1, 1) * args.noise).clamp(0, 1)
        truth = world.labels(sprites)
        model.train()
        out = model(x)
        loss = sum(F.cross_entropy(out[f], torch.from_numpy(truth[f])) for f in wj.ESSENCE)
        target = torch.from_numpy(np.stack([truth[f] for f in wj.IDENTITY], 1))
        loss = loss + 100 * F.mse_loss(out["identity"], target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d} loss {loss.item():.4f} {(time.time() - start) / 60:.1f} min", flush=True)
    seconds = time.time() - start
    model.eval()
    held_out = world.sample_sprites(args.held_out, 424242)
    scores = {style: wj.accuracy(model, held_out, style) for style in world.STYLES}
    for style, row in scores.items():
        print(f"held-out {style}: " + " ".join(f"{k}={v:.4f}" for k, v in row.items()), flush=True)

    from safetensors.torch import save_file

    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items() if v.is_floating_point()}
    state |= {k: v for k, v in model.state_dict().items() if not v.is_floating_point()}
    save_file(state, str(args.out), metadata={"width": json.dumps(args.width)})
    record = {
        "component": "world judges (factor classifiers)",
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "seed": args.seed,
        "arguments": {k: v.name if isinstance(v, Path) else v for k, v in vars(args).items()},
        "train_wall_seconds": round(seconds, 1),
        "held_out": {"images": args.held_out, "seed": 424242, **scores},
        "torch": torch.__version__,
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}; {seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
