"""Measurements of toy-clip against the world's ground truth (used by training, benchmarks and tests).

* zero-shot accuracy per essence factor: each value's text embedding is the mean of the embeddings of
  :func:`world.prompts` naming only that value (CLIP's prompt ensembling); an image gets the closest value.
* identity cosine: the cosine between the embeddings of two clean images that differ only in identity
  factors (position and size); for scale, the same for two images that differ in one essence factor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from essence.plugins.toy import world

if TYPE_CHECKING:
    from essence.plugins.toy.toyclip import ToyClip


def value_embeddings(toy: ToyClip, factor: str):
    """One unit vector per value of ``factor``: the normalised mean of its prompts' embeddings."""
    import torch

    rows = [toy.encode_texts(world.prompts(factor, value)).mean(0) for value in world.ESSENCE_FACTORS[factor]]
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def zero_shot(toy: ToyClip, sprites: Sequence[world.Sprite], style: str = "clean") -> dict[str, float]:
    """Accuracy per essence factor of zero-shot classification from single-factor prompts."""
    emb = toy.encode_images(world.render(sprites, style))
    truth = world.labels(sprites)
    out = {}
    for factor in world.ESSENCE_FACTORS:
        predicted = (emb @ value_embeddings(toy, factor).T).argmax(1).cpu().numpy()
        out[factor] = float((predicted == truth[factor]).mean())
    return out


def zero_shot_joint(toy: ToyClip, sprites: Sequence[world.Sprite], style: str = "clean") -> dict[str, float]:
    """Accuracy per factor when each image picks the closest of all full captions (one per essence)."""
    import itertools

    combos = list(itertools.product(*world.ESSENCE_FACTORS.values()))
    captions = [
        f"a {colour} {pattern} {shape} on a {background} background"
        for shape, colour, pattern, background in combos
    ]
    text = toy.encode_texts(captions)
    emb = toy.encode_images(world.render(sprites, style))
    best = (emb @ text.T).argmax(1).cpu().numpy()
    truth = world.labels(sprites)
    return {
        factor: float(np.mean([values.index(combos[b][k]) == t for b, t in zip(best, truth[factor])]))
        for k, (factor, values) in enumerate(world.ESSENCE_FACTORS.items())
    }


def pair_cosines(toy: ToyClip, n: int, seed: int | Sequence[int] = 0, style: str = "clean") -> dict[str, np.ndarray]:
    """Cosines between embeddings of image pairs: ``identity`` (only position/size differ) and
    ``essence`` (only one essence factor differs, identity equal)."""
    rng = np.random.default_rng(seed)
    base = world.sample_sprites(n, rng)
    moved = world.sample_sprites(n, rng)
    identity_pairs = [a.replace(**b.identity) for a, b in zip(base, moved)]
    factors = list(world.ESSENCE_FACTORS)
    essence_pairs = []
    for sprite in base:
        factor = factors[int(rng.integers(len(factors)))]
        others = [v for v in world.ESSENCE_FACTORS[factor] if v != getattr(sprite, factor)]
        essence_pairs.append(sprite.replace(**{factor: others[int(rng.integers(len(others)))]}))
    a = toy.encode_images(world.render(base, style))
    out = {}
    for name, pairs in (("identity", identity_pairs), ("essence", essence_pairs)):
        b = toy.encode_images(world.render(pairs, style))
        out[name] = (a * b).sum(1).cpu().numpy()
    return out
