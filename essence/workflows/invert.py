"""``essence align`` and ``essence invert``: photos -> the crops a generator expects -> W+ latents.

Both go through :mod:`essence.method.photos` (load, align, invert), as photos given as sources or targets
do, so every photo takes one path. A photo that cannot be read, or in which no face is found, is one
warning; the other photos are still processed. ``essence invert`` writes a latent file ``(N, num_ws, w_dim)``
that ``--sources``/``--latents`` accept, a reconstruction sheet (photo | aligned | G(w)) and a JSON record
with each image's reconstruction errors (pixel MSE; LPIPS when the inverter has it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from pydantic import Field, field_validator, model_validator

from essence.core.config import ComponentSpec, Strict, deep_merge, expand_shorthands
from essence.core.errors import EssenceError
from essence.method.artifacts import LATENT_SUFFIXES
from essence.method.photos import InversionSettings, PhotoInversion, check_inversion_settings, check_photos
from essence.method.runconfig import DEFAULT_COMPONENTS
from essence.method.rundir import component_config, default_out, ensure_writable_dir


class Photos(Strict):
    """Settings that start from photo files (one file is short for a list of one)."""

    photos: list[str] = Field(description="Photo files.")

    @field_validator("photos", mode="before")
    @classmethod
    def _one_photo(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class InvertConfig(Photos):
    """What ``essence invert`` does; the JSON record beside the latent file holds it."""

    generator: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="stylegan2-ffhq"))
    inversion: InversionSettings = Field(default_factory=InversionSettings)
    device: str = "auto"
    out: Union[str, None] = Field(None, description="The latent file; default essence-runs/invert-<photo>-<time>/latents.safetensors.")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return deep_merge({"generator": DEFAULT_COMPONENTS["generator"]}, expand_shorthands(cls, data))


class AlignConfig(Photos):
    """What ``essence align`` does; ``align.json`` in the output folder records it."""

    aligner: str = Field("ffhq-dlib", description="A registered aligner (essence list aligners).")
    size: int = Field(1024, ge=8, le=4096, description="Side of the crops in pixels (FFHQ: 1024).")
    all_faces: bool = Field(False, description="A crop for every face (default: the largest only).")
    out: Union[str, None] = Field(None, description="Output folder; default essence-runs/align-<photo>-<time>.")


# -- invert ----------------------------------------------------------------------------------------------


@dataclass
class InvertOutcome:
    latents: Path
    sheet: Path
    record_path: Path
    record: dict[str, Any]


def invert_paths(config: InvertConfig) -> tuple[Path, Path, Path]:
    """The latent file, the sheet and the record it writes (sheet and record beside the latent file)."""
    if config.out:
        latents = Path(config.out)
        if latents.suffix.lower() not in LATENT_SUFFIXES:
            raise EssenceError(f"--out {latents}: a latent file ends in {', '.join(LATENT_SUFFIXES)}.")
    else:
        latents = default_out(Path(config.photos[0]).stem, kind="invert") / "latents.safetensors"
    return (latents, *beside(latents))


def beside(latents: Path) -> tuple[Path, Path]:
    """The sheet and the record beside a latent file: ``<stem>_sheet.png``, ``<stem>.json``."""
    stem = latents.with_suffix("")
    return stem.with_name(stem.name + "_sheet.png"), stem.with_name(stem.name + ".json")


def execute_invert(
    config: InvertConfig,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int, float], None] | None = None,
) -> InvertOutcome:
    """Align and invert the photos, then write the latent file, the sheet and the record. Settings, names
    and the output are checked before any model is built."""
    from essence.core.devices import resolve_device
    from essence.core.registry import get_registry
    from essence.method.photos import invert_photos

    if not config.photos:
        raise EssenceError("No photo given: essence invert PHOTO...")
    reg = get_registry().get("generator", config.generator.name)
    device = resolve_device(config.device)
    gen_config = component_config(reg, config.generator.config, device)
    check_inversion_settings(config.inversion, reg, gen_config)
    check_photos(config.photos)
    latents, sheet_path, record_path = invert_paths(config)
    existing = [p for p in (latents, sheet_path, record_path) if p.exists()]
    if existing and not overwrite:
        raise EssenceError(f"{existing[0]} already exists. Choose another --out, or pass --overwrite.")
    ensure_writable_dir(latents.parent)

    generator = reg.build(**gen_config)
    inv = invert_photos(config.photos, generator, reg.name, config.inversion, device=device, progress=progress)
    inv.warn()
    return write_inversion(inv, generator, config, reg.name, gen_config, latents)


def write_inversion(
    inv: PhotoInversion, generator: Any, config: InvertConfig, generator_name: str, gen_config: dict[str, Any], latents: Path
) -> InvertOutcome:
    """The files of ``essence invert`` for photos already inverted: the latent file ``latents``, the sheet
    photo | aligned | G(w) and the JSON record with the errors per image, beside it. The web page's Invert
    tab writes its download with this too, so it is the same file."""
    import torch

    from essence.core.files import write_json
    from essence.core.images import save_image, to_pil
    from essence.method.engine import Renderer
    from essence.method.figures import image_grid, sheet_tile, square_tile
    from essence.method.photos import crops_tensor

    sheet_path, record_path = beside(latents)
    recon = Renderer(generator).images(inv.ws.to(generator.device)).cpu()
    crops = crops_tensor(inv.aligned)
    mse = (recon - crops).square().mean(dim=(1, 2, 3))
    distance = getattr(inv.component, "perceptual_distance", None)
    lpips = distance(crops, recon) if callable(distance) else None

    inv.save(latents, generator_name, "photos")
    tile = sheet_tile(generator.resolution)
    rows = [[square_tile(a.photo, tile), a.crop.image, g] for a, g in zip(inv.aligned, to_pil(recon))]
    save_image(image_grid(rows, tile), sheet_path)
    images = []
    for k, a in enumerate(inv.aligned):
        images.append({
            "photo": a.path, "name": a.label, "row": k, "pixel_mse": float(mse[k]),
            "lpips": None if lpips is None else float(lpips[k]), "warnings": list(a.crop.warnings),
        })
    record = {
        "command": "invert",
        **config.model_dump(mode="json"),
        "generator": {"name": generator_name, "config": gen_config},
        "generator_weights_id": getattr(generator, "weights_id", "unknown"),
        "aligner": inv.aligner,
        "inverter": inv.inverter,
        "inverter_weights_id": inv.inverter_weights_id,
        "latents": {"file": latents.name, "shape": list(inv.ws.shape)},
        "sheet": {"file": sheet_path.name, "columns": ["photo", "aligned", "G(w)"]},
        "images": images,
        "mean_pixel_mse": float(mse.mean()),
        "mean_lpips": None if lpips is None else float(torch.as_tensor(lpips).mean()),
        "problems": inv.problems,
    }
    write_json(record_path, record)
    return InvertOutcome(latents, sheet_path, record_path, record)


# -- align -----------------------------------------------------------------------------------------------


@dataclass
class AlignOutcome:
    out: Path
    record: dict[str, Any]


ALIGN_FILES = ("align.json", "sheet.png")


def execute_align(config: AlignConfig, *, overwrite: bool = False) -> AlignOutcome:
    """The aligned crop of every photo (every face with ``all_faces``), a sheet photo | crop, and ``align.json``."""
    import numpy as np

    from essence.core.files import write_json
    from essence.core.images import save_image
    from essence.method.figures import image_grid, square_tile
    from essence.method.photos import align_photos, aligner_registration, load_photos
    from essence.method.rundir import prepare_out

    if not config.photos:
        raise EssenceError("No photo given: essence align PHOTO...")
    reg = aligner_registration(config.aligner)
    out = Path(config.out) if config.out else default_out(Path(config.photos[0]).stem, kind="align")
    out = prepare_out(out, ALIGN_FILES, overwrite=overwrite, what="an `essence align` result")
    aligner = reg.build()
    loaded, problems = load_photos(config.photos)
    aligned, more, notes = align_photos(loaded, aligner, config.size, all_faces=config.all_faces)
    problems += more
    for line in problems + notes:
        warnings.warn(line, stacklevel=2)
    if not aligned:
        raise EssenceError("No photo could be aligned: " + " ".join(problems))
    (out / "images").mkdir(exist_ok=True)
    used: set[str] = set()
    crops, rows = [], []
    for a in aligned:
        name = unique_name(Path(a.path).stem + ("" if a.label == a.path else "_" + a.label.rsplit("#", 1)[1]), used)
        save_image(a.crop.image, out / "images" / f"{name}.png")
        face = a.crop.face
        crops.append({
            "photo": a.path, "name": a.label, "file": f"images/{name}.png",
            "quad": None if a.crop.quad is None else np.asarray(a.crop.quad, dtype=float).round(2).tolist(),
            "box": None if face is None else [round(float(v), 2) for v in face.box],
            "warnings": list(a.crop.warnings),
        })
        rows.append([square_tile(a.photo, min(config.size, 256)), a.crop.image])
    save_image(image_grid(rows, min(config.size, 256)), out / "sheet.png")
    record = {
        "command": "align", **config.model_dump(mode="json"), "out": str(out), "crops": crops, "problems": problems,
        "files": ["align.json", "sheet.png", *(c["file"] for c in crops)],
    }
    write_json(out / "align.json", record)
    return AlignOutcome(out, record)


def unique_name(stem: str, used: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3`` ... when two photos share a name."""
    name, k = stem, 2
    while name in used:
        name, k = f"{stem}-{k}", k + 1
    used.add(name)
    return name
