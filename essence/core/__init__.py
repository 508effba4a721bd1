"""The kernel of essence, readable in one sitting: hooks, interfaces, registry, plugin loading, config,
errors, devices, paths, files and images.

The kernel imports nothing above it (no method, workflow, command or plugin); built-in plugins register
through the same hooks as third-party ones.
"""
