"""Core CLI commands that live outside cli.py. Modules here import no torch at import time."""
