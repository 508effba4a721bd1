"""`essence import`: other tools' directions and latents become ours, values unchanged, with provenance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import INTEROP
from engine_doubles import doubles  # noqa: F401 (fixture)
from safetensors.torch import save_file
from typer.testing import CliRunner

import essence
from essence.cli import build_app
from essence.workflows.interop import read_latent_metadata, read_latents

TARGETCLIP = INTEROP / "targetclip"
needs_interop = pytest.mark.skipif(not TARGETCLIP.is_dir(), reason=f"no interop files at {TARGETCLIP}")


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


@needs_interop
def test_the_official_targetclip_directions_import_unchanged(doubles, tmp_path):
    files = sorted(TARGETCLIP.glob("*.npy"))
    assert len(files) == 19
    result = invoke("import", "direction", *files, "--out", tmp_path, "-g", "tiny-gen")
    assert result.exit_code == 0, result.output
    for f in files:
        original = np.load(f)
        assert original.shape == (1, 18, 512)
        direction = essence.load_direction(tmp_path / f"{f.stem}.safetensors")
        assert direction.b.shape == (18, 512) and direction.b.dtype == torch.float32
        assert torch.equal(direction.b, torch.from_numpy(original[0]))
        m = direction.metadata
        assert m["target"] == f.stem and m["imported_format"] == "targetclip-npy" and m["generator"] == "tiny-gen"
        assert m["imported_from"] == str(f.resolve()) and m["imported_shape"] == [1, 18, 512] and len(m["imported_sha256"]) == 64


@needs_interop
def test_an_official_direction_does_not_fit_a_small_generator(doubles, tmp_path):
    result = invoke("apply", "-d", TARGETCLIP / "elsa.npy", "-g", "tiny-gen", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "The direction elsa.npy has shape (18, 512), but this generator's W+ is (4, 8)" in " ".join(result.output.split())


@needs_interop
def test_the_official_latent_files_import(doubles, tmp_path):
    # opt_latents.pt was saved on a GPU: it must load on a CPU-only machine.
    result = invoke("import", "latents", TARGETCLIP / "opt_latents.pt", "-o", tmp_path / "sources.safetensors")
    assert result.exit_code == 0, result.output
    original = torch.load(TARGETCLIP / "opt_latents.pt", map_location="cpu", weights_only=True)
    ws = essence.load_latents(tmp_path / "sources.safetensors", num_ws=18, w_dim=512)
    assert torch.equal(ws, original)
    assert invoke("import", "latents", TARGETCLIP / "me_latent.pt", "-o", tmp_path / "me.safetensors").exit_code == 0
    assert essence.load_latents(tmp_path / "me.safetensors").shape == (1, 18, 512)


def test_self_made_targetclip_direction_imports_unchanged(doubles, tmp_path):
    b = np.random.default_rng(0).standard_normal((1, 4, 8)).astype(np.float32)
    np.save(tmp_path / "moana.npy", b)
    result = invoke("import", "direction", tmp_path / "moana.npy", "-o", tmp_path / "out" / "moana.safetensors", "-g", "tiny-gen")
    assert result.exit_code == 0, result.output
    direction = essence.load_direction(tmp_path / "out" / "moana.safetensors")
    assert torch.equal(direction.b, torch.from_numpy(b[0]))
    assert direction.metadata["target"] == "moana" and direction.metadata["generator"] == "tiny-gen"
    direction.check_fits(essence.get_generator("tiny-gen"))
    # an imported direction applies like one of ours
    assert invoke("apply", "-d", tmp_path / "out" / "moana.safetensors", "-o", tmp_path / "applied", "-q").exit_code == 0


def _containers(tmp_path):
    """Each way other tools save W+ latents, with the latents it should give."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, 8, generator=g), torch.randn(4, 8, generator=g)
    torch.save(a, tmp_path / "plain.pt")
    torch.save(b, tmp_path / "one.pt")
    np.save(tmp_path / "plain.npy", a.numpy())
    np.save(tmp_path / "one.npy", b.numpy())
    torch.save({"latents": a, "names": ["x.png", "y.png", "z.png"], "step": 7}, tmp_path / "e4e_dict.pt")
    torch.save({"w": a[:1]}, tmp_path / "single_key.pt")
    torch.save({"x.png": a[0:1], "y.png": a[1:2], "z.png": a[2:3]}, tmp_path / "named.pt")
    torch.save([a[0], a[1], a[2]], tmp_path / "list.pt")
    torch.save(a[:, None], tmp_path / "n1.pt")  # (N, 1, num_ws, w_dim)
    np.savez(tmp_path / "projected_w.npz", w=a[:1].numpy())  # the StyleGAN2-ADA projector's file
    save_file({"ws": a}, str(tmp_path / "ours.safetensors"))
    return {
        "plain.pt": (a, []), "one.pt": (b[None], []), "plain.npy": (a, []), "one.npy": (b[None], []),
        "e4e_dict.pt": (a, ["x.png", "y.png", "z.png"]), "single_key.pt": (a[:1], []),
        "named.pt": (a, ["x.png", "y.png", "z.png"]), "list.pt": (a, []), "n1.pt": (a, []),
        "projected_w.npz": (a[:1], []), "ours.safetensors": (a, []),
    }


def test_latent_imports_of_every_container_and_shape(doubles, tmp_path):
    for name, (expected, names) in _containers(tmp_path).items():
        dest = tmp_path / "out" / f"{name}.safetensors"
        result = invoke("import", "latents", tmp_path / name, "-o", dest, "-g", "tiny-gen", "-q")
        assert result.exit_code == 0, (name, result.output)
        assert torch.equal(essence.load_latents(dest, num_ws=4, w_dim=8), expected), name
        meta = read_latent_metadata(dest)
        assert meta["format"] == "essence-latents" and meta["generator"] == "tiny-gen" and meta["count"] == len(expected)
        assert meta["imported_from"] == str((tmp_path / name).resolve())
        assert meta.get("names", []) == names, name


def test_imported_latents_are_sources_for_apply(doubles, tmp_path):
    torch.save(essence.get_generator("tiny-gen").sample_ws(2, seed=5), tmp_path / "faces.pt")
    assert invoke("import", "latents", tmp_path / "faces.pt", "-o", tmp_path / "faces.safetensors", "-q").exit_code == 0
    essence.save_direction(tmp_path / "d.safetensors", torch.ones(4, 8), generator="tiny-gen")
    result = invoke("apply", "-d", tmp_path / "d.safetensors", "--latents", tmp_path / "faces.safetensors", "-o", tmp_path / "a", "-q")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "a" / "images").glob("*.png"))) == 2 * 2


def _bad_files(tmp_path):
    torch.save(torch.zeros(2, 4, 8), tmp_path / "two.pt")
    np.save(tmp_path / "flat.npy", np.zeros((512,), dtype=np.float32))
    np.save(tmp_path / "ints.npy", np.zeros((1, 4, 8), dtype=np.int64))
    np.save(tmp_path / "nan.npy", np.full((1, 4, 8), np.nan, dtype=np.float32))
    np.save(tmp_path / "pickled.npy", np.array([{"w": 1}], dtype=object), allow_pickle=True)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"latents": Evil()}, tmp_path / "evil.pt")
    torch.save({"a": torch.zeros(1, 4, 8), "b": torch.zeros(1, 5, 8)}, tmp_path / "mixed.pt")
    (tmp_path / "w.txt").write_text("0.1")
    (tmp_path / "exists.safetensors").write_bytes(b"")
    np.save(tmp_path / "ok.npy", np.zeros((1, 4, 8), dtype=np.float32))


BAD_IMPORTS = {
    "several latents as a direction": (["direction", "two.pt"], "holds 2 latents"),
    "one w, not W+": (["latents", "flat.npy"], "shape (512,); expected W+ latents"),
    "integer values": (["latents", "ints.npy"], "int64 values"),
    "NaN": (["direction", "nan.npy"], "NaN or infinite"),
    "pickled npy": (["latents", "pickled.npy"], "Cannot read"),
    "code in a .pt": (["latents", "evil.pt"], "Cannot read"),
    "mixed shapes": (["latents", "mixed.pt"], "mixes latents of shapes"),
    "unsupported format": (["latents", "w.txt"], "unsupported format"),
    "missing file": (["direction", "missing.npy"], "not found"),
    "unknown generator": (["direction", "ok.npy", "-g", "tiny-gne"], "Did you mean 'tiny-gen'?"),
    "existing output": (["direction", "ok.npy", "-o", "exists.safetensors"], "exists"),
    "one file for several": (["direction", "ok.npy", "nan.npy", "-o", "one.safetensors"], "give a folder"),
}


@pytest.mark.parametrize("case", list(BAD_IMPORTS))
def test_bad_imports_are_clean_errors(doubles, tmp_path, monkeypatch, case):
    _bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    args, message = BAD_IMPORTS[case]
    result = invoke("import", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert "pwned" not in result.output


def test_read_latents_reports_the_container(tmp_path):
    torch.save({"latents": torch.zeros(2, 4, 8), "names": ["a", "b"]}, tmp_path / "d.pt")
    imported = read_latents(tmp_path / "d.pt")
    assert imported.container == "dict['latents']" and imported.names == ["a", "b"] and imported.source_shape == (2, 4, 8)


@pytest.mark.parametrize(
    "generator, fits, misfit",
    [("stylegan2-ffhq", (18, 512), (14, 512)), ("stylegan2-church", (14, 512), (18, 512)), ("toy-sprites", (8, 128), (18, 512))],
)
def test_import_checks_the_shape_against_the_generators_w_plus_without_loading_it(
    generator, fits, misfit, tmp_path, essence_home, monkeypatch
):
    """-g G: the W+ shape comes from G's config and registry metadata (or its file's header): a misfit is a
    clean error before anything is written, and no model is built, no weights read or downloaded."""
    import essence.plugins.generators.stylegan2.build as build

    monkeypatch.setenv("ESSENCE_OFFLINE", "1")
    monkeypatch.setattr(build, "build_generator", lambda *a, **k: pytest.fail("a generator was built"))
    good, bad = tmp_path / "good.npy", tmp_path / "bad.npy"
    np.save(good, np.zeros((1, *fits), np.float32))
    np.save(bad, np.zeros((1, *misfit), np.float32))
    ok = invoke("import", "direction", good, "-g", generator, "--out", tmp_path / "ok")
    assert ok.exit_code == 0, ok.output
    refused = invoke("import", "direction", bad, "-g", generator, "--out", tmp_path / "no")
    assert refused.exit_code == 2
    text = " ".join(refused.output.split())
    assert f"W+ shape {misfit} (num_ws x w_dim), but {generator}'s W+ is {fits}" in text and "Traceback" not in text
    assert not (tmp_path / "no").exists() or not any((tmp_path / "no").iterdir())
    latents = tmp_path / "latents.npy"
    np.save(latents, np.zeros((3, *misfit), np.float32))
    refused = invoke("import", "latents", latents, "-g", generator, "-o", tmp_path / "l.safetensors")
    assert refused.exit_code == 2 and f"{generator}'s W+ is {fits}" in " ".join(refused.output.split())
