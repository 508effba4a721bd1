"""Where essence keeps its files: ``$ESSENCE_HOME``, else the platform's per-user cache folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def user_cache_dir(app: str = "essence") -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / app / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / app
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / app


def essence_home() -> Path:
    """The cache root. Not created here: commands that write create it."""
    env = os.environ.get("ESSENCE_HOME")
    return Path(env).expanduser() if env else user_cache_dir()
