"""The engine's `targetclip` preset reproduces the official TargetCLIP loop (golden vectors).

G is the tiny StyleGAN2 of stylegan2_tiny64_golden.safetensors, loaded as a user would load a
rosinality checkpoint; C is the tiny random CLIP ViT of clip_tiny_vit_random.safetensors with the
official pipeline's settings (no mean/std, exact area resampling). The reference loop is chaotic after
step 9 (see the golden README), so the trace is compared up to step 8 and the state after step 8.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import essence
from conftest import GOLDEN

TRACE = ("lr", "loss", "transfer", "consistency", "direction_norm", "mean_coefficient")


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    tensors = load_file(str(GOLDEN / "stylegan2_tiny64_golden.safetensors"))
    checkpoint = tmp_path_factory.mktemp("golden") / "stylegan2-tiny64.pt"
    torch.save({"g_ema": {k[len("g_ema.") :]: v for k, v in tensors.items() if k.startswith("g_ema.")}}, checkpoint)
    generator = essence.get_generator("stylegan2", weights=str(checkpoint), device="cpu")
    encoder = essence.get_encoder(
        "clip-vitb32",
        weights=str(GOLDEN / "clip_tiny_vit_random.safetensors"),
        normalize=False,
        resample="area",
        device="cpu",
    )
    return generator, encoder


@pytest.fixture(scope="module")
def golden():
    return load_file(str(GOLDEN / "targetclip_loop_golden.safetensors"))


@pytest.fixture(scope="module")
def run(components, golden):
    generator, encoder = components
    after_step8 = {}

    def callback(event):
        if event.step == 8:
            after_step8["direction"] = event.direction.detach().clone()
            after_step8["coefficients"] = event.coefficients.detach().clone()

    result = essence.optimize_direction(
        generator,
        encoder,
        golden["loop.target_input"],
        golden["loop.source_wplus"],
        config={"preset": "targetclip", "steps": 25, "heldout": {"count": 0}},
        init=golden["loop.init_direction"],
        callback=callback,
    )
    return result, after_step8


@pytest.mark.parametrize("name", TRACE)
def test_trace_matches_the_official_loop_up_to_step_8(run, golden, name):
    result, _ = run
    ours = torch.tensor(result.trace_values(name)[:9], dtype=torch.float64)
    reference = golden[f"loop.trace.{name}"][:9]
    assert (ours - reference).abs().max().item() < 1e-4, (ours, reference)


def test_state_after_step_8_matches(run, golden):
    _, state = run
    direction = golden["loop.direction_after_step8"].reshape(state["direction"].shape)
    assert (state["direction"] - direction).abs().max().item() < 1e-3
    coefficients = golden["loop.coefficients_after_step8"].reshape(state["coefficients"].shape)
    assert (state["coefficients"] - coefficients).abs().max().item() < 1e-3


def test_the_whole_trace_is_logged(run):
    result, _ = run
    assert len(result.trace) == 25
    assert result.trace_values("lr")[0] == 0.0  # the official schedule starts at exactly 0
