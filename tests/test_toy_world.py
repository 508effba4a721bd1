"""The procedural toy world: deterministic, every factor visible, captions that never describe identity."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from essence.plugins.toy import world
from essence.plugins.toy.toyclip import ARCH, Tokenizer


def test_package_import_is_light():
    code = "import sys, essence.plugins.toy; print('numpy' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_same_seed_same_sprites_and_images():
    a, b = world.sample_sprites(12, 7), world.sample_sprites(12, 7)
    assert a == b
    assert world.sample_sprites(12, 8) != a
    for style in world.STYLES:
        np.testing.assert_array_equal(world.render(a, style), world.render(b, style))


def test_render_shapes_and_styles():
    sprites = world.sample_sprites(3, 0)
    batch = world.render(sprites)
    assert batch.shape == (3, 32, 32, 3) and batch.dtype == np.uint8
    assert world.render(sprites[0]).shape == (32, 32, 3)
    np.testing.assert_array_equal(world.render(sprites[1]), batch[1])
    sketch = world.render(sprites, "sketch")
    assert sketch.shape == batch.shape
    assert np.abs(sketch.astype(int) - batch).mean() > 10  # a different rendering, not a copy
    assert world.render(sprites[0], resolution=64).shape == (64, 64, 3)
    with pytest.raises(ValueError, match="style"):
        world.render(sprites, "photo")


def test_sketch_noise_is_seeded_by_the_sprite():
    s = world.sample_sprites(1, 3)[0]
    np.testing.assert_array_equal(world.render(s, "sketch"), world.render(s, "sketch"))
    assert not np.array_equal(world.render(s, "sketch"), world.render(s.replace(noise=s.noise + 1), "sketch"))


def test_clean_rendering_uses_the_factor_colours():
    s = world.Sprite(shape="circle", colour="blue", pattern="plain", background="purple", x=0.5, y=0.5, size=0.5)
    image = world.render(s).astype(float) / 255
    np.testing.assert_allclose(image[0, 0], world.BACKGROUND_RGB["purple"], atol=1 / 255)
    np.testing.assert_allclose(image[16, 16], world.FILL_RGB["blue"], atol=1 / 255)
    blue = image[..., 2]  # anti-aliased: the outline has pixels between background and fill
    between = (blue > world.BACKGROUND_RGB["purple"][2] + 0.05) & (blue < world.FILL_RGB["blue"][2] - 0.05)
    assert between.sum() >= 8


@pytest.mark.parametrize("style", world.STYLES)
def test_every_essence_value_renders_distinctly(style):
    base = world.Sprite(x=0.47, y=0.55, size=0.5, noise=11)
    for factor, values in world.ESSENCE_FACTORS.items():
        images = [world.render(base.replace(**{factor: v}), style).astype(float) for v in values]
        for i, j in itertools.combinations(range(len(values)), 2):
            changed = (np.abs(images[i] - images[j]).max(-1) > 40).sum()
            assert changed >= 8, f"{style}: {factor} {values[i]} vs {values[j]} differ in {changed} pixels"
    covered = world.every_value(0)
    for factor, values in world.ESSENCE_FACTORS.items():
        assert {getattr(s, factor) for s in covered} == set(values)


def _centroid(image: np.ndarray, background: str) -> tuple[float, float, float]:
    bg = np.array(world.BACKGROUND_RGB[background]) * 255
    mask = np.abs(image.astype(float) - bg).sum(-1) > 60
    ys, xs = np.nonzero(mask)
    return (xs.mean() + 0.5) / 32, (ys.mean() + 0.5) / 32, mask.sum()


def test_identity_factors_move_and_scale_the_sprite():
    base = world.Sprite(shape="circle", colour="yellow", background="black")
    for x, y in [(0.36, 0.6), (0.64, 0.4), (0.5, 0.5)]:
        cx, cy, _ = _centroid(world.render(base.replace(x=x, y=y)), "black")
        assert abs(cx - x) < 1 / 32 and abs(cy - y) < 1 / 32
    areas = [_centroid(world.render(base.replace(size=s)), "black")[2] for s in (0.36, 0.46, 0.56)]
    assert areas[0] < areas[1] < areas[2]


def test_sprite_validates_and_transfers_essence():
    with pytest.raises(ValueError, match="shape"):
        world.Sprite(shape="hexagon")
    with pytest.raises(ValueError, match="size"):
        world.Sprite(size=0.9)
    a, b = world.sample_sprites(2, 1)
    truth = a.with_essence_of(b)
    assert truth.essence == b.essence and truth.identity == a.identity


def test_labels():
    sprites = world.sample_sprites(5, 2)
    lab = world.labels(sprites)
    assert set(lab) == set(world.ESSENCE_FACTORS) | set(world.IDENTITY_FACTORS)
    assert [world.ESSENCE_FACTORS["colour"][i] for i in lab["colour"]] == [s.colour for s in sprites]
    np.testing.assert_allclose(lab["size"], [s.size for s in sprites], rtol=1e-6)


def test_captions_never_mention_identity():
    assert not set(world.vocabulary()) & world.IDENTITY_WORDS
    rng = np.random.default_rng(0)
    for sprite in world.sample_sprites(300, 4):
        text = world.caption(sprite, rng)
        assert set(text.split()) <= set(world.vocabulary())
    # the caption reads essence only: moving or resizing the sprite cannot change it
    a, b = world.sample_sprites(2, 9)
    moved = a.replace(**b.identity)
    for seed in range(20):
        assert world.caption(a, seed) == world.caption(moved, seed)


def test_captions_name_exactly_the_requested_factors():
    words = {
        (f, v): {w for piece in table[v] for w in piece.split()} - {"with", "a", "no", "pattern"}
        for f, table in [
            ("shape", world._SHAPE_WORDS), ("colour", world._COLOUR_WORDS),
            ("background", world._BACKGROUND_WORDS),
        ]
        for v in world.ESSENCE_FACTORS[f]
    }
    rng = np.random.default_rng(1)
    for sprite in world.sample_sprites(100, 5):
        mention = [f for f in ("shape", "colour", "background") if rng.random() < 0.5] or ["colour"]
        text = set(world.caption(sprite, rng, mention=mention).split())
        for (factor, value), vocab in words.items():
            named = bool(text & vocab)
            assert named == (factor in mention and getattr(sprite, factor) == value), (factor, value, text)
    with pytest.raises(ValueError):
        world.caption(sprite, 0, mention=[])


def test_prompts_are_distinct_and_single_factor():
    for factor, values in world.ESSENCE_FACTORS.items():
        seen = set()
        for value in values:
            texts = world.prompts(factor, value)
            assert len(texts) == len(set(texts)) >= 2
            assert not seen & set(texts)
            seen |= set(texts)


def test_tokenizer_fits_every_caption_and_ends_with_the_highest_id():
    tok = Tokenizer(world.vocabulary(), ARCH["text_cfg"]["context_length"])
    rng = np.random.default_rng(2)
    texts = [world.caption(s, rng) for s in world.sample_sprites(500, 6)]
    texts += ["there is a checkered red thing with a checkerboard pattern over a violet background"]
    ids = tok(texts)
    assert ids.shape == (len(texts), tok.context_length)
    assert (ids.argmax(1) == (ids > 0).sum(1) - 1).all()  # the end token is the highest id in every row
    assert int(ids.max()) == tok.eot == tok.vocab_size - 1
    with pytest.raises(ValueError, match="photo"):
        tok("a photo of a red circle")
