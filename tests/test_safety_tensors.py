"""Adversarial direction and latent files in every format (.safetensors, TargetCLIP .npy, .pt): NaN, inf,
float64 values beyond float32, integer and bool tensors, zero rows, empty tensors. Each is refused with one
line naming the file, by the readers every command uses, before a model is built."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_doubles import TinyGenerator, doubles, target_file  # noqa: F401 (fixtures)
from safetensors.torch import save_file
from typer.testing import CliRunner

import essence
from essence.cli import build_app
from essence.core.errors import EssenceError
from essence.method.artifacts import load_direction, load_latents
from essence.workflows.interop import read_latents


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def _write(path, tensor: torch.Tensor):
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, tensor.numpy())
    elif suffix == ".pt":
        torch.save(tensor, path)
    else:
        save_file({"ws": tensor.contiguous()}, str(path))
    return path


def _nan(shape):
    t = torch.zeros(shape)
    t.view(-1)[3] = float("nan")
    return t


def _inf(shape):
    t = torch.zeros(shape)
    t.view(-1)[-1] = -float("inf")
    return t


BAD_TENSORS = {
    "NaN": (_nan, "NaN or infinite"),
    "inf": (_inf, "NaN or infinite"),
    "float64 beyond float32": (lambda s: torch.full(s, 1e300, dtype=torch.float64), "NaN or infinite value(s) in float32"),
    "int64": (lambda s: torch.ones(s, dtype=torch.int64), "holds torch.int64 values"),
    "int32": (lambda s: torch.ones(s, dtype=torch.int32), "holds torch.int32 values"),
    "uint8": (lambda s: torch.ones(s, dtype=torch.uint8), "holds torch.uint8 values"),
    "bool": (lambda s: torch.ones(s, dtype=torch.bool), "holds torch.bool values"),
    "zero rows": (lambda s: torch.zeros((0, *s[1:])), "is empty"),
}
FORMATS = (".safetensors", ".npy", ".pt")
CASES = [(kind, fmt) for kind in BAD_TENSORS for fmt in FORMATS]


@pytest.mark.parametrize("kind,fmt", CASES)
def test_latent_files_are_checked(tmp_path, kind, fmt):
    make, words = BAD_TENSORS[kind]
    path = _write(tmp_path / f"ws{fmt}", make((3, 4, 8)))
    with pytest.raises(EssenceError, match="ws" + fmt.replace(".", r"\.")) as info:
        load_latents(path, num_ws=4, w_dim=8, what="Sources latent file")
    assert words in str(info.value)
    with pytest.raises(EssenceError) as info:
        read_latents(path)  # `essence import`
    assert words in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("kind,fmt", [(k, f) for k, f in CASES if k != "zero rows" or f != ".safetensors"])
def test_direction_files_are_checked(tmp_path, kind, fmt):
    make, words = BAD_TENSORS[kind]
    shape = (0, 4, 8) if kind == "zero rows" else (1, 4, 8)
    tensor = make(shape)
    if fmt == ".safetensors":  # ours: b (num_ws, w_dim)
        path = tmp_path / "direction.safetensors"
        save_file({"b": tensor[0].contiguous()}, str(path))
    else:  # TargetCLIP's (1, num_ws, w_dim)
        path = _write(tmp_path / f"direction{fmt}", tensor)
    with pytest.raises(EssenceError) as info:
        load_direction(path)
    assert words in str(info.value) and str(path) in str(info.value)


def test_a_direction_with_a_bad_d_is_refused(tmp_path):
    path = tmp_path / "direction.safetensors"
    save_file({"b": torch.zeros(4, 8), "d": torch.full((16,), float("nan"))}, str(path))
    with pytest.raises(EssenceError, match=r"\('d'\) contains 16 NaN"):
        load_direction(path)
    save_file({"b": torch.zeros(4, 0)}, str(path))
    with pytest.raises(EssenceError, match="is empty"):
        load_direction(path)


def test_devices_and_folders_as_latent_or_direction_files_are_named(tmp_path):
    folder = tmp_path / "ws.pt"
    folder.mkdir()
    with pytest.raises(EssenceError, match="ws.pt is a folder, not a regular file"):
        load_latents(folder)
    with pytest.raises(EssenceError, match="/dev/zero is a device, FIFO or socket, not a regular file"):
        load_direction("/dev/zero")


def test_float16_and_float64_latents_that_fit_are_read(tmp_path):
    for dtype in (torch.float16, torch.float64, torch.bfloat16):
        path = tmp_path / "ws.pt"
        torch.save(torch.ones(2, 4, 8, dtype=dtype), path)
        ws = load_latents(path, num_ws=4, w_dim=8)
        assert ws.dtype == torch.float32 and ws.shape == (2, 4, 8)


@pytest.mark.parametrize("kind", ["NaN", "float64 beyond float32", "int64", "zero rows"])
def test_commands_refuse_them_before_any_model(doubles, target_file, tmp_path, kind):
    make, words = BAD_TENSORS[kind]
    latents = _write(tmp_path / "ws.npy", make((2, 4, 8)))
    direction = _write(tmp_path / "direction.npy", make((0 if kind == "zero rows" else 1, 4, 8)))
    good = essence.save_direction(tmp_path / "good.safetensors", torch.zeros(4, 8), generator="tiny-gen")
    built = TinyGenerator.built
    for args in (
        ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 2, "--sources", latents],
        ["run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 2, "--init", latents],
        ["apply", "-d", direction, "-g", "tiny-gen"],
        ["apply", "-d", good, "--latents", latents],
        ["import", "direction", direction],
    ):
        result = invoke(*args, "-o", tmp_path / "out", "-q")
        assert result.exit_code == 2, (args, result.output)
        assert words in " ".join(result.output.split()), (args, result.output)
        assert "Traceback" not in result.output
    assert TinyGenerator.built == built
