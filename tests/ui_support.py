"""Helpers of the UI tests: toy run folders, a server on a free loopback port, a guard against sockets
that leave the machine."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from essence.ui.find import bundled_targets

TARGET = bundled_targets()["in-domain"]
SKETCH = bundled_targets()["out-of-domain"]


def toy_run(out: Path, *, steps: int = 4, seed: int = 0, target: Path = TARGET, heldout: int = 2) -> Path:
    """A real run folder of the shipped toy models, made as `essence run` makes it."""
    from essence.method.runner import execute_run

    config = {
        "generator": "toy-sprites",
        "encoder": "toy-clip",
        "target": [str(target)],
        "steps": steps,
        "seed": seed,
        "heldout": {"count": heldout},
    }
    return execute_run(config, out=out).out


def sprite_photos(folder: Path, names: tuple[str, ...] = ("cat.png", "dog.jpg")) -> list[str]:
    """"Photos" of toy sprites the generator never made: world renders, enlarged as a camera would see them."""
    from PIL import Image

    from essence.plugins.toy import world

    folder.mkdir(parents=True, exist_ok=True)
    images = world.render(world.sample_sprites(len(names), seed=4242))
    paths = []
    for image, name in zip(images, names):
        paths.append(folder / name)
        Image.fromarray(image).resize((96, 96), Image.Resampling.NEAREST).save(paths[-1], quality=95)
    return [str(p) for p in paths]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def loopback_guard() -> Iterator[list[str]]:
    """While it lasts, every connection of this process (any thread) to anything but loopback is refused
    and recorded in the list it gives."""
    refused: list[str] = []
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(str(address[0])):
            refused.append(str(address))
            raise OSError(f"test guard: no connection to {address} (only 127.0.0.1)")
        return connect(self, address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guarded)
        yield refused


@contextlib.contextmanager
def serve(runs: Path, scratch: Path) -> Iterator[tuple[str, Any]]:
    """`essence ui`'s app on 127.0.0.1 at a free port, for the length of the block: (url, state)."""
    from essence.ui.app import UiState, launch

    state = UiState(runs, scratch)
    port = free_port()
    blocks = launch(state, host="127.0.0.1", port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", state
    finally:
        state.close()
        blocks.close()
