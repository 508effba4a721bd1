"""Train ``toy-encoder``: the feed-forward inverter of toy-sprites (32-px image -> one w on every W+ row).

Two phases, both against the frozen shipped generator:

1. Latent regression on the generator's own samples: z ~ N(0, I), mapped, truncated towards mean_w by a
   random psi (``--psi-min`` to 1: photos of sprites are not all typical), rendered; the encoder learns
   to read w back from G(w) (squared error per coordinate, in units of w's spread). Cheap: the samples
   are rendered once, so each step runs the encoder only.
2. Reconstruction: each batch holds generator samples (latent error + image error) and clean world
   renders, images the generator never made (``world.render`` of sampled sprites: image error through
   the frozen generator only, as they have no latent). Image error is MSE + 0.5 L1 on [-1, 1] pixels.

Held-out numbers go into the record (``toy-encoder.json`` beside the weights): pixel MSE of held-out
world renders and generator samples, and the latent error of held-out samples.

    nice -n 10 python scripts/train_toy_encoder.py     # -> essence/plugins/toy/toy-encoder.safetensors
    python scripts/train_toy_encoder.py --regress-steps 200 --recon-steps 50 --out /tmp/e.safetensors  # a try
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import essence  # noqa: E402
from essence.plugins.toy import world  # noqa: E402
from essence.plugins.toy.encoder import WEIGHTS, SpriteEncoder, save_encoder  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=30000, help="generator samples rendered up front")
    p.add_argument("--renders", type=int, default=30000, help="world renders (clean) made up front")
    p.add_argument("--psi-min", type=float, default=0.3, help="smallest truncation psi of the generator samples")
    p.add_argument("--regress-steps", type=int, default=8000)
    p.add_argument("--regress-batch", type=int, default=64)
    p.add_argument("--recon-steps", type=int, default=1500)
    p.add_argument("--recon-batch", type=int, default=32, help="half generator samples, half world renders")
    p.add_argument("--latent-weight", type=float, default=1.0, help="latent error's weight in phase 2")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--heldout", type=int, default=500)
    p.add_argument("--log-every", type=int, default=250)
    p.add_argument("--max-minutes", type=float, default=40.0, help="stop a phase early (and say so) past this")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 is faster than 2 when other jobs share the cores")
    p.add_argument("--out", type=Path, default=WEIGHTS)
    return p.parse_args(argv)


def log(start: float, text: str) -> None:
    print(f"[{(time.time() - start) / 60:5.1f} min] {text}", flush=True)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def generator_samples(g, n: int, seed: int, psi_min: float, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` ws (one per sample) truncated by psi ~ U(psi_min, 1), and their images."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, g.z_dim, generator=gen)
    psi = psi_min + (1 - psi_min) * torch.rand(n, 1, generator=gen)
    mean = g.mean_w
    w = mean + psi * (g.mapping(z) - mean)
    images = torch.cat([g.synthesize(broadcast(w[i : i + chunk], g.num_ws)) for i in range(0, n, chunk)])
    return w, images


def broadcast(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    return w[:, None, :].expand(-1, num_ws, -1)


def image_error(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, x) + 0.5 * F.l1_loss(out, x)


def cosine(step: int, steps: int, warm: int) -> float:
    return min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


@torch.no_grad()
def evaluate(g, enc, held_w, held_x, renders, scale) -> dict[str, float]:
    enc.eval()
    w = enc(held_x)
    out = {
        "heldout_latent_error": float(((w - held_w) / scale).square().mean()),
        "heldout_samples_mse": float(F.mse_loss(g.synthesize(broadcast(w, g.num_ws)), held_x)),
        "heldout_renders_mse": float(F.mse_loss(g.synthesize(broadcast(enc(renders), g.num_ws)), renders)),
    }
    enc.train()
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.time()
    g = essence.get_generator("toy-sprites", device="cpu")

    w_all, x_all = generator_samples(g, args.samples + args.heldout, args.seed + 1, args.psi_min)
    w_train, x_train = w_all[: args.samples], x_all[: args.samples]
    held_w, held_x = w_all[args.samples :], x_all[args.samples :]
    renders = to_tensor(world.render(world.sample_sprites(args.renders, [args.seed, 11])))
    held_renders = to_tensor(world.render(world.sample_sprites(args.heldout, [args.seed, 12])))
    scale = w_train.std(0, keepdim=True)  # regress every coordinate in units of its spread
    data_seconds = time.time() - start
    log(start, f"{args.samples} generator samples and {args.renders} world renders ready")

    enc = SpriteEncoder(width=args.width, w_dim=g.w_dim)
    log(start, f"encoder: {sum(p.numel() for p in enc.parameters())} parameters")
    gen = torch.Generator().manual_seed(args.seed + 2)
    budget = args.max_minutes * 60
    taken = {}

    # 1. latent regression on generator samples
    opt = torch.optim.Adam(enc.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine(s, args.regress_steps, 100))
    step = 0
    for step in range(args.regress_steps):
        idx = torch.randint(0, args.samples, (args.regress_batch,), generator=gen)
        loss = ((enc(x_train[idx]) - w_train[idx]) / scale).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % args.log_every == 0:
            log(start, f"regression step {step:5d}/{args.regress_steps} latent error {loss.item():.4f}")
        if time.time() - start > budget / 2:
            log(start, f"stopping the regression at step {step + 1}: half of --max-minutes is spent")
            break
    taken["regress"] = step + 1
    phase1 = evaluate(g, enc, held_w, held_x, held_renders, scale)
    log(start, f"after regression: {phase1}")

    # 2. reconstruction through the frozen generator, generator samples and world renders
    opt = torch.optim.Adam(enc.parameters(), lr=args.lr / 3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine(s, args.recon_steps, 50))
    half = args.recon_batch // 2
    for step in range(args.recon_steps):
        i = torch.randint(0, args.samples, (half,), generator=gen)
        j = torch.randint(0, args.renders, (args.recon_batch - half,), generator=gen)
        x = torch.cat([x_train[i], renders[j]])
        w = enc(x)
        out = g.synthesize(broadcast(w, g.num_ws))
        latent = ((w[:half] - w_train[i]) / scale).square().mean()
        loss = image_error(out, x) + args.latent_weight * 0.01 * latent
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % args.log_every == 0:
            log(start, f"reconstruction step {step:5d}/{args.recon_steps} loss {loss.item():.4f} latent {latent.item():.4f}")
        if time.time() - start > budget:
            log(start, f"stopping the reconstruction at step {step + 1}: --max-minutes {args.max_minutes} ran out")
            break
    taken["recon"] = step + 1
    final = evaluate(g, enc, held_w, held_x, held_renders, scale)
    log(start, f"final: {final}")

    enc.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_encoder(enc, args.out, {"generator": "toy-sprites", "generator_weights_id": g.weights_id})
    seconds = time.time() - start
    log(start, f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")

    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    record = {
        "component": "toy-encoder (inverter for toy-sprites: 32-px image -> one w on every W+ row)",
        "method": "latent regression on the generator's samples, then reconstruction through the frozen generator "
        "on its samples and on world renders",
        "command": "python " + " ".join(shlex.quote(str(a)) for a in [shown, *(sys.argv[1:] if argv is None else argv)]),
        "seed": args.seed,
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"},
        "steps_taken": taken,
        "generator_weights_id": g.weights_id,
        "parameters": sum(p.numel() for p in enc.parameters()),
        "architecture": enc.arch(),
        "metrics": {"after_regression": phase1, "final": final},
        "train_wall_seconds": {"data": round(data_seconds, 1), "total": round(seconds, 1)},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, a 2-core CPU shared with other jobs",
        "torch": torch.__version__,
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["metrics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
