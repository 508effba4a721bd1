"""Built-in loss terms."""
