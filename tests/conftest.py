"""Shared fixtures: a fresh plugin host per test where asked, and paths to fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"


def _interop_dir() -> Path:
    """Files made by other tools (not ours): $ESSENCE_INTEROP_DIR, else ``<repo>/../shared/interop``, else
    /work/shared/interop (so tests find them from a git worktree too). Tests that use them skip when absent."""
    env = os.environ.get("ESSENCE_INTEROP_DIR")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "shared" / "interop"
    if beside.is_dir():
        return beside
    return Path("/work/shared/interop")


INTEROP = _interop_dir()


_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost", ""}


def _is_loopback(host) -> bool:
    import ipaddress

    if host is None or str(host).lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="session", autouse=True)
def loopback_only():
    """The network rule, enforced: tests talk only to 127.0.0.1. Looking up or connecting to any other
    address fails at once with an OSError (what a machine without a network gives), so a test that would
    reach the internet fails or skips here instead of depending on the network."""
    import socket

    real_getaddrinfo, real_connect, real_connect_ex = socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            raise socket.gaierror(socket.EAI_NONAME, f"tests are loopback-only: no lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def refused(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise OSError(101, f"tests are loopback-only: no connection to {address[0]!r}")

    def connect(self, address):
        refused(self, address)
        return real_connect(self, address)

    def connect_ex(self, address):
        refused(self, address)
        return real_connect_ex(self, address)

    socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex = getaddrinfo, connect, connect_ex
    yield
    socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex = real_getaddrinfo, real_connect, real_connect_ex


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tests run tiny models, where threads cost more than they give (and thrash on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


@pytest.fixture
def install_plugin(tmp_path, monkeypatch, fresh_plugins):
    """Install a fake plugin distribution (a module plus a ``.dist-info`` with an ``essence`` entry point).

    ``install_plugin("essence-foo", "essence_foo", source)`` makes it discoverable through
    importlib.metadata exactly as ``pip install`` would, for this test only.
    """
    import importlib
    import sys
    import textwrap

    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    monkeypatch.syspath_prepend(str(site))
    added: list[str] = []

    def install(dist: str, module: str, source: str, version: str = "1.0") -> None:
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[essence]\n{module} = {module}\n")
        added.append(module)
        importlib.invalidate_caches()
        fresh_plugins.reset()

    yield install
    for module in added:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


@pytest.fixture
def cli():
    """Run the real CLI app in-process: ``cli("list", "--json")`` -> result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from essence.cli import build_app

    def run(*args: str, input: str | None = None):
        return CliRunner().invoke(build_app(), list(args), input=input)

    return run
