"""Adversarial component options: nothing handed to open_clip may make it read, download or unpickle a file.

open_clip's ``create_model`` takes options (``pretrained_image_path``, ``weights_only``, ``jit``, a ``local-dir:``
folder whose weights file it would ``torch.load``) that turn a config into code execution. Each case below is a
config a stranger could hand over (a run folder's config.json, a --set); none may run the planted pickle.
"""

from __future__ import annotations

import json
import os
import pickle

import pytest

import essence
from essence.core.errors import EssenceError

from clip_models import OPEN_CLIP_VIT


class _Plant:
    """Unpickling this creates the marker file: proof that code from a file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"visual.proj": _Plant(marker)}, f, protocol=2)
    return path, marker


def _build(**config):
    return essence.get_encoder("openclip", device="cpu", **config)


@pytest.mark.parametrize(
    "key",
    ["pretrained_image_path", "pretrained_text_path", "cache_dir", "checkpoint_path", "pretrained"],
)
def test_file_options_in_architecture_are_refused_before_anything_loads(evil, key):
    path, marker = evil
    arch = {**OPEN_CLIP_VIT, key: str(path), "weights_only": False}
    with pytest.raises(EssenceError, match="cannot be set"):
        _build(weights="random", architecture=arch)
    assert not marker.exists()


@pytest.mark.parametrize("key, value", [("weights_only", False), ("jit", True), ("load_weights", True), ("require_pretrained", True)])
def test_loader_switches_in_architecture_are_refused(key, value):
    with pytest.raises(EssenceError, match=key):
        _build(weights="random", architecture={**OPEN_CLIP_VIT, key: value})


@pytest.mark.parametrize(
    "tower, key",
    [
        ("vision_cfg", "timm_model_pretrained"),
        ("vision_cfg", "timm_model_name"),
        ("text_cfg", "hf_model_pretrained"),
        ("text_cfg", "hf_model_name"),
        ("vision_cfg", "pretrained_path"),
    ],
)
def test_tower_keys_that_fetch_weights_are_refused(tower, key):
    arch = json.loads(json.dumps(OPEN_CLIP_VIT))
    arch[tower][key] = "x"
    with pytest.raises(EssenceError, match="refused"):
        _build(weights="random", architecture=arch)


def test_architecture_must_be_a_table_of_tables():
    with pytest.raises(EssenceError, match="vision_cfg must be a table"):
        _build(weights="random", architecture={**OPEN_CLIP_VIT, "vision_cfg": "evil"})


def test_hf_hub_arch_is_refused_with_the_way_out():
    with pytest.raises(EssenceError, match="local-dir"):
        _build(weights="random", arch="hf-hub:someone/evil")


def _local_dir(tmp_path, model_cfg):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    return folder


@pytest.mark.parametrize("name", ["open_clip_pytorch_model.bin", "pytorch_model.bin", "model.pth"])
def test_a_local_dir_pickle_is_read_by_essence_and_refused(tmp_path, evil, name):
    path, marker = evil
    folder = _local_dir(tmp_path, {**OPEN_CLIP_VIT, "quick_gelu": True})
    (folder / name).write_bytes(path.read_bytes())
    with pytest.raises(essence.WeightsError):
        _build(arch=f"local-dir:{folder}")
    assert not marker.exists()


def test_a_local_dir_config_naming_files_is_refused(tmp_path):
    cfg = json.loads(json.dumps(OPEN_CLIP_VIT))
    cfg["text_cfg"]["hf_model_pretrained"] = True
    folder = _local_dir(tmp_path, cfg)
    with pytest.raises(EssenceError, match="refused"):
        _build(arch=f"local-dir:{folder}")


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"no_model_cfg": {}}'])
def test_a_broken_local_dir_config_is_one_clean_error(tmp_path, content):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(content)
    with pytest.raises(EssenceError, match="open_clip_config.json"):
        _build(arch=f"local-dir:{folder}")


def test_a_local_dir_with_safetensors_weights_still_builds(tmp_path):
    import torch
    from safetensors.torch import save_file

    from clip_models import tiny_open_clip, tiny_openai

    state = {k: v.contiguous() for k, v in tiny_openai("vit").state_dict().items()}
    model = tiny_open_clip("vit", state)
    folder = _local_dir(tmp_path, {**OPEN_CLIP_VIT, "quick_gelu": True})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    enc = _build(arch=f"local-dir:{folder}")
    assert enc.weights_id.startswith("sha256:")
    x = torch.zeros(1, 3, 64, 64)
    assert enc.embed(x).shape == (1, 32)
