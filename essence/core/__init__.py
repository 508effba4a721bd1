"""The small, torch-light core of essence: plugins, registry, interfaces, engine, artifacts, weights.

The core never imports a plugin; built-in plugins register through the same hooks as third-party ones.
"""
