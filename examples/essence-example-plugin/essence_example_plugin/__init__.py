"""An example essence plugin: ``pixel-stats``, an image encoder made of colour statistics.

It is not a good encoder for faces; it shows every part a real plugin has: a config model, a
component implementing the public interface, a hook registering it with a tiny config, and a test
that runs the shared contract checker.
"""

import essence
from pydantic import Field


class PixelStatsConfig(essence.ComponentConfig):
    grid: int = Field(4, ge=1, le=32, description="Average colours over a grid x grid layout.")
    include_std: bool = Field(True, description="Also embed each channel's standard deviation.")


def build_pixel_stats(config: PixelStatsConfig):
    """Colour layout and contrast of an image, as an L2-normalised vector."""
    # Heavy imports inside the factory: listing components must not import torch.
    from essence_example_plugin.encoder import PixelStatsEncoder

    return PixelStatsEncoder(grid=config.grid, include_std=config.include_std)


@essence.hookimpl
def register_encoders(register):
    register("pixel-stats", build_pixel_stats, config=PixelStatsConfig, tiny={"grid": 2})
