"""Adversarial weights files: archive bombs, a bad import over a good cache entry, a conversion onto its own
source, malformed architecture metadata. Each gives one clean error, and nothing the user had is lost."""

from __future__ import annotations

import json
import os
import pickle
import resource
import struct
import zipfile

import pytest
from weights_support import make_asset, make_blob, plugin  # noqa: F401

import essence
from essence.cli import main

GB = 1 << 30


def lying_zip(path, declared=4 * GB, markers=b"g_ema visual class_embedding attnpool features.0.weight"):
    """A torch-like zip (``archive/data.pkl`` + one storage) whose directory declares ``declared`` bytes for the
    storage: what a deflated archive bomb looks like to a reader, without spending the test's time inflating it."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"keys": markers}, protocol=2))
        z.writestr("archive/data/0", bytes(1 << 16))
        z.writestr("archive/version", b"3\n")
    raw = bytearray(path.read_bytes())
    # Patch the uncompressed size of archive/data/0 in its local header and in the central directory.
    name = b"archive/data/0"
    for sig, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        i = 0
        while (i := raw.find(sig, i)) >= 0:
            if raw[i + name_at : i + name_at + len(name)] == name:
                raw[i + size_at : i + size_at + 4] = struct.pack("<I", min(declared, 0xFFFFFFFF))
            i += 4
    path.write_bytes(bytes(raw))
    return path


def real_bomb(path, mib=160):
    """A real deflate bomb: ``mib`` MiB of zeros in a file of a few hundred kB."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"g_ema": "visual class_embedding"}, protocol=2))
        z.writestr("archive/data/0", bytes(mib << 20))
    return path


@pytest.fixture(params=["lying", "real"])
def bomb(request, tmp_path):
    path = tmp_path / "bomb.pt"
    return lying_zip(path) if request.param == "lying" else real_bomb(path)


def _maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_the_bomb_is_small(bomb):
    assert bomb.stat().st_size < 2 << 20


def test_check_zip_sizes_refuses_from_the_directory(bomb):
    from essence.core.files import check_zip_sizes

    with pytest.raises(essence.WeightsError, match="archive bomb"):
        check_zip_sizes(bomb)


READERS = {
    "clip read_weights": lambda p: __import__("essence.plugins.encoders.clip.checkpoint", fromlist=["x"]).read_weights(p),
    "clip detect": lambda p: __import__("essence.plugins.encoders.clip.checkpoint", fromlist=["x"]).detect(p),
    "stylegan2 read": lambda p: __import__("essence.plugins.generators.stylegan2.checkpoints", fromlist=["x"]).read_checkpoint(p),
    "stylegan2 detect": lambda p: __import__("essence.plugins.generators.stylegan2.checkpoints", fromlist=["x"]).detect(p),
    "e4e read": lambda p: __import__("essence.plugins.inverters.e4e.checkpoint", fromlist=["x"]).read_checkpoint(p),
    "e4e detect": lambda p: __import__("essence.plugins.inverters.e4e.checkpoint", fromlist=["x"]).detect(p),
    "vgg16 detect": lambda p: __import__("essence.plugins.inverters.projector.perceptual", fromlist=["x"]).detect_vgg16(p),
    "vgg16 convert": lambda p: __import__("essence.plugins.inverters.projector.perceptual", fromlist=["x"]).convert_vgg16(p, p.with_name("o.safetensors")),
    "latent file": lambda p: essence.load_latents(p),
    "direction file": lambda p: essence.load_direction(p),
    "find_converters": lambda p: __import__("essence.weights.cache", fromlist=["x"]).find_converters(p),
    "convert_file": lambda p: __import__("essence.weights.cache", fromlist=["x"]).convert_file(p, p.with_name("out.safetensors")),
    "import latents": lambda p: __import__("essence.workflows.interop", fromlist=["x"]).read_latents(p),
}


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_refuses_the_bomb_before_inflating(bomb, reader):
    before = _maxrss_mib()
    with pytest.raises(essence.EssenceError, match="archive bomb"):
        READERS[reader](bomb)
    assert _maxrss_mib() - before < 100  # nothing was inflated (the bomb is 160 MiB to 4 GiB)
    assert not bomb.with_name("out.safetensors").exists() and not bomb.with_name("o.safetensors").exists()


def test_weights_convert_cli_refuses_the_bomb(bomb, tmp_path, capsys):
    assert main(["weights", "convert", str(bomb), str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "archive bomb" in err and "Traceback" not in err
    assert not (tmp_path / "x.safetensors").exists()


def test_a_real_checkpoint_passes_the_check(tmp_path):
    import torch

    from essence.core.files import check_zip_sizes

    path = tmp_path / "ok.pt"
    torch.save({"w": torch.randn(256, 256), "b": torch.zeros(3)}, path)
    check_zip_sizes(path)
    from essence.core.files import torch_load

    assert torch.equal(torch_load(path)["b"], torch.zeros(3))


# -- weights import never costs a good entry -------------------------------------------------------------

SIZE = 4000


@pytest.fixture
def good_entry(plugin, tmp_path):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", ["https://example.invalid/tiny.ckpt"], data, sha=False, size=False))
    good = tmp_path / "good.ckpt"
    good.write_bytes(data)
    assert main(["weights", "import", "tiny", str(good)]) == 0
    from essence.weights.cache import cache_entry

    entry = cache_entry("tiny")
    assert entry.status == "cached"
    return entry, {p.name: p.read_bytes() for p in entry.folder.iterdir()}


BAD_IMPORTS = {
    "does not convert": b"FAKECKPTBAD" + bytes(100),
    "not a checkpoint": b"\x00" * 100,
    "html page": b"<!DOCTYPE html><html><body>quota</body></html>",
    "empty": b"",
    "archive bomb": None,
}


@pytest.mark.parametrize("case", BAD_IMPORTS)
def test_a_bad_import_keeps_the_good_entry(good_entry, tmp_path, capsys, case):
    entry, before = good_entry
    bad = tmp_path / "bad.ckpt"
    if BAD_IMPORTS[case] is None:
        lying_zip(bad)
    else:
        bad.write_bytes(BAD_IMPORTS[case])
    capsys.readouterr()
    assert main(["weights", "import", "tiny", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Error:" in err
    from essence.weights.cache import cache_entry

    assert cache_entry("tiny").status == "cached"
    assert {p.name: p.read_bytes() for p in entry.folder.iterdir()} == before
    incoming = entry.folder.parent / ".incoming"
    assert not incoming.exists() or not any(incoming.iterdir())


def test_a_cached_file_that_fails_to_convert_says_weights_rm(plugin, capsys):
    from essence.weights.cache import cache_entry

    data = b"FAKECKPTBAD" + bytes(100)
    plugin.add(make_asset("tiny", ["https://example.invalid/tiny.ckpt"], data))
    entry = cache_entry("tiny")
    entry.folder.mkdir(parents=True)
    entry.source.write_bytes(data)  # in the cache without a record: adopted, then its conversion fails
    for _ in range(2):  # a second pull gives the same advice, not another attempt at something else
        assert main(["weights", "pull", "tiny", "--offline"]) == 2
        err = capsys.readouterr().err
        assert "essence weights rm tiny" in err and "Traceback" not in err


# -- a conversion onto its own source ---------------------------------------------------------------------


def _same_file_variants(tmp_path, src):
    link = tmp_path / "link.ckpt"
    link.symlink_to(src)
    hard = tmp_path / "hard.ckpt"
    os.link(src, hard)
    return {"same path": src, "relative": os.path.relpath(src), "symlink": link, "hard link": hard}


@pytest.mark.parametrize("variant", ["same path", "relative", "symlink", "hard link"])
def test_convert_src_src_is_refused_and_the_source_kept(plugin, tmp_path, monkeypatch, capsys, variant):
    monkeypatch.chdir(tmp_path)
    data = make_blob(SIZE)
    src = tmp_path / "src.ckpt"
    src.write_bytes(data)
    dst = _same_file_variants(tmp_path, src)[variant]
    assert main(["weights", "convert", str(src), str(dst), "--force"]) == 2
    assert "source file itself" in capsys.readouterr().err
    assert src.read_bytes() == data


# -- malformed architecture metadata in our own safetensors ------------------------------------------------


def _our_stylegan2(path, **changes):
    import torch
    from safetensors.torch import save_file

    from essence.plugins.generators.stylegan2.checkpoints import FORMAT, FORMAT_VERSION
    from essence.plugins.generators.stylegan2.config import Architecture

    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "source_format": "test", "latent_avg": "false",
            **Architecture(size=32, style_dim=16, n_mlp=2).to_metadata()}
    for k, v in changes.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    save_file({"style.1.weight": torch.zeros(16, 16)}, str(path), metadata=meta)
    return path


ARCH_META = {
    "no size": {"size": None},
    "no channels": {"channels": None},
    "size not a number": {"size": "big"},
    "size not a power of two": {"size": "33"},
    "size absurd": {"size": str(1 << 40)},
    "channels not json": {"channels": "{"},
    "channels a list": {"channels": "[1, 2]"},
    "channels absurd": {"channels": json.dumps({"4": 10**12})},
    "channels non-numeric key": {"channels": json.dumps({"x": 512})},
    "style_dim zero": {"style_dim": "0"},
    "n_mlp negative": {"n_mlp": "-3"},
    "conv_clamp a string": {"conv_clamp": '"x"'},
    "conv_clamp NaN": {"conv_clamp": "NaN"},
}


@pytest.mark.parametrize("case", ARCH_META)
def test_malformed_architecture_metadata_is_a_weights_error_naming_the_file(tmp_path, case):
    from essence.plugins.generators.stylegan2.checkpoints import read_checkpoint

    path = _our_stylegan2(tmp_path / "g.safetensors", **ARCH_META[case])
    with pytest.raises(essence.WeightsError) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and not isinstance(info.value, KeyError)


# -- offline: every missing asset at once ------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["-e", "clip-rn50"], ["--set", "encoder.config.weights=clip-rn50", "-e", "openclip"]])
def test_offline_names_every_missing_asset_at_once(essence_home, tmp_path, monkeypatch, extra):
    from PIL import Image
    from typer.testing import CliRunner

    from essence.cli import build_app

    monkeypatch.setenv("ESSENCE_OFFLINE", "1")
    Image.new("RGB", (32, 32)).save(tmp_path / "t.png")
    out = tmp_path / "run"
    r = CliRunner().invoke(build_app(), ["run", "-t", str(tmp_path / "t.png"), "--out", str(out), *extra])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    encoder = "clip-rn50" if extra else "clip-vitb32"
    assert "'stylegan2-ffhq'" in text and f"'{encoder}'" in text and "2 weights file(s)" in text
    assert f"essence weights pull stylegan2-ffhq {encoder}" in text and "https://" in text
    assert not out.exists()  # and no empty run folder is left behind


def test_weights_list_shows_sizes_and_sources(plugin, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", ["https://example.invalid/tiny.ckpt", "https://mirror.invalid/tiny.ckpt"], data))
    plugin.add(make_asset("local", [], data))
    assert main(["weights", "list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "source" in out and "https://example.invalid/tiny.ckpt (+1 mirror)" in out
    assert "4.0 kB" in out and "by hand" in out
