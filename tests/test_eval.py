"""`essence eval`: numbers that move the right way, undefined values kept undefined, the metrics hook."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from engine_doubles import doubles, target_file  # noqa: F401 (fixtures)
from typer.testing import CliRunner

import essence
from essence.cli import build_app


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


JUDGE = ["--encoder", "tiny-enc", "--set", "encoder.config.seed=1"]


def records(run: dict) -> dict[tuple[str, str], dict]:
    return {(r["metric"], r["role"]): r for r in run["metrics"]}


@pytest.fixture
def trained_and_zero(doubles, target_file, tmp_path):
    """A trained run, and a copy of it whose direction is zeros: every edit is zero."""
    run = tmp_path / "run"
    args = ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 15, "--heldout", 4, "-o", run, "-q"]
    assert invoke(*args).exit_code == 0
    zero = tmp_path / "zero"
    shutil.copytree(run, zero)
    essence.save_direction(zero / "direction.safetensors", torch.zeros(4, 8), generator="tiny-gen")
    return run, zero


def test_a_zero_direction_transfers_nothing_and_its_consistency_is_undefined(trained_and_zero, tmp_path):
    run, zero = trained_and_zero
    result = invoke("eval", run, zero, *JUDGE, "--json", "--out", tmp_path / "eval.json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert json.loads((tmp_path / "eval.json").read_text()) == report
    assert "NaN" not in result.stdout
    trained, zeroed = (records(r) for r in report["runs"])
    for role in ("run", "judge"):
        z = zeroed[("target-similarity", role)]
        assert z["value"] == pytest.approx(z["baseline"], abs=1e-6)  # no better than the sources themselves
        assert zeroed[("consistency", role)]["value"] is None  # undefined, not a number
        assert zeroed[("source-similarity", role)]["value"] == pytest.approx(1.0, abs=1e-6)
        assert trained[("consistency", role)]["value"] is not None
        assert trained[("source-similarity", role)]["value"] < 0.999
    t = trained[("target-similarity", "run")]
    assert t["value"] > t["baseline"] + 0.05  # the trained direction carries the target, on sources it never saw
    assert trained[("target-similarity", "judge")]["encoder"] == "tiny-enc (seed=1)"
    assert report["judge"] == "tiny-enc (seed=1)"

    table = invoke("eval", run, zero, *JUDGE)
    assert table.exit_code == 0, table.output
    consistency_rows = [line for line in table.stdout.splitlines() if line.startswith("│ consistency")]
    assert len(consistency_rows) == 2 and all("n/a" in line for line in consistency_rows)


def test_eval_agrees_with_the_runs_own_heldout_report(trained_and_zero):
    run, _ = trained_and_zero
    report = json.loads(invoke("eval", run, "--json", "--alpha", 1).stdout)  # the run's check is at alpha 1
    (judged,) = report["runs"]
    heldout = json.loads((run / "metrics.json").read_text())["heldout"]
    assert judged["heldout"] == {"count": 4, "seed": heldout["seed"], "truncation": 0.7, "latents": None, "alpha": 1.0}
    value = records(judged)[("target-similarity", "run")]
    assert value["value"] == pytest.approx(1 - heldout["transfer"], abs=1e-5)  # transfer = 1 - cos, same sources
    assert value["baseline"] == pytest.approx(1 - heldout["transfer_unedited"], abs=1e-5)
    assert report["judge"] is None and {r["role"] for r in judged["metrics"]} == {"run"}


def test_heldout_overrides(trained_and_zero):
    run, _ = trained_and_zero
    base = json.loads(invoke("eval", run, "--json").stdout)["runs"][0]
    other = json.loads(invoke("eval", run, "--json", "--seed", 123, "--heldout", 5, "--alpha", 0.5).stdout)["runs"][0]
    assert (other["heldout"]["count"], other["heldout"]["seed"], other["heldout"]["alpha"]) == (5, 123, 0.5)
    key = ("source-similarity", "run")
    assert records(other)[key]["value"] > records(base)[key]["value"]  # half the edit keeps more of the source


def test_heldout_sources_from_a_latent_file(doubles, target_file, tmp_path):
    essence.save_latents(tmp_path / "faces.pt", essence.get_generator("tiny-gen").sample_ws(3, seed=42))
    run = tmp_path / "run"
    args = ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 3, "-o", run, "-q"]
    assert invoke(*args, "--set", f"heldout.latents={tmp_path / 'faces.pt'}").exit_code == 0
    judged = json.loads(invoke("eval", run, "--json", "--alpha", 1).stdout)["runs"][0]
    assert judged["heldout"]["latents"] == str(tmp_path / "faces.pt") and judged["heldout"]["count"] == 3
    heldout = json.loads((run / "metrics.json").read_text())["heldout"]
    assert records(judged)[("target-similarity", "run")]["value"] == pytest.approx(1 - heldout["transfer"], abs=1e-5)


def test_blends_are_judged_by_re_applying_them(doubles, target_file, tmp_path):
    common = ["-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--sources", 2, "--heldout", 3, "-q"]
    assert invoke("blend", "-m", "stylegan", *common, "--set", "inversion.inverter.config.steps=5", "-o", tmp_path / "sg").exit_code == 0
    assert invoke("blend", "-m", "clip", *common, "--steps", 5, "-o", tmp_path / "cb").exit_code == 0
    report = json.loads(invoke("eval", tmp_path / "sg", tmp_path / "cb", "--json").stdout)
    assert [r["method"] for r in report["runs"]] == ["stylegan-blend", "clip-blend"]
    for run in report["runs"]:
        assert run["heldout"]["count"] == 3 and run["heldout"]["alpha"] is None
        assert all(r["value"] is not None for r in run["metrics"])


PLUGIN = """
import essence


class LatentShift(essence.Metric):
    '''Mean distance moved in W+ (no encoder).'''

    uses_encoder = False
    higher_is_better = None

    def __call__(self, ctx):
        return float((ctx.result_ws - ctx.source_ws).norm(dim=(1, 2)).mean())


class AlwaysUndefined(essence.Metric):
    '''A metric that cannot say anything (NaN must not reach the report).'''

    def __call__(self, ctx):
        return float("nan")


@essence.hookimpl
def register_metrics(register):
    register("latent-shift", LatentShift, tiny={})
    register("undefined", AlwaysUndefined, tiny={})
"""


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_plugin_adds_metrics(install_plugin, one_thread, target_file, tmp_path):
    install_plugin("essence-shift", "essence_shift", PLUGIN)
    import engine_doubles

    engine_doubles.install()  # after the plugin: installing one reloads the plugin host
    run = tmp_path / "run"
    args = ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 3, "--heldout", 2, "-o", run, "-q"]
    assert invoke(*args).exit_code == 0
    listed = json.loads(invoke("list", "metrics", "--json").stdout)["metrics"]
    assert {"latent-shift": "essence-shift", "target-similarity": "essence.plugins.metrics.encoder"}.items() <= {
        m["name"]: m["plugin"] for m in listed
    }.items()
    result = invoke("eval", run, *JUDGE, "--json", "--metric", "latent-shift", "--metric", "undefined")
    assert result.exit_code == 0, result.output
    (judged,) = json.loads(result.stdout)["runs"]
    shift = [r for r in judged["metrics"] if r["metric"] == "latent-shift"]
    assert len(shift) == 1 and shift[0]["encoder"] is None  # called once: it has no encoder
    direction = essence.load_direction(run / "direction.safetensors")  # eval applies it at its apply_alpha
    assert shift[0]["value"] == pytest.approx(direction.apply_alpha * float(direction.b.norm()), rel=1e-5)
    undefined = [r for r in judged["metrics"] if r["metric"] == "undefined"]
    assert len(undefined) == 2 and all(r["value"] is None for r in undefined)  # once per encoder, never NaN
    from essence.testing import check_component

    check_component(essence.get_registry().get("metric", "latent-shift"))


def _misfit(tmp_path, run):
    essence.save_direction(run / "direction.safetensors", torch.zeros(18, 512), generator="stylegan2-ffhq")
    return [run]


BAD = {
    "not a run folder": (lambda p, run: [p], "is not a run folder"),
    "unknown metric": (lambda p, run: [run, "--metric", "consistancy"], "Did you mean 'consistency'?"),
    "unknown judge": (lambda p, run: [run, "--encoder", "tiny-enk"], "Did you mean 'tiny-enc'?"),
    "judge option": (lambda p, run: [run, "--encoder", "tiny-enc", "--set", "encoder.config.sed=1"], "unknown field 'sed'"),
    "unknown setting": (lambda p, run: [run, "--set", "heldot.count=3"], "unknown field 'heldot' (did you mean 'heldout'?)"),
    "zero held-out sources": (lambda p, run: [run, "--heldout", 0], "heldout.count"),
    "out is a folder": (lambda p, run: [run, "--out", p], "is a folder"),
    "direction of another generator": (_misfit, "has shape (18, 512)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_eval_inputs_are_clean_errors(doubles, target_file, tmp_path, case):
    run = tmp_path / "run"
    args = ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 2, "--heldout", 0, "-o", run, "-q"]
    assert invoke(*args).exit_code == 0
    make_args, message = BAD[case]
    result = invoke("eval", *make_args(tmp_path / "images_missing" if case == "not a run folder" else tmp_path, run))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
