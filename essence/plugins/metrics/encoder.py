"""Encoder-based metrics: the CLIP-space numbers the paper reports, judged by any registered encoder.

target-similarity   mean cos(E(result), E(target)): how much of the target's essence the results carry
consistency         mean over pairs i != j of cos(delta_i, delta_j), delta = E(result) - E(source):
                    whether the edit moves every source the same way (undefined when an edit is zero)
source-similarity   mean cos(E(result_i), E(source_i)): an identity proxy (ArcFace would be the real one)

Each is computed once per judging encoder: the run's own and, to avoid grading its own homework, others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import essence

if TYPE_CHECKING:
    import torch

#: An edit shorter than this (on unit embeddings) is no edit: its direction, and so consistency, is undefined.
ZERO_EDIT = 1e-6


def _mean(x: torch.Tensor) -> float | None:
    value = float(x.mean())
    return value if x.numel() and value == value else None


class TargetSimilarity(essence.Metric):
    """Mean cosine between each result and each target in the encoder's space (higher: more transfer)."""

    baseline = True

    def __call__(self, ctx: essence.MetricContext) -> float | None:
        return _mean(ctx.embed("results") @ ctx.embed("targets").T)


class Consistency(essence.Metric):
    """Mean cosine between the edits of every pair of sources; undefined with a zero edit or one source."""

    def __call__(self, ctx: essence.MetricContext) -> float | None:
        import torch

        deltas = ctx.embed("results") - ctx.embed("sources")
        norms = deltas.norm(dim=-1)
        n = deltas.shape[0]
        if n < 2 or bool((norms < ZERO_EDIT).any()):
            return None
        unit = deltas / norms[:, None]
        cos = unit @ unit.T
        return _mean(cos[~torch.eye(n, dtype=torch.bool)])


class SourceSimilarity(essence.Metric):
    """Mean cosine between each result and its own source (higher: more of the source kept)."""

    def __call__(self, ctx: essence.MetricContext) -> float | None:
        return _mean((ctx.embed("results") * ctx.embed("sources")).sum(-1))


@essence.hookimpl
def register_metrics(register):
    register("target-similarity", TargetSimilarity, tiny={})
    register(
        "consistency", Consistency, tiny={},
        description="Mean cos between the edits of every pair of sources (higher is better; 1 - the run's consistency loss).",
    )
    register("source-similarity", SourceSimilarity, description="Mean cos(result, its source): an identity proxy.", tiny={})
