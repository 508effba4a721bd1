"""Shared checks for components: the contract every generator, encoder and loss must meet.

Plugin authors use these in their own tests::

    from essence.testing import check_component
    def test_contract():
        check_component(essence.get_registry().get("encoder", "pixel-stats"))
"""

from __future__ import annotations

from typing import Any

from essence.core.errors import EssenceError
from essence.core.interfaces import AlignedFace, Aligner, Encoder, Generator, Inverter, LossContext, MetricContext


def check_generator(gen: Generator, n: int = 2, max_abs: float = 100.0) -> None:
    import torch

    assert isinstance(gen, Generator), f"{type(gen).__name__} does not implement essence.Generator"
    for attr in ("resolution", "num_ws", "w_dim", "z_dim"):
        assert isinstance(getattr(gen, attr), int) and getattr(gen, attr) > 0, f"{attr} must be a positive int"
    assert tuple(gen.mean_w.shape) == (1, gen.w_dim), f"mean_w must be (1, w_dim), got {tuple(gen.mean_w.shape)}"
    w = gen.mapping(gen.sample_z(n, seed=0))
    assert tuple(w.shape) == (n, gen.w_dim), f"mapping gave {tuple(w.shape)}"
    ws = gen.sample_ws(n, seed=0, truncation=0.7)
    assert tuple(ws.shape) == (n, gen.num_ws, gen.w_dim), f"sample_ws gave {tuple(ws.shape)}"
    assert torch.equal(ws, gen.sample_ws(n, seed=0, truncation=0.7)), "sample_ws is not deterministic per seed"
    assert not torch.equal(ws, gen.sample_ws(n, seed=1, truncation=0.7)), "sample_ws ignores the seed"
    ws = ws.detach().clone().requires_grad_(True)
    images = gen.synthesize(ws)
    r = gen.resolution
    assert tuple(images.shape) == (n, 3, r, r), f"synthesize gave {tuple(images.shape)}, expected {(n, 3, r, r)}"
    assert torch.isfinite(images).all(), "synthesize returned non-finite values"
    assert images.abs().max() < max_abs, f"images far outside [-1, 1]: max |x| = {images.abs().max():.3g}"
    again = gen.synthesize(ws.detach())
    assert torch.allclose(images.detach(), again, atol=1e-5), "noise='const' must be deterministic"
    images.square().mean().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all(), "no finite gradient reaches ws"
    assert ws.grad.abs().sum() > 0, "the gradient reaching ws is zero"


def check_encoder(enc: Encoder, sizes: tuple[int, ...] = (32, 64), n: int = 2) -> None:
    import torch
    from PIL import Image

    assert isinstance(enc, Encoder), f"{type(enc).__name__} does not implement essence.Encoder"
    assert isinstance(enc.embed_dim, int) and enc.embed_dim > 0, "embed_dim must be a positive int"
    gen = torch.Generator().manual_seed(0)
    for size in sizes:
        images = (torch.rand(n, 3, size, size, generator=gen) * 2 - 1).requires_grad_(True)
        emb = enc.embed(images)
        assert tuple(emb.shape) == (n, enc.embed_dim), f"embed gave {tuple(emb.shape)} for {size}px"
        assert torch.isfinite(emb).all(), "embed returned non-finite values"
        norms = emb.detach().float().norm(dim=-1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-3), "embeddings are not L2-normalised"
        emb.float().sum().backward()
        assert images.grad is not None and torch.isfinite(images.grad).all(), "no finite gradient reaches images"
        assert images.grad.abs().sum() > 0, "the gradient reaching the images is zero"
    pil = Image.new("RGB", (40, 30), (200, 100, 50))
    emb = enc.embed_pil(pil)
    assert tuple(emb.shape) == (1, enc.embed_dim), f"embed_pil gave {tuple(emb.shape)}"
    assert torch.isfinite(emb).all()
    if enc.has_text:
        texts = ["a red square", "a picture of a blue circle"]  # words even the toy world's tokenizer knows
        emb = enc.embed_text(texts)
        assert tuple(emb.shape) == (len(texts), enc.embed_dim), f"embed_text gave {tuple(emb.shape)}"
        norms = emb.detach().float().norm(dim=-1)
        assert torch.isfinite(emb).all() and torch.allclose(norms, torch.ones_like(norms), atol=1e-3), (
            "text embeddings are not finite and L2-normalised"
        )


def check_loss(loss: Any, n: int = 3, dim: int = 8, needs: Any = ()) -> None:
    """A scalar, finite loss with a finite gradient; ``needs`` (as registered) adds images ``(n, 3, 16, 16)``
    in [-1, 1] (differentiable), source images and source latents ``(n, 4, dim)`` to the context."""
    import torch
    import torch.nn.functional as F

    assert callable(loss), "a loss term must be callable on a LossContext"
    gen = torch.Generator().manual_seed(0)
    needs = frozenset(needs)

    def unit(*shape: int) -> torch.Tensor:
        return F.normalize(torch.randn(*shape, generator=gen), dim=-1)

    def picture() -> torch.Tensor:
        return torch.rand(n, 3, 16, 16, generator=gen) * 2 - 1

    shifted = unit(n, dim).requires_grad_(True)
    direction = torch.randn(4, dim, generator=gen).requires_grad_(True)
    images = picture().requires_grad_(True) if "images" in needs else None
    ctx = LossContext(
        target=unit(1, dim),
        sources=unit(n, dim),
        shifted=shifted,
        direction=direction,
        coefficients=torch.ones(n),
        step=0,
        images=images,
        source_images=picture() if "source_images" in needs else None,
        source_ws=torch.randn(n, 4, dim, generator=gen) if "source_ws" in needs else None,
    )
    value = loss(ctx)
    assert isinstance(value, torch.Tensor) and value.dim() == 0, "a loss term must return a scalar tensor"
    assert torch.isfinite(value), "the loss is not finite"
    value.backward()
    grads = [t.grad for t in (shifted, direction, images) if t is not None and t.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads), "no finite gradient flows from the loss"


class ColourEncoder(Encoder):
    """A stand-in judge for metric checks: the L2-normalised 2x2 colour layout of an image."""

    embed_dim = 12
    input_resolution = 2

    def embed(self, images: Any) -> Any:
        import torch.nn.functional as F

        return F.normalize(F.adaptive_avg_pool2d(images, 2).flatten(1) + 1.5, dim=-1)

    def preprocess(self, image: Any) -> Any:
        import numpy as np
        import torch

        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
        return x[None]

    def embed_preprocessed(self, inputs: Any) -> Any:
        return self.embed(inputs)


def check_metric(metric: Any, n: int = 3, size: int = 16) -> None:
    """The metric returns a finite float or None on random results, and the same value twice."""
    import math

    import torch
    from PIL import Image

    assert callable(metric), "a metric must be callable on a MetricContext"
    gen = torch.Generator().manual_seed(0)
    sources = torch.rand(n, 3, size, size, generator=gen) * 2 - 1
    results = (sources + 0.5 * torch.randn(n, 3, size, size, generator=gen)).clamp(-1, 1)
    uses_encoder = getattr(metric, "uses_encoder", True)
    ctx = MetricContext(
        sources=sources,
        results=results,
        targets=[Image.new("RGB", (20, 24), (200, 100, 50))],
        source_ws=torch.randn(n, 4, 8, generator=gen),
        result_ws=torch.randn(n, 4, 8, generator=gen),
        encoder=ColourEncoder() if uses_encoder else None,
        encoder_name="colour" if uses_encoder else None,
        method="check",
    )
    value = metric(ctx)
    assert value is None or isinstance(value, (int, float)), f"a metric returns a float or None, not {type(value).__name__}"
    if value is not None:
        assert math.isfinite(value), "a metric's value must be finite (return None when it is undefined)"
        assert metric(ctx) == value, "the metric is not deterministic"


class StandInGenerator(Generator):
    """A tiny generator for inverter checks: a fixed random linear map of W+ to images in (-1, 1)."""

    z_dim = 4

    def __init__(self, num_ws: int = 2, w_dim: int = 4, resolution: int = 16) -> None:
        import torch

        self.num_ws, self.w_dim, self.resolution = num_ws, w_dim, resolution
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.randn(num_ws * w_dim, 3 * resolution * resolution, generator=gen) / (num_ws * w_dim) ** 0.5
        self._mean = torch.zeros(1, w_dim)

    def mapping(self, z: Any) -> Any:
        return z[:, : self.w_dim] if z.shape[1] >= self.w_dim else z.repeat(1, self.w_dim)[:, : self.w_dim]

    @property
    def mean_w(self) -> Any:
        return self._mean

    def synthesize(self, ws: Any, noise: Any = "const") -> Any:
        import torch

        flat = ws.reshape(ws.shape[0], -1) @ self.weight.to(ws)
        return torch.tanh(flat).reshape(ws.shape[0], 3, self.resolution, self.resolution)


def check_aligner(aligner: Aligner, resolution: int = 32) -> None:
    """An aligner returns crops of the asked size, or refuses a photo without a face with an EssenceError."""
    import numpy as np
    from PIL import Image

    assert isinstance(aligner, Aligner), f"{type(aligner).__name__} does not implement essence.Aligner"
    assert aligner.alignment in ("ffhq", "center", "none"), f"unknown alignment {aligner.alignment!r}"
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    try:
        crops = aligner.align(photo, resolution)
    except EssenceError:
        assert aligner.alignment == "ffhq", "only face aligners may refuse a photo (no face found)"
        return
    assert crops and all(isinstance(c, AlignedFace) for c in crops), "align must return AlignedFace crops"
    for c in crops:
        assert c.image.size == (resolution, resolution) and c.image.mode == "RGB", f"a crop is {c.image.size} {c.image.mode}"


def check_inverter(inverter: Inverter, generator: Generator | None = None, n: int = 2) -> None:
    """An inverter maps images in [-1, 1] to finite W+ latents of the generator's shape, the same twice.

    Without ``generator``, a stand-in of the inverter's own ``num_ws``/``w_dim``/``resolution`` (when it has
    them) is used."""
    import torch

    assert isinstance(inverter, Inverter), f"{type(inverter).__name__} does not implement essence.Inverter"
    if generator is None:
        generator = StandInGenerator(
            getattr(inverter, "num_ws", 2), getattr(inverter, "w_dim", 4), getattr(inverter, "resolution", 16)
        )
    r = generator.resolution
    images = torch.rand(n, 3, r, r, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ws = inverter.invert(images, generator)
    expected = (n, generator.num_ws, generator.w_dim)
    assert tuple(ws.shape) == expected, f"invert gave {tuple(ws.shape)}, expected {expected}"
    assert torch.isfinite(ws).all(), "invert returned non-finite latents"
    assert torch.allclose(ws, inverter.invert(images, generator), atol=1e-4), "invert is not deterministic"


def check_features(net: Any, size: int = 32, n: int = 2) -> None:
    """A feature network maps images in [-1, 1] of any size to finite feature maps, differentiably, the same
    twice; its style and content layers index that list."""
    import torch

    from essence.core.interfaces import FeatureNet

    assert isinstance(net, FeatureNet), f"{type(net).__name__} does not implement essence.FeatureNet"
    for s in (size, size * 2):
        images = (torch.rand(n, 3, s, s, generator=torch.Generator().manual_seed(0)) * 2 - 1).requires_grad_(True)
        maps = net.features(images)
        assert isinstance(maps, list) and maps, "features must return a non-empty list of maps"
        for m in maps:
            assert m.ndim == 4 and m.shape[0] == n, f"a feature map is {tuple(m.shape)}, expected (n, c, h, w)"
            assert torch.isfinite(m).all(), "features returned non-finite values"
        again = net.features(images.detach())
        assert all(torch.allclose(a.detach(), b, atol=1e-5) for a, b in zip(maps, again)), "features are not deterministic"
        sum(m.float().mean() for m in maps).backward()
        assert images.grad is not None and torch.isfinite(images.grad).all(), "features are not differentiable"
    layers = (*net.style_layers, *net.content_layers)
    assert layers and all(0 <= i < len(maps) for i in layers), f"style/content layers {layers} outside the {len(maps)} maps"


def check_component(registration: Any) -> Any:
    """Build a registration at its tiny config and run the check for its kind; returns the instance."""
    assert registration.tiny is not None, (
        f"{registration.kind} {registration.name!r} declares no tiny config (register(..., tiny={{...}}))"
    )
    component = registration.build_tiny()
    checks = {
        "generator": check_generator,
        "encoder": check_encoder,
        "loss": check_loss,
        "metric": check_metric,
        "aligner": check_aligner,
        "inverter": check_inverter,
        "features": check_features,
    }
    if registration.kind == "loss":
        check_loss(component, needs=registration.needs)
    else:
        checks[registration.kind](component)
    return component
