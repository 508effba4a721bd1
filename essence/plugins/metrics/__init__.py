"""Built-in metrics for ``essence eval``."""
