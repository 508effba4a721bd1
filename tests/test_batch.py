"""``essence batch``: targets of every kind, one run folder each, skipped and resumed on a rerun, a summary."""

from __future__ import annotations

import csv
import json
import sys

import pytest
from engine_doubles import doubles  # noqa: F401 (fixture)
from PIL import Image
from safetensors.torch import load_file

import essence
from essence.core.errors import EssenceError, MissingExtraError
from essence.workflows.batch import BatchConfig, collect_targets, execute_batch, plan_batch
from essence.workflows.batch_jobs import write_returned_files

SETTINGS = ["-g", "tiny-gen", "-e", "tiny-enc", "--steps", "6", "--sources", "3", "--heldout", "2"]
SETTINGS_DICT = {"generator": "tiny-gen", "encoder": "tiny-enc", "steps": 6, "sources": {"count": 3}, "heldout": {"count": 2}}


def image(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), colour).save(path)
    return path


@pytest.fixture
def targets(tmp_path):
    return [image(tmp_path / "in" / f"t{k}.png", c) for k, c in enumerate([(200, 30, 40), (20, 180, 60), (40, 60, 220)])]


def b(path):
    return load_file(str(path / "direction.safetensors"))["b"]


def test_targets_of_every_kind(tmp_path):
    one = image(tmp_path / "face.png", (1, 2, 3))
    folder = tmp_path / "set"
    image(folder / "a.png", (1, 1, 1))
    image(folder / "b.jpg", (2, 2, 2))
    image(folder / "style" / "x.png", (3, 3, 3))
    image(folder / "style" / "y.png", (4, 4, 4))
    (folder / "notes.md").write_text("not an image")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("an old man with white hair\n\n# a comment\nSmiling!\n")
    found = collect_targets([one, folder, prompts, one])
    assert [t.name for t in found] == ["face", "a", "b", "style", "an-old-man-with-white-hair", "smiling", "face-2"]
    assert [t.kind for t in found] == ["image", "image", "image", "images", "text", "text", "image"]
    assert found[3].images == [str(folder / "style" / "x.png"), str(folder / "style" / "y.png")]
    assert found[4].texts == ["an old man with white hair"]


def written(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.png", "does not exist"),
        (lambda p: written(p / "x.csv", "a,b"), "not an image"),
        (lambda p: written(p / "empty.txt", "# only a comment\n"), "holds no prompt"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no image"),
    ],
)
def test_bad_targets_are_clear_errors(tmp_path, make, message):
    with pytest.raises(EssenceError, match=message):
        collect_targets([make(tmp_path)])


def test_a_batch_gives_the_directions_of_separate_runs(cli, doubles, targets, tmp_path):
    result = cli("batch", *map(str, targets[:2]), *SETTINGS, "--out", str(tmp_path / "batch"))
    assert result.exit_code == 0, result.output
    assert "2 targets: 2 completed" in result.stdout
    for k, target in enumerate(targets[:2]):
        run = tmp_path / f"run{k}"
        assert cli("run", "-t", str(target), *SETTINGS, "--out", str(run), "--quiet").exit_code == 0
        assert b(tmp_path / "batch" / "runs" / f"t{k}").equal(b(run))
    rows = list(csv.DictReader((tmp_path / "batch" / "summary.csv").open()))
    assert [r["target"] for r in rows] == ["t0", "t1"] and all(r["status"] == "completed" for r in rows)
    assert float(rows[0]["heldout_transfer"]) < float(rows[0]["heldout_transfer_unedited"])
    sheet = Image.open(tmp_path / "batch" / "sheet.png")
    assert sheet.height > 2 * sheet.width / 3  # three rows (sources, two targets) of three tiles
    assert "runs/t0/heldout_sheet.png" in (tmp_path / "batch" / "index.html").read_text()


def test_an_interrupted_batch_resumes_to_the_same_directions(doubles, targets, tmp_path):
    settings = essence.build_run_config({**SETTINGS_DICT, "steps": 10, "checkpoint_every": 4})
    found = collect_targets(targets)
    whole = plan_batch(settings, found, tmp_path / "whole", BatchConfig())
    execute_batch(whole)

    def stop_in_the_second_target(event):
        if event.kind == "step" and event.name == "t1" and event.done == 6:
            raise KeyboardInterrupt  # as Ctrl-C: the current run keeps its checkpoint

    plan = plan_batch(settings, found, tmp_path / "cut", BatchConfig())
    outcome = execute_batch(plan, stop_in_the_second_target)
    assert outcome.statuses == {"t0": "completed", "t1": "interrupted"}
    assert (tmp_path / "cut" / "runs" / "t1" / "checkpoint.pt").is_file()

    again = plan_batch(settings, found, tmp_path / "cut", BatchConfig())
    assert [j.state for j in again.jobs] == ["done", "resume", "new"]
    steps = []
    execute_batch(again, lambda e: steps.append((e.name, e.done)) if e.kind == "step" else None)
    assert ("t0", 1) not in steps and min(d for n, d in steps if n == "t1") == 7  # skipped; resumed after step 6
    for name in ("t0", "t1", "t2"):
        assert b(tmp_path / "cut" / "runs" / name).equal(b(tmp_path / "whole" / "runs" / name))
    assert not (tmp_path / "cut" / "runs" / "t1" / "checkpoint.pt").exists()


def test_packed_batch_matches_to_rounding(doubles, targets, tmp_path):
    settings = essence.build_run_config(SETTINGS_DICT)
    found = collect_targets(targets)
    one = plan_batch(settings, found, tmp_path / "one", BatchConfig(pack=1))
    three = plan_batch(settings, found, tmp_path / "three", BatchConfig(pack=3))
    execute_batch(one), execute_batch(three)
    for name in ("t0", "t1", "t2"):
        assert (b(tmp_path / "one" / "runs" / name) - b(tmp_path / "three" / "runs" / name)).abs().max() < 1e-5


def test_other_settings_in_the_same_folder_are_refused(cli, doubles, targets, tmp_path):
    out = str(tmp_path / "batch")
    assert cli("batch", str(targets[0]), *SETTINGS, "--out", out, "-q").exit_code == 0
    result = cli("batch", str(targets[0]), *SETTINGS, "--steps", "7", "--out", out, "-q")
    assert result.exit_code == 2 and "other run settings (steps)" in result.output
    again = cli("batch", str(targets[0]), *SETTINGS, "--out", out)
    assert again.exit_code == 0 and "1 target(s) already done: skipped" in again.output


def test_text_targets_are_escaped_in_the_index(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a <b>red</b> circle & co\n")
    settings = essence.build_run_config({"generator": "toy-sprites", "encoder": "toy-clip", "device": "cpu", "steps": 1,
                                         "sources": {"count": 2}, "heldout": {"count": 1}})
    plan = plan_batch(settings, collect_targets([prompts]), tmp_path / "batch", BatchConfig())
    with pytest.raises(essence.ConfigError, match="does not know the word"):  # toy-clip knows no "co"
        execute_batch(plan)
    from essence.workflows.batch import index_html, summary_rows

    html = index_html(plan, summary_rows(plan), False)
    assert "a &lt;b&gt;red&lt;/b&gt; circle &amp; co" in html and "<b>red" not in html


def test_the_ray_executor_without_ray_says_what_to_install(cli, doubles, targets, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    result = cli("batch", str(targets[0]), *SETTINGS, "--executor", "ray", "--out", str(tmp_path / "b"))
    assert result.exit_code == 2 and 'pip install "essence-transfer[ray]"' in result.output
    with pytest.raises(MissingExtraError):
        from essence.workflows.batch_ray import import_ray

        import_ray()


def test_files_a_worker_returns_stay_in_their_run_folder(tmp_path):
    write_returned_files(tmp_path, {"images/a.png": b"x", "metrics.json": b"{}"})
    assert (tmp_path / "images" / "a.png").read_bytes() == b"x"
    for bad in ("../escape.txt", "/etc/passwd", "images/../../x"):
        with pytest.raises(EssenceError, match="unsafe name"):
            write_returned_files(tmp_path / "run", {bad: b"x"})
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.slow
def test_a_process_pool_gives_the_directions_of_one_process(tmp_path, targets):
    settings = essence.build_run_config({"generator": "toy-sprites", "encoder": "toy-clip", "device": "cpu", "steps": 4,
                                         "sources": {"count": 2}, "heldout": {"count": 1}})
    found = collect_targets(targets[:2])
    execute_batch(plan_batch(settings, found, tmp_path / "one", BatchConfig(threads=1)))
    execute_batch(plan_batch(settings, found, tmp_path / "pool", BatchConfig(workers=2, threads=1)))
    for t in found:
        assert b(tmp_path / "one" / "runs" / t.name).equal(b(tmp_path / "pool" / "runs" / t.name))
    assert json.loads((tmp_path / "pool" / "batch.json").read_text())["format"] == "essence-batch"


def test_a_folder_with_files_of_its_own_is_not_written_over(cli, doubles, targets, tmp_path):
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("my page")
    result = cli("batch", str(targets[0]), *SETTINGS, "--out", str(out), "-q")
    assert result.exit_code == 2 and "index.html" in result.output
    assert (out / "index.html").read_text() == "my page"
