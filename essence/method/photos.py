"""Photos -> W+ latents of a generator: load, align to the crop it expects, invert.

The paper's sources "can be real images converted to z using a StyleGAN inversion method", and an in-domain
target is best started from its own latent; runs, apply, blends and ``essence invert`` all go through
:func:`invert_photos`. Which aligner and inverter: the ``inversion`` settings, else the generator's own
(``generator.alignment`` picks ``ffhq-dlib``, ``center-crop`` or ``resize``; ``generator.default_inverter``
the inverter). An aligner of another alignment than the generator's is refused. A photo that cannot be
read or in which no face is found is one line in ``problems``: the other photos are still processed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import Field

from essence.core.config import ComponentChoice, Strict
from essence.core.errors import EssenceError, MissingExtraError

if TYPE_CHECKING:
    import torch
    from PIL import Image

#: The aligner for each alignment a generator can expect.
DEFAULT_ALIGNERS = {"ffhq": "ffhq-dlib", "center": "center-crop", "none": "resize"}
#: The FFHQ face aligners and the extra each needs (their plugin registers them once installed).
#: Suffixes that mark a file as a photo, not a latent file (``--sources me.jpg``).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
#: Images per inverter call.
BATCH = 8


class InversionSettings(Strict):
    """How photos become latents: which aligner and which inverter (default: the generator's)."""

    aligner: Union[str, None] = Field(
        None, description="A registered aligner; default: the one for the generator's alignment (ffhq-dlib, center-crop, resize)."
    )
    align: Literal["auto", "none"] = Field("auto", description="none: the photos are already aligned; they are only resized.")
    inverter: ComponentChoice = Field(
        default_factory=ComponentChoice, description="A registered inverter and its options; default: the generator's default_inverter."
    )
    all_faces: bool = Field(False, description="Every face of a photo (default: the largest only).")


def is_image_file(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


@dataclass
class AlignedPhoto:
    """One crop of one photo: where it came from (``label``: the file, with ``#k`` for a second face ...)."""

    path: str
    label: str
    photo: Image.Image
    crop: Any  # essence.AlignedFace


@dataclass
class PhotoInversion:
    """Latents ``(n, num_ws, w_dim)`` of the crops that could be made, and a line per photo that could not."""

    ws: torch.Tensor
    aligned: list[AlignedPhoto]
    problems: list[str]
    warnings: list[str]
    aligner: str
    inverter: str
    inverter_weights_id: str = "unknown"
    component: Any = field(default=None, repr=False)  # the inverter, for its optional perceptual_distance

    @property
    def names(self) -> list[str]:
        return [a.label for a in self.aligned]

    def warn(self) -> None:
        """Every problem and warning as one warning line each (the CLI prints them as ``Warning: ...``)."""
        import warnings

        for line in self.problems + self.warnings:
            warnings.warn(line, stacklevel=3)

    def save(self, path: Path, generator_name: str, role: str) -> Path:
        """The latents as a latent file that ``--sources``/``--latents`` accept, with where they came from."""
        import json

        from essence.method.artifacts import save_latents

        metadata = {
            "format": "essence-latents", "role": role, "generator": generator_name, "aligner": self.aligner,
            "inverter": self.inverter, "inverter_weights_id": self.inverter_weights_id, "names": json.dumps(self.names),
        }
        return save_latents(path, self.ws, metadata=metadata)


# -- choosing the aligner and the inverter ------------------------------------------------------------


def aligner_name(settings: InversionSettings, alignment: str) -> str | None:
    """The aligner to use (None: ``align = "none"``)."""
    if settings.align == "none":
        return None
    return settings.aligner or DEFAULT_ALIGNERS.get(alignment, "resize")


def check_inversion_settings(settings: InversionSettings, generator: Any = None, generator_config: Any = None) -> None:
    """What needs no model: the aligner and inverter exist and the inverter's options validate. With the
    generator's registration and options, the defaults its config declares (``alignment``,
    ``default_inverter``) are checked too, so a missing aligner fails before the generator's weights load."""
    from essence.core.registry import get_registry

    registry = get_registry()
    declared = {}
    if generator is not None:
        config = generator.validate(**(generator_config or {}))
        declared = {k: getattr(config, k) for k in ("alignment", "default_inverter") if hasattr(config, k)}
    aligner = settings.aligner or (DEFAULT_ALIGNERS.get(declared["alignment"]) if "alignment" in declared else None)
    if aligner and settings.align != "none":
        aligner_registration(aligner)
    inverter = settings.inverter.name or declared.get("default_inverter")
    if inverter:
        registry.get("inverter", inverter).validate(**settings.inverter.config)


def aligner_registration(name: str) -> Any:
    """The aligner's registration; a face aligner whose extra is not installed says what to pip install."""
    from essence.core.registry import get_registry

    registration = get_registry().get("aligner", name)
    try:
        registration.ensure_available()
    except MissingExtraError as exc:
        raise MissingExtraError.with_hint(exc, "or pass --align none for photos that are already aligned") from None
    return registration


def build_aligner(name: str, generator: Any, generator_name: str) -> Any:
    """The aligner ``name``, refused when it makes another crop than the generator expects."""
    aligner = aligner_registration(name).build()
    expected = getattr(generator, "alignment", "none")
    if aligner.alignment != expected:
        fix = DEFAULT_ALIGNERS.get(expected, "resize")
        raise EssenceError(
            f"The aligner {name!r} makes {aligner.alignment!r} crops, but generator {generator_name!r} expects "
            f"{expected!r} ones: use --aligner {fix}, or --align none if the photos are already aligned."
        )
    return aligner


def build_inverter(settings: InversionSettings, generator: Any, generator_name: str, device: Any) -> tuple[str, Any]:
    """The inverter of the settings, else the generator's default; refused when trained for other generators."""
    from essence.core.registry import get_registry

    reg = get_registry().get("inverter", settings.inverter.name or getattr(generator, "default_inverter", "projector"))
    config = dict(settings.inverter.config)
    if "device" in reg.config.model_fields and "device" not in config:
        config["device"] = str(device)
    inverter = reg.build(**config)
    trained_for = tuple(getattr(inverter, "generators", ()) or ())
    if trained_for and generator_name not in trained_for:
        raise EssenceError(
            f"The inverter {reg.name!r} was trained for {', '.join(trained_for)}, not {generator_name!r}: "
            "choose another with --inverter (projector works for any generator)."
        )
    return reg.name, inverter


# -- loading, aligning, inverting -----------------------------------------------------------------------


def check_photos(photos: Sequence[str]) -> None:
    """Photos are read after G is built (runs, apply, blends, invert), and one that cannot be read is then a
    warning; when none can be (a FIFO, a bomb, a folder ...), refuse now, before any model is built."""
    from essence.core.images import check_image_file

    problems = []
    for photo in photos:
        try:
            check_image_file(photo, what="Photo")
        except EssenceError as exc:
            problems.append(str(exc))
    if photos and len(problems) == len(photos):
        raise EssenceError("No photo could be used: " + " ".join(problems))


def load_photos(paths: Sequence[str]) -> tuple[list[tuple[str, Image.Image]], list[str]]:
    """``(path, image)`` for every photo that can be read, and one line for each that cannot (the kernel's
    reader: folders, FIFOs, devices and decompression bombs are refused before decoding)."""
    from essence.core.images import load_image

    loaded, problems = [], []
    for p in paths:
        try:
            loaded.append((str(p), load_image(p)))
        except EssenceError as exc:
            problems.append(str(exc))
    return loaded, problems


def align_photos(
    photos: Sequence[tuple[str, Image.Image]], aligner: Any, resolution: int, *, all_faces: bool = False
) -> tuple[list[AlignedPhoto], list[str], list[str]]:
    """The crops of every photo (``aligner`` None: the photo resized), the problems and the warnings."""
    from PIL import Image

    from essence.core.interfaces import AlignedFace

    aligned, problems, warnings = [], [], []
    for path, image in photos:
        try:
            if aligner is None:  # already aligned: only resized (Lanczos, reducing huge photos first)
                resized = image.convert("RGB").resize((resolution, resolution), Image.Resampling.LANCZOS, reducing_gap=3.0)
                crops = [AlignedFace(resized, resolution)]
            else:
                crops = aligner.align(image, resolution, all_faces=all_faces)
        except EssenceError as exc:
            problems.append(f"{path}: {exc}")
            continue
        if not crops:
            problems.append(f"{path}: no face found.")
            continue
        for k, crop in enumerate(crops):
            label = path if k == 0 else f"{path}#{k + 1}"
            aligned.append(AlignedPhoto(path, label, image, crop))
            warnings += [f"{label}: {w}" for w in crop.warnings]
    return aligned, problems, warnings


def crops_tensor(aligned: Sequence[AlignedPhoto]) -> torch.Tensor:
    """The crops as images ``(n, 3, R, R)`` in [-1, 1], the generator's range."""
    import numpy as np
    import torch

    arrays = [np.asarray(a.crop.image.convert("RGB"), dtype=np.float32) for a in aligned]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1


def invert_photos(
    photos: Sequence[str | tuple[str, Image.Image]],
    generator: Any,
    generator_name: str,
    settings: InversionSettings | None = None,
    *,
    device: Any = "cpu",
    progress: Callable[[int, int, float], None] | None = None,
    what: str = "photo",
) -> PhotoInversion:
    """Load (paths), align and invert photos; raises an EssenceError only when none of them could be used."""
    import torch

    settings = settings or InversionSettings()
    paths = [p for p in photos if not isinstance(p, tuple)]
    loaded, problems = load_photos(paths)
    loaded += [p for p in photos if isinstance(p, tuple)]
    name = aligner_name(settings, getattr(generator, "alignment", "none"))
    aligner = build_aligner(name, generator, generator_name) if name is not None and loaded else None
    aligned, more, warnings = align_photos(loaded, aligner, int(generator.resolution), all_faces=settings.all_faces)
    problems += more
    if not aligned:
        raise EssenceError(f"No {what} could be used: " + " ".join(problems))
    inverter_name, inverter = build_inverter(settings, generator, generator_name, device)
    images = crops_tensor(aligned)
    ws = []
    for i in range(0, len(images), BATCH):
        ws.append(inverter.invert(images[i : i + BATCH], generator, callback=progress).detach().float().cpu())
    return PhotoInversion(
        torch.cat(ws), aligned, problems, warnings, name or "none", inverter_name,
        getattr(inverter, "weights_id", "unknown"), inverter,
    )
