"""The default of `essence run` is the evidence-based `essence-in` (docs/method.md): b starts at the inverted
target where the target can be inverted here (init 'auto'), else at a random latent (the paper's start),
with one line that says why; and its 32 sources fit in memory (chunks sized to the free memory)."""

from __future__ import annotations

import json

import pytest
import torch
from engine_doubles import doubles, target_file  # noqa: F401 (fixtures)
from typer.testing import CliRunner

import essence
from essence.cli import build_app
from essence.method import engine
from essence.method.runconfig import validate_run_config

TOY = ["-g", "toy-sprites", "-e", "toy-clip", "--device", "cpu"]


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def saved(out):
    return (json.loads((out / "config.json").read_text()), json.loads((out / "metrics.json").read_text()))


def test_a_run_that_names_no_preset_is_essence_in_started_at_the_inverted_target(doubles, target_file, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 3, "--heldout", 2, "-o", out)
    assert result.exit_code == 0, result.output
    assert "b starts at the inverted target" in result.output
    config, metrics = saved(out)
    assert config["preset"] == "essence-in" and config["sources"]["count"] == 32 and config["apply_alpha"] == 1.2
    assert config["init"]["mode"] == "target" and config["init"]["auto"] == "the target image was inverted"
    start = essence.load_latents(out / "init.safetensors")
    assert start.shape == (1, 4, 8) and "init.safetensors" in metrics["files"]


def test_only_text_targets_start_at_random_and_say_why(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", *TOY, "--target-text", "a red circle", "--steps", 2, "--sources", 2, "--heldout", 1, "-o", out)
    assert result.exit_code == 0, result.output
    assert "b starts at a random latent, not the inverted target: only text targets" in " ".join(result.output.split())
    config, metrics = saved(out)
    assert config["init"]["mode"] == "random" and "text targets" in config["init"]["auto"]
    assert metrics["restart_results"][0]["init_seed"] is not None
    assert not (out / "init.safetensors").exists()


def test_restarts_start_at_random(doubles, target_file, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 2, "--sources", 2,
                    "--heldout", 0, "--restarts", 2, "-o", out)
    assert result.exit_code == 0, result.output
    config, metrics = saved(out)
    assert config["init"]["mode"] == "random" and "2 restarts" in config["init"]["auto"]
    seeds = [r["init_seed"] for r in metrics["restart_results"]]
    assert len(set(seeds)) == 2  # different starts
    # `--init target` with restarts stays a clean error: the user asked for the one start
    strict = invoke("run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--init", "target", "--restarts", 2,
                    "-o", tmp_path / "strict")
    assert strict.exit_code == 2 and "--restarts 1" in strict.output


def test_a_target_that_cannot_be_inverted_here_falls_back_to_random(doubles, target_file, tmp_path, essence_home, monkeypatch):
    """The e4e inverter, offline, without its weights in the cache: the run goes on from a random start, says
    why and how to insist; `--init target` instead fails with the weights message."""
    monkeypatch.setenv("ESSENCE_OFFLINE", "1")
    out = tmp_path / "run"
    args = ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 2, "--sources", 2, "--heldout", 0,
            "--set", "inversion.inverter.name=e4e"]
    result = invoke(*args, "-o", out)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "b starts at a random latent, not the inverted target: the target could not be inverted" in text
    assert "e4e-ffhq" in text and "--init target insists on it" in text
    config, _ = saved(out)
    assert config["init"]["mode"] == "random" and "e4e-ffhq" in config["init"]["auto"]
    strict = invoke(*args, "--init", "target", "-o", tmp_path / "strict")
    assert strict.exit_code == 2 and "e4e-ffhq" in strict.output and "Traceback" not in strict.output


def test_a_settled_config_runs_again_to_the_same_direction(doubles, target_file, tmp_path):
    """config.json records what 'auto' chose, so running it again (or resuming) starts the same."""
    first = tmp_path / "first"
    args = ["-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 3, "--sources", 3, "--heldout", 0]
    assert invoke("run", *args, "-o", first, "-q").exit_code == 0
    again = tmp_path / "again"
    assert invoke("run", "--config", first / "config.json", "-o", again, "-q").exit_code == 0
    a = essence.load_direction(first / "direction.safetensors").b
    b = essence.load_direction(again / "direction.safetensors").b
    assert torch.equal(a, b)


def test_the_api_without_an_inverted_target_starts_at_random():
    cfg = validate_run_config({})
    assert cfg.preset == "essence-in" and cfg.init.mode == "auto"
    g = essence.get_generator("toy-sprites")
    b, seed = engine.resolve_init(g, None, cfg, 0)
    assert seed is not None and torch.equal(b, g.sample_ws(1, seed=seed, truncation=0.7)[0])
    with pytest.raises(essence.ConfigError, match="init.auto"):
        validate_run_config({"init": {"mode": "auto", "auto": "why"}})


# -- memory -----------------------------------------------------------------------------------------


def test_the_chunk_fits_half_the_free_memory():
    class G:
        device, resolution = "cpu", 1024

    gib = 1024**3
    per_image = engine.BYTES_PER_PIXEL * 1024 * 1024  # about 1.6 GiB at 1024 px (docs/method.md)
    assert engine.memory_chunk(G(), free=24 * gib) == int(12 * gib) // per_image == 7
    assert engine.memory_chunk(G(), free=gib) == 1  # never 0: one image at a time
    G.resolution = 32
    assert engine.memory_chunk(G(), free=24 * gib) > 1000  # the toy models: one pass
    assert isinstance(essence.core.devices.available_memory("cpu"), (int, type(None)))


def test_the_free_memory_is_meminfo_within_the_cgroup_limit(tmp_path, monkeypatch):
    from essence.core import devices

    gib = 1024**3
    (tmp_path / "meminfo").write_text(f"MemTotal: {16 * gib // 1024} kB\nMemAvailable: {8 * gib // 1024} kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    monkeypatch.setattr(devices, "MEMINFO", str(tmp_path / "meminfo"))
    monkeypatch.setattr(devices, "CGROUP", str(cgroup))
    assert devices.available_memory("cpu") == 8 * gib  # no cgroup files: the kernel's figure
    (cgroup / "memory.max").write_text("max\n")
    assert devices.available_memory("cpu") == 8 * gib  # no limit
    (cgroup / "memory.max").write_text(f"{4 * gib}\n")
    (cgroup / "memory.current").write_text(f"{gib}\n")
    assert devices.available_memory("cpu") == 3 * gib  # a container's limit is lower than the machine's
    monkeypatch.setattr(devices, "MEMINFO", str(tmp_path / "missing"))
    assert devices.available_memory("cpu") == 3 * gib
    assert devices.available_memory("meta") is None  # a device it cannot tell about: no chunking


def test_a_run_short_of_memory_renders_in_chunks_to_the_same_direction(doubles, target_file, tmp_path, monkeypatch):
    args = ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 4, "--sources", 5, "--heldout", 2,
            "--init", "random", "-q"]
    assert invoke(*args, "-o", tmp_path / "roomy").exit_code == 0
    per_image = engine.BYTES_PER_PIXEL * 16 * 16  # tiny-gen renders 16 px
    monkeypatch.setattr("essence.core.devices.available_memory", lambda device: 4 * per_image)  # room for 2
    assert invoke(*args, "-o", tmp_path / "tight").exit_code == 0
    (_, roomy), (_, tight) = saved(tmp_path / "roomy"), saved(tmp_path / "tight")
    assert tight["chunk"] == 2 and roomy["chunk"] > 5
    a = essence.load_direction(tmp_path / "roomy" / "direction.safetensors").b
    b = essence.load_direction(tmp_path / "tight" / "direction.safetensors").b
    assert torch.allclose(a, b, atol=1e-5)


def test_the_page_keeps_the_note_of_a_random_fallback(doubles, target_file, tmp_path, essence_home, monkeypatch):
    from essence.ui import find as find_tab

    monkeypatch.setenv("ESSENCE_OFFLINE", "1")
    config = essence.build_run_config({
        "generator": "tiny-gen", "encoder": "tiny-enc", "target": [str(target_file)], "steps": 2, "out": str(tmp_path / "r"),
        "sources": {"count": 2}, "heldout": {"count": 0}, "inversion": {"inverter": {"name": "e4e"}},
    })
    job = find_tab.FindJob(config).start()
    assert job.wait(60)
    view = job.view()
    assert view.state == "completed" and "b starts at a random latent" in view.message and "e4e-ffhq" in view.message


def test_without_the_aligner_extra_the_run_starts_at_random_and_says_what_to_install(doubles, target_file, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "dlib" else real(name, *a))
    out = tmp_path / "run"
    result = invoke("run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 2, "--sources", 2,
                    "--heldout", 0, "--set", "inversion.aligner=ffhq-dlib", "-o", out)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "b starts at a random latent, not the inverted target: the target cannot be inverted here" in text
    assert "pip install" in text and "Traceback" not in result.output
    assert saved(out)[0]["init"]["mode"] == "random"
