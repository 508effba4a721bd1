"""Faults and mistakes around run folders: --overwrite, a failed start, two runs at once, a kill at the wrong
moment, a full disk. In every case the user's files survive and the message says what to do."""

from __future__ import annotations

import errno
import json

import pytest
from engine_doubles import doubles, target_file  # noqa: F401 (fixtures)
from typer.testing import CliRunner

import essence
from essence.cli import build_app, main
from essence.core.errors import EssenceError


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def run_args(target, out, *extra):
    return ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target, "--steps", 4, "--heldout", 2, "--out", out, "-q", *extra]


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


_MADE: dict[str, object] = {}


@pytest.fixture
def finished(doubles, target_file, tmp_path_factory, tmp_path):
    """A finished run made once per session and copied for each test (the runs are most of the time here)."""
    import shutil

    if "done" not in _MADE:
        from PIL import Image

        root = tmp_path_factory.mktemp("safety-faults")
        target = root / "target.png"
        Image.new("RGB", (40, 30), (200, 30, 40)).save(target)
        assert invoke(*run_args(target, root / "done")).exit_code == 0
        _MADE["done"] = root / "done"
    out = tmp_path / "done"
    shutil.copytree(_MADE["done"], out)
    return out


# -- --overwrite ------------------------------------------------------------------------------------------

FOREIGN = {
    "notes.txt": b"my notes",
    "images/holiday.jpg": b"\xff\xd8 my photo",
    "images/source_01.jpg": b"not ours: another extension",
    "images/mine/deep.png": b"a folder of mine",
    "data/keep.csv": b"a,b",
    "direction.npy.bak": b"a backup",
}


@pytest.mark.parametrize("name", FOREIGN)
def test_overwrite_removes_only_the_files_a_run_writes(finished, target_file, name):
    path = finished / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(FOREIGN[name])
    assert invoke(*run_args(target_file, finished, "--overwrite", "--seed", 7)).exit_code == 0
    assert path.read_bytes() == FOREIGN[name]
    assert (finished / "direction.safetensors").is_file() and (finished / "images" / "result_00.png").is_file()


def test_overwrite_deletes_nothing_when_the_new_run_cannot_start(finished, target_file, monkeypatch):
    import essence.method.runner as runner

    before = snapshot(finished)

    def broken(p):
        raise EssenceError("the generator's weights are missing (simulated)")

    monkeypatch.setattr(runner, "build_components", broken)
    r = invoke(*run_args(target_file, finished, "--overwrite", "--seed", 7))
    assert r.exit_code == 2 and "simulated" in r.output
    assert snapshot(finished) == before


@pytest.mark.parametrize("bad", ["--generator no-such-gen", "--target missing.png", "--set steps=-1", "--sources /no/such.safetensors"])
def test_overwrite_deletes_nothing_on_a_bad_option(finished, target_file, bad):
    before = snapshot(finished)
    flag, value = bad.split(" ", 1)
    r = invoke(*run_args(target_file, finished, "--overwrite"), flag, value)
    assert r.exit_code == 2, r.output
    assert snapshot(finished) == before


@pytest.mark.parametrize("name", ["config.json", "trace.csv", "loss.png", "sheet.png"])
def test_a_same_named_file_essence_did_not_write_is_not_replaced_silently(doubles, target_file, tmp_path, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_bytes(b"the user's own file")
    r = invoke(*run_args(target_file, out))
    assert r.exit_code == 2 and name in r.output and "--overwrite" in r.output
    assert (out / name).read_bytes() == b"the user's own file"


# -- a failed start ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["build fails", "interrupted while building", "unknown encoder", "missing target"])
def test_a_failed_start_leaves_no_empty_run_folder(doubles, target_file, tmp_path, monkeypatch, how):
    import essence.method.runner as runner

    out = tmp_path / "new" / "run"
    extra = []
    if how == "build fails":
        monkeypatch.setattr(runner, "build_components", lambda p: (_ for _ in ()).throw(EssenceError("no weights")))
    elif how == "interrupted while building":
        monkeypatch.setattr(runner, "build_components", lambda p: (_ for _ in ()).throw(KeyboardInterrupt()))
    elif how == "unknown encoder":
        extra = ["-e", "no-such-encoder"]
    else:
        extra = ["-t", tmp_path / "nope.png"]
    r = invoke(*run_args(target_file, out), *extra)
    assert r.exit_code != 0
    assert not out.exists()


# -- two runs, one folder; empty names ---------------------------------------------------------------------


def test_a_second_run_into_a_busy_folder_is_refused(doubles, target_file, tmp_path):
    from essence.method.rundir import LOCK_FILE
    from essence.weights.lock import FileLock

    out = tmp_path / "busy"
    out.mkdir()
    with FileLock(out / LOCK_FILE):  # another process's run (flock conflicts between open files)
        r = invoke(*run_args(target_file, out))
    assert r.exit_code == 2 and "Another essence process is writing" in r.output
    assert not (out / "config.json").exists()


def test_resume_of_a_run_still_going_is_refused(doubles, target_file, tmp_path):
    from essence.method.rundir import LOCK_FILE
    from essence.weights.lock import FileLock

    out = tmp_path / "cut"
    r = invoke(*run_args(target_file, out, "--set", 'losses.sigint-at={"weight": 0, "config": {"step": 1}}'))
    assert r.exit_code == 130
    before = snapshot(out)
    with FileLock(out / LOCK_FILE):
        r = invoke("run", "--resume", out)
    assert r.exit_code == 2 and "Another essence process is writing" in r.output
    assert snapshot(out) == before


@pytest.mark.parametrize("command", [["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", "x.png"], ["apply", "-d", "x"], ["sweep", "-d", "x"]])
@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_out_is_refused(doubles, command, empty):
    r = invoke(*command, "--out", empty)
    assert r.exit_code == 2 and "empty folder name" in r.output


# -- kills and full disks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["write_run_folder", "save_direction", "write_images"])
def test_a_kill_while_writing_the_final_files_leaves_a_resumable_run(doubles, target_file, tmp_path, monkeypatch, where):
    import essence.method.runner as runner

    out = tmp_path / "run"
    real = getattr(runner, where)

    def killed(*a, **k):
        raise KeyboardInterrupt  # a SIGKILL would stop here too; nothing after runs

    monkeypatch.setattr(runner, where, killed)
    r = invoke(*run_args(target_file, out, "--checkpoint-every", 2))
    assert r.exit_code != 0
    assert (out / "checkpoint.pt").is_file()  # the checkpoint outlives the unfinished final files
    monkeypatch.setattr(runner, where, real)
    r = invoke("run", "--resume", out, "-q")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
    assert not (out / "checkpoint.pt").exists()


def test_a_leftover_checkpoint_of_a_completed_run_is_not_resumed(finished):
    (finished / "checkpoint.pt").write_bytes(b"left over by a kill after metrics.json")
    r = invoke("run", "--resume", finished)
    assert r.exit_code == 2 and "already complete" in r.output


def test_the_advice_for_a_finished_run_works(finished):
    r = invoke("run", "--resume", finished)
    assert r.exit_code == 2 and "already complete" in r.output
    advice = r.output.split("`")[1].split()  # `essence run --config ... --out ... --overwrite`
    assert advice[:2] == ["essence", "run"]
    again = invoke(*advice[1:], "-q")
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_a_clean_error_and_keeps_the_old_file(tmp_path, code):
    from essence.core.files import write_atomic

    path = tmp_path / "metrics.json"
    path.write_text("old")

    def full(tmp):
        tmp.write_text("half")
        raise OSError(code, "No space left on device")

    with pytest.raises(EssenceError, match="disk is full"):
        write_atomic(path, full)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize("victim", ["loss.png", "sheet.png", "config.json"])
def test_a_full_disk_during_a_run_is_one_line(doubles, target_file, tmp_path, monkeypatch, victim):
    import essence.core.files as files

    real = files.write_atomic

    def fill(path, write):
        if str(path).endswith(victim):
            return real(path, lambda tmp: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
        return real(path, write)

    monkeypatch.setattr(files, "write_atomic", fill)
    import essence.core.images as images
    import essence.method.runner as runner

    monkeypatch.setattr(runner, "write_atomic", fill, raising=False)
    r = invoke(*run_args(target_file, tmp_path / "run"))
    assert r.exit_code == 2 and "disk is full" in r.output and victim in r.output, r.output
    assert "Traceback" not in r.output
    del images


def test_demo_over_an_old_demo_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "1", "--target", "in-domain", "--quiet"]) == 0
    before = snapshot(out)
    assert main(["demo", "--out", str(out), "--steps", "1", "--target", "in-domain", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(out) == before
    assert main(["demo", "--out", str(out), "--steps", "1", "--target", "in-domain", "--quiet", "--overwrite"]) == 0
