"""An identity loss on the images themselves: the example of a loss term that asks for more than embeddings.

pixel-preservation   mean over sources of the squared difference between G(w_s + c_s b) and G(w_s), both
                     average-pooled to ``size`` x ``size`` (coarse layout and colour, not fine detail)

It declares ``needs={"images", "source_images"}`` at registration, so the engine renders and keeps the
images for it (and only for runs that switch it on: ``--set losses.pixel-preservation=0.5``). An LPIPS or
face-identity term is the same shape: swap the pooled difference for the network's distance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

import essence

if TYPE_CHECKING:
    import torch


class PreservationConfig(essence.ComponentConfig):
    size: int = Field(32, ge=1, le=1024, description="Side the images are average-pooled to before comparing.")


class PixelPreservation(essence.LossTerm):
    """Mean squared difference of the pooled edited and unedited source images (lower: more of the source kept)."""

    def __call__(self, ctx: essence.LossContext) -> torch.Tensor:
        import torch.nn.functional as F

        if ctx.images is None or ctx.source_images is None:
            raise essence.EssenceError("pixel-preservation needs the images: register it with needs={'images', 'source_images'}.")
        size = min(self.config.size, ctx.images.shape[-1])
        edited = F.adaptive_avg_pool2d(ctx.images.float(), size)
        source = F.adaptive_avg_pool2d(ctx.source_images.float().to(edited), size)
        return ((edited - source) ** 2).mean()


@essence.hookimpl
def register_losses(register):
    register(
        "pixel-preservation",
        PixelPreservation,
        config=PreservationConfig,
        needs={"images", "source_images"},
        description="Mean squared difference of pooled G(w + b) and G(w): keeps the source's layout and colour.",
        tiny={"size": 4},
    )
