"""The formulation's G, C and loss terms as Python interfaces.

Implementations usually also subclass ``torch.nn.Module`` (``class G(nn.Module, Generator)``). This
module imports no torch at import time; the default methods import it when called.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from PIL import Image

NoiseMode = Literal["const", "random", "none"]
#: What crop of a photo a generator expects: FFHQ face alignment, a centre crop, or the image as it is.
Alignment = Literal["ffhq", "center", "none"]


class Generator(abc.ABC):
    """G: W+ latents ``(n, num_ws, w_dim)`` -> images ``(n, 3, resolution, resolution)`` in about [-1, 1].

    ``synthesize`` must be differentiable in ``ws`` and deterministic with ``noise="const"`` (the default).
    """

    resolution: int
    num_ws: int
    w_dim: int
    z_dim: int
    #: What the weights are (a SHA256 prefix, "random", ...), recorded in direction files.
    weights_id: str = "unknown"
    #: The crop of a photo this generator makes images like (an aligner of the same alignment makes it).
    alignment: Alignment = "none"
    #: The inverter photos are inverted with by default (``essence invert``, photos given as sources).
    default_inverter: str = "projector"

    @abc.abstractmethod
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z ``(n, z_dim)`` -> w ``(n, w_dim)``."""

    @property
    @abc.abstractmethod
    def mean_w(self) -> torch.Tensor:
        """The average w ``(1, w_dim)``: the centre of truncation."""

    @abc.abstractmethod
    def synthesize(self, ws: torch.Tensor, noise: NoiseMode = "const") -> torch.Tensor:
        """W+ latents ``(n, num_ws, w_dim)`` -> images ``(n, 3, H, W)``."""

    @property
    def device(self) -> torch.device:
        return self.mean_w.device

    def sample_z(self, n: int, seed: int = 0) -> torch.Tensor:
        """Standard normal z drawn on the CPU from ``seed``, so every device gets the same latents."""
        import torch

        gen = torch.Generator().manual_seed(int(seed))
        return torch.randn(n, self.z_dim, generator=gen).to(self.device)

    def truncate(self, w: torch.Tensor, truncation: float) -> torch.Tensor:
        if truncation == 1:
            return w
        mean = self.mean_w.to(w)
        if w.dim() == 3:
            mean = mean[:, None]
        return mean + truncation * (w - mean)

    def sample_ws(self, n: int, seed: int = 0, truncation: float = 1.0) -> torch.Tensor:
        """``n`` random W+ latents: mapping of seeded z, truncated towards ``mean_w``, on every row."""
        import torch

        with torch.no_grad():
            w = self.truncate(self.mapping(self.sample_z(n, seed)), truncation)
        return w[:, None, :].repeat(1, self.num_ws, 1)


class Encoder(abc.ABC):
    """C: images -> L2-normalised embeddings ``(n, embed_dim)``.

    ``embed`` takes generator images in [-1, 1] of any square size and does its own differentiable
    resize and normalisation. Targets go through ``embed_file`` / ``embed_pil`` with the encoder's
    standard preprocessing. Encoders with a text tower (CLIP's) also implement ``embed_text`` and say
    so with ``has_text``.
    """

    embed_dim: int
    input_resolution: int = 224
    weights_id: str = "unknown"

    @abc.abstractmethod
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Generator images ``(n, 3, H, W)`` in [-1, 1] -> normalised embeddings, differentiable."""

    @abc.abstractmethod
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """A PIL image -> ``(1, 3, R, R)`` in the encoder's own input space (the standard transform)."""

    @abc.abstractmethod
    def embed_preprocessed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Already preprocessed inputs ``(n, 3, R, R)`` -> normalised embeddings."""

    def embed_pil(self, image: Image.Image) -> torch.Tensor:
        return self.embed_preprocessed(self.preprocess(image))

    def embed_file(self, path: str | os.PathLike[str]) -> torch.Tensor:
        from essence.core.images import load_image

        return self.embed_pil(load_image(path))

    @property
    def has_text(self) -> bool:
        """Whether :meth:`embed_text` works (text targets need it)."""
        return type(self).embed_text is not Encoder.embed_text

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Optional: texts -> L2-normalised embeddings ``(T, embed_dim)`` in the same space as the images,
        without gradients (text targets, ``--target-text``). The default says the encoder has no text tower."""
        from essence.core.errors import EssenceError

        if not list(texts):
            raise EssenceError("No text to embed: give at least one non-empty text.")
        raise EssenceError(
            f"The encoder {type(self).__name__} has no text tower, so it cannot embed text targets. Use image "
            "targets, or an encoder with a text tower (clip-vitb32, clip-rn50, openclip, toy-clip)."
        )


@dataclass
class LossContext:
    """What a loss term sees at one optimisation step. Embeddings are L2-normalised, float32.

    ``target`` ``(T, D)``: the target embedding(s), images then texts. ``sources`` ``(N, D)``: C(G(w_s)).
    ``shifted`` ``(N, D)``: C(G(w_s + c_s b)). ``direction``: b ``(num_ws, w_dim)``.
    ``coefficients``: c_s ``(N,)`` or None. ``extras``: anything an engine or plugin adds.
    ``target_weights`` ``(T,)``: the targets' weights, summing to 1; None: equal weights.

    Filled only when an active term declared it at registration (``register(..., needs={...})``, see
    :data:`LOSS_NEEDS`), else None, so other runs pay nothing:
    ``images`` ``(N, 3, R, R)``: G(w_s + c_s b) in [-1, 1], float32, differentiable with respect to b.
    ``source_images`` ``(N, 3, R, R)``: G(w_s), rendered once (no gradient). ``source_ws`` ``(N, num_ws, w_dim)``: w_s.
    """

    target: torch.Tensor
    sources: torch.Tensor
    shifted: torch.Tensor
    direction: torch.Tensor | None = None
    coefficients: torch.Tensor | None = None
    step: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    target_weights: torch.Tensor | None = None
    images: torch.Tensor | None = None
    source_images: torch.Tensor | None = None
    source_ws: torch.Tensor | None = None


#: What a loss term may ask for at registration (``needs=``): the LossContext fields the engine then fills.
LOSS_NEEDS = frozenset({"images", "source_images", "source_ws"})


class LossTerm(abc.ABC):
    """A scalar loss on a :class:`LossContext`. Plain callables with the same signature also work.

    The registry builds it as ``factory(config)``; the base stores the validated config.
    """

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @abc.abstractmethod
    def __call__(self, ctx: LossContext) -> torch.Tensor: ...


@dataclass
class MetricContext:
    """What a metric sees: one evaluated run on held-out sources.

    ``sources`` / ``results`` ``(n, 3, H, W)``: generator images in [-1, 1] of the sources G(w) and of the
    method's results for them (G(w + alpha b) for an essence direction, a blend for the baselines).
    ``targets``: the target image(s). ``source_ws`` / ``result_ws``: their latents. ``encoder`` /
    ``encoder_name``: the judging encoder for metrics with ``uses_encoder`` (None for the others).
    ``method``: ``essence``, ``stylegan-blend``, ``clip-blend``. ``extras``: anything the harness adds.
    ``target_texts``: the run's text targets (embedded with the judging encoder's text tower, if it has one).
    """

    sources: torch.Tensor
    results: torch.Tensor
    targets: list[Image.Image]
    source_ws: torch.Tensor | None = None
    result_ws: torch.Tensor | None = None
    encoder: Encoder | None = None
    encoder_name: str | None = None
    method: str = ""
    chunk: int = 16
    extras: dict[str, Any] = field(default_factory=dict)
    #: Embeddings already computed, shared by the contexts of one run (one pass per encoder and image set).
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    target_texts: list[str] = field(default_factory=list)

    def embed(self, which: Literal["sources", "results", "targets"]) -> torch.Tensor:
        """The judging encoder's L2-normalised embeddings ``(n, D)`` of ``sources``, ``results`` or ``targets``
        (target images with the encoder's standard preprocessing, then the text targets when the encoder has a
        text tower; none at all: ``(0, D)``), computed once per encoder and image set."""
        import torch

        if self.encoder is None:
            raise RuntimeError("this metric has no encoder: declare uses_encoder = True to get one")
        items = {"sources": self.sources, "results": self.results, "targets": self.targets}[which]
        key = (self.encoder_name, id(items))
        if key not in self.cache:
            with torch.no_grad():
                if which == "targets":
                    parts = [self.encoder.embed_pil(img).float().cpu() for img in items]
                    if self.target_texts and self.encoder.has_text:
                        parts.append(self.encoder.embed_text(self.target_texts).float().cpu())
                    emb = torch.cat(parts) if parts else torch.zeros(0, self.encoder.embed_dim)
                else:
                    device = module_device(self.encoder, items.device)
                    emb = torch.cat(
                        [self.encoder.embed(items[i : i + self.chunk].to(device)) for i in range(0, len(items), self.chunk)]
                    )
            self.cache[key] = (items, emb.float().cpu())  # keep ``items`` alive: its id is the key
        return self.cache[key][1]


class Metric(abc.ABC):
    """A number that judges a method's results (``essence eval``). Plain callables with the same signature
    and attributes also work.

    ``__call__(ctx)`` returns a float, or None when the value is undefined for these results (it is then
    reported as undefined, never as a number). ``uses_encoder``: called once per judging encoder, with
    ``ctx.encoder`` set; False for metrics with their own network (an ArcFace identity metric), called once.
    ``baseline``: also report the value on the unedited sources (results = sources), for comparison.
    """

    uses_encoder: bool = True
    higher_is_better: bool | None = True
    baseline: bool = False

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @abc.abstractmethod
    def __call__(self, ctx: MetricContext) -> float | None: ...


@dataclass
class Face:
    """A face an aligner found in a photo: its box ``(x0, y0, x1, y1)`` and landmarks ``(68, 2)`` as
    ``(x, y)`` in photo pixels, in dlib's 68-point order (a backend with other points fills at least the eye
    contours 36-47 and the mouth corners 48 and 54, NaN elsewhere), and the detector's score."""

    box: tuple[float, float, float, float]
    landmarks: Any
    score: float = 1.0

    @property
    def size(self) -> float:
        """The box's longer side, in pixels (faces are sorted by it, largest first)."""
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


@dataclass
class AlignedFace:
    """One crop an aligner made: ``image`` (RGB, ``resolution`` square), the face it came from (None for
    alignments without one), the photo quad ``(4, 2)`` the crop maps from, and warnings for the user."""

    image: Image.Image
    resolution: int
    face: Face | None = None
    quad: Any = None
    warnings: list[str] = field(default_factory=list)


class Aligner(abc.ABC):
    """A photo -> the crop a generator expects (``alignment`` names which: see :data:`Alignment`).

    ``align`` returns one crop per face (the largest only, unless ``all_faces``); a photo in which no face
    is found raises an EssenceError naming the photo, so a caller can go on with the other photos.
    """

    alignment: Alignment = "ffhq"

    def detect(self, image: Image.Image) -> list[Face]:
        """The faces in ``image``, largest first (an empty list for alignments without faces)."""
        return []

    @abc.abstractmethod
    def align(self, image: Image.Image, resolution: int, *, all_faces: bool = False) -> list[AlignedFace]: ...


class Inverter(abc.ABC):
    """Aligned images -> W+ latents of a generator: ``invert(images, generator)`` with images
    ``(n, 3, H, W)`` in [-1, 1] returns ``(n, num_ws, w_dim)`` on the generator's device.

    ``generators``: the generator names it was trained for (empty: any generator, as a projector).
    ``callback(step, steps, loss)``, when given, is called by inverters that optimise, after each step.
    """

    generators: tuple[str, ...] = ()
    weights_id: str = "unknown"

    @abc.abstractmethod
    def invert(self, images: torch.Tensor, generator: Generator, *, callback: Any = None) -> torch.Tensor: ...


class FeatureNet(abc.ABC):
    """Images -> the feature maps a style or content loss reads (Gatys et al.): ``features(images)`` with
    images ``(n, 3, H, W)`` in [-1, 1] (any size; the net resizes and normalises them itself) returns a list
    of ``(n, c_i, h_i, w_i)`` maps, differentiable, shallowest first. ``style_layers`` / ``content_layers``:
    indices into that list the Gatys baseline matches Gram matrices at / keeps close to the source at.
    """

    style_layers: tuple[int, ...] = (0, 1, 2, 3, 4)
    content_layers: tuple[int, ...] = (3,)
    weights_id: str = "unknown"

    @abc.abstractmethod
    def features(self, images: torch.Tensor) -> list[torch.Tensor]: ...


def module_device(component: Any, default: Any = "cpu") -> Any:
    """Where a component's tensors live: its ``device``, else its first parameter's or buffer's, else ``default``."""
    device = getattr(component, "device", None)
    if device is not None:
        return device
    for get in ("parameters", "buffers"):
        tensors = getattr(component, get, None)
        if callable(tensors):
            for t in tensors():
                return t.device
    return default
