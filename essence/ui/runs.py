"""The Runs tab: the run folders under ``--runs``, their pictures and metrics, and the comparison figure.

Run folders may come from anyone, so they are read as untrusted input: only JSON and images, never
anything executable; names are resolved inside the runs folder and nowhere else; a folder that cannot
be read is listed as such instead of breaking the page.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence.core.errors import EssenceError

if TYPE_CHECKING:
    from PIL import Image

    from essence.ui.apply import GeneratorCache

#: A folder is a run (of ``essence run``, ``blend`` or ``compare``'s parts) when it holds one of these.
MARKERS = ("metrics.json", "direction.safetensors")
#: How deep under the runs folder to look: ``compare`` puts its three runs one level down.
DEPTH = 3
#: JSON files bigger than this are not read (a metrics file is a few kB).
MAX_JSON_BYTES = 4 << 20
#: At most this many rows in one comparison figure.
MAX_COMPARED = 8


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a run folder, or None when it is missing, too big or not a JSON object."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class RunSummary:
    """One row of the runs table."""

    name: str  # the folder, relative to the runs folder
    path: Path
    method: str
    status: str
    generator: str
    encoder: str
    steps: int | None
    best_loss: float | None
    seconds: float | None
    has_direction: bool

    def row(self) -> list[Any]:
        loss = "" if self.best_loss is None else f"{self.best_loss:.4f}"
        seconds = "" if self.seconds is None else f"{self.seconds:.1f}"
        return [self.name, self.method, self.status, self.generator, self.encoder, self.steps or "", loss, seconds]


#: Headers of :meth:`RunSummary.row`.
COLUMNS = ["run", "method", "status", "generator", "encoder", "steps", "best loss", "seconds"]


def summarise(root: Path, folder: Path) -> RunSummary:
    metrics = read_json(folder / "metrics.json") or {}
    config = read_json(folder / "config.json") or {}

    def text(value: Any) -> str:
        if isinstance(value, dict):
            value = value.get("name")
        return str(value) if isinstance(value, (str, int, float)) else ""

    def number(value: Any) -> float | None:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    steps = number(metrics.get("steps", config.get("steps")))
    return RunSummary(
        name=folder.relative_to(root).as_posix(),
        path=folder,
        method=text(metrics.get("method")) or ("blend" if config.get("kind") == "blend" else "essence"),
        status=text(metrics.get("status")) or ("unreadable" if (folder / "metrics.json").exists() else "no metrics"),
        generator=text(metrics.get("generator") or config.get("generator")),
        encoder=text(metrics.get("encoder") or config.get("encoder")),
        steps=None if steps is None else int(steps),
        best_loss=number(metrics.get("best_loss")),
        seconds=number(metrics.get("seconds")),
        has_direction=(folder / "direction.safetensors").is_file(),
    )


def list_runs(root: str | Path) -> list[RunSummary]:
    """Every run folder under ``root`` (up to :data:`DEPTH` levels), newest first; none when it is missing."""
    base = Path(root)
    if not base.is_dir():
        return []
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return
        for child in children:
            if any((child / m).is_file() for m in MARKERS):
                found.append(child)
            if depth < DEPTH:
                walk(child, depth + 1)

    walk(base, 1)
    found.sort(key=lambda p: _mtime(p), reverse=True)
    return [summarise(base, p) for p in found]


def _mtime(folder: Path) -> float:
    try:
        return folder.stat().st_mtime
    except OSError:
        return 0.0


def resolve_run(root: str | Path, name: str) -> Path:
    """The run folder ``name`` inside ``root``; names that lead outside it are refused."""
    base = Path(root).resolve()
    folder = (base / name).resolve()
    if not name or folder == base or base not in folder.parents:
        raise EssenceError(f"{name!r} is not a run folder under {root}: pick one from the list.")
    if not any((folder / m).is_file() for m in MARKERS):
        raise EssenceError(f"{name!r} is not a run folder (it has no metrics.json or direction.safetensors).")
    return folder


def _image(path: Path) -> Image.Image | None:
    """An image of a run folder, or None when it is missing or unreadable (a broken folder is not an error)."""
    from essence.core.images import load_image

    if not path.is_file():
        return None
    try:
        return load_image(path)
    except Exception:  # untrusted files: any failure to decode (a decompression bomb too) means no picture
        return None


@dataclass
class RunDetails:
    summary: RunSummary
    sheet: Image.Image | None
    heldout_sheet: Image.Image | None
    loss: Image.Image | None
    metrics: dict[str, Any]


def run_details(root: str | Path, name: str) -> RunDetails:
    folder = resolve_run(root, name)
    return RunDetails(
        summarise(Path(root).resolve(), folder),
        _image(folder / "sheet.png"),
        _image(folder / "heldout_sheet.png"),
        _image(folder / "loss.png"),
        read_json(folder / "metrics.json") or {},
    )


# -- the comparison figure -------------------------------------------------------------------------


def _saved(folder: Path, kind: str) -> list[Image.Image] | None:
    """The run's ``images/<kind>_XX.png`` (sources, results, targets), or None if any is unreadable."""
    paths = sorted((folder / "images").glob(f"{kind}_[0-9][0-9].png"))
    images = [_image(p) for p in paths]
    return None if not images or any(i is None for i in images) else images  # type: ignore[return-value]


def label(name: str, tile: int) -> str:
    """A run's name wrapped to fit its figure cell (PIL's default font is about 6 pixels a character)."""
    return "\n".join(textwrap.wrap(name, width=max(8, (tile - 12) // 6))[:6])


def _same(a: list[Image.Image], b: list[Image.Image]) -> bool:
    return len(a) == len(b) and all(x.size == y.size and x.tobytes() == y.tobytes() for x, y in zip(a, b))


def compare_runs(root: str | Path, names: list[str], cache: GeneratorCache) -> Image.Image:
    """The ``essence compare`` figure of two or more runs: the target(s) and sources on top, one row of
    results per run. Runs made on the same sources (the same generator, sources and seed) show their own
    results; otherwise every run's direction is applied to the first run's sources, so the rows compare."""
    from essence.method.figures import comparison_figure, sheet_tile

    if len(names) < 2:
        raise EssenceError("Pick two or more runs to compare.")
    if len(names) > MAX_COMPARED:
        raise EssenceError(f"Pick at most {MAX_COMPARED} runs to compare (got {len(names)}).")
    folders = [resolve_run(root, n) for n in names]
    targets: list[Image.Image] = []
    for folder in folders:
        for t in _saved(folder, "target") or []:
            if not any(_same([t], [u]) for u in targets):
                targets.append(t)
    sources = [_saved(f, "source") for f in folders]
    results = [_saved(f, "result") for f in folders]
    first = sources[0]
    if (
        first is not None
        and all(s is not None and _same(first, s) for s in sources)
        and all(r is not None for r in results)
    ):
        tile = sheet_tile(first[0].width)
        return comparison_figure(targets, first, [(label(n, tile), r) for n, r in zip(names, results)], tile=tile)
    return _rerendered(folders, names, targets, cache)


def _rerendered(
    folders: list[Path], names: list[str], targets: list[Image.Image], cache: GeneratorCache
) -> Image.Image:
    from essence.core.images import to_pil
    from essence.method.engine import Renderer
    from essence.method.figures import comparison_figure, sheet_tile
    from essence.ui.apply import load_applied
    from essence.workflows.apply import open_direction

    missing = [n for n, f in zip(names, folders) if not (f / "direction.safetensors").is_file()]
    if missing:
        raise EssenceError(
            f"{', '.join(missing)} has no direction, and the runs were not made on the same sources: "
            "compare runs made with the same generator, sources and seed (as `essence compare` makes them)."
        )
    config = read_json(folders[0] / "config.json") or {}
    sources = config.get("sources") if isinstance(config.get("sources"), dict) else {}
    seed = sources.get("seed") if sources.get("seed") is not None else config.get("seed", 0)
    kind, fields = (
        ("latent file", {"latents": sources["latents"]})
        if sources.get("latents")
        else ("random", {"count": sources.get("count", 6), "seed": seed, "truncation": sources.get("truncation", 0.7)})
    )
    base = load_applied(cache, folders[0], sources=kind, **fields)
    g = cache.get(base.generator, base.generator_config)
    renderer = Renderer(g, chunk=8)
    rows = []
    for name, folder in zip(names, folders):
        direction, _ = open_direction(folder)
        made_for = direction.metadata.get("generator")
        if made_for and made_for != base.generator:
            raise EssenceError(
                f"{name} was made for {made_for!r}, {names[0]} for {base.generator!r}: compare runs of one generator."
            )
        direction.check_fits(g, source=f"The direction of {name}")
        rows.append((name, to_pil(renderer.images(base.ws + direction.b.to(base.ws)[None]))))
    source_images = to_pil(renderer.images(base.ws))
    tile = sheet_tile(source_images[0].width)
    return comparison_figure(targets, source_images, [(label(n, tile), r) for n, r in rows], tile=tile)
