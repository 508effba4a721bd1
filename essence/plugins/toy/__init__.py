"""The toy world: procedural sprites with known factors, and the small models trained on them.

Submodules import numpy/torch; this package imports neither, so listing plugins stays light.
"""
