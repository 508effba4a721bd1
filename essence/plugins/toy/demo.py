"""``essence demo``: the whole method on the shipped toy models, in about a minute on a laptop CPU.

Two bundled targets, rendered by the procedural world: an in-domain sprite (run with ``essence run``'s
default, ``essence-in``: 32 sources, b starting at the inverted target, 100 steps) and an out-of-domain
sketch (``paper-ood``: 6 sources, a random start, 300 steps). Each run optimises one direction, applies it
to 8 held-out sources it never saw and writes a normal run folder. The report reads the
held-out results with toy-clip's zero-shot classifier, so you can see which of the target's essence
factors (shape, colour, pattern, background) the direction carried; position and size come from each
source. (toy-clip is also the encoder being optimised, so this is a demonstration, not an unbiased
judge: ``benchmarks/quality.py`` measures with independent classifiers.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import essence
from essence.plugins.toy import world

TARGET_DIR = Path(__file__).with_name("targets")


@dataclass(frozen=True)
class DemoTarget:
    name: str
    sprite: world.Sprite
    style: str
    preset: str
    steps: int

    @property
    def path(self) -> Path:
        return TARGET_DIR / f"{self.name}.png"


TARGETS: dict[str, DemoTarget] = {
    t.name: t
    for t in (
        DemoTarget(
            "in-domain",
            world.Sprite(shape="triangle", colour="blue", pattern="striped", background="purple", x=0.5, y=0.5, size=0.5),
            "clean",
            "essence-in",
            100,
        ),
        DemoTarget(
            "out-of-domain",
            world.Sprite(shape="cross", colour="yellow", pattern="checked", background="grey", x=0.5, y=0.5, size=0.5, noise=7),
            "sketch",
            "paper-ood",
            300,
        ),
    )
}

HELDOUT = 8
MARKER = "demo.json"


@dataclass
class DemoResult:
    target: DemoTarget
    outcome: Any
    #: factor -> share of held-out results whose zero-shot value equals the target's
    adopted: dict[str, float] = field(default_factory=dict)
    #: factor -> the same share for the held-out sources before the edit (chance level, about 1/k)
    before: dict[str, float] = field(default_factory=dict)


def write_targets(folder: Path = TARGET_DIR) -> list[Path]:
    """Render the bundled target images (how the shipped PNGs were made)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in TARGETS.values():
        Image.fromarray(world.render(t.sprite, t.style)).save(folder / f"{t.name}.png")
        paths.append(folder / f"{t.name}.png")
    return paths


def check_out_folder(out: Path, overwrite: bool = False) -> None:
    """The demo replaces its own earlier output when asked (--overwrite, as `essence run`), never anything else."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise essence.EssenceError(
            f"{out} exists and was not written by `essence demo`; choose another folder with --out."
        )
    if (out / MARKER).exists() and not overwrite:
        raise essence.EssenceError(
            f"{out} already holds an `essence demo`. Choose another --out, or pass --overwrite to replace it."
        )


def zero_shot_agreement(images: Sequence[Any], target: world.Sprite) -> dict[str, float]:
    """Share of ``images`` (uint8 HxWx3) that toy-clip reads as having each of ``target``'s essence values."""
    import numpy as np

    from essence.plugins.toy.evaluate import value_embeddings
    from essence.plugins.toy.toyclip import load_toy_clip

    toy = load_toy_clip(device="cpu")
    emb = toy.encode_images(np.stack(images))
    out = {}
    for factor, values in world.ESSENCE_FACTORS.items():
        predicted = (emb @ value_embeddings(toy, factor).T).argmax(1).cpu().numpy()
        out[factor] = float((predicted == values.index(getattr(target, factor))).mean())
    return out


def run_demo(
    out: str | Path = "essence-demo",
    *,
    targets: Sequence[str] = tuple(TARGETS),
    steps: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    callback: Callable[[Any], None] | None = None,
    on_start: Callable[[Any, int], None] | None = None,
    overwrite: bool = False,
) -> list[DemoResult]:
    """Run the method on the bundled targets with the shipped models; one run folder per target (``steps``:
    each target's own unless given)."""
    import numpy as np
    from PIL import Image

    out = Path(out)
    check_out_folder(out, overwrite)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise essence.EssenceError(f"Unknown demo target {unknown[0]!r}; use {' or '.join(TARGETS)}.")
    essence.ensure_writable_dir(out)
    from essence.core.files import write_text

    write_text(out / MARKER, json.dumps({"targets": list(targets), "steps": steps, "seed": seed}, indent=2))
    results = []
    for name in targets:
        t = TARGETS[name]
        config = essence.build_run_config(
            {
                "preset": t.preset,
                "generator": {"name": "toy-sprites"},
                "encoder": {"name": "toy-clip"},
                "target": [str(t.path)],
                "steps": steps or t.steps,
                "seed": seed,
                "heldout": {"count": HELDOUT},
                "device": device,
            }
        )
        outcome = essence.execute_run(config, out=out / name, overwrite=True, callback=callback, on_start=on_start)
        images = outcome.out / "images"
        load = lambda kind: [np.asarray(Image.open(p).convert("RGB")) for p in sorted(images.glob(f"heldout_{kind}_*.png"))]  # noqa: E731
        results.append(
            DemoResult(t, outcome, zero_shot_agreement(load("result"), t.sprite), zero_shot_agreement(load("source"), t.sprite))
        )
    return results
