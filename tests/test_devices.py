"""One device rule for every component and command."""

import pytest
import torch

import essence


def test_auto_picks_cuda_only_when_there_is_one():
    assert essence.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert essence.resolve_device(None) == essence.resolve_device("auto")


def test_a_bad_name_is_a_config_error():
    with pytest.raises(essence.ConfigError, match="Unknown device 'gpu0'"):
        essence.resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_says_what_to_use():
    with pytest.raises(essence.EssenceError, match="no CUDA GPU. Use device='cpu' or 'auto'"):
        essence.resolve_device("cuda:0")


def test_unsupported_device_type():
    with pytest.raises(essence.EssenceError, match="not supported"):
        essence.resolve_device("meta")
