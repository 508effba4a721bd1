"""A procedural sprite world whose generative factors are known, for demos and benchmarks with ground truth.

Each image shows one sprite. Its **essence factors** (shape, colour, pattern, background) are what
captions describe and what essence transfer should move; its **identity factors** (position and size)
are never described and should be kept. Two rendering styles: ``clean`` (the in-domain images) and
``sketch`` (a noisy, hand-drawn-looking outline version of the same sprite, the out-of-domain targets,
as the paper's drawings and paintings are for faces).

Rendering is a pure function of a :class:`Sprite` (the ``noise`` field seeds the sketch's jitter),
supersampled 4x and box-filtered, so edges are anti-aliased and learnable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

#: Essence factors and their values, in label order (the index is the class id).
ESSENCE_FACTORS: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle", "cross"),
    "colour": ("red", "yellow", "green", "blue"),
    "pattern": ("plain", "striped", "checked"),
    "background": ("black", "grey", "purple"),
}
#: Identity factors and their ranges, as fractions of the image side: the sprite's centre (x to the
#: right, y down) and its size (the extent of its defining outline).
IDENTITY_FACTORS: dict[str, tuple[float, float]] = {
    "x": (0.34, 0.66),
    "y": (0.34, 0.66),
    "size": (0.36, 0.56),
}
STYLES = ("clean", "sketch")
RESOLUTION = 32
SUPERSAMPLE = 4

FILL_RGB = {
    "red": (0.86, 0.12, 0.10),
    "yellow": (0.96, 0.84, 0.10),
    "green": (0.10, 0.68, 0.18),
    "blue": (0.14, 0.30, 0.92),
}
BACKGROUND_RGB = {
    "black": (0.06, 0.06, 0.07),
    "grey": (0.50, 0.50, 0.50),
    "purple": (0.42, 0.16, 0.52),
}
#: Pattern cells are the fill colour mixed this far towards white (visible on every background).
PALE = 0.58
PAPER_RGB = (0.92, 0.89, 0.80)


@dataclasses.dataclass(frozen=True)
class Sprite:
    """One point of the world: essence factors, identity factors, and a seed for the sketch's jitter."""

    shape: str = "circle"
    colour: str = "red"
    pattern: str = "plain"
    background: str = "black"
    x: float = 0.5
    y: float = 0.5
    size: float = 0.46
    noise: int = 0

    def __post_init__(self) -> None:
        for factor, values in ESSENCE_FACTORS.items():
            if getattr(self, factor) not in values:
                raise ValueError(f"{factor} must be one of {', '.join(values)}, not {getattr(self, factor)!r}")
        for factor, (lo, hi) in IDENTITY_FACTORS.items():
            if not lo - 1e-9 <= getattr(self, factor) <= hi + 1e-9:
                raise ValueError(f"{factor} must lie in [{lo}, {hi}], not {getattr(self, factor)!r}")

    @property
    def essence(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in ESSENCE_FACTORS}

    @property
    def identity(self) -> dict[str, float]:
        return {f: getattr(self, f) for f in IDENTITY_FACTORS}

    def replace(self, **changes: Any) -> Sprite:
        return dataclasses.replace(self, **changes)

    def with_essence_of(self, other: Sprite) -> Sprite:
        """This sprite's identity with ``other``'s essence: the ground truth of a perfect transfer."""
        return self.replace(**other.essence)


def _rng(seed: int | Sequence[int] | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def sample_sprites(n: int, seed: int | Sequence[int] | np.random.Generator = 0) -> list[Sprite]:
    """``n`` sprites with every factor drawn uniformly; the same seed gives the same sprites."""
    rng = _rng(seed)
    essence = {f: rng.integers(0, len(v), size=n) for f, v in ESSENCE_FACTORS.items()}
    identity = {f: rng.uniform(lo, hi, size=n) for f, (lo, hi) in IDENTITY_FACTORS.items()}
    noise = rng.integers(0, 2**31 - 1, size=n)
    return [
        Sprite(
            **{f: ESSENCE_FACTORS[f][int(essence[f][i])] for f in ESSENCE_FACTORS},
            **{f: float(identity[f][i]) for f in IDENTITY_FACTORS},
            noise=int(noise[i]),
        )
        for i in range(n)
    ]


def every_value(seed: int = 0) -> list[Sprite]:
    """One sprite per value of every essence factor (other factors random): a coverage set for tests."""
    rng = _rng(seed)
    out = []
    for factor, values in ESSENCE_FACTORS.items():
        for value, base in zip(values, sample_sprites(len(values), rng)):
            out.append(base.replace(**{factor: value}))
    return out


def labels(sprites: Sequence[Sprite]) -> dict[str, np.ndarray]:
    """Class ids (int64) of every essence factor and values (float32) of every identity factor."""
    out: dict[str, np.ndarray] = {
        f: np.array([values.index(getattr(s, f)) for s in sprites], dtype=np.int64)
        for f, values in ESSENCE_FACTORS.items()
    }
    for f in IDENTITY_FACTORS:
        out[f] = np.array([getattr(s, f) for s in sprites], dtype=np.float32)
    return out


# -- rendering --------------------------------------------------------------------------------------


def _gauge(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A 1-homogeneous function that is <= 1 inside the shape (unit half-size, v pointing down)."""
    if shape == "circle":
        return np.sqrt(u * u + v * v)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) / 0.88
    if shape == "triangle":  # equilateral, pointing up, circumradius 1.12, centred on its centroid
        inradius = 0.56
        s, c = math.sin(math.pi / 3), 0.5
        return np.maximum(np.maximum(v, -c * v - s * u), -c * v + s * u) / inradius
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        width = 0.36
        return np.minimum(np.maximum(au, av / width), np.maximum(au / width, av))
    raise ValueError(shape)


def _pattern_cells(pattern: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the pattern's second colour goes, in the sprite's own coordinates (it scales with it)."""
    if pattern == "plain":
        return np.zeros(u.shape, dtype=bool)
    if pattern == "striped":
        return np.floor((v + 1.0) * 2.5).astype(np.int64) % 2 == 1
    if pattern == "checked":
        return (np.floor((u + 1.0) * 2.0).astype(np.int64) + np.floor((v + 1.0) * 2.0).astype(np.int64)) % 2 == 1
    raise ValueError(pattern)


def _render_one(sprite: Sprite, style: str, resolution: int) -> np.ndarray:
    n = resolution * SUPERSAMPLE
    coords = (np.arange(n, dtype=np.float32) + 0.5) / n
    half = sprite.size / 2
    u = (coords[None, :] - sprite.x) / half
    v = (coords[:, None] - sprite.y) / half
    u, v = np.broadcast_to(u, (n, n)), np.broadcast_to(v, (n, n))
    fill = np.array(FILL_RGB[sprite.colour], dtype=np.float32)
    pale = fill + (1 - fill) * PALE
    bg = np.array(BACKGROUND_RGB[sprite.background], dtype=np.float32)
    cells = _pattern_cells(sprite.pattern, u, v)
    gauge = _gauge(sprite.shape, u, v)

    if style == "clean":
        inside = (gauge <= 1)[..., None]
        image = np.where(inside, np.where(cells[..., None], pale, fill), bg)
    elif style == "sketch":
        rng = np.random.default_rng([sprite.noise, 1])
        amp, freq, phase = rng.uniform(0.04, 0.09), int(rng.integers(3, 6)), rng.uniform(0, 2 * math.pi)
        gauge = gauge / (1 + amp * np.sin(freq * np.arctan2(v, u) + phase))
        line = 1.6 / (half * resolution)  # outline thickness: 1.6 output pixels, in gauge units
        paper_bg = 0.85 * bg + 0.15 * np.array(PAPER_RGB, dtype=np.float32)
        inner = (gauge <= 1 - line)[..., None]
        outline = ((gauge <= 1) & (gauge > 1 - line))[..., None]
        if sprite.pattern == "plain":
            body = np.broadcast_to(0.7 * paper_bg + 0.3 * fill, (n, n, 3))
        else:  # a hollow sprite, its pattern hatched in ink of the fill colour
            body = np.where(cells[..., None], 0.2 * paper_bg + 0.8 * fill, paper_bg)
        image = np.where(outline, fill, np.where(inner, body, paper_bg))
    else:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, not {style!r}")

    image = image.reshape(resolution, SUPERSAMPLE, resolution, SUPERSAMPLE, 3).mean(axis=(1, 3))
    if style == "sketch":
        rng = np.random.default_rng([sprite.noise, 2])
        coarse = rng.normal(0, 0.06, size=(5, 5))  # paper mottling: smooth low-frequency noise
        at = np.linspace(0, 4, resolution)
        rows = np.stack([np.interp(at, np.arange(5), row) for row in coarse])
        mottle = np.stack([np.interp(at, np.arange(5), col) for col in rows.T], axis=1)
        image = image + mottle[..., None] + rng.normal(0, 0.045, size=image.shape)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def render(
    sprites: Sprite | Iterable[Sprite], style: str = "clean", resolution: int = RESOLUTION
) -> np.ndarray:
    """RGB uint8 image(s): (H, W, 3) for one sprite, (N, H, W, 3) for several."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
    if isinstance(sprites, Sprite):
        return _render_one(sprites, style, resolution)
    items = list(sprites)
    if not items:
        return np.zeros((0, resolution, resolution, 3), dtype=np.uint8)
    return np.stack([_render_one(s, style, resolution) for s in items])


# -- captions ---------------------------------------------------------------------------------------

_SHAPE_WORDS = {"circle": ("circle", "disc"), "square": ("square", "box"), "triangle": ("triangle",), "cross": ("cross", "plus")}
_COLOUR_WORDS = {c: (c,) for c in ESSENCE_FACTORS["colour"]}
_PATTERN_ADJECTIVES = {"plain": ("plain", "solid"), "striped": ("striped", "stripy"), "checked": ("checked", "checkered")}
_PATTERN_PHRASES = {
    "plain": ("with no pattern",),
    "striped": ("with stripes",),
    "checked": ("with checks", "with a checkerboard pattern"),
}
_BACKGROUND_WORDS = {"black": ("black",), "grey": ("grey", "gray"), "purple": ("purple", "violet")}
_GENERIC_NOUNS = ("shape", "sprite", "thing")
_OPENINGS = ("", "a picture of ", "an image of ", "there is ")
_BACKGROUND_SUFFIXES = (" on a {} background", " on {}", " over a {} background")
_BACKGROUND_PREFIX = "{} background with "
#: Words that describe identity; captions must never use them (tests check the vocabulary).
IDENTITY_WORDS = frozenset(
    "left right top bottom up down centre center middle corner edge small big large tiny huge little "
    "near far high low position size".split()
)


def caption(
    sprite: Sprite | dict[str, str],
    seed: int | Sequence[int] | np.random.Generator = 0,
    mention: Iterable[str] | None = None,
) -> str:
    """A caption of the sprite's essence, worded at random; ``mention`` limits the factors it names.

    It reads only the essence factors, so identity can never leak into the text.
    """
    essence = sprite.essence if isinstance(sprite, Sprite) else dict(sprite)
    rng = _rng(seed)
    named = set(ESSENCE_FACTORS) if mention is None else set(mention)
    if not named or not named <= set(ESSENCE_FACTORS):
        raise ValueError(f"mention must be a non-empty subset of {', '.join(ESSENCE_FACTORS)}")

    def pick(options: Sequence[str]) -> str:
        return options[int(rng.integers(len(options)))]

    words = []
    phrase = ""
    if "colour" in named:
        words.append(pick(_COLOUR_WORDS[essence["colour"]]))
    if "pattern" in named:
        if rng.random() < 0.6:
            words.append(pick(_PATTERN_ADJECTIVES[essence["pattern"]]))
        else:
            phrase = " " + pick(_PATTERN_PHRASES[essence["pattern"]])
    if len(words) == 2 and rng.random() < 0.5:
        words.reverse()
    words.append(pick(_SHAPE_WORDS[essence["shape"]]) if "shape" in named else pick(_GENERIC_NOUNS))
    noun_phrase = "a " + " ".join(words) + phrase
    if "background" not in named:
        return pick(_OPENINGS) + noun_phrase
    bg = pick(_BACKGROUND_WORDS[essence["background"]])
    if named == {"background"} and rng.random() < 0.5:
        return f"a {bg} background"
    if rng.random() < 0.25:
        return _BACKGROUND_PREFIX.format(bg) + noun_phrase
    return pick(_OPENINGS) + noun_phrase + pick(_BACKGROUND_SUFFIXES).format(bg)


def prompts(factor: str, value: str, n: int = 8) -> list[str]:
    """Distinct captions naming only ``factor = value``: zero-shot prompts, fixed for a given n."""
    if factor not in ESSENCE_FACTORS or value not in ESSENCE_FACTORS[factor]:
        raise ValueError(f"unknown essence value {factor}={value!r}")
    essence = {f: v[0] for f, v in ESSENCE_FACTORS.items()} | {factor: value}
    rng = np.random.default_rng([ESSENCE_FACTORS[factor].index(value), 17])
    found: list[str] = []
    for _ in range(50 * n):
        text = caption(essence, rng, mention=[factor])
        if text not in found:
            found.append(text)
        if len(found) == n:
            break
    return found


def vocabulary() -> list[str]:
    """Every word a caption can use, sorted."""
    pieces: list[str] = []
    for table in (_SHAPE_WORDS, _COLOUR_WORDS, _PATTERN_ADJECTIVES, _PATTERN_PHRASES, _BACKGROUND_WORDS):
        for options in table.values():
            pieces.extend(options)
    pieces += list(_GENERIC_NOUNS) + list(_OPENINGS) + list(_BACKGROUND_SUFFIXES) + [_BACKGROUND_PREFIX, "a"]
    words = {w for piece in pieces for w in piece.replace("{}", " ").split()}
    return sorted(words)
