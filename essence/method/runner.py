"""One ``essence run``: check everything, build the components, optimise, write the run folder.

Every check that can fail on a user mistake (config, component names, target files, latent files and
their shapes, the output folder) runs before any optimisation. Ctrl-C stops after the current step and
writes the best direction so far plus ``checkpoint.pt``; :func:`resume_run` continues from it to the
same result as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence.core.devices import resolve_device
from essence.core.errors import EssenceError
from essence.core.files import write_atomic, write_json
from essence.core.images import save_image
from essence.method.artifacts import save_direction, write_trace_csv
from essence.method.engine import StepEvent, TransferOptimizer, TransferResult, check_generator
from essence.method.figures import contact_sheet, loss_plot, sheet_tile
from essence.method.photos import check_inversion_settings, check_photos, invert_photos
from essence.method.rundir import check_latent_files, component_config, default_out, prepare_out, read_run_status
from essence.method.runconfig import RunConfig, validate_run_config
from essence.weights.resolve import check_available

if TYPE_CHECKING:
    from PIL import Image

CHECKPOINT = "checkpoint.pt"
#: Files a run folder holds; --overwrite removes them (and images/) first.
#: Written only when photos are inverted: the source latents, and b's start for ``init = "target"``.
PHOTO_FILES = ("sources.safetensors", "init.safetensors")
RUN_FILES = (
    "direction.safetensors",
    "config.json",
    "trace.csv",
    "metrics.json",
    "sheet.png",
    "heldout_sheet.png",
    "loss.png",
    *PHOTO_FILES,
    CHECKPOINT,
)


@dataclass
class RunOutcome:
    out: Path
    result: TransferResult
    metrics: dict[str, Any]

    @property
    def status(self) -> str:
        return self.result.status


# -- preparation -----------------------------------------------------------------------------------


def latent_files(config: RunConfig) -> list[tuple[str | None, str]]:
    """The latent files a run config names, with what each is for (for error messages)."""
    return [
        (config.sources.latents, "Sources latent file"),
        (config.heldout.latents, "Held-out latent file"),
        (config.init.path, "Init latent file"),
    ]


@dataclass
class Prepared:
    config: RunConfig
    out: Path
    generator_config: dict[str, Any]
    encoder_config: dict[str, Any]
    targets: list[Image.Image]


def prepare(
    config: RunConfig, *, out: Path | None = None, overwrite: bool = False, resuming: bool = False, claim: bool = False
) -> Prepared:
    """Every check that needs no model: components, losses, targets, latent files, output folder.

    With ``claim`` the folder is only checked: the caller creates it and clears an old run under
    :class:`~essence.method.rundir.OutputClaim` once the components are built (as :func:`execute_run` does);
    without, an old run is removed here (with ``overwrite``) and the folder created."""
    from essence.core.images import load_image
    from essence.core.registry import get_registry

    if not config.target and not config.target_text:
        raise EssenceError(
            "No target: pass --target FILE or --target-text TEXT (or set `target` / `target_text` in the config)."
        )
    registry = get_registry()
    device = resolve_device(config.device)
    gen_reg = registry.get("generator", config.generator.name)
    enc_reg = registry.get("encoder", config.encoder.name)
    for name, spec in config.loss_weights().items():
        registry.get("loss", name).validate(**spec.config)
    if config.init.mode == "target" and not config.target:
        raise EssenceError(
            "init 'target' starts b at the inverted target image, and this run has only text targets: use --init zeros "
            "(or --preset essence-ood), or give --target IMAGE."
        )
    if config.init.mode == "target" and config.restarts > 1:
        raise EssenceError("init 'target' is one start; restarts need different ones: use --restarts 1, or --init random.")
    if config.init.mode == "auto":
        config = settle_init(config, gen_reg)
    if config.sources.photos or config.init.mode == "target":
        check_inversion_settings(config.inversion, gen_reg, config.generator.config)
    generator_config = component_config(gen_reg, config.generator.config, device)
    encoder_config = component_config(enc_reg, config.encoder.config, device)
    check_available([  # offline: every missing weights file named at once, before any is looked for
        ("generator", getattr(gen_reg.validate(**generator_config), "weights", None)),
        ("encoder", getattr(enc_reg.validate(**encoder_config), "weights", None)),
    ])
    targets = [load_image(t) for t in config.target]
    check_photos(config.sources.photos)
    check_latent_files(latent_files(config))
    stem = Path(config.target[0]).stem if config.target else text_stem(config.target_text[0])
    run_dir = Path(out) if out is not None else (Path(config.out) if config.out else default_out(stem))
    prepare_out(
        run_dir,
        RUN_FILES,
        markers=() if resuming else ("direction.safetensors", "metrics.json", CHECKPOINT),
        overwrite=overwrite,
        what="a run",
        hint=resume_hint(run_dir),
        clear=not claim,
    )
    config = config.model_copy(update={"out": str(run_dir)})
    return Prepared(config, run_dir, generator_config, encoder_config, targets)


def settle_init(config: RunConfig, gen_reg: Any) -> RunConfig:
    """init 'auto' where the models are not needed to decide: random (the paper's start) for text-only targets,
    for several restarts and where the target cannot be inverted here (no inverter, an extra missing).
    Otherwise it stays 'auto' and :func:`photo_inputs` tries the inversion (falling back to random)."""
    if not config.target:
        return chosen_init(config, "random", "only text targets: there is no image to invert")
    if config.restarts > 1:
        return chosen_init(config, "random", f"{config.restarts} restarts need different starts; the inverted target is one")
    try:
        check_inversion_settings(config.inversion, gen_reg, config.generator.config)
    except EssenceError as exc:
        return chosen_init(config, "random", f"the target cannot be inverted here: {exc}")
    return config


def resume_hint(run_dir: Path) -> str:
    """What to do about a folder that holds a run: resume it only when there is something to resume."""
    from essence.method.rundir import read_run_status

    with contextlib.suppress(EssenceError):
        if (run_dir / CHECKPOINT).is_file() and read_run_status(run_dir) != "completed":
            return f"Continue it with `essence run --resume {run_dir}`, choose another --out"
    return "Choose another --out"


def text_stem(text: str, length: int = 40) -> str:
    """A file-name stem from a text target: lower-case words joined by dashes (``an-old-man``)."""
    import re

    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)[:length].strip("-") or "text"


def build_components(p: Prepared) -> tuple[Any, Any]:
    """Build G and C, then check the latent files against G's W+ shape."""
    from essence.core.registry import get_registry

    registry = get_registry()
    generator = registry.create("generator", p.config.generator.name, **p.generator_config)
    encoder = registry.create("encoder", p.config.encoder.name, **p.encoder_config)
    check_latent_files(latent_files(p.config), generator)
    return generator, encoder


def photo_inputs(
    p: Prepared, generator: Any, notify: Callable[[str], None] | None, progress: Callable[..., None] | None
) -> tuple[Any, Any]:
    """Source photos and an init at the target, inverted (``sources.safetensors``, ``init.safetensors`` in the
    run folder, for reuse); None for what the config draws itself."""
    if p.config.init.mode == "auto":  # a batch worker (maybe another machine) checks its own extras too
        from essence.core.registry import get_registry

        p.config = settle_init(p.config, get_registry().get("generator", p.config.generator.name))
    cfg, sources, init = p.config, None, None
    jobs = []
    if cfg.sources.photos:
        jobs.append(("sources", list(cfg.sources.photos), "source photo"))
    if cfg.init.mode in ("target", "auto"):
        jobs.append(("init", [(cfg.target[0], p.targets[0])], "target"))
    if jobs:  # a broken generator plugin is named before an inverter trips over its output
        check_generator(generator)
    for role, photos, what in jobs:
        if notify is not None:
            notify(f"Inverting the {what}s ({len(photos)})..." if role == "sources" else f"Inverting the target for init {cfg.init.mode!r}...")
        try:
            inv = invert_photos(photos, generator, cfg.generator.name, cfg.inversion, device=generator.device, progress=progress, what=what)
        except EssenceError as exc:
            if role == "sources" or cfg.init.mode != "auto":
                raise
            settled(p, "random", f"the target could not be inverted: {exc}", notify)
            continue
        inv.warn()
        inv.save(p.out / f"{role}.safetensors", cfg.generator.name, role)
        if role == "sources":
            sources = inv.ws.to(generator.device)
        else:
            init = inv.ws[0].to(generator.device)
            if cfg.init.mode == "auto":
                settled(p, "target", INVERTED, notify)
    if p.config.init.auto and p.config.init.mode != "target" and notify is not None:
        notify(init_note(p.config))
    return sources, init


#: What init 'auto' records when it started at the inverted target; how its note on a random start begins.
INVERTED = "the target image was inverted"
RANDOM_FALLBACK = "Init 'auto': b starts at a random latent"


def chosen_init(config: RunConfig, mode: str, why: str) -> RunConfig:
    """``config`` with what init 'auto' chose, and why (config.json says it, and a resume starts the same)."""
    from essence.method.runconfig import InitConfig

    init = config.init
    return config.model_copy(update={"init": InitConfig(mode=mode, truncation=init.truncation, seed=init.seed, auto=why)})


def settled(p: Prepared, mode: str, why: str, notify: Callable[[str], None] | None) -> None:
    """Record in the run's config what init 'auto' chose once it tried the inversion."""
    p.config = chosen_init(p.config, mode, why)
    if notify is not None and mode == "target":
        notify("Init 'auto': b starts at the inverted target.")


def init_note(config: RunConfig) -> str:
    """One line on what init 'auto' chose instead of the inverted target, and how to get that start."""
    hint = " (--init target insists on it; --init random skips the attempt)" if config.target and config.restarts == 1 else ""
    return f"{RANDOM_FALLBACK}, not the inverted target: {config.init.auto}.{hint}"


# -- running ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def stop_on_sigint(engines: Sequence[TransferOptimizer], notify: Callable[[str], None] | None) -> Iterator[None]:
    """First Ctrl-C: finish the current step, then stop cleanly. Second: the usual KeyboardInterrupt.

    ``engines`` may grow while it is active (a batch adds the runs it starts)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if not engines or any(e.stop_requested for e in engines):
            raise KeyboardInterrupt
        for e in engines:
            e.stop_requested = True
        if notify is not None:
            notify("Stopping after this step (Ctrl-C again to stop at once)...")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def execute_run(
    config: RunConfig | dict[str, Any] | str,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    callback: Callable[[StepEvent], None] | None = None,
    on_start: Callable[[RunConfig, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
    handle_sigint: bool = False,
    on_engine: Callable[[TransferOptimizer], None] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> RunOutcome:
    """Run ``config`` end to end and write its run folder; returns where, the result and the metrics.

    ``on_start(config, steps_done)`` is called once the components are built; ``callback`` after every
    step; ``notify`` receives one-line status messages. ``on_engine(engine)`` gets the engine before its
    first step: another thread may set ``engine.stop_requested`` to stop as Ctrl-C does (the web UI's Stop).
    ``progress(step, steps, loss)`` follows an optimising inverter (source photos, ``init = "target"``).
    """
    from essence.method.rundir import OutputClaim, clear_out

    cfg = validate_run_config(config)
    p = prepare(cfg, out=Path(out) if out is not None else None, overwrite=overwrite, claim=True)
    with OutputClaim(p.out):  # a second run into the same folder is refused; a failed start leaves no folder
        generator, encoder = build_components(p)
        if overwrite:  # every check passed and the models are built: only now does the old run go
            clear_out(p.out, RUN_FILES)
        run = start_run(p, generator, encoder, callback, notify=notify, progress=progress)
        if on_engine is not None:
            on_engine(run.engine)
        return _drive(run, on_start, notify, handle_sigint)


def resume_run(
    run_dir: str | Path,
    *,
    callback: Callable[[StepEvent], None] | None = None,
    on_start: Callable[[RunConfig, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
    handle_sigint: bool = False,
) -> RunOutcome:
    """Continue an interrupted run from ``run_dir/checkpoint.pt`` with its own config."""
    from essence.method.rundir import OutputClaim

    p, state = read_checkpoint(run_dir)
    with OutputClaim(p.out):  # the run itself may still be going in another process
        generator, encoder = build_components(p)
        run = continue_run(p, state, generator, encoder, callback)
        if notify is not None:
            engine, cfg = run.engine, p.config
            notify(f"Resuming {p.out} at restart {engine.restart}, step {_steps_done(engine, cfg) % cfg.steps}.")
        return _drive(run, on_start, notify, handle_sigint)


def read_checkpoint(run_dir: str | Path) -> tuple[Prepared, dict[str, Any]]:
    """The checks and the checkpoint of an interrupted run folder, before any model is built. The folder may
    come from anyone: its config.json, metrics.json and checkpoint.pt are checked as strictly as options."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise EssenceError(f"{run_dir} is not a run folder (it has no config.json); give the folder of an interrupted run.")
    ckpt = run_dir / CHECKPOINT
    if not ckpt.is_file():
        if read_run_status(run_dir) == "completed":
            raise EssenceError(
                f"The run in {run_dir} is already complete; there is nothing to resume. To run it again, "
                f"`essence run --config {run_dir / 'config.json'} --out {run_dir} --overwrite` (or another --out)."
            )
        raise EssenceError(f"{run_dir} has no {CHECKPOINT} to resume from.")
    if read_run_status(run_dir) == "completed":  # killed between its last file and removing the checkpoint
        raise EssenceError(f"The run in {run_dir} is already complete (its {CHECKPOINT} is left over); there is nothing to resume.")
    cfg = read_run_config(run_dir / "config.json")
    state = read_checkpoint_state(ckpt)
    return prepare(cfg, out=run_dir, resuming=True, claim=True), state


def read_run_config(path: Path) -> RunConfig:
    """A run folder's config.json, validated like command-line input; an error names the file."""
    from essence.core.errors import ConfigError
    from essence.method.rundir import read_run_json

    try:
        return validate_run_config(read_run_json(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


#: The most seconds a checkpoint may say a run has taken (about 30 years): more is not a real run.
MAX_ELAPSED = 1e9


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    """``checkpoint.pt`` read without running code (no archive bomb) and checked: the engine state a dict, the
    inputs finite float tensors of the right ranks, the elapsed time a sane number."""
    import torch

    from essence.core.files import torch_load

    try:
        state = torch_load(path)
    except EssenceError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise EssenceError(f"Cannot read checkpoint {path} ({type(exc).__name__}: {first}).") from None

    def bad(why: str) -> EssenceError:
        return EssenceError(f"Checkpoint {path} is not one essence wrote: {why}.")

    if not isinstance(state, dict) or not isinstance(state.get("engine"), dict) or not isinstance(state.get("inputs"), dict):
        raise bad("it needs 'engine' and 'inputs' tables")
    elapsed = state.get("elapsed")
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not 0 <= elapsed <= MAX_ELAPSED:
        raise bad(f"'elapsed' is {str(elapsed)[:40]}, not a number of seconds")
    ranks = {"target": (1, 2), "sources": (3,), "heldout": (3,)}
    for key, allowed in ranks.items():
        t = state["inputs"].get(key)
        if t is None and key == "heldout":
            continue
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise bad(f"inputs.{key} is not a float tensor")
        if t.dim() not in allowed or t.numel() == 0:
            raise bad(f"inputs.{key} has shape {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise bad(f"inputs.{key} holds NaN or infinite values")
    return state


@dataclass
class ActiveRun:
    """A run being optimised: its folder, its engine and its clock (checkpoints every K steps as it goes)."""

    p: Prepared
    engine: TransferOptimizer
    generator: Any
    encoder: Any
    elapsed: float = 0.0
    callback: Callable[[StepEvent], None] | None = None

    def __post_init__(self) -> None:
        self.started = time.perf_counter()
        self.engine.callback = self._on_step

    def elapsed_now(self) -> float:
        return self.elapsed + time.perf_counter() - self.started

    def _on_step(self, event: StepEvent) -> None:
        every = self.p.config.checkpoint_every
        if every and (event.step + 1) % every == 0:
            save_checkpoint(self.engine, self.p.out, self.elapsed_now())
        if self.callback is not None:
            self.callback(event)

    def finish(self) -> RunOutcome:
        """After the engine stopped: the checkpoint (kept while interrupted, removed when complete), the run folder."""
        engine, p = self.engine, self.p
        result = engine.result()
        seconds = self.elapsed_now()
        if result.status != "completed" and engine.checkpoint_consistent and result.status == "interrupted":
            save_checkpoint(engine, p.out, seconds)
        rate = engine.step_seconds / engine.steps_run if engine.steps_run else None
        metrics = write_run_folder(
            p, engine, result, self.generator, self.encoder, seconds=seconds, seconds_per_step=rate,
            images=result.status != "interrupted",
        )
        if result.status == "completed":  # only now: a kill before this leaves a resumable run
            (p.out / CHECKPOINT).unlink(missing_ok=True)
        return RunOutcome(p.out, result, metrics)


def start_run(
    p: Prepared,
    generator: Any,
    encoder: Any,
    callback: Callable[[StepEvent], None] | None = None,
    *,
    notify: Callable[[str], None] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> ActiveRun:
    """A new run with built components: its config.json is written, its photos inverted, its targets embedded."""
    write_json(p.out / "config.json", p.config.model_dump(mode="json"))
    sources, init = photo_inputs(p, generator, notify, progress)
    engine = TransferOptimizer(
        generator, encoder, p.targets, sources, config=p.config, init=init, texts=p.config.target_text
    )
    warn_one_source(p.config, int(engine.sources.shape[0]))
    return ActiveRun(p, engine, generator, encoder, callback=callback)


def warn_one_source(config: RunConfig, count: int) -> None:
    """A run on one source still works, but its consistency term has nothing to compare: say so."""
    import warnings

    if count == 1 and config.loss_weight("consistency") > 0:
        warnings.warn(
            "One source: consistency (the edit being the same for every source) is undefined with a single "
            "source, so the direction is fitted to this one face; use --sources 2 or more.",
            UserWarning,
            stacklevel=2,
        )


def continue_run(
    p: Prepared, state: dict[str, Any], generator: Any, encoder: Any, callback: Callable[[StepEvent], None] | None = None
) -> ActiveRun:
    """An interrupted run with built components, at the state of its checkpoint."""
    inputs = state["inputs"]
    want = (generator.num_ws, generator.w_dim)
    for key in ("sources", "heldout"):
        t = inputs.get(key)
        if t is not None and tuple(t.shape[1:]) != want:
            raise EssenceError(
                f"Checkpoint {p.out / CHECKPOINT}: inputs.{key} has shape {tuple(t.shape)}, but the generator's W+ is {want}."
            )
    init = None
    if p.config.init.mode == "auto" and (p.out / "init.safetensors").is_file():  # 'auto' that inverted the target
        settled(p, "target", INVERTED, None)
    if p.config.init.mode == "target":
        from essence.method.artifacts import load_latents

        init = load_latents(p.out / "init.safetensors", what="The inverted target")[0].to(generator.device)
    engine = TransferOptimizer(
        generator,
        encoder,
        inputs["target"].to(generator.device),
        inputs["sources"].to(generator.device),
        config=p.config,
        init=init,
        heldout=0 if inputs["heldout"] is None else inputs["heldout"].to(generator.device),
    )
    try:
        engine.load_state_dict(state["engine"])
    except EssenceError as exc:
        raise EssenceError(f"Checkpoint {p.out / CHECKPOINT}: {exc}") from None
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise EssenceError(
            f"Checkpoint {p.out / CHECKPOINT} does not fit the run in its config.json ({type(exc).__name__}: {first})."
        ) from None
    return ActiveRun(p, engine, generator, encoder, float(state["elapsed"]), callback)


def _steps_done(engine: TransferOptimizer, cfg: RunConfig) -> int:
    current = engine.search.step_index if engine.search is not None else 0
    return sum(len(r.trace) for r in engine.completed) + current  # a restart --steps auto ended early did fewer


def _drive(
    run: ActiveRun,
    on_start: Callable[[RunConfig, int], None] | None,
    notify: Callable[[str], None] | None,
    handle_sigint: bool,
) -> RunOutcome:
    run.started = time.perf_counter()
    if on_start is not None:
        on_start(run.p.config, _steps_done(run.engine, run.p.config))
    guard = stop_on_sigint([run.engine], notify) if handle_sigint else contextlib.nullcontext()
    with guard:
        run.engine.run()
    return run.finish()


def save_checkpoint(engine: TransferOptimizer, out: Path, elapsed: float) -> Path:
    """Everything :func:`resume_run` needs: engine state (optimisers, RNG, best, trace) and the inputs."""

    import torch

    state = {
        "engine": engine.state_dict(),
        "inputs": {
            "target": engine.target.detach().cpu(),
            "sources": engine.sources.detach().cpu(),
            "heldout": None if engine.heldout_ws is None else engine.heldout_ws.detach().cpu(),
        },
        "elapsed": float(elapsed),
    }
    return write_atomic(out / CHECKPOINT, lambda tmp: torch.save(state, tmp))


# -- the run folder --------------------------------------------------------------------------------


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def write_run_folder(
    p: Prepared,
    engine: TransferOptimizer,
    result: TransferResult,
    generator: Any,
    encoder: Any,
    *,
    seconds: float,
    seconds_per_step: float | None,
    images: bool = True,
) -> dict[str, Any]:
    """config.json, direction.safetensors, trace.csv, metrics.json, loss.png and (unless ``images`` is
    False) sheet.png, heldout_sheet.png and per-source images."""
    cfg, out = p.config, p.out
    write_json(out / "config.json", cfg.model_dump(mode="json"))
    save_direction(
        out / "direction.safetensors",
        result.direction,
        result.embedding_direction,
        generator=cfg.generator.name,
        encoder=cfg.encoder.name,
        generator_weights_id=getattr(generator, "weights_id", "unknown"),
        encoder_weights_id=getattr(encoder, "weights_id", "unknown"),
        config=cfg.model_dump(mode="json"),
        extra={
            "status": result.status,
            "best_step": result.best_step,
            "best_loss": _finite(result.best_loss),
            "restart": result.restart,
            "heldout": result.heldout,
            "apply_alpha": cfg.apply_alpha,
        },
    )
    rows = []
    for r in engine.completed:
        rows += [{"restart": r.restart, **t.row()} for t in r.trace]
    if engine.search is not None:
        rows += [{"restart": engine.search.restart, **t.row()} for t in engine.search.trace]
    write_trace_csv(out / "trace.csv", rows)
    trace = result.trace
    plot = loss_plot(
        {
            "loss": [t.loss for t in trace],
            "transfer loss": [t.transfer for t in trace],
            "consistency loss": [t.consistency for t in trace],
        },
        title=f"restart {result.restart}: loss (weighted sum) and its terms",
    )
    save_image(plot, out / "loss.png")
    files = ["config.json", "direction.safetensors", "trace.csv", "metrics.json", "loss.png"]
    files += [f for f in ("sources.safetensors", "init.safetensors") if (out / f).exists()]
    if images:
        files += write_images(p, engine, result)
    if (out / CHECKPOINT).exists() and result.status != "completed":  # a completed run's goes right after
        files.append(CHECKPOINT)
    steps_done = _steps_done(engine, cfg)
    metrics = {
        "status": result.status,
        "message": result.message,
        "generator": cfg.generator.name,
        "encoder": cfg.encoder.name,
        "generator_weights_id": getattr(generator, "weights_id", "unknown"),
        "encoder_weights_id": getattr(encoder, "weights_id", "unknown"),
        "device": str(getattr(generator, "device", cfg.device)),
        "steps": cfg.steps,
        "restarts": cfg.restarts,
        "steps_done": steps_done,
        "restart": result.restart,
        "best_step": result.best_step,
        "best_loss": _finite(result.best_loss),
        "final_loss": trace[-1].loss if trace else None,
        "final": trace[-1].row() if trace else None,
        "heldout": result.heldout,
        "stopping": next((r.stopping for r in result.restarts if r.restart == result.restart), None),
        "targets": target_report(cfg, engine),
        "restart_results": [
            {
                "restart": r.restart,
                "init_seed": r.init_seed,
                "best_step": r.best_step,
                "best_loss": _finite(r.best_loss),
                "heldout": r.heldout,
                "status": r.status,
                "steps_done": len(r.trace),
                **({"stopping": {k: v for k, v in r.stopping.items() if k != "checks"}} if r.stopping else {}),
            }
            for r in result.restarts
        ],
        "seconds": seconds,
        "seconds_per_step": seconds_per_step,
        "chunk": engine.renderer.chunk,
        "files": sorted(files),
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def target_report(cfg: RunConfig, engine: TransferOptimizer) -> dict[str, Any]:
    """The targets of a run and how much they agree (``describe_targets``): for metrics.json and the summary."""
    from essence.method.engine import describe_targets

    report = describe_targets(engine.target, engine.target_weights)
    return {"images": list(cfg.target), "texts": list(cfg.target_text), **report}


def write_images(p: Prepared, engine: TransferOptimizer, result: TransferResult) -> list[str]:
    """Sources and results (training and held-out) as PNGs and contact sheets, rendered once at the end."""
    from essence.core.images import to_pil

    out = p.out
    (out / "images").mkdir(exist_ok=True)
    tile = sheet_tile(getattr(engine.generator, "resolution", 256))
    b = result.direction.to(engine.sources.device)
    files = []
    groups = [("", engine.sources, 1.0)]
    if engine.heldout_ws is not None:
        groups.append(("heldout_", engine.heldout_ws, p.config.heldout.alpha))
    for i, target in enumerate(p.targets):  # the run folder is self-contained: essence eval reads these
        save_image(target, out / "images" / f"target_{i:02d}.png")
        files.append(f"images/target_{i:02d}.png")
    for prefix, ws, alpha in groups:
        sources = to_pil(engine.renderer.images(ws))
        results = to_pil(engine.renderer.images(ws + alpha * b[None]))
        for i, (s, r) in enumerate(zip(sources, results)):
            save_image(s, out / "images" / f"{prefix}source_{i:02d}.png")
            save_image(r, out / "images" / f"{prefix}result_{i:02d}.png")
            files += [f"images/{prefix}source_{i:02d}.png", f"images/{prefix}result_{i:02d}.png"]
        sheet = contact_sheet(p.targets, sources, results, tile=tile, texts=p.config.target_text)
        save_image(sheet, out / f"{prefix}sheet.png")
        files.append(f"{prefix}sheet.png")
    return files

