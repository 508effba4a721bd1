"""The example third-party plugin is discovered through its entry point, like an installed package."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import essence
from essence.testing import check_component

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "essence-example-plugin"


def fake_install(site: Path) -> None:
    """What `pip install examples/essence-example-plugin` leaves on sys.path: metadata + entry points."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    eps = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["essence"].items())
    (info / "entry_points.txt").write_text("[essence]\n" + eps)
    (site / "example.pth").write_text(str(EXAMPLE) + "\n")


@pytest.fixture
def installed(tmp_path, monkeypatch, fresh_plugins):
    site = tmp_path / "site"
    fake_install(site)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    importlib.invalidate_caches()
    fresh_plugins.reset()
    yield site
    for name in [m for m in sys.modules if m.startswith("essence_example_plugin")]:
        sys.modules.pop(name)


def test_example_plugin_is_discovered_and_meets_the_contract(installed):
    reg = essence.get_registry().get("encoder", "pixel-stats")
    assert reg.plugin == "essence-example-plugin"
    encoder = check_component(reg)
    assert encoder.embed_dim == 3 * 2 * 2 + 3


def test_example_plugin_hidden_by_load_plugins(installed, monkeypatch, fresh_plugins):
    monkeypatch.setenv("ESSENCE_LOAD_PLUGINS", "")
    fresh_plugins.reset()
    names = [r.name for r in essence.list_components("encoder")["encoder"]]
    assert "pixel-stats" not in names


def test_example_plugin_in_cli_subprocess(installed):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(EXAMPLE), *sys.path])}
    cmd = [sys.executable, "-m", "essence", "list", "encoders", "--json"]
    shown = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout)
    assert {"name": "pixel-stats", "aliases": [], "plugin": "essence-example-plugin"}.items() <= next(
        r for r in shown["encoders"] if r["name"] == "pixel-stats"
    ).items()
    hidden = subprocess.run(cmd, capture_output=True, text=True, env={**env, "ESSENCE_LOAD_PLUGINS": ""}, check=True)
    assert "pixel-stats" not in hidden.stdout
    plugins = subprocess.run(
        [sys.executable, "-m", "essence", "plugins", "--json"], capture_output=True, text=True, env=env, check=True
    )
    row = json.loads(plugins.stdout)["plugins"][0]
    assert row == {"name": "essence-example-plugin", "version": "0.1.0", "builtin": False, "hooks": ["register_encoders"]}
