"""Quality of essence transfer against ground truth, in the toy world, over several seeds.

For each target (a world sprite, clean for in-domain targets, sketched for out-of-domain ones) and each
seed, every method edits the same held-out sources (toy-sprites samples no direction saw):

* ours, one row per preset: ``paper`` (clean targets) and ``paper-ood`` (sketches), the paper's settings;
  ``essence-in`` (clean) and ``essence-ood`` (sketches), the project's own (``presets.json``); each
  optimised on its preset's training sources, then G(w + alpha b) on the held-out sources for every
  alpha of ``--alphas`` (the curve); a preset that starts at the target gets the target inverted by the
  generator's inverter (toy-encoder), as ``essence run --init target`` does;
* StyleGAN blend: ``w + weight (w_t - w)`` for every weight of ``--blend-weights`` (the curve; 0.5 is the
  paper's average), the target inverted by toy-encoder as ``essence blend`` does;
* CLIP blend (weight 0.5) and Gatys (``toy-clip-features`` for VGG19; style weight 1e4): one point each.

A seed changes the training sources, the init and the held-out sources (the targets stay, so results pair
over targets x seeds). The factor classifiers of ``world_judges.py`` (trained on the procedural images,
independent of the models under test) read every result: **essence adopted** is the share of the target's
essence factor values the result shows; **identity error** is how far the result's position and size
moved from its source's, in pixels.

    python benchmarks/quality.py --targets 8 --ood-targets 4 --heldout 4 --seeds 3 --out results/q.json
    python benchmarks/quality.py --seed-list 1 --out part1.json ...   # one seed per process, then:
    python benchmarks/quality.py --merge part0.json part1.json part2.json --out q.json --plot curves.png

The summary gives, per domain and method, means over targets x seeds with standard errors, and the paired
difference (mean and SE of the per-(target, seed) differences) against the reference preset: the default
of ``essence run`` for clean targets, ``essence-ood`` for sketches (``--reference``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

#: method -> the domains it runs on. Ours: a preset name; the rest: baselines.
PRESETS = {"paper": ("clean",), "paper-ood": ("sketch",), "essence-in": ("clean",), "essence-ood": ("sketch",)}
BASELINES = {"stylegan-blend": ("clean", "sketch"), "clip-blend": ("clean", "sketch"), "gatys": ("clean", "sketch")}
METHODS = ("sources", *PRESETS, *BASELINES)
ALPHAS = (0.5, 0.75, 1.0, 1.2, 1.5, 2.0)
BLEND_WEIGHTS = (0.25, 0.5, 0.75, 1.0)
#: The point of a curve each method's table row shows: alpha 1 for ours, weight 0.5 for the blends.
MAIN = {"stylegan-blend": 0.5, "clip-blend": 0.5, "gatys": 1.0, "sources": 0.0}
METRICS = ("essence", "identity_px", "x_px", "y_px", "size_px", "confident", "seconds")


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


def default_preset() -> str:
    from essence.method.runconfig import RunConfig

    return RunConfig.model_fields["preset"].default


def run_cases(args, methods: set[str]) -> list[dict]:
    import torch

    torch.set_num_threads(args.threads)
    import world_judges as wj
    from PIL import Image

    import essence
    from essence.core.images import to_uint8
    from essence.method.photos import InversionSettings, invert_photos
    from essence.method.runconfig import validate_run_config
    from essence.plugins.toy import world
    from essence.workflows.blend import clip_blend, gatys_transfer, image_tensor, mean_target, stylegan_blend

    generator = essence.get_generator("toy-sprites", device="cpu")
    encoder = essence.get_encoder("toy-clip", device="cpu")
    features = essence.get_features("toy-clip-features", device="cpu") if "gatys" in methods else None
    judges = wj.load()

    rng = np.random.default_rng(args.seed)  # the targets: the same for every seed
    clean = [(s, "clean") for s in world.sample_sprites(args.targets, rng)]
    sketch = [(s, "sketch") for s in world.sample_sprites(args.ood_targets, rng)]
    # interleaved (the targets themselves as before), so that a run cut short still holds both domains
    order = sorted(range(len(clean) + len(sketch)), key=lambda i: (i / len(clean) if i < len(clean) else (i - len(clean) + 0.5) / max(len(sketch), 1)))
    numbered = list(enumerate(clean + sketch))
    cases = [numbered[i] for i in order]
    tmp = Path(tempfile.mkdtemp(prefix="essence-quality-"))
    rows: list[dict] = []
    seeds = args.seed_list if args.seed_list is not None else list(range(args.seeds))
    for s in seeds:
        heldout = generator.sample_ws(args.heldout, seed=args.seed + 1 + 1000 * s, truncation=0.7)
        with torch.no_grad():
            source_images = to_uint8(generator.synthesize(heldout))
        j_sources = judged(judges, source_images)

        for done_cases, (k, (target, style)) in enumerate(cases):
            path = tmp / f"target_{k:02d}.png"
            Image.fromarray(world.render(target, style)).save(path)
            base = {"seed": s, "target": k, "style": style, **target.essence}

            def add(method: str, x: float, images, seconds: float) -> None:
                row = {**base, "method": method, "x": x, "main": x == MAIN.get(method, 1.0)}
                row.update(score(judged(judges, images), j_sources, target))
                row["seconds"] = seconds
                rows.append(row)

            add("sources", 0.0, source_images, 0.0)
            t0 = time.perf_counter()
            inversion = InversionSettings(inverter={"name": None})
            target_ws = invert_photos([(str(path), Image.open(path).convert("RGB"))], generator, "toy-sprites", inversion).ws
            invert_seconds = time.perf_counter() - t0

            for preset, domains in PRESETS.items():
                if preset not in methods or style not in domains:
                    continue
                overrides = {"preset": preset, "seed": args.seed + 10 + k + 1000 * s, "heldout": {"count": 0}}
                if preset.startswith("paper") and args.paper_steps:
                    overrides["steps"] = args.paper_steps
                if args.steps:
                    overrides["steps"] = args.steps
                cfg = validate_run_config(overrides)
                init = target_ws[0] if cfg.init.mode == "target" else None
                t0 = time.perf_counter()
                run = essence.optimize_direction(generator, encoder, path, None, init=init, config=overrides)
                seconds = time.perf_counter() - t0 + (invert_seconds if init is not None else 0.0)
                for alpha in args.alphas:
                    with torch.no_grad():
                        images = to_uint8(generator.synthesize(heldout + alpha * run.direction[None].to(heldout)))
                    add(preset, alpha, images, seconds)

            if "stylegan-blend" in methods:
                for weight in args.blend_weights:
                    with torch.no_grad():
                        images = to_uint8(generator.synthesize(stylegan_blend(heldout, target_ws, weight)))
                    add("stylegan-blend", weight, images, invert_seconds)
            if "clip-blend" in methods:
                t0 = time.perf_counter()
                with torch.no_grad():
                    target_embedding = mean_target(encoder.embed_file(path))
                blended, _ = clip_blend(generator, encoder, target_embedding, heldout, steps=args.blend_steps)
                with torch.no_grad():
                    images = to_uint8(generator.synthesize(blended))
                add("clip-blend", 0.5, images, time.perf_counter() - t0)
            if "gatys" in methods:
                t0 = time.perf_counter()
                with torch.no_grad():
                    src = generator.synthesize(heldout)
                out, _ = gatys_transfer(features, src, image_tensor([Image.open(path)], src.shape[-1]), steps=args.blend_steps)
                add("gatys", 1.0, to_uint8(out), time.perf_counter() - t0)

            mine = [r for r in rows if r["seed"] == s and r["target"] == k and r["main"] and r["method"] != "sources"]
            done = ", ".join(f"{r['method']} {r['essence']:.2f}/{r['identity_px']:.2f}px" for r in mine)
            print(f"seed {s} target {done_cases + 1}/{len(cases)} (#{k}, {style}): {done}", flush=True)
            if args.out is not None:  # the rows so far: a run cut short keeps what it did
                args.out.write_text(json.dumps({"args": [{k: str(v) for k, v in vars(args).items()}], "rows": rows, "partial": True}, indent=1))
    return rows


def mean_se(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def summarise(rows: list[dict], reference: dict[str, str], alphas: dict[str, float]) -> dict:
    """Means with SEs per (domain, method, x), and paired differences against each domain's reference at its
    main point (alpha 1, blend weight 0.5). ``alphas``: method -> its preset's apply_alpha; a preset whose
    apply_alpha is not 1 gets a second row, ``method@alpha``, at that strength."""
    def key(r):
        return (r["seed"], r["target"])

    summary: dict = {}
    for style in ("clean", "sketch"):
        sel = [r for r in rows if r["style"] == style]
        if not sel:
            continue
        ref = reference[style]

        def main_rows(method: str, x: float | None = None) -> dict:
            x = MAIN.get(method, 1.0) if x is None else x
            return {key(r): r for r in sel if r["method"] == method and math.isclose(r["x"], x)}

        ref_rows = main_rows(ref)
        names = []
        for method in dict.fromkeys(r["method"] for r in sel):
            names.append((method, method, None))
            if method in alphas and not math.isclose(alphas[method], 1.0):
                names.append((f"{method}@{alphas[method]:g}", method, alphas[method]))
        for label, method, at in names:
            points = sorted({r["x"] for r in sel if r["method"] == method})
            curve = []
            for x in points:
                pts = [r for r in sel if r["method"] == method and math.isclose(r["x"], x)]
                entry = {"x": x, "n": len(pts)}
                for m in ("essence", "identity_px"):
                    entry[m], entry[m + "_se"] = mean_se([r[m] for r in pts])
                curve.append(entry)
            mine = main_rows(method, at)
            if not mine:
                continue
            x = next(iter(mine.values()))["x"]
            entry = {"x": x, "n": len(mine)}
            for m in METRICS:
                entry[m], entry[m + "_se"] = mean_se([r[m] for r in mine.values()])
            common = sorted(set(mine) & set(ref_rows))
            if common and label != ref:
                for m in ("essence", "identity_px", "seconds"):
                    d, se = mean_se([mine[c][m] - ref_rows[c][m] for c in common])
                    entry[f"{m}_minus_{ref}"], entry[f"{m}_minus_{ref}_se"] = d, se
                entry["paired_n"] = len(common)
                entry["essence_wins"] = int(sum(mine[c]["essence"] > ref_rows[c]["essence"] for c in common))
            summary[f"{style}/{label}"] = {**entry, "curve": curve if at is None else []}
    return summary


def print_table(summary: dict, reference: dict[str, str]) -> None:
    print(f"{'targets':<8}{'method':<16}{'x':>5}{'n':>4}{'essence':>15}{'identity px':>15}"
          f"{'d essence (paired)':>22}{'d px (paired)':>18}{'s/target':>10}")
    for name, e in summary.items():
        style, method = name.split("/")
        ref = reference[style]
        d = e.get(f"essence_minus_{ref}")
        dpx = e.get(f"identity_px_minus_{ref}")
        dd = "reference" if method == ref else ("" if d is None else f"{d:+.3f} ± {e[f'essence_minus_{ref}_se']:.3f}")
        dp = "" if dpx is None else f"{dpx:+.2f} ± {e[f'identity_px_minus_{ref}_se']:.2f}"
        print(f"{style:<8}{method:<16}{e['x']:>5.2f}{e['n']:>4}{e['essence']:>9.3f} ± {e['essence_se']:.3f}"
              f"{e['identity_px']:>9.2f} ± {e['identity_px_se']:.2f}{dd:>22}{dp:>18}{e['seconds']:>10.1f}")


def markdown_table(summary: dict, reference: dict[str, str]) -> str:
    """The summary as a Markdown table (docs/method.md)."""
    lines = [
        "| targets | method | x | n | essence | identity px | essence − reference (paired) | px − reference (paired) | wins | s/direction |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in summary.items():
        style, method = name.split("/")
        ref = reference[style]
        d = e.get(f"essence_minus_{ref}")
        dd = "reference" if method == ref else ("" if d is None else f"{d:+.3f} ± {e[f'essence_minus_{ref}_se']:.3f}")
        dpx = e.get(f"identity_px_minus_{ref}")
        dp = "" if dpx is None else f"{dpx:+.2f} ± {e[f'identity_px_minus_{ref}_se']:.2f}"
        wins = f"{e['essence_wins']}/{e['paired_n']}" if "essence_wins" in e else ""
        lines.append(
            f"| {style} | {method} | {e['x']:g} | {e['n']} | {e['essence']:.3f} ± {e['essence_se']:.3f} | "
            f"{e['identity_px']:.2f} ± {e['identity_px_se']:.2f} | {dd} | {dp} | {wins} | {e['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    """One PNG: essence adopted vs identity error, a curve per method, one panel per domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = [s for s in ("clean", "sketch") if any(k.startswith(s + "/") for k in summary)]
    fig, axes = plt.subplots(1, len(styles), figsize=(6 * len(styles), 4.6), squeeze=False)
    for ax, style in zip(axes[0], styles):
        for name, e in summary.items():
            if not name.startswith(style + "/"):
                continue
            method = name.split("/")[1]
            c = e["curve"]
            if not c:
                continue
            xs, ys = [p["identity_px"] for p in c], [p["essence"] for p in c]
            line = ax.errorbar(xs, ys, yerr=[p["essence_se"] for p in c], xerr=[p["identity_px_se"] for p in c],
                               marker="o", ms=4, capsize=2, label=method, lw=1.2)
            for p in c:
                if len(c) > 1:
                    ax.annotate(f"{p['x']:g}", (p["identity_px"], p["essence"]), textcoords="offset points",
                                xytext=(3, 3), fontsize=7, color=line[0].get_color())
        ax.set_title(f"{style} targets (labels: alpha for ours, weight for the StyleGAN blend)", fontsize=9)
        ax.set_xlabel("identity error (px, lower is better)")
        ax.set_ylabel("essence adopted (higher is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=int, default=8, help="in-domain (clean) targets")
    p.add_argument("--ood-targets", type=int, default=4, help="out-of-domain (sketch) targets")
    p.add_argument("--heldout", type=int, default=4, help="held-out sources per target and seed")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 (training sources, init, held-out sources)")
    p.add_argument("--seed-list", type=lambda v: [int(x) for x in v.split(",")], default=None, help="run only these seeds")
    p.add_argument("--paper-steps", type=int, default=None, help="steps of the paper presets (default: theirs, 1000)")
    p.add_argument("--steps", type=int, default=None, help="steps of every preset (a quick check; default: each preset's)")
    p.add_argument("--blend-steps", type=int, default=100, help="steps of the CLIP blend and of Gatys")
    p.add_argument("--alphas", type=lambda v: [float(x) for x in v.split(",")], default=list(ALPHAS))
    p.add_argument("--blend-weights", type=lambda v: [float(x) for x in v.split(",")], default=list(BLEND_WEIGHTS))
    p.add_argument("--methods", default=",".join(METHODS[1:]), help="comma-separated methods (the sources always are)")
    p.add_argument("--reference", default=None, help="clean-target reference (default: essence run's default preset)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--merge", nargs="+", type=Path, default=None, help="summarise these result files instead of running")
    p.add_argument("--plot", type=Path, default=None, help="write the curves here (PNG)")
    p.add_argument("--table", type=Path, default=None, help="write the table here (Markdown)")
    p.add_argument("--out", type=Path, default=Path("quality.json"))
    args = p.parse_args(argv)
    methods = {"sources", *(m.strip() for m in args.methods.split(","))}
    unknown = methods - set(METHODS)
    if unknown:
        p.error(f"unknown method(s) {', '.join(sorted(unknown))}; choose from {', '.join(METHODS[1:])}")

    if args.merge:
        parts = [json.loads(f.read_text()) for f in args.merge]
        rows = [r for part in parts for r in part["rows"]]
        run_args = [part["args"] for part in parts]
    else:
        rows = run_cases(args, methods)
        run_args = [{k: str(v) for k, v in vars(args).items()}]
        args.out.write_text(json.dumps({"args": run_args, "rows": rows}, indent=1))  # the raw rows first

    from essence.method.runconfig import validate_run_config

    reference = {"clean": args.reference or default_preset(), "sketch": "essence-ood"}
    present = {r["method"] for r in rows}
    if reference["clean"] not in present:
        reference["clean"] = "paper"
    if reference["sketch"] not in present:
        reference["sketch"] = "paper-ood"
    alphas = {m: validate_run_config(m).apply_alpha or 1.0 for m in PRESETS if m in present}
    alphas = {m: a for m, a in alphas.items() if any(r["method"] == m and math.isclose(r["x"], a) for r in rows)}
    summary = summarise(rows, reference, alphas)
    print()
    print_table(summary, reference)
    args.out.write_text(json.dumps({"args": run_args, "reference": reference, "summary": summary, "rows": rows}, indent=1))
    if args.plot:
        plot(summary, args.plot)
    if args.table:
        args.table.write_text(markdown_table(summary, reference))
    print(f"\n'essence': share of the target's essence values adopted (judged); 'identity px': mean |moved| of x, y,"
          f" size vs the source, in pixels; ± one standard error over targets x seeds; 'paired': the mean and SE of"
          f" the per-(target, seed) difference against the reference ({reference['clean']} for clean targets,"
          f" {reference['sketch']} for sketches). Written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
