"""The Apply tab: a direction on sources at any strength, as ``essence apply`` renders it.

The generator is built once and kept (:class:`GeneratorCache`), so moving the strength slider renders only
the sources' results. Sources come from :data:`SOURCE_KINDS`: random seeds, a latent file, or uploaded
photos (aligned and inverted through :mod:`essence.method.photos`, each photo's inversion kept by its file
hash in an :class:`~essence.ui.photos.InversionCache`, so Apply again does not invert it again).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence.core.errors import EssenceError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from essence.method.artifacts import Direction
    from essence.ui.photos import InversionCache

#: Tiles on the page: small, so a slider move sends little; downloads are at the generator's resolution.
VIEW_TILE = 128
DIRECTION_SUFFIXES = (".safetensors", ".npy", ".pt", ".pth")


class GeneratorCache:
    """The generators built so far, by name and configuration (the last ``size`` of them), shared by all
    pages: the slider and the Runs tab's comparisons never build one twice."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._built: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str, config: dict[str, Any]) -> Any:
        from essence.core.registry import get_registry

        key = json.dumps([name, config], sort_keys=True, default=str)
        with self._lock:
            if key not in self._built:
                generator = get_registry().create("generator", name, **config)
                while len(self._built) >= self.size:
                    self._built.pop(next(iter(self._built)))
                self._built[key] = generator
            return self._built[key]


# -- sources ---------------------------------------------------------------------------------------


def random_sources(generator: Any, *, count: Any = 6, seed: Any = 0, truncation: Any = 0.7, **_: Any) -> torch.Tensor:
    """``count`` random sources drawn and truncated exactly as ``essence run --seed`` draws them."""
    from essence.method.artifacts import source_latents
    from essence.method.runconfig import SourcesConfig

    try:
        n, s, psi = int(count), int(seed), float(truncation)
    except (TypeError, ValueError):
        raise EssenceError("Random sources: give a whole count, a whole seed and a truncation number.") from None
    if not 1 <= n <= 64:
        raise EssenceError(f"Random sources: give between 1 and 64 sources (got {n}).")
    return source_latents(generator, SourcesConfig(count=n, truncation=psi), s)


def latent_file_sources(generator: Any, *, latents: str | None = None, **_: Any) -> torch.Tensor:
    """Every row of a latent file (``.pt``, ``.npy``, ``.safetensors``; read without executing code)."""
    from essence.method.artifacts import load_latents

    if not latents:
        raise EssenceError("Latent file sources: upload a latent file (N, num_ws, w_dim) first.")
    return load_latents(latents, num_ws=generator.num_ws, w_dim=generator.w_dim, what="Sources latent file")


@dataclass
class Sources:
    """Latents ``(N, num_ws, w_dim)`` and, for sources made from photos, the aligned crops they were
    inverted from (shown beside their reconstructions) and a line per photo that could not be used."""

    ws: torch.Tensor
    photos: list[Image.Image] | None = None
    names: list[str] | None = None
    notes: list[str] | None = None


def photo_sources(
    generator: Any,
    *,
    photos: Sequence[str] | str | None = None,
    aligner: str | None = None,
    inverter: str | None = None,
    inversions: InversionCache | None = None,
    generator_name: str = "",
    generator_config: dict[str, Any] | None = None,
    **_: Any,
) -> Sources:
    """Uploaded photos, aligned to the generator's crop and inverted (menus: the generator's aligner and
    inverter unless others are picked); an inversion made before with the same settings is reused."""
    from essence.ui.photos import InversionCache, inversion_settings, page_words, relabel

    files = [photos] if isinstance(photos, str) else list(photos or [])
    if not files:
        raise EssenceError("Photo sources: upload one or more photos first.")
    cache = inversions if inversions is not None else InversionCache()
    settings = inversion_settings(aligner, inverter)
    with page_words():
        inv = cache.invert(files, generator, generator_name, generator_config or {}, settings, what="source photo")
    inv = relabel(inv, files)  # the uploaded files' own names, not the server's copies
    return Sources(inv.ws, [a.crop.image for a in inv.aligned], inv.names, inv.problems + inv.warnings)


#: How each kind of sources becomes W+ latents of the chosen generator: ``kind -> f(generator, **fields)``,
#: giving the latents or :class:`Sources` (latents with the photos they came from). Each gets the page's
#: fields and ``generator_name``, ``generator_config``; fields it does not use go to ``**_``.
SOURCE_KINDS: dict[str, Callable[..., torch.Tensor | Sources]] = {
    "random": random_sources,
    "latent file": latent_file_sources,
    "photos": photo_sources,
}


# -- one direction on some sources -----------------------------------------------------------------


@dataclass
class Applied:
    """A page's direction on its sources (the generator stays in the cache, found again by name)."""

    direction: Direction
    direction_path: Path
    generator: str
    generator_config: dict[str, Any]
    ws: torch.Tensor
    #: For photo sources: the aligned crops the latents were inverted from, their names, the problems.
    photos: list[Image.Image] | None = None
    photo_names: list[str] | None = None
    notes: list[str] | None = None

    @property
    def name(self) -> str:
        p = self.direction_path
        return str(
            self.direction.metadata.get("target") or (p.parent.name if p.name == "direction.safetensors" else p.stem)
        )

    @property
    def file_stem(self) -> str:
        """:attr:`name` made safe for a file name (a direction's metadata is untrusted input)."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("._")[:64] or "direction"


def load_applied(
    cache: GeneratorCache,
    direction: str | Path | None,
    *,
    generator: str | None = None,
    sources: str = "random",
    device: str = "auto",
    **fields: Any,
) -> Applied:
    """Open the direction (a file or a run folder), build or reuse its generator, resolve the sources."""
    from essence.workflows.apply import GeneratorChoice, generator_config, generator_spec_for, open_direction

    if not direction:
        raise EssenceError("No direction: pick a run or upload a direction file (.safetensors, or TargetCLIP's .npy).")
    path = Path(direction)
    if path.is_file() and path.suffix.lower() not in DIRECTION_SUFFIXES:
        raise EssenceError(f"{path.name} is not a direction file: upload a .safetensors (ours) or a .npy (TargetCLIP).")
    opened, path = open_direction(path)
    spec = generator_spec_for(opened, GeneratorChoice(name=generator or None))
    reg, config = generator_config(spec, device)
    if sources not in SOURCE_KINDS:
        raise EssenceError(f"Unknown kind of sources {sources!r}: choose one of {', '.join(SOURCE_KINDS)}.")
    g = cache.get(reg.name, config)
    opened.check_fits(g, source=f"The direction {path.name}")
    made = SOURCE_KINDS[sources](g, generator_name=reg.name, generator_config=config, **fields)
    if not isinstance(made, Sources):
        made = Sources(made)
    return Applied(opened, path, reg.name, config, made.ws, made.photos, made.names, made.notes)


def render(cache: GeneratorCache, applied: Applied, alphas: Sequence[float]) -> list[list[Image.Image]]:
    """``G(w + alpha b)`` at the generator's resolution: one list of images per alpha (over the sources)."""
    from essence.core.images import to_pil
    from essence.method.engine import Renderer

    g = cache.get(applied.generator, applied.generator_config)
    renderer = Renderer(g, chunk=8)
    b = applied.direction.b.to(applied.ws)
    return [to_pil(renderer.images(applied.ws + float(alpha) * b[None])) for alpha in alphas]


def view(images: Sequence[Image.Image], tile: int = VIEW_TILE) -> list[Image.Image]:
    """Images as the page shows them: ``tile`` pixels (small generators enlarged without blur)."""
    from essence.method.figures import fit_tile

    return [fit_tile(img, tile) for img in images]


def at_strength(cache: GeneratorCache, applied: Applied, alpha: float) -> list[Image.Image]:
    """The results at one strength, as page tiles: what the slider shows."""
    return view(render(cache, applied, [alpha])[0])


def photo_view(cache: GeneratorCache, applied: Applied) -> list[tuple[Image.Image, str]]:
    """For photo sources, each aligned photo beside its reconstruction G(w) (what the inversion kept), as
    captioned page tiles in pairs; an empty list for other sources."""
    if not applied.photos:
        return []
    recon = at_strength(cache, applied, 0.0)
    names = applied.photo_names or [f"photo {k + 1}" for k in range(len(recon))]
    shown: list[tuple[Image.Image, str]] = []
    for crop, g, name in zip(view(applied.photos), recon, names):
        shown += [(crop, f"{name}: aligned"), (g, f"{name}: G(w)")]
    return shown


@dataclass
class Exported:
    grid: Path
    images: Path
    direction: Path


def export(
    cache: GeneratorCache, applied: Applied, alphas: Sequence[float], folder: Path
) -> tuple[Image.Image, Exported]:
    """The grid (rows: sources, columns: alphas, captioned as ``essence apply``'s; tiles as in the run sheet)
    and the downloads in ``folder``:
    the grid, a zip of every tile at the generator's resolution (named as ``essence apply`` names them),
    and a copy of the direction file."""
    from essence.core.files import write_atomic
    from essence.core.images import save_image
    from essence.method.figures import labelled_grid, sheet_tile
    from essence.workflows.apply import alpha_label

    if not alphas:
        raise EssenceError("Give at least one strength for the grid, for example 0,0.5,1.")
    columns = render(cache, applied, alphas)
    rows = [[columns[c][r] for c in range(len(alphas))] for r in range(applied.ws.shape[0])]
    grid, _ = labelled_grid(
        rows, sheet_tile(rows[0][0].width), [f"alpha {a:g}" for a in alphas], [f"source {r}" for r in range(len(rows))]
    )
    folder.mkdir(parents=True, exist_ok=True)
    stem = applied.file_stem
    grid_path = save_image(grid, folder / f"{stem}-grid.png")

    def write_zip(tmp: Path) -> None:
        import io

        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for r, row in enumerate(rows):
                for alpha, img in zip(alphas, row):
                    buffer = io.BytesIO()
                    img.save(buffer, format="PNG")
                    zf.writestr(f"source_{r:02d}_alpha_{alpha_label(alpha)}.png", buffer.getvalue())

    images_path = write_atomic(folder / f"{stem}-images.zip", write_zip)
    direction_path = copy_file(applied.direction_path, folder / f"{stem}{applied.direction_path.suffix.lower()}")
    return grid, Exported(grid_path, images_path, direction_path)


def copy_file(source: Path, dest: Path) -> Path:
    """A copy for download, written atomically (the original is never served or touched)."""
    from essence.core.files import write_atomic

    return write_atomic(dest, lambda tmp: shutil.copyfile(source, tmp))
