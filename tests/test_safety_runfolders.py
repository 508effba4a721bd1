"""Run folders from others are untrusted input: `--resume`, `eval` and `apply` re-check every file in them.

Each case tampers with one file of a real (tiny) run folder the way a stranger's folder might be broken or
hostile, and expects one clean line (exit 2) that names the file, never a traceback or a silent wrong result.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from engine_doubles import doubles, target_file  # noqa: F401 (fixtures)
from typer.testing import CliRunner

from essence.cli import build_app


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def run_args(target, out, *extra):
    return ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target, "--steps", 6, "--heldout", 2, "--out", out, "-q", *extra]


_MADE: dict[str, object] = {}


def _copy_of(kind, tmp_path_factory, tmp_path, *extra, code=0):
    """A run folder made once per session (the runs take most of this file's time), copied for each test."""
    if kind not in _MADE:
        from PIL import Image

        root = tmp_path_factory.mktemp(f"safety-{kind}")
        target = root / "target.png"
        Image.new("RGB", (40, 30), (200, 30, 40)).save(target)
        r = invoke(*run_args(target, root / kind, *extra))
        assert r.exit_code == code, r.output
        _MADE[kind] = root / kind
    out = tmp_path / kind
    shutil.copytree(_MADE[kind], out)
    return out


@pytest.fixture
def interrupted(doubles, tmp_path_factory, tmp_path):
    return _copy_of("cut", tmp_path_factory, tmp_path, "--set", 'losses.sigint-at={"weight": 0, "config": {"step": 2}}', code=130)


@pytest.fixture
def finished(doubles, tmp_path_factory, tmp_path):
    return _copy_of("done", tmp_path_factory, tmp_path)


def clean_error(result, name):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert name in result.output, result.output


CONFIG_TAMPERING = {
    "not json": b"{not json",
    "not utf-8": b'{"steps": "\xff\xfe"}',
    "a list": b"[1, 2, 3]",
    "NaN": b'{"steps": NaN}',
    "Infinity lr": b'{"lr": Infinity}',
    "deep nesting": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "wrong type": b'{"steps": "many"}',
    "huge steps": b'{"steps": 1e400}',
    "unknown key": b'{"evil": 1}',
}


@pytest.mark.parametrize("case", CONFIG_TAMPERING)
def test_resume_rechecks_config_json(interrupted, case):
    (interrupted / "config.json").write_bytes(CONFIG_TAMPERING[case])
    clean_error(invoke("run", "--resume", interrupted), "config.json")


@pytest.mark.parametrize("case", ["not json", "not utf-8", "a list", "NaN", "deep nesting", "unknown key"])
def test_eval_rechecks_config_json(finished, case):
    (finished / "config.json").write_bytes(CONFIG_TAMPERING[case])
    clean_error(invoke("eval", finished), "config.json")


METRICS_TAMPERING = {
    "not json": b"{",
    "a string": b'"completed"',
    "status a table": b'{"status": {"x": 1}}',
    "unknown status": b'{"status": "../../etc"}',
    "NaN": b'{"status": "completed", "best_loss": NaN}',
}


@pytest.mark.parametrize("case", METRICS_TAMPERING)
def test_resume_rechecks_metrics_json(interrupted, case):
    (interrupted / "metrics.json").write_bytes(METRICS_TAMPERING[case])
    clean_error(invoke("run", "--resume", interrupted), "metrics.json")


@pytest.mark.parametrize("case", ["not json", "a string", "unknown status"])
def test_eval_rechecks_metrics_json(finished, case):
    (finished / "metrics.json").write_bytes(METRICS_TAMPERING[case])
    clean_error(invoke("eval", finished), "metrics.json")


def _tamper_checkpoint(folder, change):
    path = folder / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def _set(path, value):
    def change(state):
        *parents, last = path.split(".")
        d = state
        for k in parents:
            d = d[k]
        d[last] = value

    return change


CHECKPOINT_TAMPERING = {
    "not a dict": lambda s: s.clear() or s.update({"x": 1}),
    "no engine": lambda s: s.pop("engine"),
    "engine a list": _set("engine", [1, 2]),
    "engine emptied": lambda s: s["engine"].clear(),
    "elapsed NaN": _set("elapsed", float("nan")),
    "elapsed huge": _set("elapsed", 1e300),
    "elapsed a string": _set("elapsed", "../x"),
    "sources NaN": lambda s: s["inputs"]["sources"].fill_(float("nan")),
    "sources integer": lambda s: s["inputs"].__setitem__("sources", s["inputs"]["sources"].long()),
    "sources wrong rank": lambda s: s["inputs"].__setitem__("sources", s["inputs"]["sources"][0]),
    "sources wrong W+": lambda s: s["inputs"].__setitem__("sources", torch.zeros(2, 3, 5)),
    "sources empty": lambda s: s["inputs"].__setitem__("sources", torch.zeros(0, 3, 5)),
    "target missing": lambda s: s["inputs"].pop("target"),
}


@pytest.mark.parametrize("case", CHECKPOINT_TAMPERING)
def test_resume_rechecks_checkpoint(interrupted, case):
    _tamper_checkpoint(interrupted, CHECKPOINT_TAMPERING[case])
    clean_error(invoke("run", "--resume", interrupted), "checkpoint.pt")


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04broken zip"])
def test_resume_of_an_unreadable_checkpoint(interrupted, content):
    (interrupted / "checkpoint.pt").write_bytes(content)
    clean_error(invoke("run", "--resume", interrupted), "checkpoint.pt")


@pytest.mark.parametrize("target", ["../../escaped", "/tmp/abs-escape", "..", "a/../../b", "~/home-escape", "\x00nul"])
def test_a_direction_target_name_never_becomes_a_path_outside_the_output_root(finished, tmp_path, monkeypatch, target):
    """`apply` names its default folder after the direction's recorded target: a hostile name stays one name."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = finished / "direction.safetensors"
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["target"] = target
    evil = tmp_path / "evil.safetensors"
    save_file(tensors, str(evil), metadata=meta)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = set(tmp_path.rglob("*"))
    r = invoke("apply", "-d", evil, "--sources", 2, "-q")
    assert r.exit_code == 0, r.output
    made = set(tmp_path.rglob("*")) - before
    assert made and all(p.is_relative_to(work / "essence-runs") for p in made), sorted(map(str, made))
    assert len(list((work / "essence-runs").iterdir())) == 1


def _retag(src, dst, **changes):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(changes)
    save_file(tensors, str(dst), metadata=meta)
    return dst


DIRECTION_METADATA = {
    "config a list": {"config": "[1, 2]"},
    "config a number": {"config": "1e999"},
    "config nested absurdly": {"config": "[" * 100000 + "]" * 100000},
    "generator options of the wrong type": {"config": '{"generator": {"name": "tiny-gen", "config": {"steps": "x", "bogus": 1}}}'},
    "unknown generator": {"generator": "no-such-generator", "config": "{}"},
}


@pytest.mark.parametrize("case", DIRECTION_METADATA)
def test_apply_rechecks_direction_metadata(finished, tmp_path, case):
    evil = _retag(finished / "direction.safetensors", tmp_path / "evil.safetensors", **DIRECTION_METADATA[case])
    r = invoke("apply", "-d", evil, "--sources", 2, "-q", "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
