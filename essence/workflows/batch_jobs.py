"""The worker side of ``essence batch``: the batch's settings and jobs, the worker that holds the models and
optimises packs of jobs, and the events it reports. :mod:`essence.workflows.batch` plans a batch and runs it
with these, in this process or a process pool; :mod:`essence.workflows.batch_ray` on Ray actors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import Field

from essence.core.config import Strict
from essence.core.errors import EssenceError
from essence.core.files import write_atomic
from essence.method.runconfig import RunConfig, validate_run_config
from essence.method.runner import CHECKPOINT

if TYPE_CHECKING:
    from essence.method.runner import Prepared


class BatchConfig(Strict):
    """How a batch is run (not what is computed: that is the run settings, the same for every target)."""

    pack: int = Field(1, ge=1, le=256, description="Targets optimised at once per worker, in one batch of images.")
    executor: Literal["local", "ray"] = Field("local", description="local: this machine; ray: Ray actors.")
    workers: Union[int, None] = Field(
        None, ge=1, description="Workers (default: 1 locally; with Ray, one per GPU, or 1 without GPUs)."
    )
    threads: Union[int, None] = Field(None, ge=1, description="torch threads per worker (default: torch's).")
    ray_address: Union[str, None] = Field(None, description="An existing Ray cluster ('auto'); default: a local one.")
    retries: int = Field(2, ge=0, description="Times a pack is tried again on a new worker when its worker dies.")
    sheet_sources: int = Field(4, ge=1, le=64, description="Held-out sources across the summary sheet.")


@dataclass
class BatchTarget:
    """One target of a batch: its run folder's name, and its images and texts (one essence)."""

    name: str
    images: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        if self.images and self.texts:
            return "mixture"
        if self.texts:
            return "text"
        return "images" if len(self.images) > 1 else "image"


@dataclass
class Job:
    """One target's run: its config (out = its run folder) and what is left to do: new, resume or done."""

    target: BatchTarget
    config: RunConfig
    state: Literal["new", "resume", "done"]
    prepared: Prepared | None = None

    @property
    def out(self) -> Path:
        return Path(self.config.out or "")

    @property
    def steps_left(self) -> int:
        return 0 if self.state == "done" else self.config.steps * self.config.restarts


@dataclass
class BatchPlan:
    out: Path
    settings: RunConfig
    batch: BatchConfig
    jobs: list[Job]

    @property
    def todo(self) -> list[Job]:
        return [j for j in self.jobs if j.state != "done"]


# -- workers ---------------------------------------------------------------------------------------


@dataclass
class BatchEvent:
    """What a batch reports as it goes: ``start`` (``total`` targets to run, ``steps``, ``skipped``),
    ``step`` (``name`` has done ``done`` of its steps), ``done`` (``name``, ``status``, ``metrics``),
    ``retry`` and ``note`` (``message``)."""

    kind: str
    name: str = ""
    done: int = 0
    total: int = 0
    steps: int = 0
    skipped: int = 0
    status: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""


Emit = Callable[[BatchEvent], None]


@dataclass
class JobSpec:
    """A job as a worker gets it: everything needed, picklable (for processes and Ray actors).

    ``folder``: write the run folder there (same machine); None: into a temporary folder whose files are
    returned for the driver to write (a worker on another machine). ``files``: what such a worker needs of
    the run folder to resume it (``checkpoint.pt``, and ``init.safetensors`` for ``init = "target"``).
    """

    name: str
    config: dict[str, Any]
    images: list[Any]  # PIL images
    folder: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class JobResult:
    name: str
    status: str
    metrics: dict[str, Any]
    files: dict[str, bytes] | None = None  # relative path -> bytes, when the worker wrote a temporary folder


#: The files of a run folder that a worker on another machine needs to resume it.
RESUME_FILES = (CHECKPOINT, "init.safetensors")


def job_spec(job: Job, *, local: bool) -> JobSpec:
    p = job.prepared
    assert p is not None
    files = {}
    if job.state == "resume" and not local:
        files = {name: (job.out / name).read_bytes() for name in RESUME_FILES if (job.out / name).is_file()}
    return JobSpec(
        job.target.name, p.config.model_dump(mode="json"), list(p.targets),  # init 'auto' settled by prepare
        folder=str(job.out) if local else None, files=files,
    )


class Worker:
    """A generator and an encoder, built once from the batch's settings, and the packs of jobs they run."""

    def __init__(self, settings: RunConfig | dict[str, Any], device: str | None = None) -> None:
        from essence.core.devices import resolve_device
        from essence.core.registry import get_registry
        from essence.method.rundir import check_latent_files, component_config
        from essence.method.runner import latent_files

        settings = validate_run_config(settings)
        if device is not None:
            settings = settings.model_copy(update={"device": device})
        self.settings = settings
        registry = get_registry()
        dev = resolve_device(settings.device)
        self.generator_config = component_config(registry.get("generator", settings.generator.name), settings.generator.config, dev)
        self.encoder_config = component_config(registry.get("encoder", settings.encoder.name), settings.encoder.config, dev)
        self.generator = registry.create("generator", settings.generator.name, **self.generator_config)
        self.encoder = registry.create("encoder", settings.encoder.name, **self.encoder_config)
        check_latent_files(latent_files(settings), self.generator)
        #: The engines of the pack being optimised (for Ctrl-C).
        self.engines: list[Any] = []

    def _prepared(self, spec: JobSpec, folder: Path) -> Prepared:
        from essence.method.runner import Prepared

        config = validate_run_config(spec.config)
        if self.settings.device != config.device:  # the worker's device (a GPU of its own) is the one used
            config = config.model_copy(update={"device": self.settings.device})
        return Prepared(config, folder, self.generator_config, self.encoder_config, list(spec.images))

    def run_pack(self, specs: Sequence[JobSpec], emit: Emit, *, report_every: float = 0.0) -> list[JobResult]:
        """Optimise the jobs together, write their run folders; ``step`` events at most every ``report_every`` s."""
        import tempfile

        import torch

        from essence.method.engine import optimize_together
        from essence.method.runner import continue_run, read_checkpoint_state, start_run

        with tempfile.TemporaryDirectory(prefix="essence-batch-") as tmp:
            runs = []
            for spec in specs:
                folder = Path(spec.folder) if spec.folder else Path(tmp) / spec.name
                folder.mkdir(parents=True, exist_ok=True)
                write_returned_files(folder, spec.files)
                p = self._prepared(spec, folder)
                callback = _progress(spec, p, emit, report_every)
                if (folder / CHECKPOINT).is_file():
                    state = read_checkpoint_state(folder / CHECKPOINT)
                    runs.append(continue_run(p, state, self.generator, self.encoder, callback))
                else:
                    runs.append(start_run(p, self.generator, self.encoder, callback))
            self.engines[:] = [r.engine for r in runs]
            optimize_together(self.engines)
            results = []
            for spec, run in zip(specs, runs):
                outcome = run.finish()
                files = None if spec.folder else _read_folder(outcome.out)
                results.append(JobResult(spec.name, outcome.status, outcome.metrics, files))
            self.engines[:] = []
            return results


def _progress(spec: JobSpec, p: Prepared, emit: Emit, every: float) -> Callable[[Any], None]:
    """The step callback of one job: ``step`` events (throttled), and for a worker that writes a temporary
    folder, each checkpoint's bytes as a ``checkpoint`` event (``metrics={"bytes": ...}``) for the driver."""
    cfg = p.config
    last = [0.0]

    def on_step(event: Any) -> None:
        done = event.restart * cfg.steps + event.step + 1
        if spec.folder is None and cfg.checkpoint_every and (event.step + 1) % cfg.checkpoint_every == 0:
            emit(BatchEvent("checkpoint", spec.name, done, metrics={"bytes": (p.out / CHECKPOINT).read_bytes()}))
        now = time.perf_counter()
        if now - last[0] >= every or done == cfg.steps * cfg.restarts:
            last[0] = now
            emit(BatchEvent("step", spec.name, done))

    return on_step


def _read_folder(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder).as_posix()): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_returned_files(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write the files a worker returned into a run folder, each atomically; only plain relative paths."""
    from pathlib import PurePosixPath

    for rel, data in files.items():
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or any(part in ("", ".", "..") for part in parts):
            raise EssenceError(f"A worker returned a file with an unsafe name: {rel!r}.")
        dest = run_dir.joinpath(*parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dest, lambda tmp, data=data: tmp.write_bytes(data))


def packs(jobs: Sequence[Job], size: int) -> list[list[Job]]:
    """Groups of at most ``size`` jobs; resumed ones together first (they are at similar steps)."""
    ordered = [j for j in jobs if j.state == "resume"] + [j for j in jobs if j.state == "new"]
    return [list(ordered[i : i + size]) for i in range(0, len(ordered), size)]
