"""Photos on the page: uploaded photos -> W+ latents through :mod:`essence.method.photos`, each photo's
inversion kept by the SHA256 of its file (with the generator, aligner and inverter it was made with), so
pressing Apply again, or inverting the same photo in another tab, does not invert it again.

Used by the Apply tab's ``photos`` sources, the Invert tab and the Find tab's "start at the target's
inversion" (which asks :func:`generator_inverter` whether the generator has one).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence.core.errors import EssenceError

if TYPE_CHECKING:
    import torch

    from essence.method.photos import AlignedPhoto, InversionSettings, PhotoInversion

#: The aligner and inverter menus' first entry: what the generator declares.
GENERATORS_OWN = "(the generator's)"
#: The aligner menu's entry for photos that are already aligned (``inversion.align = "none"``).
NO_ALIGNMENT = "none (already aligned: only resized)"
#: Photos per upload, and the largest photo file accepted (pixels are limited by PIL's bomb check).
MAX_PHOTOS = 16
MAX_PHOTO_BYTES = 50 * 1024 * 1024


def aligner_choices() -> list[str]:
    from essence.core.registry import get_registry

    return [GENERATORS_OWN, NO_ALIGNMENT, *sorted(r.name for r in get_registry().list("aligner"))]


def inverter_choices() -> list[str]:
    from essence.core.registry import get_registry

    return [GENERATORS_OWN, *sorted(r.name for r in get_registry().list("inverter"))]


def inversion_settings(aligner: str | None = None, inverter: str | None = None) -> InversionSettings:
    """The settings of the page's two menus (empty or :data:`GENERATORS_OWN`: the generator's)."""
    from essence.method.photos import InversionSettings

    own = (None, "", GENERATORS_OWN)
    return InversionSettings(
        aligner=None if aligner in own or aligner == NO_ALIGNMENT else aligner,
        align="none" if aligner == NO_ALIGNMENT else "auto",
        inverter={"name": None if inverter in own else inverter},
    )


def generator_inverter(generator: str | None, cache: Any = None) -> tuple[str | None, str]:
    """``(inverter, why)``: the inverter the generator's photos go through by default, or None and a line
    saying why there is none. What the generator's configuration declares; else the built generator's
    ``default_inverter`` (built through ``cache``, a :class:`~essence.ui.apply.GeneratorCache`)."""
    from essence.core.devices import resolve_device
    from essence.core.registry import get_registry
    from essence.method.rundir import component_config

    registry = get_registry()
    if not generator:
        return None, "No generator chosen."
    try:
        reg = registry.get("generator", generator)
        config = component_config(reg, {}, resolve_device("auto"))
        declared = getattr(reg.validate(**config), "default_inverter", None)
        if declared is None and cache is not None:
            declared = getattr(cache.get(reg.name, config), "default_inverter", None)
    except EssenceError as exc:
        return None, f"The generator {generator!r} cannot be used: {exc}"
    if not declared:
        return None, f"The generator {generator!r} names no inverter."
    try:
        registry.get("inverter", declared).ensure_available()
    except EssenceError as exc:
        return None, str(exc)
    return str(declared), f"The target is inverted with {declared}."


#: The command-line options that photo messages name, in the page's words.
PAGE_WORDS = (
    (r"pass --align none", f"pick the aligner {NO_ALIGNMENT!r}"),
    (r"--align none", f"the aligner {NO_ALIGNMENT!r}"),
    (r"use --aligner ([\w.-]+)", r"pick the aligner \1"),
    (r"with --inverter", "in the Inverter menu"),
)


@contextlib.contextmanager
def page_words() -> Iterator[None]:
    """Photo messages (written for the command line) re-raised naming the page's menus, not its options."""
    try:
        yield
    except EssenceError as exc:
        message = str(exc)
        for pattern, words in PAGE_WORDS:
            message = re.sub(pattern, words, message)
        if message == str(exc):
            raise
        raise EssenceError(message) from None


def check_upload(path: str) -> None:
    """A file the page accepts as a photo: an image suffix, not too large (one line otherwise)."""
    from essence.method.photos import IMAGE_SUFFIXES, is_image_file

    p = Path(path)
    if not is_image_file(str(p)):
        raise EssenceError(f"{p.name} is not a photo: upload one of {', '.join(IMAGE_SUFFIXES)}.")
    if not p.is_file():
        raise EssenceError(f"{p.name}: the uploaded file is gone; upload it again.")
    size = p.stat().st_size
    if size > MAX_PHOTO_BYTES:
        raise EssenceError(
            f"{p.name} is too large ({size / 2**20:.0f} MB, at most {MAX_PHOTO_BYTES // 2**20} MB): downscale it first."
        )


@dataclass
class Inverted:
    """One photo file's crops and their latents, as :func:`~essence.method.photos.invert_photos` made them."""

    ws: torch.Tensor
    aligned: list[AlignedPhoto]
    warnings: list[str]
    aligner: str
    inverter: str
    inverter_weights_id: str

    def at(self, path: str) -> Inverted:
        """The same inversion, named after ``path`` (the same photo uploaded again is another file)."""
        from dataclasses import replace

        if not self.aligned or self.aligned[0].path == path:
            return self
        old = self.aligned[0].path
        aligned = [replace(a, path=path, label=path + a.label[len(old) :]) for a in self.aligned]
        return replace(self, aligned=aligned, warnings=[w.replace(old, path, 1) for w in self.warnings])


class InversionCache:
    """Inversions by photo file hash and settings (the last ``size`` photos), shared by all pages."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._done: dict[str, Inverted] = {}
        self._component: dict[str, Any] = {}  # the last inverter of each settings (for its LPIPS)
        self._lock = threading.Lock()
        self.inverted = 0  # photos inverted so far (cache misses), for tests and the status line

    def invert(
        self,
        paths: Sequence[str],
        generator: Any,
        generator_name: str,
        generator_config: dict[str, Any],
        settings: InversionSettings,
        *,
        what: str = "photo",
    ) -> PhotoInversion:
        """The photos' latents, in the order given, inverting only those not inverted before."""
        import torch

        from essence.core.files import sha256_file
        from essence.method.photos import PhotoInversion, invert_photos

        paths = [str(p) for p in paths if p]
        if not paths:
            raise EssenceError(f"No {what}: upload one or more photos first.")
        if len(paths) > MAX_PHOTOS:
            raise EssenceError(f"{len(paths)} photos: upload at most {MAX_PHOTOS} at a time.")
        problems: list[str] = []
        for p in list(paths):  # a file that is not a photo, or too large, is one line; the others go on
            try:
                check_upload(p)
            except EssenceError as exc:
                problems.append(str(exc))
                paths.remove(p)
        if not paths:
            raise EssenceError(f"No {what} could be used: " + " ".join(problems))
        setting = json.dumps(
            [generator_name, generator_config, settings.model_dump(mode="json")], sort_keys=True, default=str
        )
        keys = {p: f"{sha256_file(p)}:{setting}" for p in paths}
        with self._lock:
            missing = [p for p in paths if keys[p] not in self._done]
        if missing:
            try:
                fresh = invert_photos(missing, generator, generator_name, settings, device=generator.device, what=what)
            except EssenceError as exc:
                if len(missing) == len(paths) and not problems:
                    raise
                line, prefix = str(exc), f"No {what} could be used: "  # every new photo failed, each said why
                problems.append(line[len(prefix) :] if line.startswith(prefix) else line)
                if len(missing) == len(paths):
                    raise EssenceError(prefix + " ".join(problems)) from None
            else:
                problems += fresh.problems
                self._keep(fresh, keys, setting)
        with self._lock:
            found = [self._done[keys[p]].at(p) for p in dict.fromkeys(paths) if keys[p] in self._done]
            component = self._component.get(setting)
        if not found:
            raise EssenceError(f"No {what} could be used: " + " ".join(problems))
        first = found[0]
        return PhotoInversion(
            torch.cat([f.ws for f in found]),
            [a for f in found for a in f.aligned],
            problems,
            [w for f in found for w in f.warnings],
            first.aligner,
            first.inverter,
            first.inverter_weights_id,
            component,
        )

    def _keep(self, fresh: PhotoInversion, keys: dict[str, str], setting: str) -> None:
        """Split a fresh inversion by photo file and keep each part."""
        with self._lock:
            for path in dict.fromkeys(a.path for a in fresh.aligned):
                rows = [k for k, a in enumerate(fresh.aligned) if a.path == path]
                labels = {fresh.aligned[k].label for k in rows}
                self._done[keys[path]] = Inverted(
                    fresh.ws[rows].clone(),
                    [fresh.aligned[k] for k in rows],
                    [w for w in fresh.warnings if w.split(": ", 1)[0] in labels],
                    fresh.aligner,
                    fresh.inverter,
                    fresh.inverter_weights_id,
                )
                self.inverted += 1
                while len(self._done) > self.size:
                    self._done.pop(next(iter(self._done)))
            self._component[setting] = fresh.component


def display_name(path: str) -> str:
    """A photo's name on the page: the uploaded file's own name (the server's copy sits in a hashed folder)."""
    return Path(path).name


def relabel(inv: PhotoInversion, files: Sequence[str]) -> PhotoInversion:
    """The inversion with each photo named by its uploaded file's name (``me.jpg``, ``me.jpg#2``) in its
    crops, problems and warnings, as the latent file's metadata and the record name them."""
    from dataclasses import replace

    def named(line: str) -> str:
        for f in files:
            line = line.replace(str(f), display_name(str(f)))
        return line

    aligned = [replace(a, path=display_name(a.path), label=named(a.label)) for a in inv.aligned]
    return replace(inv, aligned=aligned, problems=[named(x) for x in inv.problems], warnings=[named(x) for x in inv.warnings])
