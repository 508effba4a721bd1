"""The whole weights path with the real converters: asset -> download -> checksum -> convert -> model.

A local HTTP server serves checkpoints the tests make in the published formats (a rosinality `.pt` of
the golden tiny StyleGAN2; a tiny CLIP saved as a TorchScript archive like OpenAI's files).
"""

from __future__ import annotations

import pytest
import torch
from clip_models import save_torchscript, tiny_openai
from safetensors.torch import load_file
from weights_support import plugin, server, sha256  # noqa: F401 (fixtures)

import essence
from conftest import GOLDEN
from essence.cli import main


def asset(name, kind, url, data, convert, *, sha=None):
    return essence.Asset(
        name=name,
        kind=kind,
        format="test",
        filename=f"{name}.pt",
        urls=[url],
        size=len(data),
        sha256=sha or sha256(data),
        license="test licence",
        convert=convert,
    )


@pytest.fixture(scope="module")
def golden_g():
    return load_file(str(GOLDEN / "stylegan2_tiny64_golden.safetensors"))


@pytest.fixture
def rosinality_pt(tmp_path, golden_g):
    path = tmp_path / "tiny64.pt"
    torch.save({"g_ema": {k[6:]: v for k, v in golden_g.items() if k.startswith("g_ema.")}}, path)
    return path


def test_stylegan2_asset_is_downloaded_converted_and_loaded(server, plugin, rosinality_pt, golden_g):
    data = rosinality_pt.read_bytes()
    plugin.add(asset("tiny-sg2", "generator", server.serve("tiny-sg2.pt", data), data, "stylegan2"))
    generator = essence.get_generator("stylegan2", weights="tiny-sg2", device="cpu")
    image = generator.synthesize(golden_g["case.wplus.input"])
    assert (image - golden_g["case.wplus.image"]).abs().max() < 1e-4
    from essence.weights.cache import cache_entry

    entry = cache_entry("tiny-sg2")
    assert entry.status == "cached" and entry.path.suffix == ".safetensors"
    assert entry.record["converted"]["info"]["resolution"] == 64
    requests = len(server.requests("/tiny-sg2.pt"))
    essence.get_generator("stylegan2", weights="tiny-sg2", device="cpu")  # from the cache now
    assert len(server.requests("/tiny-sg2.pt")) == requests


def test_clip_archive_asset_loads_and_a_wrong_checksum_is_refused(server, plugin, tmp_path):
    model = tiny_openai("vit")
    archive = save_torchscript(model, tmp_path / "ViT-tiny.pt")
    data = archive.read_bytes()
    url = server.serve("ViT-tiny.pt", data)
    plugin.add(asset("tiny-clip", "encoder", url, data, "openai-clip"))
    plugin.add(asset("tiny-clip-bad", "encoder", url, data, "openai-clip", sha="0" * 64))

    encoder = essence.get_encoder("clip-vitb32", weights="tiny-clip", device="cpu")
    direct = essence.get_encoder("clip-vitb32", weights=str(archive), device="cpu")  # the file itself
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(encoder.embed(images), direct.embed(images), atol=1e-6)

    with pytest.raises(essence.WeightsError, match="(?i)sha256"):
        essence.get_encoder("clip-vitb32", weights="tiny-clip-bad", device="cpu")
    from essence.weights.cache import cache_entry

    assert cache_entry("tiny-clip-bad").status == "missing"


def test_weights_convert_command_reports_what_it_found(rosinality_pt, tmp_path, capsys, golden_g):
    out = tmp_path / "tiny64.safetensors"
    assert main(["weights", "convert", str(rosinality_pt), str(out)]) == 0
    printed = capsys.readouterr().out
    for fact in ("stylegan2", "resolution", "64", "num_ws", "10"):
        assert fact in printed
    generator = essence.get_generator("stylegan2", weights=str(out), device="cpu")
    assert (generator.synthesize(golden_g["case.wplus.input"]) - golden_g["case.wplus.image"]).abs().max() < 1e-4


def test_weights_convert_to_an_unwritable_place_is_a_short_error(rosinality_pt, tmp_path, capsys):
    where = tmp_path / "out"
    where.mkdir()
    blocker = where / "a-file"
    blocker.write_text("")
    assert main(["weights", "convert", str(rosinality_pt), str(blocker / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "Cannot write" in err and "a file is in the way" in err and "Traceback" not in err
    assert [p.name for p in where.iterdir()] == ["a-file"]
