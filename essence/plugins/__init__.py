"""Built-in plugins. Each registers through the public hooks, exactly like a third-party plugin."""
