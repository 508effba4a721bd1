"""The formulation's G, C and loss terms as Python interfaces.

Implementations usually also subclass ``torch.nn.Module`` (``class G(nn.Module, Generator)``). This
module imports no torch at import time; the default methods import it when called.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from PIL import Image

NoiseMode = Literal["const", "random", "none"]


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
    standard preprocessing.
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


@dataclass
class LossContext:
    """What a loss term sees at one optimisation step. Embeddings are L2-normalised.

    ``target`` ``(T, D)``: the target embedding(s). ``sources`` ``(N, D)``: C(G(w_s)).
    ``shifted`` ``(N, D)``: C(G(w_s + c_s b)). ``direction``: b ``(num_ws, w_dim)``.
    ``coefficients``: c_s ``(N,)`` or None. ``extras``: anything an engine or plugin adds.
    """

    target: torch.Tensor
    sources: torch.Tensor
    shifted: torch.Tensor
    direction: torch.Tensor | None = None
    coefficients: torch.Tensor | None = None
    step: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


class LossTerm(abc.ABC):
    """A scalar loss on a :class:`LossContext`. Plain callables with the same signature also work.

    The registry builds it as ``factory(config)``; the base stores the validated config.
    """

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @abc.abstractmethod
    def __call__(self, ctx: LossContext) -> torch.Tensor: ...
