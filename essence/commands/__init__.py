"""The CLI commands, thin: parse the options, call a workflow or the method, print. No torch at import time."""
