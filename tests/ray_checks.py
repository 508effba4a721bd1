"""The Ray checks, run by tests/test_batch_ray.py in a network namespace with only loopback up, on one
local Ray with two actors (started once for all of them). Writes what it saw as JSON to argv[2]; argv[1]
is a work folder holding settings.json and targets/; argv[3] is ``quick`` (check 1 only) or ``full``.

1. GPU scheduling without GPUs: Ray is told this machine has 2 GPUs; two actors asking for one each get
   distinct GPU ids (their models stay on the CPU, as the settings say).
2. A batch on the two actors (pack 2): the driver writes every run folder and the summary.
3. A worker process killed mid-pack: the pack is sent to a new actor and finishes from the last
   checkpoint the driver received.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    work, report_path = Path(sys.argv[1]), Path(sys.argv[2])
    full = sys.argv[3:] == ["full"]  # "quick": checks 1 only
    from essence.method.runconfig import build_run_config
    from essence.workflows.batch import BatchConfig, collect_targets, plan_batch, write_batch_file, write_summary
    from essence.workflows.batch_ray import import_ray, make_actors, schedule, start_ray

    import torch

    report: dict = {"seconds": {}}
    t0 = time.perf_counter()
    assert start_ray(num_cpus=2, num_gpus=2)
    ray = import_ray()
    report["node_addresses"] = sorted({n["NodeManagerAddress"] for n in ray.nodes()})
    report["seconds"]["start"] = time.perf_counter() - t0

    settings = json.loads((work / "settings.json").read_text())
    actors = make_actors(settings, 2, gpus_per_worker=1, cpus_per_worker=0, threads=1)
    report["actors"] = ray.get([a.describe.remote() for a in actors])
    report["seconds"]["actors"] = time.perf_counter() - t0
    if not full:
        ray.shutdown()
        report_path.write_text(json.dumps(report))
        return 0

    cfg = build_run_config(settings)
    targets = collect_targets([str(p) for p in sorted((work / "targets").iterdir())])
    plan = plan_batch(cfg, targets, work / "ray-batch", BatchConfig(pack=2, executor="ray", workers=2))
    write_batch_file(plan)
    statuses: dict[str, str] = {}
    schedule(plan, actors, lambda e: statuses.update({e.name: e.status}) if e.kind == "done" else None, None)
    write_summary(plan)
    report["batch"] = statuses
    report["seconds"]["batch"] = time.perf_counter() - t0

    # A worker process dies in the middle of its pack: a new actor finishes the pack from its checkpoint.
    # sprite2 was alone in its pack above: the same composition, so the same numbers (packing changes the
    # batch's shapes, and with them the rounding, which the optimisation amplifies).
    plan = plan_batch(cfg, targets[2:], work / "retry-batch", BatchConfig(pack=1, executor="ray", workers=1))
    pid = report["actors"][0]["pid"]
    events: list[dict] = []

    def emit(event) -> None:
        events.append({"kind": event.kind, "name": event.name, "done": event.done, "status": event.status})
        if event.kind == "step" and event.done >= 2 * settings["checkpoint_every"] and "killed" not in report:
            os.kill(pid, signal.SIGKILL)
            report["killed"] = pid
            checkpoint = plan.jobs[0].out / "checkpoint.pt"  # what the driver had received by then
            state = torch.load(checkpoint, weights_only=True) if checkpoint.is_file() else None
            report["checkpoint_step"] = None if state is None else state["engine"]["search"]["step"]

    def new_actor():
        report["replaced"] = report.get("replaced", 0) + 1
        return make_actors(settings, 1, cpus_per_worker=1, threads=1)[0]

    schedule(plan, actors[:1], emit, new_actor)
    report["retry_events"] = events
    report["seconds"]["retry"] = time.perf_counter() - t0
    ray.shutdown()
    report_path.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
