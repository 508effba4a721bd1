"""Weights: the registry of known assets, checkpoint converters, the cache, and resolution of a
``weights`` value (explicit path -> cache -> download)."""

from essence.weights.assets import Asset, Converter, get_asset, get_assets, get_converters, load_assets
from essence.weights.resolve import resolve_weights

__all__ = ["Asset", "Converter", "get_asset", "get_assets", "get_converters", "load_assets", "resolve_weights"]
