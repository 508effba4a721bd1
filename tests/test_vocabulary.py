"""One meaning per metric name: the run's consistency *loss* (lower is better) and `essence eval`'s
consistency (a similarity, higher is better) are named apart, with the direction shown, everywhere."""

from __future__ import annotations

import json
import re

import pytest
from engine_doubles import doubles, target_file  # noqa: F401 (fixtures)
from typer.testing import CliRunner

from essence.cli import build_app

#: "consistency" followed by a number: the ambiguous old wording ("consistency 0.1234").
BARE = re.compile(r"consistency\s+[-\d.]")


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


@pytest.fixture
def run(doubles, target_file, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    result = invoke("run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 4, "--heldout", 3, "-o", out)
    assert result.exit_code == 0, result.output
    return out, result


def test_the_run_says_consistency_loss_and_lower_is_better(run):
    _, result = run
    text = " ".join((result.stdout + result.stderr).split())
    assert "consistency loss" in text and "lower is better" in text
    assert not BARE.search(text), BARE.search(text)


def test_eval_says_consistency_with_its_direction_and_is_one_minus_the_loss(run):
    out, _ = run
    table = invoke("eval", out)
    assert table.exit_code == 0, table.output
    assert "higher is better" in table.stdout
    rows = [line for line in table.stdout.splitlines() if "consistency" in line]
    assert rows and all("consistency ↑" in line for line in rows)
    report = json.loads(invoke("eval", out, "--json", "--alpha", 1).stdout)  # the run's own check is at alpha 1
    (rec,) = [r for r in report["runs"][0]["metrics"] if r["metric"] == "consistency" and r["role"] == "run"]
    heldout = json.loads((out / "metrics.json").read_text())["heldout"]  # the key stays: old files still read
    assert rec["higher_is_better"] is True
    assert rec["value"] == pytest.approx(1 - heldout["consistency"], abs=1e-5)  # same encoder, sources, alpha


def test_batch_summary_ui_and_registry_use_the_loss_name():
    import essence
    from essence.ui.find import SERIES
    from essence.workflows.batch import SUMMARY_COLUMNS

    assert "heldout_consistency_loss" in SUMMARY_COLUMNS and "heldout_consistency" not in SUMMARY_COLUMNS
    assert SERIES["consistency"] == "consistency loss"
    reg = essence.get_registry()
    assert "consistency loss" in reg.get("loss", "consistency").description
    assert "higher is better" in reg.get("metric", "consistency").description
