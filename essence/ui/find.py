"""The Find tab: a run config from the page's fields, and one ``essence run`` in a thread with a live view.

The run is :func:`essence.method.runner.execute_run`, so the run folder is exactly what ``essence run``
writes. Stop sets the engine's ``stop_requested`` flag, as the first Ctrl-C does: the run ends after the
current step and keeps the best direction so far (status ``interrupted``, with ``checkpoint.pt`` for
``essence run --resume``).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence.core.errors import EssenceError

if TYPE_CHECKING:
    from PIL import Image

    from essence.method.engine import StepEvent, TransferOptimizer
    from essence.method.runconfig import RunConfig
    from essence.method.runner import RunOutcome

#: The toy world's targets, shipped as package data (files only: the UI imports no plugin).
BUNDLED_TARGETS = Path(__file__).resolve().parents[1] / "plugins" / "toy" / "targets"
#: Components that work on a fresh install, with no download.
DEFAULT_GENERATOR, DEFAULT_ENCODER = "toy-sprites", "toy-clip"
#: Series of the live loss curve, as in loss.png.
#: Trace columns shown live -> their names on the page (the terms are losses: lower is better).
SERIES = {"loss": "loss", "transfer": "transfer loss", "consistency": "consistency loss"}
#: The live view's tile size: a picture to watch, not the result.
PREVIEW_TILE = 96
#: The live preview shows the direction on at most this many of the run's sources (the run sheet has them all).
PREVIEW_SOURCES = 8


def bundled_targets() -> dict[str, Path]:
    """Name -> file of the bundled targets (``in-domain``, ``out-of-domain``)."""
    return {p.stem: p for p in sorted(BUNDLED_TARGETS.glob("*.png"))}


@dataclass
class Choices:
    """What the Find tab's menus offer: every registered generator and encoder (plugins' too), the presets."""

    generators: list[str]
    encoders: list[str]
    presets: dict[str, str]
    generator: str | None
    encoder: str | None


def choices() -> Choices:
    from essence.core.registry import get_registry
    from essence.method.runconfig import list_presets

    registry = get_registry()
    generators = sorted(r.name for r in registry.list("generator"))
    encoders = sorted(r.name for r in registry.list("encoder"))

    def default(names: list[str], preferred: str) -> str | None:
        return preferred if preferred in names else (names[0] if names else None)

    return Choices(
        generators, encoders, list_presets(), default(generators, DEFAULT_GENERATOR), default(encoders, DEFAULT_ENCODER)
    )


def _whole(value: Any, name: str, low: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EssenceError(f"{name}: give a whole number (got {value!r}).") from None
    if not number.is_integer() or number < low:
        raise EssenceError(f"{name}: give a whole number of at least {low} (got {value!r}).")
    return int(number)


def find_config(
    target: str | None,
    *,
    generator: str,
    encoder: str,
    preset: str,
    steps: Any,
    seed: Any,
    restarts: Any,
    sources: Any,
    runs: str | Path,
    init_target: bool = False,
    cache: Any = None,
) -> RunConfig:
    """The run config of the page's fields, with a new run folder ``<runs>/<target stem>-<time>``. With
    ``init_target`` the direction starts at the target's inversion (``init = "target"``: in-domain targets),
    refused when the generator has no inverter (:func:`~essence.ui.photos.generator_inverter`, which may
    build the generator through ``cache`` to ask it)."""
    from essence.method.rundir import default_out
    from essence.method.runconfig import build_run_config

    if not target:
        raise EssenceError("No target image: upload one or pick a bundled target.")
    options = {
        "preset": preset,
        "generator": {"name": generator},
        "encoder": {"name": encoder},
        "target": [str(target)],
        "steps": _whole(steps, "Steps", 1),
        "seed": _whole(seed, "Seed", 0),
        "restarts": _whole(restarts, "Restarts", 1),
        "sources": {"count": _whole(sources, "Sources", 2)},
    }
    if init_target:
        from essence.ui.photos import generator_inverter

        inverter, why = generator_inverter(generator, cache)
        if inverter is None:
            raise EssenceError(f"Cannot start at the target's inversion: {why} Untick it to start at random.")
        if options["restarts"] > 1:
            raise EssenceError("Starting at the target's inversion is one start: set Restarts to 1, or untick it.")
        # the preset's 'auto' (essence-in) falls back to a random start where the target cannot be inverted
        # here (e4e's weights not cached offline, no face found) and says why; otherwise the box insists
        options["init"] = "auto" if preset_init(preset) == "auto" else "target"
    elif preset_init(preset) in INVERTING:  # unticked: the paper's random start, not the preset's inversion
        options["init"] = "random"
    config = build_run_config(options)
    return config.model_copy(update={"out": str(default_out(Path(target).stem, root=runs))})


def preset_fields(preset: str) -> tuple[int, int]:
    """The Steps and Sources a preset starts the page's fields at."""
    from essence.method.runconfig import validate_run_config

    config = validate_run_config(preset)
    return config.steps, config.sources.count


#: The inits that start b at the inverted target.
INVERTING = ("target", "auto")


def preset_init(preset: str) -> str | None:
    """The init mode a preset starts b with (``auto`` for essence-in); None for a name that is no preset."""
    from essence.method.runconfig import validate_run_config

    try:
        return validate_run_config(preset).init.mode
    except EssenceError:
        return None


def preset_inverts(preset: str) -> bool:
    """Whether the preset starts b at the inverted target: the checkbox's default."""
    return preset_init(preset) in INVERTING


@dataclass
class FindView:
    """A snapshot of a job for the page: where it is, the live curve, the current results."""

    state: str  # starting, running, stopping, completed, interrupted, nonfinite, failed
    out: Path
    step: int = 0
    total: int = 0
    elapsed: float = 0.0
    eta: float | None = None
    series: dict[str, list[float]] = field(default_factory=dict)
    preview: Image.Image | None = None
    message: str = ""
    outcome: RunOutcome | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("completed", "interrupted", "nonfinite", "failed")

    def status_line(self) -> str:
        if self.state == "failed":
            return f"Failed: {self.message}"
        parts = [f"**{self.state}**", f"step {self.step}/{self.total}", f"{self.elapsed:.1f} s"]
        if self.eta is not None and not self.finished:
            parts.append(f"ETA {self.eta:.0f} s")
        last = {k: v[-1] for k, v in self.series.items() if v}
        parts += [f"{k} {v:.4f}" for k, v in last.items()]
        line = " · ".join(parts)
        if self.message:
            line += f"  \n{self.message}"
        if self.finished:
            line += f"  \nRun folder: `{self.out}`"
        return line


class FindJob:
    """One ``execute_run`` in a background thread; the page polls :meth:`view` and may :meth:`stop` it."""

    def __init__(self, config: RunConfig, *, preview_seconds: float = 1.0) -> None:
        self.config = config
        self.out = Path(config.out or "")
        self.preview_seconds = preview_seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._engine: TransferOptimizer | None = None
        self._view = FindView("starting", self.out, total=config.steps * config.restarts)
        self._started = 0.0
        self._last_preview = -1e9
        self._preview_cost = 0.0
        self._sources: list[Image.Image] | None = None
        self._targets: list[Image.Image] = []
        #: A note the page keeps after the run: init 'auto' started at random, not at the inverted target.
        self._kept_note = ""
        self._thread = threading.Thread(target=self._run, name="essence-ui-find", daemon=True)

    def start(self) -> FindJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the current step and keep the best direction (a no-op once finished)."""
        with self._lock:
            self._stop.set()
            if self._engine is not None:
                self._engine.stop_requested = True
            if not self._view.finished:
                self._view.state = "stopping"

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the job has finished (after up to ``timeout`` seconds)."""
        return self._done.wait(timeout)

    def view(self) -> FindView:
        with self._lock:
            v = self._view
            return FindView(
                v.state,
                v.out,
                v.step,
                v.total,
                v.elapsed,
                v.eta,
                {k: list(s) for k, s in v.series.items()},
                v.preview,
                v.message,
                v.outcome,
            )

    # -- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        from essence.method.runner import execute_run

        try:
            outcome = execute_run(
                self.config, callback=self._on_step, on_start=self._on_start, notify=self._note, on_engine=self._attach
            )
        except EssenceError as exc:
            self._finish("failed", str(exc))
        except Exception as exc:  # shown on the page in one line; the details go to the server's console
            traceback.print_exc(file=sys.stderr)
            self._finish("failed", f"unexpected {type(exc).__name__}: {exc} (the server's console has the details)")
        else:
            with self._lock:
                self._view.outcome = outcome
            done = outcome.result.message if outcome.status != "completed" else ""
            self._finish(outcome.status, done or self._kept_note)
        finally:
            self._engine = None
            self._done.set()

    def _finish(self, state: str, message: str) -> None:
        with self._lock:
            self._view.state, self._view.message = state, message
            self._view.eta = 0.0
            if self._started:
                self._view.elapsed = time.perf_counter() - self._started

    def _attach(self, engine: TransferOptimizer) -> None:
        from essence.core.images import load_image

        self._targets = [load_image(t) for t in self.config.target]
        with self._lock:
            self._engine = engine
            if self._stop.is_set():
                engine.stop_requested = True

    def _on_start(self, config: RunConfig, done: int) -> None:
        self._started = time.perf_counter()
        with self._lock:
            if self._view.state == "starting":
                self._view.state = "running"

    def _note(self, message: str) -> None:
        from essence.method.runner import RANDOM_FALLBACK

        with self._lock:
            self._view.message = message
            if message.startswith(RANDOM_FALLBACK):
                self._kept_note = message

    def _on_step(self, event: StepEvent) -> None:
        now = time.perf_counter()
        step = event.restart * event.steps + event.step + 1
        with self._lock:
            v = self._view
            if event.step == 0:
                v.series = {label: [] for label in SERIES.values()}
            row = event.record.row()
            for name, label in SERIES.items():
                v.series[label].append(float(row[name]))
            v.step = step
            v.elapsed = now - self._started
            v.eta = v.elapsed / step * (v.total - step)
        last = event.step + 1 == event.steps
        if last or now - self._last_preview >= max(self.preview_seconds, 4 * self._preview_cost):
            self._preview(event)

    def _preview(self, event: StepEvent) -> None:
        """The current direction on the sources, in the run sheet's layout; its cost keeps it under ~20%."""
        from essence.core.images import to_pil
        from essence.method.figures import contact_sheet

        engine = self._engine
        if engine is None:
            return
        started = time.perf_counter()
        shown = engine.sources[:PREVIEW_SOURCES]
        if self._sources is None:
            self._sources = to_pil(engine.renderer.images(shown))
        results = to_pil(engine.renderer.images(shown + event.direction[None].to(shown)))
        sheet = contact_sheet(self._targets, self._sources, results, tile=PREVIEW_TILE)
        self._last_preview = time.perf_counter()
        self._preview_cost = self._last_preview - started
        with self._lock:
            self._view.preview = sheet
