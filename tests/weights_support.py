"""Helpers for the weights tests: a real HTTP server on 127.0.0.1 that can misbehave, a test plugin
registering assets and a fake converter, and a switch that makes any socket use fail."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import essence
from essence.core.plugins import get_host

REPO = Path(__file__).resolve().parents[1]
MAGIC = b"FAKECKPT"


def make_blob(n: int, seed: int = 0) -> bytes:
    """A fake checkpoint: the magic header the fake converter detects, then random bytes."""
    return MAGIC + random.Random(seed).randbytes(n - len(MAGIC))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>"
    b"<body>Too many users have viewed or downloaded this file recently.</body></html>"
)


class _Handler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        srv = self.server
        path = self.path.lstrip("/")
        cfg = srv.behaviour.get(path, {})
        srv.log.append({"path": path, "range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")})
        count = sum(1 for r in srv.log if r["path"] == path)
        if cfg.get("delay"):
            srv.stopping.wait(cfg["delay"])
        if cfg.get("status"):
            self.send_error(cfg["status"])
            return
        if cfg.get("html"):
            self._send(200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"})
            return
        data = srv.files.get(path)
        if data is None:
            self.send_error(404)
            return
        etag = f'"{sha256(data)[:16]}"'
        headers = {"Content-Type": cfg.get("content_type", "application/octet-stream"), "ETag": etag}
        start = 0
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if rng and not cfg.get("ignore_range") and (if_range is None or if_range == etag):
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            status = 206
        else:
            status = 200
        body = data[start:]
        headers["Content-Length"] = str(cfg.get("content_length", len(body)))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        # Misbehaviours apply to the first `times` requests for the file.
        limited = count <= cfg.get("times", 1)
        if limited and "cut_after" in cfg:  # close the connection mid-file
            self._write(body[: cfg["cut_after"]])
            return
        if limited and "stall_after" in cfg:  # go silent mid-file
            self._write(body[: cfg["stall_after"]])
            srv.stopping.wait(cfg.get("stall_for", 2.0))
            return
        if limited and "drip" in cfg:  # a byte now and then: never silent long enough for a timeout
            for i in range(len(body)):
                self._write(body[i : i + 1])
                if srv.stopping.wait(cfg["drip"]):
                    return
            return
        gate = cfg.get("gate")
        if gate is not None:  # send the first bytes, then wait until the test opens the gate
            head = cfg.get("gate_after", 0)
            self._write(body[:head])
            while not gate.wait(0.05):
                if srv.stopping.is_set():
                    return
            body = body[head:]
        self._write(body)

    def _write(self, data: bytes) -> None:
        for i in range(0, len(data), 4096):
            self.wfile.write(data[i : i + 4096])
        self.wfile.flush()

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.behaviour: dict[str, dict[str, Any]] = {}
        self.log: list[dict[str, Any]] = []
        self.stopping = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:  # clients we kill break pipes
        pass

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{path}"

    def serve(self, path: str, data: bytes, **behaviour: Any) -> str:
        self.files[path] = data
        self.behaviour[path] = behaviour
        return self.url(path)

    def requests(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.log if r["path"] == path]


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = FileServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.stopping.set()
    srv.shutdown()
    srv.server_close()


# -- a test plugin ---------------------------------------------------------------------------------


def fake_detect(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def fake_convert(src: Path, dst: Path) -> dict[str, Any]:
    """Writes the payload as one uint8 tensor, by hand (no torch), like a real converter would."""
    payload = Path(src).read_bytes()[len(MAGIC) :]
    if payload.startswith(b"BAD"):
        raise essence.WeightsError("this fake checkpoint is damaged")
    header = json.dumps({"payload": {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}})
    raw = header.encode().ljust((len(header) + 7) // 8 * 8)
    Path(dst).write_bytes(len(raw).to_bytes(8, "little") + raw + payload)
    return {"format": "fake", "payload_bytes": len(payload)}


class WeightsTestPlugin:
    """Registers whatever assets a test adds, and the 'fake' converter unless told not to."""

    def __init__(self) -> None:
        self.assets: list[essence.Asset] = []
        self.with_converter = True

    @essence.hookimpl
    def register_assets(self, register: Any) -> None:
        for a in self.assets:
            register(a)

    @essence.hookimpl
    def register_converters(self, register: Any) -> None:
        if self.with_converter:
            register("fake", fake_detect, fake_convert, "test checkpoints starting with FAKECKPT")

    def add(self, asset: essence.Asset) -> essence.Asset:
        self.assets.append(asset)
        get_host().refresh()
        return asset

    def set_converter(self, present: bool) -> None:
        self.with_converter = present
        get_host().refresh()


@pytest.fixture
def plugin(fresh_plugins, essence_home):
    from essence.core.plugins import get_host

    p = WeightsTestPlugin()
    get_host().add(p, "weights-test", "0", builtin=False)
    return p


def make_asset(name: str, urls: list[str], data: bytes, *, sha: bool = True, size: bool = True, convert: str | None = "fake") -> essence.Asset:
    return essence.Asset(
        name=name,
        kind="generator",
        format="fake-ckpt",
        filename=f"{name}.ckpt",
        urls=urls,
        size=len(data) if size else None,
        sha256=sha256(data) if sha else None,
        license="Test Licence (non-commercial)",
        license_url="https://example.org/licence",
        convert=convert,
    )


# -- no network ------------------------------------------------------------------------------------


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to create a socket or resolve a name fails the test."""

    class BlockedSocket(socket.socket):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise NetworkUsed("a socket was opened")

    def blocked(*args: Any, **kwargs: Any) -> Any:
        raise NetworkUsed("the network was used")

    monkeypatch.setattr(socket, "socket", BlockedSocket)
    monkeypatch.setattr(socket, "create_connection", blocked)
    monkeypatch.setattr(socket, "getaddrinfo", blocked)


# -- child processes -------------------------------------------------------------------------------

CHILD = """
import sys
from essence.weights.assets import Asset
from essence.weights.cache import pull
entry = pull(Asset.model_validate_json(sys.argv[1]), timeout=20)
print("DONE", entry.path)
"""


def start_pull_process(asset: essence.Asset) -> subprocess.Popen:
    """`pull(asset)` in another Python process (same ESSENCE_HOME, no plugins needed)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, asset.model_dump_json()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
