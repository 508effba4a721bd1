"""Output folders and the checks every command makes before any model is built.

A command first validates everything a user can get wrong (component options, latent files, the output
folder), then builds models. These helpers are those checks, shared by runs, apply, blends and compares.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from essence.core.errors import EssenceError

#: Where output folders go when no --out is given.
RUNS_ROOT = Path("essence-runs")


def default_out(stem: str, kind: str | None = None, root: str | os.PathLike[str] = RUNS_ROOT) -> Path:
    """``<root>/[<kind>-]<stem>-<time>`` (root: ``essence-runs``), with a ``-2``, ``-3`` ... suffix when that exists."""
    name = f"{kind}-{stem}" if kind else stem
    base = Path(root) / f"{name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out, k = base, 2
    while out.exists():
        out, k = base.with_name(f"{base.name}-{k}"), k + 1
    return out


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create the folder (and parents) and prove a file can be written there, before any compute."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise EssenceError(f"Output folder {p} is a file. Choose another --out.")
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".essence-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise EssenceError(f"Cannot write to output folder {p}: {exc.strerror or exc}. Choose another --out.") from None
    return p


def prepare_out(
    out: Path,
    files: Sequence[str],
    *,
    overwrite: bool,
    what: str,
    markers: Sequence[str] | None = None,
    hint: str = "Choose another --out",
) -> Path:
    """Refuse to overwrite an earlier result by accident (one of ``markers``, default ``files``, is there);
    with ``overwrite``, remove the ``files`` the command writes and its ``images/``; prove the folder writable."""
    if any((out / f).exists() for f in (files if markers is None else markers)):
        if not overwrite:
            raise EssenceError(f"Output folder {out} already holds {what}. {hint}, or pass --overwrite.")
        for name in files:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "images", ignore_errors=True)
    return ensure_writable_dir(out)


def component_config(reg: Any, spec_config: dict[str, Any], device: Any) -> dict[str, Any]:
    """The component's config with the run's device filled in where the component has a device field;
    validated here, so a bad component option fails before any weights load."""
    config = dict(spec_config)
    if "device" in reg.config.model_fields and "device" not in config:
        config["device"] = str(device)
    reg.validate(**config)
    return config


def check_latent_files(files: Iterable[tuple[str | None, str]], generator: Any = None) -> None:
    """Read every latent file ``(path, what)`` that is set; with ``generator``, also check its W+ shape."""
    from essence.method.artifacts import load_latents

    shape = {} if generator is None else {"num_ws": generator.num_ws, "w_dim": generator.w_dim}
    for path, what in files:
        if path:
            load_latents(path, what=what, **shape)
