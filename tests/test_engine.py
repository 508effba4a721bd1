"""The optimisation engine on tiny test doubles (tests/engine_doubles.py): behaviour users rely on."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from engine_doubles import components, doubles, target_file  # noqa: F401 (fixtures)
from PIL import Image
from safetensors.torch import load_file

import essence
from essence.method.engine import TransferOptimizer, lr_at
from essence.core.errors import EssenceError

GOLDEN = Path(__file__).parent / "fixtures" / "golden"

QUICK = {"steps": 30, "heldout": {"count": 4}}


def test_lr_schedule_matches_the_official_trace():
    """The golden trace's lr column (25 steps, lr 0.2) comes from the official get_lr."""
    golden = load_file(str(GOLDEN / "targetclip_loop_golden.safetensors"))["loop.trace.lr"]
    ours = torch.tensor([lr_at(i, 25, 0.2) for i in range(25)], dtype=torch.float64)
    assert torch.allclose(ours, golden, atol=1e-12, rtol=0)
    assert lr_at(0, 1000, 0.2) == 0.0
    assert lr_at(500, 1000, 0.2) == pytest.approx(0.2 * (0.5 - 0.5 * math.cos(math.pi * 0.5 / 0.75)))
    assert [lr_at(i, 10, 0.1, "constant") for i in (0, 9)] == [0.1, 0.1]


def test_paper_preset_lowers_the_loss_and_generalises(components, target_file):
    G, C = components
    result = essence.optimize_direction(G, C, target_file, config={"preset": "paper", **QUICK})
    assert result.status == "completed"
    assert len(result.trace) == 30 and [r.step for r in result.trace] == list(range(30))
    loss = result.trace_values("loss")
    assert min(loss[-5:]) < 0.7 * loss[0]
    assert result.trace[0].lr == 0.0 and result.trace[0].mean_coefficient == 1.0
    h = result.heldout
    assert h["count"] == 4
    assert h["transfer"] < h["transfer_unedited"]  # the direction moves fresh sources towards the target
    assert result.direction.shape == (G.num_ws, G.w_dim)
    assert result.embedding_direction.shape == (C.embed_dim,)
    assert result.embedding_direction.norm() == pytest.approx(1.0, abs=1e-5)


def test_trace_is_logged_before_the_update(components, target_file):
    G, C = components
    init = G.sample_ws(1, seed=7, truncation=0.7)[0]
    result = essence.optimize_direction(G, C, target_file, config={"steps": 5, "heldout": {"count": 0}}, init=init)
    assert result.trace[0].direction_norm == pytest.approx(float(init.norm()), rel=1e-6)
    assert result.trace[1].direction_norm == result.trace[0].direction_norm  # lr is 0 at step 0


@pytest.mark.parametrize("rule", ["evaluated", "post-update"])
def test_best_direction_rule(components, target_file, rule):
    G, C = components
    result = essence.optimize_direction(
        G, C, target_file, config={"steps": 12, "lr_schedule": "constant", "best": rule, "heldout": {"count": 0}}
    )
    losses = result.trace_values("loss")
    assert result.best_step == losses.index(min(losses)) and result.best_loss == min(losses)
    norms = result.trace_values("direction_norm") + [float(result.final_direction.norm())]
    at = result.best_step if rule == "evaluated" else result.best_step + 1
    assert float(result.direction.norm()) == pytest.approx(norms[at], rel=1e-6)


def test_same_seed_same_direction_and_seed_matters(components, target_file):
    G, C = components
    a = essence.optimize_direction(G, C, target_file, config={**QUICK, "steps": 10})
    b = essence.optimize_direction(G, C, target_file, config={**QUICK, "steps": 10})
    c = essence.optimize_direction(G, C, target_file, config={**QUICK, "steps": 10, "seed": 1})
    assert torch.equal(a.direction, b.direction) and a.trace == b.trace
    assert not torch.equal(a.direction, c.direction)


def test_chunked_passes_give_the_same_gradients(components, target_file):
    G, C = components
    cfg = {"steps": 4, "heldout": {"count": 0}}
    whole = essence.optimize_direction(G, C, target_file, config=cfg)
    chunked = essence.optimize_direction(G, C, target_file, config={**cfg, "chunk": 4})
    assert torch.allclose(whole.final_direction, chunked.final_direction, atol=1e-5)
    assert whole.trace_values("loss") == pytest.approx(chunked.trace_values("loss"), abs=1e-6)


def test_target_may_be_a_path_a_pil_image_or_a_preprocessed_tensor(components, target_file):
    G, C = components
    cfg = {"steps": 3, "heldout": {"count": 0}}
    pil = Image.open(target_file)
    runs = [
        essence.optimize_direction(G, C, t, config=cfg)
        for t in (target_file, str(target_file), pil, C.preprocess(pil), C.preprocess(pil)[0])
    ]
    for r in runs[1:]:
        assert r.trace_values("transfer") == pytest.approx(runs[0].trace_values("transfer"), abs=1e-6)
    with pytest.raises(EssenceError, match="not found"):
        essence.optimize_direction(G, C, target_file.with_name("nope.png"), config=cfg)


def test_sources_as_count_tensor_or_file(components, target_file, tmp_path):
    G, C = components
    cfg = {"steps": 2, "heldout": {"count": 0}, "seed": 3}
    ws = G.sample_ws(5, seed=3, truncation=0.7)
    essence.save_latents(tmp_path / "s.npy", ws)
    a = essence.optimize_direction(G, C, target_file, 5, config=cfg)
    b = essence.optimize_direction(G, C, target_file, ws, config=cfg)
    c = essence.optimize_direction(G, C, target_file, tmp_path / "s.npy", config=cfg)
    assert a.trace == b.trace == c.trace
    with pytest.raises(EssenceError, match=r"expected \(N, 4, 8\)"):
        essence.optimize_direction(G, C, target_file, torch.zeros(2, 3, 8), config=cfg)


def test_zeros_init_and_init_shapes(components, target_file):
    G, C = components
    result = essence.optimize_direction(G, C, target_file, config={**QUICK, "steps": 20}, init="zeros")
    assert result.trace[0].direction_norm == 0.0
    assert all(math.isfinite(v) for v in result.trace_values("loss"))
    assert result.trace[-1].loss < result.trace[0].loss
    with pytest.raises(EssenceError, match="does not fit"):
        essence.optimize_direction(G, C, target_file, config={"steps": 1}, init=torch.zeros(3, 8))


def test_per_step_coefficient_quirk_versus_persistent(components, target_file):
    """The official per-step Adam moves every coefficient by about lr each step, whatever its gradient;
    a persistent Adam accumulates moments, so its steps shrink where the gradient's sign flips."""
    G, C = components
    lr = 0.05
    cfg = {"steps": 10, "lr": lr, "lr_schedule": "constant", "heldout": {"count": 0}, "coefficients": {"enabled": True}}

    def coefficient_steps(optimizer: str) -> torch.Tensor:
        history = []
        config = {**cfg, "coefficients": {"enabled": True, "optimizer": optimizer}}
        essence.optimize_direction(
            G, C, target_file, config=config, callback=lambda e: history.append(e.coefficients.clone())
        )
        c = torch.stack([torch.ones_like(history[0])] + history)
        return (c[1:] - c[:-1]).abs()

    per_step = coefficient_steps("per-step")
    assert torch.allclose(per_step, torch.full_like(per_step, lr), atol=1e-4)
    persistent = coefficient_steps("persistent")
    assert (persistent - lr).abs().max() > 0.01


def test_coefficients_off_keep_mean_coefficient_one(components, target_file):
    G, C = components
    result = essence.optimize_direction(G, C, target_file, config={"steps": 3, "heldout": {"count": 0}})
    assert result.coefficients is None and set(result.trace_values("mean_coefficient")) == {1.0}


def test_any_registered_loss_term_is_summed_and_traced(components, target_file):
    G, C = components
    cfg = {"steps": 3, "heldout": {"count": 0}, "losses": {"transfer": 1.0, "consistency": 0.0, "nan-at": {"weight": 1, "config": {"step": 99}}}}
    result = essence.optimize_direction(G, C, target_file, config=cfg)
    assert result.trace[0].terms["nan-at"] == 0.0
    assert result.trace[0].loss == pytest.approx(result.trace[0].transfer)
    assert result.trace[0].consistency > 0  # traced at weight 0


def test_nan_stops_with_a_message_and_keeps_the_last_good_direction(components, target_file):
    G, C = components
    cfg = {"steps": 10, "heldout": {"count": 0}, "losses": {"nan-at": {"weight": 1.0, "config": {"step": 4}}}}
    result = essence.optimize_direction(G, C, target_file, config=cfg)
    assert result.status == "nonfinite" and "step 4" in result.message
    assert len(result.trace) == 4
    assert torch.isfinite(result.direction).all() and torch.isfinite(result.final_direction).all()


def test_interrupt_and_resume_equal_an_uninterrupted_run(components, target_file):
    G, C = components
    cfg = {"steps": 8, "restarts": 2, "heldout": {"count": 3}, "coefficients": {"enabled": True}}
    full = essence.optimize_direction(G, C, target_file, config=cfg)

    def stop_at(restart, step):
        def callback(event):
            if (event.restart, event.step) == (restart, step):
                raise KeyboardInterrupt

        return callback

    for where in ((0, 5), (1, 2)):
        first = TransferOptimizer(G, C, target_file, config=cfg, callback=stop_at(*where))
        partial = first.run()
        assert partial.status == "interrupted"
        state = first.state_dict()
        second = TransferOptimizer(G, C, target_file, config=cfg)
        second.load_state_dict(state)
        resumed = second.run()
        assert resumed.status == "completed"
        assert torch.equal(resumed.direction, full.direction)
        assert resumed.trace == full.trace and resumed.restart == full.restart
        assert [r.heldout for r in resumed.restarts] == [r.heldout for r in full.restarts]


def test_restarts_keep_the_best_held_out(components, target_file):
    G, C = components
    result = essence.optimize_direction(G, C, target_file, config={"steps": 6, "restarts": 3, "heldout": {"count": 3}})
    assert len(result.restarts) == 3
    assert len({r.init_seed for r in result.restarts}) == 3
    best = min(result.restarts, key=lambda r: r.heldout["loss"])
    assert result.restart == best.restart and torch.equal(result.direction, best.direction)
    with pytest.raises(EssenceError, match="different inits"):
        essence.optimize_direction(G, C, target_file, config={"restarts": 2}, init=torch.zeros(4, 8))


def test_bf16_autocast_runs_on_cpu(components, target_file):
    G, C = components
    result = essence.optimize_direction(G, C, target_file, config={"steps": 3, "precision": "bf16", "heldout": {"count": 0}})
    assert result.status == "completed" and result.direction.dtype == torch.float32


def test_renderer_lets_cudnn_pick_its_fastest_convolutions_on_cuda_only(monkeypatch):
    """Every step renders the same shapes, so on CUDA the engine turns on cuDNN's algorithm timing."""
    from types import SimpleNamespace

    from essence.method.engine import Renderer

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    Renderer(SimpleNamespace(device=torch.device("cpu")), SimpleNamespace())
    assert torch.backends.cudnn.benchmark is False
    Renderer(SimpleNamespace(device=torch.device("cuda", 0)), SimpleNamespace())
    assert torch.backends.cudnn.benchmark is True
