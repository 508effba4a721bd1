"""Turn a component's ``weights`` value into a local file: explicit path -> cache -> download."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from essence.core.errors import WeightsError, did_you_mean
from essence.weights.download import ProgressCallback


def resolve_weights(
    spec: str | Path,
    *,
    kind: str | None = None,
    offline: bool | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """A local file for ``spec``: an existing path, or a registered asset name.

    For an asset, returns the file components load (the converted safetensors when the asset has a
    converter, else the download itself): from the cache, finishing a conversion still to do, else
    downloading it (licence and progress bar on stderr). Offline (``offline=True`` or
    ``ESSENCE_OFFLINE=1``) never opens a socket. Raises WeightsError saying which command fixes it.
    """
    from essence.weights.assets import get_assets

    path = Path(spec).expanduser()
    if path.is_file():
        return path
    spec = str(spec)
    assets = get_assets()
    if spec in assets:
        asset = assets[spec]
        if kind is not None and asset.kind != kind:
            raise WeightsError(f"{spec!r} holds {asset.kind} weights, not {kind} weights.")
        from essence.weights.cache import cache_entry, pull

        entry = cache_entry(asset)
        if entry.status != "cached":
            entry = pull(asset, offline=offline, progress=progress)
        return entry.path
    if path.exists():
        raise WeightsError(f"Expected a weights file, got a folder: {path}")
    names = [n for n, a in assets.items() if kind is None or a.kind == kind]
    close = did_you_mean(spec, names)
    tip = f" Did you mean {close[0]!r}?" if close else " Run `essence weights list` to see the known names."
    raise WeightsError(f"Weights {spec!r}: no such file, and not a known weights name.{tip}")


def check_available(values: Iterable[tuple[str, object]], *, offline: bool | None = None) -> None:
    """Offline, before any model is built: every ``(what, weights value)`` that names a registered asset not in
    the cache, named at once with its size and where to get it (one error, not one per attempt)."""
    from essence.weights.assets import get_assets
    from essence.weights.cache import cache_entry, human_size, is_offline

    if not is_offline(offline):
        return
    assets = get_assets()
    missing = []
    for what, value in values:
        if not isinstance(value, str) or value not in assets or Path(value).expanduser().is_file():
            continue
        entry = cache_entry(assets[value])
        if entry.status != "cached" and entry.status != "not converted":
            missing.append((what, entry))
    if not missing:
        return
    parts = []
    for what, entry in missing:
        a = entry.asset
        where = a.urls[0] if a.urls else "no public URL"
        size = human_size(a.size) if a.size else "size not published"
        parts.append(f"{what} weights {a.name!r} ({size}, from {where})")
    names = " ".join(entry.asset.name for _, entry in missing)
    raise WeightsError(
        f"Offline, and {len(missing)} weights file(s) are not in the cache: {'; '.join(parts)}. "
        f"Run `essence weights pull {names}` while online, or download each file and "
        f"`essence weights import NAME FILE`."
    )
