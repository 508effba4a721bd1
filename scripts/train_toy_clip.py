"""Train toy-clip: a tiny CLIP on the toy world's images and essence-only captions.

Each step draws sprites (identity factors random) from a pre-rendered pool, takes a share of them in
the sketch style, and writes each a fresh caption naming all or a random subset of its essence
factors. The loss is CLIP's symmetric contrastive loss with multi-positive targets: an image and a
caption match when every factor the caption names agrees with the image (two images of the same
essence share captions, so in-batch "negatives" that are really positives are not pushed apart).
Nothing in the text ever names position or size, so the encoder learns to see essence and not identity.

    nice -n 10 python scripts/train_toy_clip.py   # the shipped weights: 11 min on a shared 2-core CPU
    python scripts/train_toy_clip.py --steps 200 --out /tmp/t.safetensors   # a quick try
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from essence.plugins.toy import evaluate, toyclip, world


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--sketch", type=float, default=0.4, help="share of images rendered as sketches")
    p.add_argument("--full-captions", type=float, default=0.5, help="share of captions naming every factor")
    p.add_argument("--pool", type=int, default=50000, help="training sprites, rendered once in both styles")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-images", type=int, default=300, help="held-out images per style for progress evals")
    p.add_argument("--final-images", type=int, default=1000, help="held-out images per style for the record")
    p.add_argument("--max-minutes", type=float, default=58.0, help="stop early (and say so) past this")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 is several times faster than 2 when other jobs share the cores")
    p.add_argument("--out", type=Path, default=toyclip.WEIGHTS)
    p.add_argument("--arch", type=json.loads, default={},
                   help='JSON overrides of toyclip.ARCH, e.g. \'{"vision_cfg": {"width": 32}}\' (sub-dicts merge)')
    return p.parse_args(argv)


class Pool:
    """Sprites rendered once in both styles; each step draws from it (rendering costs more than a step)."""

    def __init__(self, n: int, seed: int):
        start = time.time()
        self.sprites = world.sample_sprites(n, [seed, 3])
        self.images = {style: world.render(self.sprites, style) for style in world.STYLES}
        self.labels = np.stack([world.labels(self.sprites)[f] for f in world.ESSENCE_FACTORS], axis=1)
        print(f"rendered a pool of {n} sprites x {len(world.STYLES)} styles in {time.time() - start:.0f} s", flush=True)


def make_batch(step: int, args, pool: Pool, tokenizer: toyclip.Tokenizer):
    """Images, tokens and the (B, B) match matrix for one step; a pure function of (seed, step)."""
    rng = np.random.default_rng([args.seed, 0, step])
    index = rng.integers(0, len(pool.sprites), size=args.batch)
    sketch = rng.random(args.batch) < args.sketch
    images = np.where(sketch[:, None, None, None], pool.images["sketch"][index], pool.images["clean"][index])
    factors = list(world.ESSENCE_FACTORS)
    named = np.ones((args.batch, len(factors)), dtype=bool)
    captions = []
    for i, k in enumerate(index):
        if rng.random() >= args.full_captions:
            while True:
                row = rng.random(len(factors)) < 0.5
                if row.any():
                    break
            named[i] = row
        captions.append(world.caption(pool.sprites[k], rng, mention=[f for f, m in zip(factors, named[i]) if m]))
    essence = pool.labels[index]
    agree = essence[:, None, :] == essence[None, :, :]
    match = (agree | ~named[None, :, :]).all(-1)  # image i fits caption j
    return images, tokenizer(captions), torch.from_numpy(match).float()


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, match: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    logits = scale * img @ txt.T
    to_text = -(match / match.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    to_image = -(match / match.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (to_text + to_image) / 2


def measure(toy: toyclip.ToyClip, n: int, seed) -> dict:
    sprites = world.sample_sprites(n, seed)
    cos = evaluate.pair_cosines(toy, n, [*seed, 1])
    return {
        "zero_shot_clean": evaluate.zero_shot(toy, sprites, "clean"),
        "zero_shot_sketch": evaluate.zero_shot(toy, sprites, "sketch"),
        "identity_cosine_mean": float(cos["identity"].mean()),
        "essence_cosine_mean": float(cos["essence"].mean()),
    }


def fmt(metrics: dict) -> str:
    zs = " ".join(
        f"{style}[" + " ".join(f"{f[:3]}={metrics[f'zero_shot_{style}'][f]:.3f}" for f in world.ESSENCE_FACTORS) + "]"
        for style in ("clean", "sketch")
    )
    return f"{zs} cos(identity)={metrics['identity_cosine_mean']:.3f} cos(essence)={metrics['essence_cosine_mean']:.3f}"


def _shown(path: Path) -> str:
    """A path as recorded: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    arch = {k: dict(v, **args.arch.get(k, {})) if isinstance(v, dict) else args.arch.get(k, v)
            for k, v in toyclip.ARCH.items()}
    tokenizer = toyclip.Tokenizer(world.vocabulary(), arch["text_cfg"]["context_length"])
    model = toyclip.build_model(arch, tokenizer.vocab_size)
    size = arch["vision_cfg"]["image_size"]
    toy = toyclip.ToyClip(model, tokenizer, size, toyclip.OPENAI_MEAN, toyclip.OPENAI_STD, arch)
    params = sum(p.numel() for p in model.parameters())
    print(f"toy-clip: {params:,} parameters, vocabulary {tokenizer.vocab_size}, "
          f"{args.steps} steps of {args.batch}", flush=True)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.98), eps=1e-6,
    )

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * t))

    start, cpu_start = time.time(), time.process_time()  # both include rendering the pool
    pool = Pool(args.pool, args.seed)
    data_time = 0.0
    stopped_early = False
    step = 0
    for step in range(args.steps):
        if (time.time() - start) / 60 > args.max_minutes:
            stopped_early = True
            print(f"stopping early at step {step}: past --max-minutes {args.max_minutes}", flush=True)
            break
        model.train()
        t0 = time.time()
        images, tokens, match = make_batch(step, args, pool, tokenizer)
        data_time += time.time() - t0
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        img = model.encode_image(toy.preprocess(images), normalize=True)
        txt = model.encode_text(tokens, normalize=True)
        loss = contrastive_loss(img, txt, match, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 50 == 0 or step == args.steps - 1:
            elapsed = time.time() - start
            eta = elapsed / (step + 1) * (args.steps - step - 1)
            print(
                f"step {step:5d} loss {loss.item():.4f} scale {model.logit_scale.exp().item():6.2f} "
                f"lr {lr_at(step):.2e} {elapsed / 60:5.1f} min (data {data_time / 60:.1f}) eta {eta / 60:5.1f} min",
                flush=True,
            )
        if args.eval_every and step and step % args.eval_every == 0:
            model.eval()
            print(f"  eval @ {step}: {fmt(measure(toy, args.eval_images, [args.seed, 9]))}", flush=True)

    model.eval()
    train_seconds, cpu_seconds = time.time() - start, time.process_time() - cpu_start
    final = measure(toy, args.final_images, [args.seed, 10])
    print(f"final: {fmt(final)}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    toyclip.save_toy_clip(model, tokenizer, arch, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    record = {
        "component": "toy-clip",
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "seed": args.seed,
        "arguments": {k: _shown(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "steps_done": step + 1 if not stopped_early else step,
        "stopped_early": stopped_early,
        "train_wall_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "data_seconds": round(data_time, 1),
        "parameters": params,
        "architecture": arch,
        "vocabulary_size": tokenizer.vocab_size,
        "final_metrics": {"held_out_images_per_style": args.final_images, **final},
        "weights_file": args.out.name,
        "weights_bytes": args.out.stat().st_size,
        "weights_sha256": digest,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {args.threads} torch threads (CPU, shared with other jobs)",
    }
    record_path = args.out.with_suffix(".json")
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) and {record_path}; "
          f"{train_seconds / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
