"""The factor classifiers kept in benchmarks/ (the quality gates' judges) load and read clean sprites."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from essence.plugins.toy import world

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def wj():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import world_judges
    finally:
        sys.path.remove(str(BENCHMARKS))
    return world_judges


def test_judges_read_every_factor_of_held_out_clean_sprites(wj):
    model = wj.load()
    scores = wj.accuracy(model, world.sample_sprites(80, 777))
    for factor in world.ESSENCE_FACTORS:
        assert scores[factor] >= 0.95, scores
    for factor in world.IDENTITY_FACTORS:
        assert scores[factor + "_mae_px"] < 1.0, scores
