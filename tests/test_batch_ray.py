"""``essence batch --executor ray`` on a local Ray that cannot reach anything but loopback.

Ray runs inside a network namespace with only ``lo`` up (``unshare -n``), with its node address 127.0.0.1,
no dashboard and no usage statistics: whatever Ray tries, no byte leaves this machine. Where that cannot
be set up (no Ray, not root, no unshare), the tests are skipped. One Ray serves every check
(tests/ray_checks.py). The module is marked ``ray`` (deselect with ``-m 'not ray'``); the loopback and GPU
checks run in the default suite, the batch and retry checks are also ``slow`` (``python -m pytest -m ray``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.ray
#: The batch and retry checks: 30 to 65 s on the 2-core development machine with the Ray start (depending on
#: its load), over the default suite's budget; the loopback and GPU checks alone take about 15 to 25 s.
slow = pytest.mark.slow

HERE = Path(__file__).parent
SETTINGS = {
    "generator": "toy-sprites", "encoder": "toy-clip", "device": "cpu", "steps": 24, "checkpoint_every": 4,
    "sources": {"count": 3}, "heldout": {"count": 2},
}


def _loopback_namespace() -> list[str] | None:
    """The command prefix that runs a command with only loopback, or None where it cannot be made."""
    if importlib.util.find_spec("ray") is None or not shutil.which("unshare") or not shutil.which("ip"):
        return None
    prefix = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']
    try:
        probe = subprocess.run([*prefix, "ip", "-o", "link"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    links = [line.split(":")[1].strip() for line in probe.stdout.splitlines() if ":" in line]
    return prefix if probe.returncode == 0 and links == ["lo"] else None


@pytest.fixture(scope="module")
def ray_report(tmp_path_factory, request):
    """One Ray for the module: the full checks when a slow test of this module is selected, else the quick ones."""
    prefix = _loopback_namespace()
    if prefix is None:
        pytest.skip("Ray tests need ray and a network namespace with only loopback (unshare -n, as root)")
    from PIL import Image

    from essence.plugins.toy import world

    work = tmp_path_factory.mktemp("ray")
    (work / "targets").mkdir()
    for k, sprite in enumerate(world.sample_sprites(3, seed=11)):
        Image.fromarray(world.render(sprite)).save(work / "targets" / f"sprite{k}.png")
    (work / "settings.json").write_text(json.dumps(SETTINGS))
    report = work / "report.json"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    here = request.node.path if hasattr(request.node, "path") else Path(str(request.node.fspath))
    full = any(item.path == here and item.get_closest_marker("slow") for item in request.session.items)
    done = subprocess.run(
        [*prefix, sys.executable, str(HERE / "ray_checks.py"), str(work), str(report), "full" if full else "quick"],
        capture_output=True, text=True, timeout=300, env=env, cwd=work,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return work, json.loads(report.read_text())


def test_ray_stays_on_loopback(ray_report):
    _, report = ray_report
    assert report["node_addresses"] == ["127.0.0.1"]


def test_actors_get_distinct_gpus(ray_report):
    _, report = ray_report
    ids = [tuple(a["gpu_ids"]) for a in report["actors"]]
    assert sorted(ids) == [("0",), ("1",)]
    assert all(a["device"] == "cpu" for a in report["actors"])  # settings say cpu: no CUDA needed here
    assert len({a["pid"] for a in report["actors"]}) == 2


@slow
def test_ray_batch_gives_the_directions_of_a_local_batch(ray_report, tmp_path):
    """The driver wrote every run folder; the directions are those of the in-process executor (pack 2)."""
    from essence.method.runconfig import build_run_config
    from essence.workflows.batch import BatchConfig, collect_targets, execute_batch, plan_batch

    work, report = ray_report
    assert report["batch"] == {"sprite0": "completed", "sprite1": "completed", "sprite2": "completed"}
    targets = collect_targets([str(p) for p in sorted((work / "targets").iterdir())])
    local = plan_batch(build_run_config(SETTINGS), targets, tmp_path / "local", BatchConfig(pack=2))
    execute_batch(local)
    for name in report["batch"]:
        ray_run, local_run = work / "ray-batch" / "runs" / name, tmp_path / "local" / "runs" / name
        assert load_file(str(ray_run / "direction.safetensors"))["b"].equal(load_file(str(local_run / "direction.safetensors"))["b"])
        assert (ray_run / "heldout_sheet.png").is_file() and not (ray_run / "checkpoint.pt").exists()
    assert (work / "ray-batch" / "index.html").is_file() and (work / "ray-batch" / "summary.csv").is_file()


@slow
def test_a_dead_worker_is_replaced_and_its_pack_resumes(ray_report):
    work, report = ray_report
    assert report["killed"] and report["replaced"] == 1
    kinds = [e["kind"] for e in report["retry_events"]]
    assert "retry" in kinds and kinds[-1] == "done" and report["retry_events"][-1]["status"] == "completed"
    # The new actor started from the driver's last checkpoint, not from step 0 ...
    assert report["checkpoint_step"] >= SETTINGS["checkpoint_every"]
    after = [e["done"] for e in report["retry_events"][kinds.index("retry"):] if e["kind"] == "step"]
    assert all(done > report["checkpoint_step"] for done in after)
    # ... and ended where an uninterrupted run of the same target and settings ends.
    run = work / "retry-batch" / "runs" / "sprite2"
    same = work / "ray-batch" / "runs" / "sprite2"  # alone in its pack there too
    assert load_file(str(run / "direction.safetensors"))["b"].equal(load_file(str(same / "direction.safetensors"))["b"])
