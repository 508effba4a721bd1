"""Train the ``toy-sprites`` generator: our StyleGAN2 (small channel table, 32 px) on clean toy sprites.

Adversarial training needs tens of thousands of steps of two networks, too many for 2 CPU cores in an
hour. This trains the synthesis network as the decoder of an autoencoder instead, then fits the
mapping network to the encoder's w distribution:

1. Autoencoder. A small CNN encodes each sprite to one w on the sphere of radius sqrt(w_dim); the
   synthesis network decodes that w broadcast to every W+ row, as it decodes mapped samples. Linear
   read-outs of the world's factors from w (see ``factor_loss``) make w carry shape and pattern, which
   plain reconstruction learns too slowly. While training, w is shrunk towards 0 by a random factor in
   [``--shrink``, 1] (truncated samples, which the engine draws with psi = 0.7, decode cleanly) and
   jittered with Gaussian noise (nearby ws decode alike). Small batches: the decoder needs many steps
   more than large batches (it learns to draw shapes suddenly, after a few thousand).
2. Mapping. Every z names a sprite through a fixed coupling (``name``): the normal CDF of its first
   coordinates, as quantiles, picks each essence value and the identity factors, so z ~ N(0, I) names
   sprites with every factor uniform, exactly as ``world.sample_sprites`` draws them. The training
   sprites are drawn that way, and the mapping network is regressed onto the encoded w of the sprite
   its z names: mapping(z ~ N(0, I)) then follows the encoded w distribution, with sharp steps
   between essence values (a learned transport, such as sliced Wasserstein or a latent GAN fits, left
   most samples between the clusters: half of them mush). ``latent_avg`` (mean_w) is the mean of mapped z.

Writes the weights (our StyleGAN2 safetensors layout; synthesis in float16, mapping in float32) and a
JSON record beside them. ``benchmarks/generator_gate.py --record`` adds the quality gate's numbers.

    nice -n 10 python scripts/train_toy_sprites.py      # -> essence/plugins/toy/toy-sprites.safetensors
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
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from essence.plugins.generators.stylegan2.checkpoints import Checkpoint, read_checkpoint, save_checkpoint  # noqa: E402
from essence.plugins.generators.stylegan2.config import Architecture  # noqa: E402
from essence.plugins.generators.stylegan2.model import MEAN_W_SAMPLES, MEAN_W_SEED, StyleGAN2Generator  # noqa: E402
from essence.plugins.toy import world  # noqa: E402

DEFAULT_OUT = ROOT / "essence" / "plugins" / "toy" / "toy-sprites.safetensors"
#: z coordinates that name a sprite: one per essence factor, then one per identity factor.
NAMING = [*world.ESSENCE_FACTORS, *world.IDENTITY_FACTORS]


class Encoder(nn.Module):
    """Sprite (N, 3, 32, 32) in [-1, 1] -> w (N, w_dim) on the sphere of radius sqrt(w_dim).

    Features are centred and scaled per dimension (a non-affine batch norm), then projected onto the
    sphere: a sprite is a direction, so shrinking w towards 0 (truncation) can keep its meaning. The last
    feature map is flattened, not pooled, so position survives to w.
    """

    def __init__(self, w_dim: int, width: int = 32):
        super().__init__()

        def conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2)]

        w = width
        self.net = nn.Sequential(
            *conv(3, w, 1), *conv(w, 2 * w, 2), *conv(2 * w, 2 * w, 1), *conv(2 * w, 4 * w, 2),
            *conv(4 * w, 4 * w, 1), *conv(4 * w, 8 * w, 2), nn.Flatten(),
            nn.Linear(8 * w * 16, 512), nn.LeakyReLU(0.2), nn.Linear(512, w_dim),
        )
        self.norm = nn.BatchNorm1d(w_dim, affine=False, momentum=0.01)
        # Linear read-outs of the factors from w (training only): see ``factor_loss``.
        self.heads = nn.ModuleDict({f: nn.Linear(w_dim, len(v)) for f, v in world.ESSENCE_FACTORS.items()})
        self.heads["identity"] = nn.Linear(w_dim, len(world.IDENTITY_FACTORS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.norm(self.net(x)), dim=1) * math.sqrt(self.norm.num_features)


def name(z: torch.Tensor) -> list[world.Sprite]:
    """The sprite each z names: the normal CDF of the first coordinates of PixelNorm(z) (what the
    mapping network sees), as quantiles of each factor's values or range."""
    zn = z * math.sqrt(z.shape[1]) / z.norm(dim=1, keepdim=True)
    u = (0.5 * (1 + torch.erf(zn[:, : len(NAMING)] / math.sqrt(2)))).numpy()
    sprites = []
    for row in u:
        kw: dict = {}
        for i, factor in enumerate(NAMING):
            if factor in world.ESSENCE_FACTORS:
                values = world.ESSENCE_FACTORS[factor]
                kw[factor] = values[min(int(row[i] * len(values)), len(values) - 1)]
            else:
                lo, hi = world.IDENTITY_FACTORS[factor]
                kw[factor] = lo + (hi - lo) * float(row[i])
        sprites.append(world.Sprite(**kw))
    return sprites


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1], the generator's range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def named_set(n: int, seed: list[int], z_dim: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``n`` z ~ N(0, I), the clean images of the sprites they name, and those sprites' factors
    (class ids; identity scaled to [-1, 1])."""
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0])))
    sprites = name(z)
    truth = world.labels(sprites)
    factors = {f: torch.from_numpy(truth[f]) for f in world.ESSENCE_FACTORS}
    factors["identity"] = torch.from_numpy(
        np.stack([(truth[f] - lo) / (hi - lo) * 2 - 1 for f, (lo, hi) in world.IDENTITY_FACTORS.items()], 1)
    )
    return z, to_tensor(world.render(sprites)), factors


def broadcast(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    return w[:, None, :].expand(-1, num_ws, -1)


def factor_loss(enc: Encoder, w: torch.Tensor, factors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of every essence factor and squared error of x/y/size, read linearly from w.

    Without it the autoencoder settles on coloured blobs: shape and pattern move few pixels, so the
    encoder never starts to encode them and the decoder never learns to draw them. Knowing the world's
    factors, we ask w to carry them (linearly, which also helps directions in W+ mean something).
    """
    loss = sum(F.cross_entropy(enc.heads[f](w), factors[f]) for f in world.ESSENCE_FACTORS)
    return loss + 10 * F.mse_loss(enc.heads["identity"](w), factors["identity"])


def log(start: float, text: str) -> None:
    print(f"[{(time.time() - start) / 60:5.1f} min] {text}", flush=True)


def train_autoencoder(args, g: StyleGAN2Generator, enc: Encoder, data: torch.Tensor, factors: dict[str, torch.Tensor],
                      held: torch.Tensor, start: float) -> int:
    """Returns the number of steps taken (fewer than ``--steps`` only if ``--max-minutes`` ran out)."""
    params = [p for n, p in g.named_parameters() if not n.startswith("style.") and not n.endswith("noise.weight")]
    opt = torch.optim.Adam([*params, *enc.parameters()], lr=args.lr, betas=(0.9, 0.99))
    warm = max(1, args.steps // 50)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    gen = torch.Generator().manual_seed(args.seed)
    n = len(data)
    for step in range(args.steps):
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        x = data[idx]
        w = enc(x)
        shrink = torch.ones(args.batch, 1)
        some = torch.rand(args.batch, generator=gen) < 0.5
        shrink[some] = args.shrink + (1 - args.shrink) * torch.rand(int(some.sum()), 1, generator=gen)
        w_in = w * shrink + args.jitter * torch.randn(w.shape, generator=gen)
        out = g.synthesize(broadcast(w_in, g.num_ws))
        loss = F.mse_loss(out, x) + 0.5 * F.l1_loss(out, x)
        loss = loss + args.factor_weight * factor_loss(enc, w, {f: v[idx] for f, v in factors.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            log(start, f"autoencoder step {step:6d}/{args.steps} loss {loss.item():.5f} "
                f"held-out mse {reconstruction_mse(g, enc, held):.5f} (batch statistics)")
        if time.time() - start > args.max_minutes * 60:
            log(start, f"stopping the autoencoder at step {step + 1}: --max-minutes {args.max_minutes} ran out")
            return step + 1
    return args.steps


@torch.no_grad()
def reconstruction_mse(g: StyleGAN2Generator, enc: Encoder, x: torch.Tensor) -> float:
    return float(F.mse_loss(g.synthesize(broadcast(enc(x), g.num_ws)), x))


@torch.no_grad()
def settle_norm(enc: Encoder, data: torch.Tensor, chunk: int = 1000) -> None:
    """Replace the running statistics of w's standardisation by exact ones over the training set."""
    enc.train()
    enc.norm.reset_running_stats()
    enc.norm.momentum = None  # cumulative average
    for i in range(0, len(data), chunk):
        enc(data[i : i + chunk])
    enc.eval()


@torch.no_grad()
def encode_all(enc: Encoder, data: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    enc.eval()
    return torch.cat([enc(data[i : i + chunk]) for i in range(0, len(data), chunk)])


def fit_mapping(args, g: StyleGAN2Generator, z: torch.Tensor, codes: torch.Tensor, start: float) -> None:
    """Regress mapping(z) onto the encoded w of the sprite z names (L1: sharp steps between values)."""
    mapping = [p for n, p in g.named_parameters() if n.startswith("style.")]
    for p in mapping:
        p.requires_grad_(True)
    lr_mul = g.style[1].lr_mul  # stored weights are scaled by lr_mul at run time: undo it for Adam
    opt = torch.optim.Adam(mapping, lr=args.map_lr / lr_mul, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.map_steps)
    gen = torch.Generator().manual_seed(args.seed + 1)
    for step in range(args.map_steps):
        idx = torch.randint(0, len(z), (args.map_batch,), generator=gen)
        loss = (g.mapping(z[idx]) - codes[idx]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % args.log_every == 0 or step == args.map_steps - 1:
            log(start, f"mapping step {step:6d}/{args.map_steps} L1 {loss.item():.5f}")
    for p in mapping:
        p.requires_grad_(False)


@torch.no_grad()
def mapping_error(g: StyleGAN2Generator, z: torch.Tensor, codes: torch.Tensor) -> dict[str, float]:
    """On held-out z: mean L1 between mapping(z) and the encoded w of the sprite z names, and the share of
    z mapped within 10% of the codes' mean distance from their centre (the rest lie between values)."""
    err = (g.mapping(z) - codes).norm(dim=1)
    spread = (codes - codes.mean(0)).norm(dim=1).mean()
    return {"heldout_l1": float((g.mapping(z) - codes).abs().mean()),
            "heldout_within_10pct": float((err < 0.1 * spread).float().mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=int, default=60000, help="training sprites rendered up front")
    p.add_argument("--steps", type=int, default=34000, help="autoencoder steps")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--shrink", type=float, default=0.5, help="smallest factor w is shrunk by towards 0")
    p.add_argument("--jitter", type=float, default=0.05, help="std of the noise added to w's coordinates (|w| = sqrt(w_dim))")
    p.add_argument("--factor-weight", type=float, default=0.3, help="weight of the factor read-out loss on w")
    p.add_argument("--channels", default="4:128,8:128,16:64,32:32", help="channel table res:channels,...")
    p.add_argument("--style-dim", type=int, default=128)
    p.add_argument("--n-mlp", type=int, default=8)
    p.add_argument("--encoder-width", type=int, default=32)
    p.add_argument("--map-steps", type=int, default=20000)
    p.add_argument("--map-batch", type=int, default=512)
    p.add_argument("--map-lr", type=float, default=1e-2)
    p.add_argument("--max-minutes", type=float, default=50.0, help="stop the autoencoder early after this long")
    p.add_argument("--log-every", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.time()

    channels = {int(r): int(c) for r, c in (item.split(":") for item in args.channels.split(","))}
    arch = Architecture(size=world.RESOLUTION, style_dim=args.style_dim, n_mlp=args.n_mlp, channels=channels)
    g = StyleGAN2Generator(arch)
    g.requires_grad_(False)
    for name_, param in g.named_parameters():
        param.requires_grad_(not name_.startswith("style.") and not name_.endswith("noise.weight"))
    enc = Encoder(args.style_dim, args.encoder_width)
    log(start, f"{arch.describe()}, channels {channels}: {sum(p.numel() for p in g.parameters())} parameters")

    z, data, factors = named_set(args.data, [args.seed, 1], args.style_dim)
    held_z, held, _ = named_set(1000, [args.seed, 2], args.style_dim)
    log(start, f"rendered {len(data)} training sprites")

    steps = train_autoencoder(args, g, enc, data, factors, held[:500], start)
    settle_norm(enc, data)
    ae_seconds = time.time() - start
    codes, held_codes = encode_all(enc, data), encode_all(enc, held)
    mse = reconstruction_mse(g, enc, held)
    log(start, f"held-out reconstruction mse {mse:.5f}")

    fit_mapping(args, g, z, codes, start)

    # Synthesis in float16 (half the file); the mapping stays float32: its steps between essence
    # values need large stored weights (lr_mul 0.01 scales them down at run time).
    state = {k: (v if k.startswith("style.") else v.half()) for k, v in g.state_dict().items()}
    g.load_state_dict({k: v.float() for k, v in state.items()})
    mean_z = torch.randn(MEAN_W_SAMPLES, g.z_dim, generator=torch.Generator().manual_seed(MEAN_W_SEED))
    with torch.no_grad():
        mean_w = g.mapping(mean_z).mean(0)
    mapped = mapping_error(g, held_z, held_codes)
    ckpt = Checkpoint(state, arch, mean_w, "essence-toy-sprites")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ckpt, args.out)
    read_checkpoint(args.out)  # the file is complete and loadable
    seconds = time.time() - start
    log(start, f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")

    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    record = {
        "component": "toy-sprites generator (StyleGAN2 config-f, 32 px)",
        "method": "autoencoder (synthesis network decodes one encoded w per sprite, broadcast to W+), then the "
        "mapping network regressed onto the encoded w of the sprite each z names (quantile coupling)",
        "command": "python " + " ".join(shlex.quote(str(a)) for a in [shown, *(sys.argv[1:] if argv is None else argv)]),
        "seed": args.seed,
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"},
        "autoencoder_steps_taken": steps,
        "architecture": {"size": arch.size, "style_dim": arch.style_dim, "n_mlp": arch.n_mlp,
                         "channels": {str(r): c for r, c in channels.items()}, "num_ws": arch.num_ws},
        "train_wall_seconds": {"autoencoder": round(ae_seconds, 1), "total": round(seconds, 1)},
        "metrics": {"heldout_reconstruction_mse": round(mse, 6), **{f"mapping_{k}": round(v, 4) for k, v in mapped.items()}},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, a 2-core CPU shared with other jobs",
        "torch": torch.__version__,
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["metrics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
