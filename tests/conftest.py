"""Shared fixtures: a fresh plugin host per test where asked, and paths to fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"
#: Files made by other tools (not ours); tests that use them skip when the folder is absent.
INTEROP = Path(__file__).resolve().parents[2] / "shared" / "interop"


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Reload plugins and registry before and after the test (for tests that change the environment)."""
    from essence.core import plugins

    plugins.reset()
    yield plugins
    plugins.reset()


@pytest.fixture
def essence_home(tmp_path, monkeypatch):
    """An empty, private ESSENCE_HOME."""
    home = tmp_path / "essence-home"
    monkeypatch.setenv("ESSENCE_HOME", str(home))
    return home
