"""Apply a direction to any sources: G(w + alpha b) for each alpha, as a grid (rows: sources, columns: alphas).

``essence apply`` and ``essence sweep`` build an :class:`ApplyConfig` (options and ``--set key=value`` over
the defaults, as ``essence run`` does) and call :func:`execute_apply`. The generator defaults to the one the
direction was made for, with the configuration recorded in the direction file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from pydantic import Field, field_validator

from essence.core.config import MAX_TILE, ComponentChoice, ComponentSpec, Strict, build_config, deep_merge
from essence.core.devices import resolve_device
from essence.core.errors import EssenceError
from essence.method.photos import InversionSettings, check_inversion_settings, check_photos, invert_photos
from essence.method.runconfig import MAX_ALPHA, SourcesConfig
from essence.method.rundir import check_latent_files, component_config, default_out, prepare_out

if TYPE_CHECKING:
    from essence.method.artifacts import Direction

APPLY_FILES = ("grid.png", "apply.json", "sources.safetensors")
#: At most this many columns: a sweep is a picture, not a data set.
MAX_ALPHAS = 64


#: A generator by name (None: the one the direction was made for) and overrides of its configuration.
GeneratorChoice = ComponentChoice


class ApplyConfig(Strict):
    """What ``essence apply`` / ``essence sweep`` do; ``apply.json`` in the output folder records it."""

    direction: str = Field(description="A direction file (ours, or a TargetCLIP .npy), or a run folder.")
    generator: GeneratorChoice = Field(default_factory=GeneratorChoice, description="Default: the direction's own.")
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    inversion: InversionSettings = Field(default_factory=InversionSettings, description="How source photos become latents.")
    seed: int = Field(0, description="Seed of random sources (sources.seed overrides it), as in `essence run`.")
    alphas: Union[list[float], None] = Field(
        None, description="Strengths: G(w + alpha b); default 0 and the direction's apply_alpha (1 without one)."
    )
    device: str = "auto"
    chunk: int = Field(8, ge=1, description="Most images per generator pass.")
    tile: Union[int, None] = Field(None, ge=8, le=MAX_TILE, description="Tile size in the grid; default min(resolution, 256).")
    out: Union[str, None] = None

    @field_validator("alphas")
    @classmethod
    def _some_alphas(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give at least one alpha")
        if len(value) > MAX_ALPHAS:
            raise ValueError(f"at most {MAX_ALPHAS} alphas")
        if not all(math.isfinite(a) for a in value):
            raise ValueError("alphas must be finite numbers")
        if any(abs(a) > MAX_ALPHA for a in value):
            raise ValueError(f"alphas must lie within +-{MAX_ALPHA:g} (beyond, every generator renders inf or NaN)")
        return value

    @property
    def sources_seed(self) -> int:
        return self.seed if self.sources.seed is None else self.sources.seed


def build_apply_config(options: Mapping[str, Any], sets: Sequence[str] = ()) -> ApplyConfig:
    """Options, then ``--set key=value`` items on top (dotted keys, JSON values)."""
    return build_config(ApplyConfig, options, sets=sets, what="apply settings")


# -- alphas ----------------------------------------------------------------------------------------


def parse_alphas(text: str) -> list[float]:
    """``"0,0.5,1"`` -> [0.0, 0.5, 1.0]."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        alphas = [float(p) for p in parts]
    except ValueError:
        raise EssenceError(f"--alpha {text!r}: give numbers separated by commas, for example --alpha 0,0.5,1.") from None
    if not alphas or not all(math.isfinite(a) for a in alphas):
        raise EssenceError(f"--alpha {text!r}: give finite numbers separated by commas, for example --alpha 0,0.5,1.")
    return alphas


def alpha_range(text: str) -> list[float]:
    """``"START:STOP:STEP"`` -> START, START + STEP, ... up to STOP included (``0:1.5:0.25``: 7 values)."""
    hint = "write START:STOP:STEP, for example --alpha-range 0:1.5:0.25"
    parts = text.split(":")
    if len(parts) != 3:
        raise EssenceError(f"--alpha-range {text!r}: {hint}.")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise EssenceError(f"--alpha-range {text!r}: {hint}.") from None
    if not all(math.isfinite(x) for x in (start, stop, step)):
        raise EssenceError(f"--alpha-range {text!r}: the numbers must be finite.")
    if step == 0 or (stop - start) * step < 0:
        raise EssenceError(f"--alpha-range {text!r}: STEP must be non-zero and go from START towards STOP.")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > MAX_ALPHAS:
        raise EssenceError(f"--alpha-range {text!r} gives {count} alphas; at most {MAX_ALPHAS}: use a larger STEP.")
    return [round(start + k * step, 10) for k in range(count)]


def alpha_label(alpha: float) -> str:
    return f"{alpha:g}"


# -- directions and generators ---------------------------------------------------------------------


def open_direction(path: str | os.PathLike[str]) -> tuple[Direction, Path]:
    """A direction file, or a run folder's ``direction.safetensors``."""
    from essence.method.artifacts import load_direction

    p = Path(path)
    if p.is_dir():
        if not (p / "direction.safetensors").is_file():
            raise EssenceError(f"{p} is a folder without direction.safetensors; give a direction file or a run folder.")
        p = p / "direction.safetensors"
    return load_direction(p), p


def generator_spec_for(direction: Direction, given: GeneratorChoice | None) -> ComponentSpec:
    """The generator to use: the given one, else the one the direction was made for. The configuration
    recorded in the direction (weights, ...) is the base when the names agree; given options go on top."""
    made_for = direction.metadata.get("generator")
    recorded = direction.metadata.get("config")
    base: dict[str, Any] = {}
    if isinstance(recorded, Mapping) and isinstance(recorded.get("generator"), Mapping):
        # the machine it ran on is not this one's: --device decides
        base = {k: v for k, v in (recorded["generator"].get("config") or {}).items() if k != "device"}
    given = given or GeneratorChoice()
    if given.name is None:
        if not made_for:
            raise EssenceError(
                "The direction does not say which generator it is for (an imported file?): pass --generator NAME "
                "(`essence list generators`)."
            )
        return ComponentSpec(name=str(made_for), config=deep_merge(base, given.config))
    if made_for and given.name == made_for:
        return ComponentSpec(name=given.name, config=deep_merge(base, given.config))
    return ComponentSpec(name=given.name, config=given.config)


def generator_config(spec: ComponentSpec, device: str) -> tuple[Any, dict[str, Any]]:
    """The generator's registration and validated config (a bad option fails before weights load)."""
    from essence.core.registry import get_registry

    reg = get_registry().get("generator", spec.name)
    return reg, component_config(reg, spec.config, resolve_device(device))


# -- apply -----------------------------------------------------------------------------------------


@dataclass
class ApplyOutcome:
    out: Path
    grid: Path
    rows: int
    cols: int
    tile: int
    record: dict[str, Any]


def execute_apply(
    config: ApplyConfig,
    *,
    overwrite: bool = False,
    command: str = "apply",
    progress: Callable[[int, int, float], None] | None = None,
    rendered: Callable[[int, int], None] | None = None,
) -> ApplyOutcome:
    """Render the grid and the images; every input is checked before the generator is built. Source photos
    are aligned and inverted (``progress(step, steps, loss)`` follows an optimising inverter) and their
    latents kept as ``sources.safetensors``, for reuse. ``rendered(done, total)`` follows the rendering,
    one alpha column at a time."""
    from essence.core.files import write_json
    from essence.core.images import save_image, to_pil
    from essence.core.registry import get_registry
    from essence.method.engine import Renderer
    from essence.method.artifacts import source_latents
    from essence.method.figures import labelled_grid

    direction, direction_path = open_direction(config.direction)
    if config.alphas is None:
        config = config.model_copy(update={"alphas": [0.0, direction.apply_alpha or 1.0]})
    spec = generator_spec_for(direction, config.generator)
    reg, gen_config = generator_config(spec, config.device)
    check_latent_files([(config.sources.latents, "Sources latent file")])
    if config.sources.photos:
        check_inversion_settings(config.inversion, reg, gen_config)
        check_photos(config.sources.photos)
    stem = direction.metadata.get("target") or (
        direction_path.parent.name if direction_path.name == "direction.safetensors" else direction_path.stem
    )
    out = Path(config.out) if config.out else default_out(str(stem), kind=command)
    out = prepare_out(out, APPLY_FILES, overwrite=overwrite, what=f"an `essence {command}` result")

    generator = get_registry().create("generator", reg.name, **gen_config)
    direction.check_fits(generator, source=f"The direction {direction_path.name}")
    renderer = Renderer(generator, chunk=config.chunk)
    files, inversion = [], None
    if config.sources.photos:
        inv = invert_photos(config.sources.photos, generator, reg.name, config.inversion, device=generator.device, progress=progress)
        inv.warn()
        inv.save(out / "sources.safetensors", reg.name, "sources")
        ws, files = inv.ws, ["sources.safetensors"]
        inversion = {"aligner": inv.aligner, "inverter": inv.inverter, "names": inv.names, "problems": inv.problems}
    else:
        ws = source_latents(generator, config.sources, config.sources_seed)
    b = direction.b.to(ws)
    tile = config.tile or min(int(generator.resolution), 256)
    (out / "images").mkdir(exist_ok=True)
    columns = []
    for alpha in config.alphas:
        if rendered is not None:
            rendered(len(columns), len(config.alphas))
        columns.append(to_pil(renderer.images(ws + alpha * b[None])))
    if rendered is not None:
        rendered(len(columns), len(config.alphas))
    rows = [[columns[c][r] for c in range(len(config.alphas))] for r in range(ws.shape[0])]
    for r, row in enumerate(rows):
        for alpha, img in zip(config.alphas, row):
            name = f"images/source_{r:02d}_alpha_{alpha_label(alpha)}.png"
            save_image(img, out / name)
            files.append(name)
    names = inversion["names"] if inversion else [f"source {r}" for r in range(len(rows))]
    grid, origin = labelled_grid(rows, tile, [f"alpha {a:g}" for a in config.alphas], names)
    save_image(grid, out / "grid.png")
    record = {
        "command": command,
        "direction": str(direction_path),
        "direction_made_for": direction.metadata.get("generator"),
        "target": direction.metadata.get("target"),
        "generator": {"name": reg.name, "config": gen_config},
        "generator_weights_id": getattr(generator, "weights_id", "unknown"),
        "sources": {
            **config.sources.model_dump(mode="json"),
            "seed": None if config.sources.latents or config.sources.photos else config.sources_seed,
        },
        "inversion": inversion,
        "alphas": list(config.alphas),
        "grid": {
            "file": "grid.png", "rows": "sources", "columns": "alphas", "shape": [len(rows), len(config.alphas)], "tile": tile,
            "origin": list(origin), "row_labels": names,
        },
        "files": ["grid.png", "apply.json", *files],
    }
    write_json(out / "apply.json", record)
    return ApplyOutcome(out, out / "grid.png", len(rows), len(config.alphas), tile, record)
