"""Aligners: a photo -> the crop a generator expects. Each folder here is one plugin (docs/architecture.md)."""
