"""The paper's method: the run configuration, the optimisation engine, the runner, and its files."""
