"""``essence batch --executor ray``: Ray actors hold the models; packs of targets are streamed to them.

One actor per GPU (``num_gpus=1`` each, so Ray gives every actor its own device) or, without GPUs, per CPU
slot. An actor streams back progress, each checkpoint's bytes and, at the end of a pack, every file of its
run folders: the driver writes them all, so workers need no shared filesystem (latent files named in the
settings must exist on every node). A pack whose actor dies is sent to a new actor, from the last
checkpoint the driver received, up to ``retries`` times.

Without ``ray_address`` the driver starts a Ray of its own on this machine, bound to 127.0.0.1, with no
dashboard and no usage statistics (``RAY_USAGE_STATS_ENABLED=0`` unless set). ``auto`` joins the cluster
this machine belongs to (``ray start --head`` / ``ray start --address ...``).
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from essence.core.errors import EssenceError, MissingExtraError
from essence.core.files import write_atomic
from essence.workflows.batch_jobs import (
    BatchEvent,
    BatchPlan,
    Emit,
    Job,
    JobSpec,
    Worker,
    job_spec,
    packs,
    write_returned_files,
)


def check_ray() -> None:
    """Say what to install when Ray is missing, without importing it (importing reads settings that
    :func:`start_ray` sets first)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("ray") is not None
    except (ValueError, AttributeError):  # a stand-in None in sys.modules
        found = False
    if not found:
        raise MissingExtraError("The Ray executor", "ray", ["ray"])


def import_ray() -> Any:
    check_ray()
    try:
        import ray
    except ImportError:
        raise MissingExtraError("The Ray executor", "ray", ["ray"]) from None
    return ray


def start_ray(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None) -> bool:
    """Connect to ``address``, or start a local Ray on 127.0.0.1 only; True when this call started it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not address:
        # Ray turns a loopback node address into a "routable" one by opening a socket towards a public DNS
        # server, unless it is in its single-machine mode (its switch for that is this variable, read when
        # ray is imported). A batch's own Ray is one machine: keep every address on loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = import_ray()
    if ray.is_initialized():
        return False
    common = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address:
            ray.init(address=address, **common)
        else:
            # The node address given: Ray then never looks for a routable one.
            ray.init(_node_ip_address="127.0.0.1", num_cpus=num_cpus, num_gpus=num_gpus, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise EssenceError(f"Could not start or join {where}: {exc}") from None
    return True


class BatchActor:
    """A worker in a Ray actor: the models on its device (its GPU when Ray gave it one)."""

    def __init__(self, settings: dict[str, Any], threads: int | None = None) -> None:
        import ray
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        device = settings.get("device", "auto")
        if self.gpu_ids and device != "cpu":
            device = "cuda"  # Ray set CUDA_VISIBLE_DEVICES to this actor's GPU: it is cuda:0 here
        self.worker = Worker(settings, device)

    def describe(self) -> dict[str, Any]:
        return {"gpu_ids": self.gpu_ids, "device": str(self.worker.generator.device), "pid": os.getpid()}

    def run(self, specs: Sequence[JobSpec]) -> Any:
        """A generator (Ray streams it): the pack's events as they happen, then its list of JobResults."""
        events: queue.Queue = queue.Queue()
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["results"] = self.worker.run_pack(specs, events.put, report_every=1.0)
            except BaseException as exc:  # handed to the driver below
                box["error"] = exc
            finally:
                events.put(None)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        while (event := events.get()) is not None:
            yield event
        thread.join()
        if "error" in box:
            raise box["error"]
        yield box["results"]


def make_actors(
    settings: dict[str, Any], count: int, *, gpus_per_worker: float = 0, cpus_per_worker: float = 1,
    threads: int | None = None,
) -> list[Any]:
    """``count`` actors, each reserving ``gpus_per_worker`` GPUs and ``cpus_per_worker`` CPUs."""
    ray = import_ray()
    remote = ray.remote(BatchActor).options(num_gpus=gpus_per_worker, num_cpus=cpus_per_worker, max_restarts=0)
    return [remote.remote(settings, threads) for _ in range(count)]


def _gpus_per_worker(plan: BatchPlan, ray: Any) -> int:
    device = str(plan.settings.device)
    if device == "cpu" or device == "mps":
        return 0
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if device.startswith("cuda") and not gpus:
        raise EssenceError("The settings ask for CUDA, but the Ray cluster has no GPU. Use --device cpu, or add GPU nodes.")
    return 1 if gpus else 0


def run_on_ray(plan: BatchPlan, emit: Emit) -> None:
    """Stream the batch's packs to Ray actors; write what they return; retry a pack when its actor dies."""
    ray = import_ray()
    started = start_ray(plan.batch.ray_address, num_cpus=plan.batch.workers)
    actors: list[Any] = []
    try:
        gpus = _gpus_per_worker(plan, ray)
        count = plan.batch.workers or (int(ray.cluster_resources().get("GPU", 0)) if gpus else 1)
        settings = plan.settings.model_dump(mode="json")
        cpus = 0 if gpus else 1
        actors = make_actors(settings, count, gpus_per_worker=gpus, cpus_per_worker=cpus, threads=plan.batch.threads)
        schedule(plan, actors, emit, lambda: make_actors(settings, 1, gpus_per_worker=gpus, cpus_per_worker=cpus,
                                                         threads=plan.batch.threads)[0])
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()


def schedule(plan: BatchPlan, actors: list[Any], emit: Emit, new_actor: Any) -> None:
    """Keep every actor busy with a pack; handle the stream of each; a dead actor is replaced and its pack
    sent again (resuming from the checkpoints written so far), at most ``plan.batch.retries`` times."""
    ray = import_ray()
    by_name = {j.target.name: j for j in plan.todo}
    todo: deque[tuple[list[Job], int]] = deque((pack, 0) for pack in packs(plan.todo, plan.batch.pack))
    idle = list(range(len(actors)))
    running: dict[Any, tuple[int, list[Job], int]] = {}
    while todo or running:
        while todo and idle:
            slot = idle.pop(0)
            pack, tries = todo.popleft()
            specs = [job_spec(_refresh(j), local=False) for j in pack]
            running[actors[slot].run.remote(specs)] = (slot, pack, tries)
        ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
        for stream in ready:
            slot, pack, tries = running[stream]
            try:
                item = ray.get(next(stream))
            except StopIteration:
                del running[stream]
                idle.append(slot)
                continue
            except ray.exceptions.RayError as exc:
                del running[stream]
                if not _worker_died(exc, ray):
                    raise EssenceError(f"A Ray worker failed on {', '.join(j.target.name for j in pack)}: {exc}") from None
                ray.kill(actors[slot])
                actors[slot] = new_actor()
                idle.append(slot)
                if tries < plan.batch.retries:
                    names = ", ".join(j.target.name for j in pack)
                    emit(BatchEvent("retry", message=f"A worker died ({type(exc).__name__}); retrying {names} on a new one."))
                    todo.appendleft((pack, tries + 1))
                else:
                    for j in pack:
                        emit(BatchEvent("done", j.target.name, status="failed", message=str(exc)))
                continue
            if isinstance(item, BatchEvent):
                _receive(item, by_name, emit)
            else:
                for result in item:
                    job = by_name[result.name]
                    write_returned_files(job.out, result.files or {})
                    if result.status == "completed":
                        from essence.method.runner import CHECKPOINT

                        (job.out / CHECKPOINT).unlink(missing_ok=True)
                    emit(BatchEvent("done", result.name, status=result.status, metrics=result.metrics))


def _receive(event: BatchEvent, by_name: dict[str, Job], emit: Emit) -> None:
    if event.kind == "checkpoint":
        from essence.method.runner import CHECKPOINT

        data = event.metrics["bytes"]
        folder = by_name[event.name].out
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / CHECKPOINT, lambda tmp: tmp.write_bytes(data))
        return
    emit(event)


def _refresh(job: Job) -> Job:
    """A job sent again resumes from the checkpoint the driver received for it, if any."""
    from essence.method.runner import CHECKPOINT

    if job.state == "new" and (job.out / CHECKPOINT).is_file():
        job.state = "resume"
    return job


def _worker_died(exc: Exception, ray: Any) -> bool:
    errors = ray.exceptions
    died = tuple(
        getattr(errors, name) for name in ("RayActorError", "ActorDiedError", "WorkerCrashedError", "ActorUnavailableError")
        if hasattr(errors, name)
    )
    return isinstance(exc, died)
