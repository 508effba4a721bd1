"""Packing (--pack K): K directions optimised in one batch equal K separate runs, direction by direction."""

from __future__ import annotations

import pytest
import torch
from engine_doubles import components, doubles  # noqa: F401 (fixtures)
from PIL import Image

from essence.method.engine import TransferOptimizer, optimize_direction, optimize_together

TOL = 1e-5


@pytest.fixture
def targets(tmp_path):
    paths = []
    for k, colour in enumerate([(200, 30, 40), (20, 180, 60), (40, 60, 220)]):
        path = tmp_path / f"t{k}.png"
        Image.new("RGB", (24, 24), colour).save(path)
        paths.append(path)
    return paths


def assert_same(packed, alone):
    assert packed.status == alone.status
    assert packed.best_step == alone.best_step and packed.restart == alone.restart
    assert torch.allclose(packed.direction, alone.direction, atol=TOL, rtol=0)
    assert torch.allclose(packed.final_direction, alone.final_direction, atol=TOL, rtol=0)
    assert len(packed.trace) == len(alone.trace)
    for a, b in zip(packed.trace, alone.trace):
        assert a.step == b.step and a.lr == b.lr
        assert a.loss == pytest.approx(b.loss, abs=TOL) and a.direction_norm == pytest.approx(b.direction_norm, abs=TOL)
    if alone.heldout is None:
        assert packed.heldout is None
    else:
        for key in ("loss", "transfer", "consistency", "transfer_unedited"):
            assert packed.heldout[key] == pytest.approx(alone.heldout[key], abs=TOL)


def test_packed_directions_equal_separate_runs(components, targets):
    """Different configs per direction too: steps (so lr schedules), weight decay, restarts, coefficients."""
    G, C = components
    configs = [
        {"steps": 10, "heldout": {"count": 3}, "restarts": 2},
        {"steps": 14, "heldout": {"count": 3}, "weight_decay": 0.05, "seed": 3},
        {"steps": 6, "heldout": {"count": 0}, "coefficients": True, "sources": {"count": 4}},
    ]
    alone = [optimize_direction(G, C, t, config=c) for t, c in zip(targets, configs)]
    packed = optimize_together([TransferOptimizer(G, C, t, config=c) for t, c in zip(targets, configs)])
    for p, a in zip(packed, alone):
        assert_same(p, a)
    assert len(packed[0].restarts) == 2


def test_a_nonfinite_direction_leaves_the_pack_and_the_others_go_on(components, targets):
    G, C = components
    bad = {"steps": 8, "heldout": {"count": 0}, "losses": {"transfer": 1.0, "nan-at": {"weight": 1.0, "config": {"step": 3}}}}
    good = {"steps": 8, "heldout": {"count": 2}}
    packed = optimize_together([TransferOptimizer(G, C, targets[0], config=bad), TransferOptimizer(G, C, targets[1], config=good)])
    assert packed[0].status == "nonfinite" and len(packed[0].trace) == 3
    assert_same(packed[1], optimize_direction(G, C, targets[1], config=good))


def test_chunked_packs_give_the_same_directions(components, targets):
    G, C = components
    config = {"steps": 6, "heldout": {"count": 0}, "sources": {"count": 3}}
    whole = optimize_together([TransferOptimizer(G, C, t, config=config) for t in targets])
    chunked = optimize_together([TransferOptimizer(G, C, t, config={**config, "chunk": 2}) for t in targets])
    for a, b in zip(whole, chunked):
        assert torch.allclose(a.direction, b.direction, atol=TOL, rtol=0)


def test_a_stop_interrupts_the_whole_pack_and_each_resumes_to_the_same_result(components, targets):
    G, C = components
    config = {"steps": 8, "heldout": {"count": 2}}
    engines = [TransferOptimizer(G, C, t, config=config) for t in targets[:2]]

    def stop_at_step_4(event):
        if event.step == 3:
            engines[1].stop_requested = True

    engines[0].callback = stop_at_step_4
    stopped = optimize_together(engines)
    assert [r.status for r in stopped] == ["interrupted", "interrupted"]
    assert [len(r.trace) for r in stopped] == [4, 4]
    for engine in engines:
        engine.stop_requested = False
    resumed = []
    for engine, target in zip(engines, targets):
        again = TransferOptimizer(G, C, target, config=config)
        again.load_state_dict(engine.state_dict())
        resumed.append(again)
    for r, t in zip(optimize_together(resumed), targets):
        assert_same(r, optimize_direction(G, C, t, config=config))


def test_a_pack_needs_one_generator_and_encoder(components, targets, doubles):
    import essence
    from essence.core.errors import EssenceError

    G, C = components
    other = essence.get_encoder("tiny-enc", seed=1)
    config = {"steps": 2, "heldout": {"count": 0}}
    with pytest.raises(EssenceError, match="share one generator"):
        optimize_together([TransferOptimizer(G, C, targets[0], config=config), TransferOptimizer(G, other, targets[1], config=config)])


def test_a_zero_start_is_the_same_packed_chunked_or_alone(components, targets):
    """At b = 0 every edit is exactly 0; a pass batched differently from the sources' own must not turn
    rounding into near-zero edits whose normalised gradients are noise (init 'zeros', essence-ood)."""
    G, C = components
    config = {"steps": 6, "heldout": {"count": 0}, "sources": {"count": 3}, "init": "zeros"}
    alone = [optimize_direction(G, C, t, config=config) for t in targets]
    packed = optimize_together([TransferOptimizer(G, C, t, config=config) for t in targets])
    chunked = optimize_together([TransferOptimizer(G, C, t, config={**config, "chunk": 2}) for t in targets])
    for a, p, c in zip(alone, packed, chunked):
        assert torch.allclose(p.direction, a.direction, atol=TOL, rtol=0)
        assert torch.allclose(c.direction, a.direction, atol=TOL, rtol=0)
        assert a.trace[0].consistency == pytest.approx(alone[0].trace[0].consistency)  # the same defined start
