"""Weights: the registry of known assets, checkpoint converters, and resolution of a ``weights`` value."""

from essence.core.weights.assets import Asset, Converter, get_assets, get_converters, load_assets
from essence.core.weights.resolve import resolve_weights

__all__ = ["Asset", "Converter", "get_assets", "get_converters", "load_assets", "resolve_weights"]
