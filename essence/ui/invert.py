"""The Invert tab: photos -> the generator's crops -> W+ latents, with the file ``essence invert`` writes.

The photos go through :class:`~essence.ui.photos.InversionCache` (so a photo inverted as an Apply source is
not inverted again) and the files through :func:`essence.workflows.invert.write_inversion`, the writer of
``essence invert``: the latent file, its reconstruction sheet (photo | aligned | G(w)) and its record.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence.core.errors import EssenceError

if TYPE_CHECKING:
    from PIL import Image

    from essence.ui.apply import GeneratorCache
    from essence.ui.photos import InversionCache


@dataclass
class InvertShown:
    """What the tab shows: each aligned crop beside its reconstruction, the sheet, the files, a summary."""

    pairs: list[tuple[Image.Image, str]]
    sheet: Path
    latents: Path
    record_path: Path
    record: dict[str, Any]
    summary: str


def invert_upload(
    cache: GeneratorCache,
    inversions: InversionCache,
    photos: Sequence[str] | str | None,
    folder: Path,
    *,
    generator: str | None,
    aligner: str | None = None,
    inverter: str | None = None,
    device: str = "auto",
) -> InvertShown:
    """Align and invert the uploaded photos with the chosen generator (its aligner and inverter unless
    others are picked), and write ``essence invert``'s files in ``folder`` for download."""
    from essence.core.config import ComponentSpec
    from essence.core.images import to_pil
    from essence.method.engine import Renderer
    from essence.method.figures import fit_tile
    from essence.method.photos import check_inversion_settings
    from essence.ui.apply import VIEW_TILE, view
    from essence.ui.photos import display_name, inversion_settings, page_words, relabel
    from essence.workflows.apply import generator_config
    from essence.workflows.invert import InvertConfig, write_inversion

    files = [photos] if isinstance(photos, str) else [str(p) for p in (photos or []) if p]
    if not files:
        raise EssenceError("No photo: upload one or more photos to invert.")
    if not generator:
        raise EssenceError("No generator: choose the generator whose W+ the photos go into.")
    settings = inversion_settings(aligner, inverter)
    reg, config = generator_config(ComponentSpec(name=generator), device)
    with page_words():
        check_inversion_settings(settings, reg, config)  # a missing extra or unknown name before any model
        g = cache.get(reg.name, config)
        inv = inversions.invert(files, g, reg.name, config, settings)
    named = relabel(inv, files)  # the uploaded files' own names in the file, not the server's copies
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(display_name(files[0])).stem).strip("._")[:48] or "photo"
    folder.mkdir(parents=True, exist_ok=True)
    invert_config = InvertConfig(
        photos=[display_name(f) for f in files], generator={"name": reg.name}, inversion=settings, device=device,
        out=str(folder / f"{stem}-latents.safetensors"),
    )
    outcome = write_inversion(named, g, invert_config, reg.name, config, Path(invert_config.out or ""))
    record = outcome.record
    recon = view(to_pil(Renderer(g).images(inv.ws.to(g.device)).cpu()))
    pairs: list[tuple[Image.Image, str]] = []
    for a, r, entry in zip(named.aligned, recon, record["images"]):
        pairs += [(fit_tile(a.crop.image, VIEW_TILE), f"{a.label}: aligned"), (r, f"{a.label}: G(w), MSE {entry['pixel_mse']:.4f}")]
    lines = [
        f"**{len(named.aligned)} image(s)** into `{reg.name}`'s W+ {tuple(inv.ws.shape)} · aligner `{inv.aligner}` · "
        f"inverter `{inv.inverter}` · mean pixel MSE {record['mean_pixel_mse']:.4f}"
    ]
    lines += [f"- {w}" for w in named.problems + named.warnings]
    return InvertShown(pairs, outcome.sheet, outcome.latents, outcome.record_path, record, "  \n".join(lines))
