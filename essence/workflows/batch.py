"""``essence batch``: one essence direction per target, with the models built once per worker.

A batch folder holds ``batch.json`` (the run settings every target shares, and the targets), one ordinary run
folder per target under ``runs/``, and the summary: ``summary.csv``, ``sheet.png`` (targets down, shared held-out
sources across) and ``index.html``. Each target's run config is the batch's settings plus its target, so the same
seeds give the same direction as a separate ``essence run``. Running the same batch again skips the targets
whose run completed and resumes the interrupted ones from their checkpoints (written every
``checkpoint_every`` steps: a batch sets 50 unless told otherwise, so a killed batch loses little).

Work is done by workers that hold the generator and encoder: in this process (``workers = 1``), in a pool of
processes (``workers > 1``), or by Ray actors (``executor = "ray"``, :mod:`essence.workflows.batch_ray`). A worker
optimises ``pack`` targets at once in one batch of images (:func:`essence.method.engine.optimize_together`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from essence.core.errors import EssenceError
from essence.core.files import write_json, write_text
from essence.method.runconfig import RunConfig, validate_run_config
from essence.workflows.batch_jobs import (
    BatchConfig,
    BatchEvent,
    BatchPlan,
    BatchTarget,
    Emit,
    Job,
    JobResult,
    JobSpec,
    Worker,
    job_spec,
    packs,
)

if TYPE_CHECKING:
    from PIL import Image

BATCH_FORMAT = "essence-batch"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
PROMPT_SUFFIXES = (".txt",)
#: Checkpoints every this many steps unless the settings say otherwise: a killed batch resumes from them.
BATCH_CHECKPOINT_EVERY = 50
SUMMARY_FILES = ("batch.json", "summary.csv", "sheet.png", "index.html")


# -- targets ---------------------------------------------------------------------------------------


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_prompts(path: Path) -> list[str]:
    """One text target per line; blank lines and lines starting with ``#`` are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EssenceError(f"Cannot read the prompts file {path}: {exc}") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not prompts:
        raise EssenceError(f"The prompts file {path} holds no prompt (one per line).")
    return prompts


def collect_targets(items: Sequence[str | os.PathLike[str]]) -> list[BatchTarget]:
    """The targets named on the command line, in order.

    An image file is one target; a ``.txt`` file holds one text target per line; a folder gives one target
    per image in it and one target per subfolder (all of that subfolder's images: one essence).
    """
    from essence.method.runner import text_stem

    found: list[BatchTarget] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            before = len(found)
            found += [BatchTarget(p.stem, images=[str(p)]) for p in _images_in(path)]
            for sub in sorted(p for p in path.iterdir() if p.is_dir()):
                images = _images_in(sub)
                if images:
                    found.append(BatchTarget(sub.name, images=[str(p) for p in images]))
            if len(found) == before:
                raise EssenceError(f"The folder {path} holds no image ({', '.join(IMAGE_SUFFIXES)}) and no folder of images.")
        elif path.is_file() and path.suffix.lower() in PROMPT_SUFFIXES:
            found += [BatchTarget(text_stem(text), texts=[text]) for text in read_prompts(path)]
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(BatchTarget(path.stem, images=[str(path)]))
        elif path.exists():
            raise EssenceError(f"{path} is not an image, a folder of images or a .txt file of prompts.")
        else:
            raise EssenceError(f"Target {path} does not exist.")
    if not found:
        raise EssenceError("No targets: give image files, folders of images or .txt files of prompts.")
    return _unique_names(found)


def _unique_names(targets: list[BatchTarget]) -> list[BatchTarget]:
    """Run folder names: safe (letters, digits, ``-_.``), never hidden, unique (``-2``, ``-3`` ...)."""
    import re

    seen: set[str] = set()
    for t in targets:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", t.name).strip("-.") or "target"
        name, k = base, 2
        while name.lower() in seen:
            name, k = f"{base}-{k}", k + 1
        seen.add(name.lower())
        t.name = name
    return targets


# -- the plan: what each target needs, checked before any model is built --------------------------


def target_config(settings: RunConfig, target: BatchTarget, out: Path) -> RunConfig:
    """A target's run config: the batch's settings with its target and its run folder."""
    data = settings.model_dump(mode="json")
    data.update(target=target.images, target_text=target.texts, out=str(out / "runs" / target.name))
    return validate_run_config(data)


def _settings_key(settings: RunConfig) -> dict[str, Any]:
    data = settings.model_dump(mode="json")
    for key in ("target", "target_text", "out"):
        data.pop(key, None)
    return data


def _run_state(folder: Path) -> Literal["new", "resume", "done"]:
    from essence.method.runner import CHECKPOINT

    if (folder / CHECKPOINT).is_file():
        return "resume"
    try:
        status = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return "new"
    # A non-finite run would fail the same way again; an interrupt without a checkpoint starts over.
    return "done" if status in ("completed", "nonfinite") and (folder / "direction.safetensors").is_file() else "new"


def plan_batch(
    settings: RunConfig, targets: Sequence[BatchTarget], out: str | os.PathLike[str], batch: BatchConfig,
    *, overwrite: bool = False,
) -> BatchPlan:
    """Check every target and the folder, and decide what each target needs. Nothing is built or computed.

    A folder that holds a batch with other run settings is refused unless ``overwrite`` (every target's
    run is then done again); the same settings continue it.
    """
    from essence.method.rundir import ensure_writable_dir
    from essence.method.runner import prepare

    out = Path(out)
    if batch.executor == "ray":
        from essence.workflows.batch_ray import check_ray

        check_ray()  # a missing extra is said before anything else
    if settings.target or settings.target_text:
        raise EssenceError("A batch takes its targets as arguments (essence batch TARGET...), not as run settings.")
    if not settings.checkpoint_every:
        settings = settings.model_copy(update={"checkpoint_every": BATCH_CHECKPOINT_EVERY})
    recorded = out / "batch.json"
    if recorded.is_file() and not overwrite:
        try:
            before = json.loads(recorded.read_text(encoding="utf-8"))
        except ValueError:
            before = {}
        if before.get("format") != BATCH_FORMAT:
            raise EssenceError(f"{recorded} is not an essence batch file. Choose another --out, or pass --overwrite.")
        if before.get("settings") != _settings_key(settings):
            changed = sorted(
                k for k in set(before.get("settings", {})) | set(_settings_key(settings))
                if before.get("settings", {}).get(k) != _settings_key(settings).get(k)
            )
            raise EssenceError(
                f"{out} holds a batch with other run settings ({', '.join(changed)}). Run it with its own settings "
                "to continue it, choose another --out, or pass --overwrite to redo every target."
            )
    elif not overwrite:
        found = [f for f in SUMMARY_FILES if (out / f).exists()]
        if (out / "runs").is_dir() and any((out / "runs").iterdir()):
            found.append("runs/")
        if found:
            raise EssenceError(
                f"{out} holds {', '.join(found)} but no batch of essence; a batch would write over them. "
                "Choose another --out, or pass --overwrite."
            )
    ensure_writable_dir(out)
    jobs = []
    for target in targets:
        config = target_config(settings, target, out)
        state = "new" if overwrite else _run_state(Path(config.out or ""))
        job = Job(target, config, state)
        if state != "done":
            # The run's own checks (components, losses, images, latent files, its folder); an unfinished
            # run of this batch without a checkpoint is started again.
            job.prepared = prepare(config, out=job.out, overwrite=True, resuming=state == "resume")
        jobs.append(job)
    return BatchPlan(out, settings, batch, jobs)


def write_batch_file(plan: BatchPlan) -> None:
    targets = [{"name": j.target.name, "images": j.target.images, "texts": j.target.texts} for j in plan.jobs]
    write_json(plan.out / "batch.json", {"format": BATCH_FORMAT, "version": 1, "settings": _settings_key(plan.settings), "targets": targets})


# -- local executors -------------------------------------------------------------------------------


def run_in_process(plan: BatchPlan, emit: Emit, notify: Callable[[str], None] | None = None) -> None:
    """One worker in this process: the models are built once; Ctrl-C stops after the current step."""
    from essence.method.runner import stop_on_sigint

    import torch

    if plan.batch.threads:
        torch.set_num_threads(plan.batch.threads)
    worker = Worker(plan.settings)
    with stop_on_sigint(worker.engines, notify):
        for pack in packs(plan.todo, plan.batch.pack):
            results = worker.run_pack([job_spec(j, local=True) for j in pack], emit)
            for result in results:
                emit(BatchEvent("done", result.name, status=result.status, metrics=result.metrics))
            if any(r.status == "interrupted" for r in results):
                break  # Ctrl-C: the interrupted runs hold checkpoints; the next run of the batch goes on


_POOL_WORKER: Worker | None = None
_POOL_QUEUE: Any = None


def _pool_init(settings: dict[str, Any], device: str | None, threads: int | None, queue: Any) -> None:
    import torch

    global _POOL_WORKER, _POOL_QUEUE
    if threads:
        torch.set_num_threads(threads)
    _POOL_QUEUE = queue
    _POOL_WORKER = Worker(settings, device)


def _pool_run(specs: list[JobSpec]) -> list[JobResult]:
    assert _POOL_WORKER is not None
    return _POOL_WORKER.run_pack(specs, _POOL_QUEUE.put, report_every=0.5)


def run_in_pool(plan: BatchPlan, emit: Emit) -> None:
    """``workers`` processes, each with its own models (on GPU ``i % count`` when the device is CUDA)."""
    import multiprocessing
    import queue as queue_module
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from essence.core.devices import resolve_device

    workers = plan.batch.workers or 1
    threads = plan.batch.threads or max(1, (os.cpu_count() or 1) // workers)
    device = str(resolve_device(plan.settings.device))
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    todo = packs(plan.todo, plan.batch.pack)
    settings = plan.settings.model_dump(mode="json")
    # One pool per device, so that each process builds its models once on its own device.
    devices = _pool_devices(device, workers)
    pools = [
        ProcessPoolExecutor(1, mp_context=ctx, initializer=_pool_init, initargs=(settings, d, threads, events))
        for d in devices
    ]
    try:
        running: dict[Any, int] = {}
        free = list(range(len(pools)))
        while todo or running:
            while todo and free:
                i = free.pop(0)
                running[pools[i].submit(_pool_run, [job_spec(j, local=True) for j in todo.pop(0)])] = i
            done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(events, emit, queue_module)
            for future in done:
                free.append(running.pop(future))
                for result in future.result():
                    emit(BatchEvent("done", result.name, status=result.status, metrics=result.metrics))
        _drain(events, emit, queue_module)
    finally:
        for pool in pools:
            pool.shutdown(cancel_futures=True)


def _pool_devices(device: str, workers: int) -> list[str | None]:
    if not device.startswith("cuda"):
        return [None] * workers
    import torch

    count = max(1, torch.cuda.device_count())
    return [f"cuda:{i % count}" for i in range(workers)]


def _drain(events: Any, emit: Emit, queue_module: Any) -> None:
    while True:
        try:
            emit(events.get_nowait())
        except queue_module.Empty:
            return


# -- the whole batch -------------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    out: Path
    jobs: list[Job]
    statuses: dict[str, str]
    seconds: float
    summary: Path


def execute_batch(plan: BatchPlan, emit: Emit | None = None, notify: Callable[[str], None] | None = None) -> BatchOutcome:
    """Run every job of ``plan`` that is not done, then write the summary."""
    emit = emit or (lambda event: None)
    statuses = {j.target.name: "completed" for j in plan.jobs if j.state == "done"}
    statuses.update(_done_statuses(plan))

    def record(event: BatchEvent) -> None:
        if event.kind == "done":
            statuses[event.name] = event.status
        emit(event)

    write_batch_file(plan)
    todo = plan.todo
    emit(BatchEvent("start", total=len(todo), steps=sum(j.steps_left for j in todo), skipped=len(plan.jobs) - len(todo)))
    started = time.perf_counter()
    if todo:
        if plan.batch.executor == "ray":
            from essence.workflows.batch_ray import run_on_ray

            run_on_ray(plan, record)
        elif (plan.batch.workers or 1) > 1:
            run_in_pool(plan, record)
        else:
            run_in_process(plan, record, notify)
    seconds = time.perf_counter() - started
    summary = write_summary(plan)
    return BatchOutcome(plan.out, plan.jobs, statuses, seconds, summary)


def _done_statuses(plan: BatchPlan) -> dict[str, str]:
    out = {}
    for j in plan.jobs:
        if j.state == "done":
            try:
                out[j.target.name] = json.loads((j.out / "metrics.json").read_text(encoding="utf-8")).get("status", "completed")
            except (OSError, ValueError):
                pass
    return out


# -- the summary -----------------------------------------------------------------------------------

SUMMARY_COLUMNS = (
    "target", "kind", "images", "texts", "status", "best_step", "best_loss", "heldout_transfer",
    "heldout_transfer_unedited", "heldout_consistency_loss", "heldout_loss", "targets_mean_pairwise_cosine",
    "seconds", "run",
)


def _metrics(job: Job) -> dict[str, Any]:
    try:
        return json.loads((job.out / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def summary_rows(plan: BatchPlan) -> list[dict[str, Any]]:
    """One row per target: its status and metrics (held-out transfer, consistency ...), as in summary.csv."""
    rows = []
    for job in plan.jobs:
        m = _metrics(job)
        h = m.get("heldout") or {}
        t = m.get("targets") or {}
        rows.append(
            {
                "target": job.target.name,
                "kind": job.target.kind,
                "images": " ".join(job.target.images),
                "texts": " | ".join(job.target.texts),
                "status": m.get("status", "not run"),
                "best_step": m.get("best_step"),
                "best_loss": m.get("best_loss"),
                "heldout_transfer": h.get("transfer"),
                "heldout_transfer_unedited": h.get("transfer_unedited"),
                "heldout_consistency_loss": h.get("consistency"),  # the loss term (metrics.json keys it by term)
                "heldout_loss": h.get("loss"),
                "targets_mean_pairwise_cosine": t.get("mean_pairwise_cosine"),
                "seconds": m.get("seconds"),
                "run": (Path("runs") / job.target.name).as_posix(),
            }
        )
    return rows


def write_summary(plan: BatchPlan) -> Path:
    """summary.csv, sheet.png (targets down, the shared held-out sources across) and index.html."""
    rows = summary_rows(plan)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: "" if v is None else v for k, v in r.items()} for r in rows])
    write_text(plan.out / "summary.csv", buffer.getvalue())
    sheet = batch_sheet(plan)
    if sheet is not None:
        from essence.core.images import save_image

        save_image(sheet, plan.out / "sheet.png")
    return write_text(plan.out / "index.html", index_html(plan, rows, sheet is not None))


def batch_sheet(plan: BatchPlan) -> Image.Image | None:
    """Row 0: the first held-out sources (every run of a batch has the same ones); then one row per target:
    its target at the left, its held-out results across (grey where a run has none)."""
    from PIL import Image

    from essence.core.images import load_image
    from essence.method.figures import SheetRow, sheet, target_cell

    k = plan.batch.sheet_sources
    sources: list[Image.Image] | None = None
    rows = []
    for job in plan.jobs:
        images = job.out / "images"
        if sources is None and (images / "heldout_source_00.png").is_file():
            sources = [load_image(p) for p in sorted(images.glob("heldout_source_[0-9][0-9].png"))[:k]]
        results = [load_image(p) for p in sorted(images.glob("heldout_result_[0-9][0-9].png"))[:k]]
        targets = [load_image(p) for p in sorted(images.glob("target_[0-9][0-9].png"))]
        left, _ = target_cell(targets, job.target.texts)
        rows.append((job.target.name, left, results))
    if sources is None:
        return None
    blank = Image.new("RGB", sources[0].size, (200, 200, 200))
    width = len(sources)
    sheet_rows = [SheetRow(sources, None, {1: "held-out sources"})]
    for name, left, results in rows:
        results = (results + [blank] * width)[:width]
        sheet_rows.append(SheetRow(results, left, {0: name}))
    return sheet(sheet_rows, tile=max(64, min(sources[0].width * 2, 128)))


def index_html(plan: BatchPlan, rows: Sequence[dict[str, Any]], has_sheet: bool) -> str:
    """A page of the batch: the sheet, then a table (target, status, metrics, links); every name escaped."""
    from html import escape
    from urllib.parse import quote

    def num(v: Any) -> str:
        return "" if v is None else f"{v:.4f}" if isinstance(v, float) else escape(str(v))

    def link(path: str, text: str) -> str:
        return f'<a href="{escape(quote(path))}">{escape(text)}</a>'

    body = []
    for r, job in zip(rows, plan.jobs):
        run = r["run"]
        target = escape(" | ".join(job.target.texts)) if job.target.texts else ""
        if (job.out / "images" / "target_00.png").is_file():
            target = f'<img src="{escape(quote(run + "/images/target_00.png"))}" height="64"> ' + target
        sheet = run + "/heldout_sheet.png"
        body.append(
            "<tr>"
            f"<td>{link(run, r['target'])}</td><td>{target}</td><td>{escape(r['status'])}</td>"
            f"<td>{num(r['heldout_transfer'])}</td><td>{num(r['heldout_transfer_unedited'])}</td>"
            f"<td>{num(r['heldout_consistency_loss'])}</td><td>{num(r['targets_mean_pairwise_cosine'])}</td>"
            f"<td>{num(r['seconds'])}</td>"
            f"<td>{link(sheet, 'held-out sheet') if (job.out / 'heldout_sheet.png').is_file() else ''}</td>"
            "</tr>"
        )
    s = plan.settings
    head = (
        f"{len(plan.jobs)} targets; generator {escape(s.generator.name)}, encoder {escape(s.encoder.name)}, "
        f"preset {escape(s.preset)}, {s.steps} steps, seed {s.seed}"
    )
    sheet_html = '<p><img src="sheet.png" alt="targets down, held-out sources across"></p>' if has_sheet else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>essence batch</title>
<style>body{{font-family:sans-serif}} td,th{{padding:2px 8px;text-align:left}} tr:nth-child(even){{background:#f3f3f3}}</style>
</head><body>
<h1>essence batch</h1>
<p>{head}. <a href="summary.csv">summary.csv</a></p>
{sheet_html}
<table>
<tr><th>target</th><th></th><th>status</th><th>held-out transfer loss &darr;</th><th>unedited</th><th>consistency loss &darr;</th>
<th>targets' mean cosine</th><th>seconds</th><th></th></tr>
{chr(10).join(body)}
</table>
<p>transfer loss: 1 - cos(target, result) on held-out sources (lower: more of the target); unedited: the same for
the sources themselves; consistency loss: 1 - cos between the edits of different sources (lower: more alike).
Both are losses (lower is better); `essence eval` reports consistency as a similarity (higher is better).</p>
</body></html>
"""
