"""Adversarial values in settings: NaN, inf, overflowing floats, huge integers, absurd sizes, broken config
files. Each is one clean line (exit 2) before any model is built, from whichever command or file it comes."""

from __future__ import annotations

import json

import pytest
import torch
from engine_doubles import TinyGenerator, doubles, target_file  # noqa: F401 (fixtures)
from typer.testing import CliRunner

import essence
from essence.cli import build_app
from essence.core.config import build_config, load_config_file, parse_set
from essence.core.errors import ConfigError
from essence.method.runconfig import RunConfig


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


def run_args(target, out):
    return ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target, "--steps", 2, "--heldout", 0, "--out", out, "-q"]


BIG = str(2**70)

# (extra options of `essence run`, words the one-line error must hold)
RUN_CASES = {
    "--set lr=NaN (JSON)": (["--set", "lr=NaN"], "lr must be a finite number"),
    "--set lr=nan (text)": (["--set", "lr=nan"], "lr: Input should be a finite number"),
    "--set lr=Infinity": (["--set", "lr=Infinity"], "lr must be a finite number"),
    "--set lr=-inf": (["--set", "lr=-inf"], "lr: Input should be a finite number"),
    "--set lr=1e999 (overflows float64)": (["--set", "lr=1e999"], "lr must be a finite number"),
    "--set heldout.alpha=1e39 (overflows float32)": (["--set", "heldout.alpha=1e39"], "heldout.alpha: 1e+39 overflows float32"),
    "--set heldout.alpha=1e6 (finite, far out of range)": (["--set", "heldout.alpha=1e6"], "heldout.alpha: Input should be less than or equal to 1000"),
    "--set sources.truncation=\"1e39\" (text)": (["--set", 'sources.truncation="1e39"'], "sources.truncation: 1e+39 overflows float32"),
    "--set loss config NaN": (["--set", 'losses.transfer={"weight": 1, "config": {"x": NaN}}'], "finite number"),
    "--set a nested NaN in a component config": (["--set", "generator.config.seed=NaN"], "finite number"),
    "--set target_weights with inf": (["--set", "target_weights=[1, 1e400]"], "target_weights[1]"),
    "--seed beyond 64 bits": (["--seed", BIG], "seed: 1180591620717411303424 does not fit in 64 bits"),
    "--set seed beyond 64 bits": (["--set", f"seed={BIG}"], "does not fit in 64 bits"),
    "--set sources.seed beyond 64 bits": (["--set", f"sources.seed={BIG}"], "sources.seed"),
    "--set init.seed beyond 64 bits (text)": (["--set", f'init.seed="{BIG}"'], "init.seed"),
    "--sources 1000000": (["--sources", "1000000"], "sources.count: Input should be less than or equal to 10000"),
    "--sources 10**30": (["--sources", str(10**30)], "sources.count"),
    "--steps 10**12": (["--steps", str(10**12)], "steps: Input should be less than or equal to 10000000"),
    "--heldout 10**7": (["--heldout", str(10**7)], "heldout.count: Input should be less than or equal to 10000"),
    "--restarts 10**6": (["--restarts", str(10**6)], "restarts: Input should be less than or equal to 1000"),
    "--set sources.count=true (a bool for a number)": (["--set", "sources.count=true"], "sources.count: give a number, not true"),
    "--set lr=false (a bool for a float)": (["--set", "lr=false"], "lr: give a number, not false"),
    "--set a key 5000 levels deep": (["--set", ".".join(["generator", "config"] + ["a"] * 5000) + "=1"], "more than 32 levels of keys"),
    "--set a JSON value 100 levels deep": (["--set", "generator.config.a=" + "[" * 100 + "]" * 100], "nested more than 32 levels"),
    "--set a NUL in a path": (["--set", 'sources.latents="a\\u0000b.pt"'], "NUL character"),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_run_refuses_bad_values_before_any_model(doubles, target_file, tmp_path, case):
    extra, words = RUN_CASES[case]
    built = TinyGenerator.built
    result = invoke(*run_args(target_file, tmp_path / "run"), *extra)
    assert result.exit_code == 2, result.output
    assert words in flat(result.output), result.output
    assert "Traceback" not in result.output
    assert TinyGenerator.built == built
    assert not (tmp_path / "run" / "direction.safetensors").exists()


def _config(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


CONFIG_FILES = {
    "JSON NaN": ("c.json", b'{"lr": NaN}', "lr"),
    "JSON Infinity": ("c.json", b'{"heldout": {"alpha": -Infinity}}', "heldout.alpha"),
    "JSON 1e400": ("c.json", b'{"weight_decay": 1e400}', "weight_decay"),
    "JSON a seed beyond 64 bits": ("c.json", ('{"seed": %d}' % 2**64).encode(), "does not fit in 64 bits"),
    "TOML nan": ("c.toml", b"lr = nan\n", "lr"),
    "TOML inf in a table": ("c.toml", b"[sources]\ntruncation = inf\n", "sources.truncation"),
    "TOML 1e39": ("c.toml", b"lr = 1e39\n", "overflows float32"),
    "non-UTF-8 JSON": ("c.json", b'{"target": ["\xff\xfe.png"]}', "is not UTF-8 text"),
    "non-UTF-8 TOML": ("c.toml", b'steps = 3 # \xe9t\xe9\n', "is not UTF-8 text"),
    "JSON nested 100 deep": ("c.json", b'{"generator": {"name": "tiny-gen", "config": ' + b'{"a": ' * 100 + b"1" + b"}" * 102, "nested more than 32 levels"),
    "JSON nested 100000 deep": ("c.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "TOML nested 100 deep": ("c.toml", b"x = " + b"[" * 100 + b"]" * 100 + b"\n", "nested"),
    "TOML nested 100000 deep": ("c.toml", b"x = " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
}


@pytest.mark.parametrize("case", list(CONFIG_FILES))
def test_config_files_with_bad_values_are_one_line(doubles, target_file, tmp_path, case):
    name, data, words = CONFIG_FILES[case]
    path = _config(tmp_path, name, data)
    built = TinyGenerator.built
    result = invoke(*run_args(target_file, tmp_path / "run"), "--config", path)
    assert result.exit_code == 2, result.output
    assert words in flat(result.output), result.output
    assert "Traceback" not in result.output
    assert TinyGenerator.built == built


def test_the_config_file_error_names_the_file(tmp_path):
    path = _config(tmp_path, "mine.json", b'{"lr": NaN}')
    with pytest.raises(ConfigError, match="mine.json"):
        load_config_file(path)


@pytest.fixture
def direction_file(doubles, tmp_path):
    g = torch.Generator().manual_seed(3)
    return essence.save_direction(tmp_path / "direction.safetensors", torch.randn(4, 8, generator=g), generator="tiny-gen")


APPLY_CASES = {
    "apply --alpha nan": (["apply", "--alpha", "0,nan"], "give finite numbers"),
    "apply --alpha 1e39": (["apply", "--alpha", "0,1e39"], "alphas[1]: 1e+39 overflows float32"),
    "apply --truncation nan": (["apply", "--truncation", "nan"], "sources.truncation"),
    "apply --truncation 1e39": (["apply", "--truncation", "1e39"], "overflows float32"),
    "apply --seed beyond 64 bits": (["apply", "--seed", BIG], "does not fit in 64 bits"),
    "apply --sources 1000000": (["apply", "--sources", "1000000"], "sources.count"),
    "apply --tile 100000": (["apply", "--tile", "100000"], "tile: Input should be less than or equal to 2048"),
    "apply --set alphas=[Infinity]": (["apply", "--set", "alphas=[Infinity]"], "finite number"),
    "apply --alpha 1e30 (finite, far out of range)": (["apply", "--alpha", "0,1e30"], "alphas must lie within +-1000"),
    "sweep --alpha-range 1e5 (finite, far out of range)": (["sweep", "--alpha-range", "0:1e5:2e4"], "within +-1000"),
    "sweep --alpha-range to 1e39": (["sweep", "--alpha-range", "1e39:2e39:1e39"], "overflows float32"),
    "sweep --alpha-range inf": (["sweep", "--alpha-range", "0:inf:1"], "must be finite"),
}


@pytest.mark.parametrize("case", list(APPLY_CASES))
def test_apply_and_sweep_refuse_bad_values(direction_file, tmp_path, case):
    extra, words = APPLY_CASES[case]
    built = TinyGenerator.built
    result = invoke(*extra, "-d", direction_file, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 2, result.output
    assert words in flat(result.output), result.output
    assert "Traceback" not in result.output
    assert TinyGenerator.built == built
    assert not (tmp_path / "out" / "grid.png").exists()


OTHER_CASES = {
    "blend --weight nan": (["blend", "--method", "stylegan", "--weight", "nan"], "weight"),
    "blend --lr inf": (["blend", "--method", "clip", "--lr", "inf"], "lr"),
    "blend --seed beyond 64 bits": (["blend", "--method", "clip", "--seed", BIG], "does not fit in 64 bits"),
    "blend --steps 10**12": (["blend", "--method", "clip", "--steps", str(10**12)], "steps"),
    "compare --seed beyond 64 bits": (["compare", "--seed", BIG], "does not fit in 64 bits"),
    "compare --steps 10**12": (["compare", "--steps", str(10**12)], "steps"),
    "batch --steps 10**12": (["batch", "--steps", str(10**12)], "steps"),
    "batch --set lr=NaN": (["batch", "--set", "lr=NaN"], "lr must be a finite number"),
    "invert --set with NaN": (["invert", "--set", "steps=NaN"], "finite number"),
}


@pytest.mark.parametrize("case", list(OTHER_CASES))
def test_other_commands_refuse_bad_values(doubles, target_file, tmp_path, case):
    extra, words = OTHER_CASES[case]
    command = extra[0]
    args = list(extra)
    if command in ("blend", "compare"):
        args += ["-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file]
    elif command == "batch":
        args += ["-g", "tiny-gen", "-e", "tiny-enc", "--heldout", 0, target_file]
    elif command == "invert":
        args += ["-g", "tiny-gen", target_file]
    built = TinyGenerator.built
    result = invoke(*args, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 2, result.output
    assert words in flat(result.output), result.output
    assert "Traceback" not in result.output
    assert TinyGenerator.built == built


def test_eval_refuses_bad_values(doubles, target_file, tmp_path):
    run = tmp_path / "run"
    assert invoke(*run_args(target_file, run)).exit_code == 0
    built = TinyGenerator.built
    for extra, words in (
        (["--alpha", "nan"], "heldout.alpha"),
        (["--alpha", "1e39"], "overflows float32"),
        (["--alpha", "5000"], "heldout.alpha: Input should be less than or equal to 1000"),
        (["--seed", BIG], "does not fit in 64 bits"),
        (["--heldout", str(10**7)], "heldout.count"),
    ):
        result = invoke("eval", run, *extra)
        assert result.exit_code == 2, result.output
        assert words in flat(result.output), result.output
    assert TinyGenerator.built == built


def test_one_source_is_warned(doubles, target_file, tmp_path):
    result = invoke(*run_args(target_file, tmp_path / "run"), "--sources", 1)
    assert result.exit_code == 0, result.output
    assert "One source: consistency" in flat(result.output)
    result = invoke(*run_args(target_file, tmp_path / "run2"), "--sources", 2)
    assert "One source" not in flat(result.output)


def test_parse_set_and_build_config_directly():
    with pytest.raises(ConfigError, match="steps"):
        parse_set(["steps=Infinity"])
    with pytest.raises(ConfigError, match="does not fit in 64 bits"):
        build_config(RunConfig, {"seed": -(2**64)}, what="run settings")
    assert build_config(RunConfig, {"seed": 2**63 - 1, "lr": 1e-30}, what="run settings").seed == 2**63 - 1
    assert json.loads("1e38") < 3e38  # the largest float a setting may hold is float32's range
