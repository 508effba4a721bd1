"""Turn a component's ``weights`` value into a local file: explicit path -> cache -> download."""

from __future__ import annotations

from pathlib import Path

from essence.core.errors import WeightsError, did_you_mean


def resolve_weights(spec: str, *, kind: str | None = None) -> Path:
    """A local file for ``spec``: an existing path, or a registered asset name.

    For an asset, returns the file components load (the converted safetensors when the asset has a
    converter, else the download itself). Raises WeightsError saying which command fixes it.
    """
    from essence.core.weights.assets import get_assets

    path = Path(spec).expanduser()
    if path.is_file():
        return path
    assets = get_assets()
    if spec in assets:
        asset = assets[spec]
        if kind is not None and asset.kind != kind:
            raise WeightsError(f"{spec!r} holds {asset.kind} weights, not {kind} weights.")
        raise WeightsError(
            f"Weights {spec!r} are not in the cache yet. Run `essence weights pull {spec}`, "
            f"or download {asset.filename} yourself and run `essence weights import {spec} FILE`."
        )
    if path.exists():
        raise WeightsError(f"Expected a weights file, got a folder: {path}")
    names = [n for n, a in assets.items() if kind is None or a.kind == kind]
    close = did_you_mean(spec, names)
    tip = f" Did you mean {close[0]!r}?" if close else " Run `essence weights list` to see the known names."
    raise WeightsError(f"Weights {spec!r}: no such file, and not a known weights name.{tip}")
