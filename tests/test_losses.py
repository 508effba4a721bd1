"""The paper's loss terms on small hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

import essence
from essence import LossContext


def ctx(target, sources, shifted, **kw):
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return LossContext(target=t(target), sources=t(sources), shifted=t(shifted), **kw)


@pytest.fixture(scope="module")
def transfer():
    return essence.get_loss("transfer")


@pytest.fixture(scope="module")
def consistency():
    return essence.get_loss("consistency")


def test_transfer_hand_computed(transfer):
    # cos(t, s1) = 1, cos(t, s2) = 0  ->  mean(1 - cos) = 0.5
    value = transfer(ctx([[1.0, 0.0]], [[0, 1], [1, 0]], [[2.0, 0.0], [0.0, 3.0]]))
    assert value.item() == pytest.approx(0.5)


def test_transfer_normalises_embeddings(transfer):
    # 45 degrees: 1 - cos(45) whatever the lengths
    value = transfer(ctx([[3.0, 0.0]], [[0, 1]], [[5.0, 5.0]]))
    assert value.item() == pytest.approx(1 - math.sqrt(0.5))


def test_transfer_averages_over_several_targets(transfer):
    value = transfer(ctx([[1.0, 0.0], [0.0, 1.0]], [[0, 1]], [[1.0, 0.0]]))
    assert value.item() == pytest.approx(0.5)  # (0 + 1) / 2


def test_consistency_identical_deltas_is_zero(consistency):
    sources = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    shifted = [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]  # both moved by +z
    assert consistency(ctx([[1, 0, 0]], sources, shifted)).item() == pytest.approx(0.0, abs=1e-12)


def test_consistency_orthogonal_deltas_is_one(consistency):
    sources = [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    shifted = [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]  # moved by +x and +y
    assert consistency(ctx([[1, 0, 0]], sources, shifted)).item() == pytest.approx(1.0)


def test_consistency_opposite_deltas_is_two(consistency):
    sources = [[0.0, 1.0], [0.0, 1.0]]
    shifted = [[1.0, 1.0], [-1.0, 1.0]]
    assert consistency(ctx([[1, 0]], sources, shifted)).item() == pytest.approx(2.0)


def test_consistency_three_sources_is_mean_over_ordered_pairs(consistency):
    # deltas +x, +x, +y: pairs (1,2) -> 0, (1,3) -> 1, (2,3) -> 1, each counted twice -> 4/6
    sources = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    shifted = [[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]
    assert consistency(ctx([[1, 0]], sources, shifted)).item() == pytest.approx(2 / 3)


def test_consistency_scale_invariant(consistency):
    sources = [[0.0, 0.0], [0.0, 0.0]]
    a = consistency(ctx([[1, 0]], sources, [[1.0, 1.0], [1.0, 0.0]])).item()
    b = consistency(ctx([[1, 0]], sources, [[10.0, 10.0], [0.1, 0.0]])).item()
    assert a == pytest.approx(b) == pytest.approx(1 - math.sqrt(0.5))


def test_consistency_single_source_is_zero(consistency):
    assert consistency(ctx([[1, 0]], [[0.0, 1.0]], [[1.0, 1.0]])).item() == 0.0


def test_consistency_unedited_source_counts_as_orthogonal(consistency):
    sources = [[0.0, 1.0], [0.0, 1.0]]
    shifted = [[1.0, 1.0], [0.0, 1.0]]  # the second source did not move
    value = consistency(ctx([[1, 0]], sources, shifted))
    assert torch.isfinite(value) and value.item() == pytest.approx(1.0)


def test_gradients_flow_to_shifted_embeddings(transfer, consistency):
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(1, 8, generator=gen)
    sources = torch.randn(4, 8, generator=gen)
    shifted = torch.randn(4, 8, generator=gen, requires_grad=True)
    c = LossContext(target=target, sources=sources, shifted=shifted)
    (transfer(c) + 0.7 * consistency(c)).backward()
    assert shifted.grad is not None and torch.isfinite(shifted.grad).all()
    assert shifted.grad.abs().sum() > 0


def test_transfer_gradient_matches_finite_differences(transfer):
    gen = torch.Generator().manual_seed(1)
    target = torch.randn(1, 5, generator=gen, dtype=torch.float64)
    sources = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    shifted = torch.randn(3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s: transfer(LossContext(target=target, sources=sources, shifted=s)), (shifted,)
    )


def test_consistency_gradient_matches_finite_differences(consistency):
    gen = torch.Generator().manual_seed(2)
    sources = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    shifted = torch.randn(3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randn(1, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda s: consistency(LossContext(target=target, sources=sources, shifted=s)), (shifted,)
    )
