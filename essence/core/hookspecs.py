"""The hooks a plugin can implement.

Every hook takes a callback or the CLI app and returns nothing; implementations may accept fewer
arguments than the spec, so hooks can grow. Heavy imports belong inside the functions a plugin
registers, never at module level: listing components must not import torch models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer

PROJECT = "essence"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_generators(register: Any) -> None:
    """Register generators (G: W+ latents -> images).

    :param register: ``register(name, factory, *, config=None, defaults=None, aliases=(),
        description="", tiny=None)``. ``factory(config)`` builds the generator from a validated
        instance of ``config`` (a :class:`essence.ComponentConfig` subclass).
    """


@hookspec
def register_encoders(register: Any) -> None:
    """Register image encoders (C: images -> L2-normalised embeddings). Same ``register`` as above."""


@hookspec
def register_losses(register: Any) -> None:
    """Register loss terms (callables on a :class:`essence.LossContext`). Same ``register`` as above, plus
    ``needs=`` (a subset of ``{"images", "source_images", "source_ws"}``): the context fields the engine
    fills for this term, and only when a term that asked is active."""


@hookspec
def register_metrics(register: Any) -> None:
    """Register metrics for ``essence eval`` (callables on a :class:`essence.MetricContext` returning a float,
    or None when undefined). Same ``register`` as above; see :class:`essence.Metric` for the attributes
    (``uses_encoder``, ``higher_is_better``, ``baseline``) the harness reads.
    """


@hookspec
def register_aligners(register: Any) -> None:
    """Register aligners (a photo -> the crop a generator expects, see :class:`essence.Aligner`). Same
    ``register`` as above."""


@hookspec
def register_inverters(register: Any) -> None:
    """Register inverters (aligned images -> W+ latents of a generator, see :class:`essence.Inverter`).
    Same ``register`` as above."""


@hookspec
def register_features(register: Any) -> None:
    """Register feature networks (images -> feature maps, see :class:`essence.FeatureNet`), read by the
    Gatys baseline's style and content terms. Same ``register`` as above."""


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add commands to the ``essence`` CLI: ``@app.command()`` or ``app.add_typer(...)``."""


@hookspec
def register_assets(register: Any) -> None:
    """Register known weight files: ``register(asset)`` with an :class:`essence.Asset`.

    Assets are data (name, kind, format, URLs, size, SHA256, licence, converter); ship them as JSON
    beside the plugin and register :func:`essence.load_assets` of that file.
    """


@hookspec
def register_converters(register: Any) -> None:
    """Register checkpoint converters: ``register(name, detect, convert, description="")``.

    ``detect(path) -> bool`` must be cheap and must never execute code from the file.
    ``convert(src, dst) -> dict`` writes ``dst`` as safetensors and returns what it found
    (format, resolution, ..., printed by ``essence weights convert``).
    """
