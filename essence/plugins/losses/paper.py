"""The two loss terms of the paper (TargetCLIP, Chefer et al. 2022), on L2-normalised embeddings.

transfer    (eq. 6): mean over sources of 1 - cos(C(I_t), C(G(w + b))); several targets: their weighted mean
consistency (eq. 7): mean over pairs i != j of 1 - cos(delta_i, delta_j),  delta = C(G(w + b)) - C(G(w))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import essence

if TYPE_CHECKING:
    import torch


def _normalize(x: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.normalize(x, dim=-1, eps=1e-12)


class Transfer(essence.LossTerm):
    """Paper eq. 6: how far the shifted sources are from the target in embedding space.

    Several targets: one transfer loss per target, averaged with the targets' weights (equal by default).
    The loss is linear in each target's embedding, so this is 1 - cos to the weighted mean of the unit
    target embeddings, scaled by that mean's length (docs/method.md says why it is not renormalised).
    """

    def __call__(self, ctx: essence.LossContext) -> torch.Tensor:
        target = _normalize(ctx.target.reshape(-1, ctx.target.shape[-1]))
        shifted = _normalize(ctx.shifted)
        distance = 1 - shifted @ target.T.to(shifted)  # (N, T)
        if ctx.target_weights is None:
            return distance.mean()
        return distance.mean(0) @ ctx.target_weights.to(distance)


class Consistency(essence.LossTerm):
    """Paper eq. 7: the edit should move every source the same way in embedding space.

    A zero difference (a source the direction does not change) counts as orthogonal to the rest.
    With a single source there are no pairs and the term is 0.
    """

    def __call__(self, ctx: essence.LossContext) -> torch.Tensor:
        import torch

        deltas = _normalize(ctx.shifted - ctx.sources.to(ctx.shifted))
        n = deltas.shape[0]
        if n < 2:
            return deltas.sum() * 0
        cos = deltas @ deltas.T
        off_diagonal = ~torch.eye(n, dtype=torch.bool, device=cos.device)
        return (1 - cos[off_diagonal]).mean()


@essence.hookimpl
def register_losses(register):
    register("transfer", Transfer, description="The transfer loss (paper eq. 6, lower is better): 1 - cos(target, shifted source), averaged.", tiny={})
    register(
        "consistency",
        Consistency,
        description="The consistency loss (paper eq. 7, lower is better): 1 - cos between the edits of every pair of sources.",
        tiny={},
    )
