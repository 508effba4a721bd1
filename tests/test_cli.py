"""The CLI shell: listing, info, plugins, doctor, errors without tracebacks, no work at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import essence


def test_list_json_shows_the_paper_losses(cli):
    result = cli("list", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"generators", "encoders", "losses", "metrics", "aligners", "inverters", "features"}
    assert {"vgg19", "toy-clip-features"} <= {row["name"] for row in data["features"]}
    losses = {row["name"]: row for row in data["losses"]}
    assert {"transfer", "consistency"} <= set(losses)
    assert set(losses["transfer"]) == {"name", "aliases", "plugin", "description"}
    assert losses["transfer"]["plugin"] == "essence.plugins.losses.paper"


def test_list_one_kind_as_table(cli):
    result = cli("list", "losses")
    assert result.exit_code == 0
    assert "Losses" in result.stdout and "consistency" in result.stdout and "Generators" not in result.stdout


def test_list_one_kind_json(cli):
    data = json.loads(cli("list", "loss", "--json").stdout)
    assert list(data) == ["losses"]


def test_unknown_kind_is_a_clean_error(cli):
    result = cli("list", "widgets")
    assert result.exit_code == 2
    assert "Unknown kind 'widgets'" in result.stderr
    assert "Traceback" not in result.output


def test_info_shows_fields(cli):
    result = cli("info", "loss", "transfer", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["name"] == "transfer" and data["kind"] == "loss" and data["fields"] == []
    assert "loss transfer" in cli("info", "losses", "transfer").stdout


def test_info_unknown_name_suggests(cli):
    result = cli("info", "loss", "transfr")
    assert result.exit_code == 2
    assert "Unknown loss 'transfr'. Did you mean 'transfer'?" in result.stderr
    assert "Traceback" not in result.output


def test_plugins_lists_builtins_with_all(cli):
    data = json.loads(cli("plugins", "--all", "--json").stdout)
    rows = {p["name"]: p for p in data["plugins"]}
    assert rows["essence.plugins.losses.paper"]["builtin"] is True
    assert "register_losses" in rows["essence.plugins.losses.paper"]["hooks"]
    third_party = json.loads(cli("plugins", "--json").stdout)["plugins"]
    assert all(not p["builtin"] for p in third_party)


def test_doctor_runs(cli, essence_home):
    result = cli("doctor")
    assert result.exit_code == 0, result.output
    for item in ("python", "torch", "cuda", "cache folder", str(essence_home), "plugins"):
        assert item in result.stdout


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"essence {essence.__version__}"


def test_broken_plugin_does_not_break_list_or_doctor(cli, install_plugin):
    install_plugin("essence-broken", "essence_broken", "raise ImportError('missing dependency foo')\n")
    for args in (("list", "--json"), ("doctor",)):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert "essence-broken" in result.stderr and "missing dependency foo" in result.stderr
    assert "transfer" in cli("list", "--json").stdout
    assert "essence-broken (import): ImportError: missing dependency foo" in cli("doctor").stdout


def test_duplicate_names_are_a_clean_error(cli, install_plugin):
    src = """
import essence
@essence.hookimpl
def register_losses(register):
    register("transfer", lambda c: None)
"""
    install_plugin("essence-dupe", "essence_dupe", src)
    result = cli("list")
    assert result.exit_code == 2
    assert "essence.plugins.losses.paper" in result.stderr and "essence-dupe" in result.stderr
    assert "Traceback" not in result.output


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )


def test_help_and_list_import_no_torch():
    code = """
import sys
from essence.cli import main
for argv in (["--help"], ["list", "--json"], ["info", "loss", "transfer"]):
    try:
        main(argv)
    except SystemExit:
        pass
print("TORCH", "torch" in sys.modules)
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("TORCH False")


def test_console_entry_point_exit_code():
    out = subprocess.run(
        [sys.executable, "-m", "essence", "info", "loss", "nope"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    assert out.stderr.startswith("Error: Unknown loss 'nope'")
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("kind", ["generators", "encoders", "losses"])
def test_list_kinds_each(cli, kind):
    assert cli("list", kind).exit_code == 0


def test_the_preset_options_name_every_preset():
    """`essence run --help` and `essence compare --help` list every preset of presets.json."""
    from importlib.resources import files

    presets = json.loads(files("essence.method").joinpath("presets.json").read_text())
    for command in ("run", "compare"):
        shown = subprocess.run(
            [sys.executable, "-m", "essence", command, "--help"], capture_output=True, text=True,
            env={**os.environ, "COLUMNS": "400"}, check=True,
        ).stdout
        missing = [name for name in presets if name not in shown]
        assert not missing, f"essence {command} --help does not name {missing}"
