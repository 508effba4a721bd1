"""Loss terms that ask for the images and the source latents (``register(..., needs=...)``): the engine
passes them only when an active term asked, exactly (chunked or not), and the example identity loss."""

from __future__ import annotations

import sys

import pytest
import torch

import essence
from essence.core.errors import EssenceError
from essence.testing import check_component

from engine_doubles import components, doubles, install, target_file  # noqa: F401

SEEN: list[dict] = []


class Spy(essence.LossTerm):
    """Zero loss that records which extra inputs it was given."""

    def __call__(self, ctx: essence.LossContext) -> torch.Tensor:
        SEEN.append({k: None if getattr(ctx, k) is None else tuple(getattr(ctx, k).shape) for k in essence.core.interfaces.LOSS_NEEDS})
        return ctx.shifted.sum() * 0


class _SpyPlugin:
    @staticmethod
    @essence.hookimpl
    def register_losses(register):
        register("spy-plain", Spy, tiny={})
        register("spy-images", Spy, needs={"images", "source_ws"}, tiny={})


def _add_spies():
    from essence.core import plugins

    plugins.get_host().add(_SpyPlugin, "spy-plugin", None, builtin=False)


QUICK = {"steps": 2, "sources": {"count": 3}, "heldout": {"count": 0}, "restarts": 1}


def test_a_term_gets_images_and_source_ws_only_when_it_asked(components, target_file):
    G, C = components
    _add_spies()
    SEEN.clear()
    essence.optimize_direction(G, C, target_file, config={**QUICK, "losses": {"transfer": 1.0, "spy-plain": 1.0}})
    assert SEEN and all(v is None for s in SEEN for v in s.values())  # nobody asked: nothing rendered for it
    SEEN.clear()
    essence.optimize_direction(G, C, target_file, config={**QUICK, "losses": {"transfer": 1.0, "spy-images": 1.0}})
    r = G.resolution
    assert SEEN[0]["images"] == (3, 3, r, r)
    assert SEEN[0]["source_ws"] == (3, G.num_ws, G.w_dim)
    assert SEEN[0]["source_images"] is None  # not asked for


def test_unknown_need_is_refused_at_registration(fresh_plugins):
    from essence.core.registry import Registry

    with pytest.raises(EssenceError, match="may need only"):
        Registry().registrar("loss", "p")("bad", Spy, needs={"pixels"})
    with pytest.raises(EssenceError, match="for loss terms"):
        Registry().registrar("metric", "p")("bad", Spy, needs={"images"})


def test_pixel_preservation_is_a_registered_loss_that_passes_the_contract():
    reg = essence.get_registry().get("loss", "pixel-preservation")
    assert reg.needs == {"images", "source_images"}
    check_component(reg)


def _grad(components, target_file, chunk):
    from essence.method.engine import TransferOptimizer

    G, C = components
    torch.manual_seed(0)
    opt = TransferOptimizer(
        G, C, target_file, config={**QUICK, "chunk": chunk, "losses": {"transfer": 1.0, "pixel-preservation": 5.0}}
    )
    search = opt.current_search()
    search.step()
    return search.trace[0], search.optimizer.state[search.direction]["exp_avg"].clone()


def test_image_terms_are_exact_when_chunked_and_pull_towards_the_source(components, target_file):
    (whole, g1), (chunked, g2) = _grad(components, target_file, None), _grad(components, target_file, 2)
    assert whole.terms["pixel-preservation"] == pytest.approx(chunked.terms["pixel-preservation"], rel=1e-5)
    assert torch.allclose(g1, g2, atol=1e-6)
    # Alone, preservation shrinks the edit: b heads back to 0 (G(w + 0) = G(w) is its minimum).
    G, C = components
    cfg = {**QUICK, "steps": 30, "lr": 0.05, "lr_schedule": "constant", "weight_decay": 0.0,
           "losses": {"transfer": 0.0, "consistency": 0.0, "pixel-preservation": 1.0}}
    result = essence.optimize_direction(G, C, target_file, config=cfg, init="random")
    values = [r.terms["pixel-preservation"] for r in result.trace]
    assert values[-1] < 0.5 * values[0]
