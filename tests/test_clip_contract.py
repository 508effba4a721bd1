"""Every CLIP encoder at its tiny config meets the shared contract, and nothing touches the network."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import essence
from essence.testing import check_component

PLUGIN = "essence.plugins.encoders.clip"
ROOT = Path(__file__).resolve().parents[1]
GOLDEN_CLIP = ROOT / "tests" / "fixtures" / "golden" / "clip_tiny_vit_random.safetensors"
REGISTRATIONS = [r for r in essence.list_components("encoder")["encoder"] if r.plugin == PLUGIN]


def test_the_plugin_registers_its_encoders():
    assert {r.name for r in REGISTRATIONS} == {"clip-vitb32", "clip-rn50", "openclip"}


@pytest.mark.parametrize("registration", REGISTRATIONS, ids=lambda r: r.name)
def test_contract(registration):
    encoder = check_component(registration)
    assert encoder.input_resolution == 224 and encoder.weights_id == "random"


@pytest.mark.parametrize("registration", REGISTRATIONS, ids=lambda r: r.name)
def test_engine_settings_exist_on_every_encoder(registration):
    """The engine's ``targetclip`` preset sets these on whichever CLIP encoder is chosen."""
    fields = {f["name"] for f in registration.fields()}
    assert {"weights", "device", "precision", "resample", "normalize"} <= fields
    encoder = registration.build(**{**registration.tiny, "normalize": False, "resample": "area"})
    assert encoder.normalize is False and encoder.resample == "area"


NO_NETWORK = textwrap.dedent(
    """
    import socket, sys
    attempts = []
    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network blocked by the test")
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.getaddrinfo = refuse
    socket.create_connection = refuse

    import essence
    from essence.weights import get_assets, get_converters
    essence.list_components()
    get_assets(); get_converters()
    assert "torch" not in sys.modules, "listing imported torch"
    for reg in essence.list_components("encoder")["encoder"]:
        if reg.plugin == "essence.plugins.encoders.clip":
            reg.build_tiny()
    golden = sys.argv[1]
    essence.get_encoder("clip-vitb32", weights=golden, device="cpu")
    essence.get_encoder("openclip", weights=golden, device="cpu",
                        architecture={"embed_dim": 32,
                                      "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32},
                                      "text_cfg": {"vocab_size": 512, "width": 64, "heads": 1, "layers": 1}})
    import os
    os.environ["ESSENCE_OFFLINE"] = "1"
    try:
        essence.get_encoder("clip-rn50", device="cpu")  # default weights, not cached, offline: an error
    except essence.WeightsError as exc:
        assert "essence weights pull clip-rn50" in str(exc), exc
    else:
        raise AssertionError("offline construction without cached weights did not fail")
    assert not attempts, attempts
    stub = sys.modules.get("pkg_resources")
    assert stub is None or hasattr(stub, "get_distribution"), "the pkg_resources stub for `import clip` leaked"
    print("NO NETWORK")
    """
)


def test_no_network_at_import_registration_listing_or_local_construction(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ESSENCE_HOME": str(tmp_path / "home")}
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(key, None)
    result = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, str(GOLDEN_CLIP)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NO NETWORK" in result.stdout


def test_openai_clip_imports_without_pkg_resources_and_without_its_warning(tmp_path):
    """openai-clip imports pkg_resources (gone from setuptools >= 81, deprecated and warning before): the
    stub stands in even where an old setuptools ships it, nothing warns, and no pkg_resources is left."""
    old_setuptools = tmp_path / "old-setuptools"
    old_setuptools.mkdir()
    (old_setuptools / "pkg_resources.py").write_text(
        "import warnings\nimport packaging\n"
        "warnings.warn('pkg_resources is deprecated as an API.', UserWarning, stacklevel=2)\n"
    )
    code = textwrap.dedent(
        """
        import sys, warnings
        from essence.plugins.encoders.clip.backends import import_clip
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clip = import_clip()
        assert hasattr(clip, "load"), clip
        assert "pkg_resources" not in sys.modules, "the stub leaked"
        assert not [w for w in caught if "pkg_resources" in str(w.message)], [str(w.message) for w in caught]
        print("OK")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(old_setuptools)])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-2000:]
