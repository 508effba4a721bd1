"""Output folders and the checks every command makes before any model is built.

A command first validates everything a user can get wrong (component options, latent files, the output
folder), then builds models. These helpers are those checks, shared by runs, apply, blends and compares.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from essence.core.errors import EssenceError

#: Where output folders go when no --out is given.
RUNS_ROOT = Path("essence-runs")


def safe_stem(text: str, length: int = 60) -> str:
    """A file-name stem that stays one name inside its folder: letters, digits, ``.``, ``_`` and ``-`` only,
    no leading dot (a target name read from a file's metadata may be ``../../x`` or ``/etc``)."""
    import re

    stem = re.sub(r"[^\w.-]+", "-", str(text)).strip(".-")[:length].strip(".-")
    return stem or "run"


def default_out(stem: str, kind: str | None = None, root: str | os.PathLike[str] = RUNS_ROOT) -> Path:
    """``<root>/[<kind>-]<stem>-<time>`` (root: ``essence-runs``), with a ``-2``, ``-3`` ... suffix when that exists.
    ``stem`` is made a plain name first (:func:`safe_stem`), so the folder is always directly under ``root``."""
    stem = safe_stem(stem)
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


def out_folder(value: str) -> Path:
    """The ``--out`` option's parser: an empty name would mean the current folder, so it is refused."""
    if not str(value).strip():
        raise EssenceError("--out '' is an empty folder name; give a folder, e.g. --out essence-runs/mine.")
    return Path(value)


#: Images a command writes into ``images/`` (sources, results, targets, held-out ones); only these are
#: removed there by --overwrite: anything else in images/ is the user's and stays.
OUR_IMAGES = re.compile(r"(heldout_)?(source|result|target)_\d{2,}(_alpha_[\w.-]+)?\.png")
#: The lock file a run holds in its folder while it writes there (never deleted: see weights/lock.py).
LOCK_FILE = ".essence.lock"


def prepare_out(
    out: Path,
    files: Sequence[str],
    *,
    overwrite: bool,
    what: str,
    markers: Sequence[str] | None = None,
    hint: str = "Choose another --out",
    clear: bool = True,
) -> Path:
    """Refuse to overwrite an earlier result by accident (one of ``markers``, default ``files``, is there), or
    a file of the same name that essence did not write; with ``overwrite``, remove only the ``files`` the
    command writes and its own images in ``images/`` (:func:`clear_out`; with ``clear=False`` the caller does
    that once every check has passed), never other files. With ``clear``, the folder is created and proved
    writable; without, it is only checked (a failed start then leaves no empty folder).
    ``markers=()``: the folder is being resumed, every file of it is expected."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EssenceError(f"Output folder {out} is a file. Choose another --out.")
    if markers is None or markers:
        if any((out / f).exists() for f in (files if markers is None else markers)):
            if not overwrite:
                raise EssenceError(f"Output folder {out} already holds {what}. {hint}, or pass --overwrite.")
        else:
            clash = [f for f in files if (out / f).exists()]
            if clash and not overwrite:
                raise EssenceError(
                    f"Output folder {out} already holds {', '.join(clash[:4])}, which essence did not write there "
                    f"as {what}. {hint}, or pass --overwrite to replace those files (no other file is touched)."
                )
    resuming = markers is not None and not markers
    if not clear:
        return check_writable(out)
    if resuming:
        return ensure_writable_dir(out)
    if overwrite:
        clear_out(out, files)
    return ensure_writable_dir(out)


def clear_out(out: Path, files: Sequence[str]) -> list[str]:
    """Remove the ``files`` a command writes and its own images in ``images/`` (the names it gives them):
    nothing else in the folder, nothing foreign in images/. Returns what was removed."""
    removed = []
    for name in files:
        if (out / name).is_file() or (out / name).is_symlink():
            (out / name).unlink()
            removed.append(name)
    images = out / "images"
    if images.is_dir() and not images.is_symlink():
        for f in sorted(images.iterdir()):
            if OUR_IMAGES.fullmatch(f.name) and (f.is_file() or f.is_symlink()):
                f.unlink()
                removed.append(f"images/{f.name}")
        with contextlib.suppress(OSError):
            images.rmdir()  # only when empty: foreign files keep their folder
    return removed


def check_writable(path: Path) -> Path:
    """Whether ``path`` could be created and written, creating nothing (its nearest existing folder decides)."""
    if path.is_dir():
        return ensure_writable_dir(path)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise EssenceError(f"Cannot write to output folder {path}: {parent} is not a writable folder. Choose another --out.")
    return path


class OutputClaim:
    """``with OutputClaim(folder):`` creates the folder, holds its lock (a second run into it is refused at
    once), and, when the body fails before writing anything, removes the folder again if it made it."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.created = False
        self._lock: Any = None

    def __enter__(self) -> OutputClaim:
        from essence.weights.lock import FileLock

        self.created = not self.folder.exists()
        ensure_writable_dir(self.folder)
        lock = self.folder / LOCK_FILE
        self._lock = FileLock(
            lock,
            busy=lambda: EssenceError(
                f"Another essence process is writing {self.folder} (it holds {lock}). Wait for it to finish, "
                "or choose another --out."
            ),
        )
        try:
            self._lock.__enter__()
        except BaseException:
            self._drop_if_unused()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._lock.__exit__(exc_type, exc, tb)
        finally:
            if exc_type is not None:
                self._drop_if_unused()

    def _drop_if_unused(self) -> None:
        if not self.created:
            return
        names = {p.name for p in self.folder.iterdir()} if self.folder.is_dir() else set()
        if names <= {LOCK_FILE}:
            (self.folder / LOCK_FILE).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.folder.rmdir()


#: The largest JSON file of a run folder essence reads (config.json, metrics.json): a real one is a few kB.
MAX_JSON_BYTES = 16 << 20


def read_run_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object from a run folder, which may come from anyone: too big, not UTF-8, not JSON, NaN or
    Infinity, nested too deep or not an object -> one EssenceError naming the file."""
    import json

    p = Path(path)

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        if p.stat().st_size > MAX_JSON_BYTES:
            raise EssenceError(f"{p} is {p.stat().st_size} bytes, too big for a run folder's JSON file.")
        data = json.loads(p.read_bytes().decode("utf-8"), parse_constant=no_constant)
    except FileNotFoundError:
        raise EssenceError(f"{p} is missing.") from None
    except OSError as exc:
        raise EssenceError(f"Cannot read {p}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise EssenceError(f"{p} is not UTF-8 text; is it a file essence wrote?") from None
    except RecursionError:
        raise EssenceError(f"{p} is nested too deeply to be a file essence wrote.") from None
    except ValueError as exc:
        raise EssenceError(f"{p} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise EssenceError(f"{p} holds a JSON {type(data).__name__}, not an object; is it a file essence wrote?")
    return data


#: The statuses a run's metrics.json may record.
RUN_STATUSES = ("completed", "interrupted", "nonfinite", "running")


def read_run_status(run_dir: str | os.PathLike[str]) -> str | None:
    """The ``status`` in a run folder's metrics.json (None without one); anything else is an EssenceError."""
    p = Path(run_dir) / "metrics.json"
    if not p.exists():
        return None
    status = read_run_json(p).get("status")
    if status not in RUN_STATUSES:
        raise EssenceError(f"{p}: status {str(status)[:40]!r} is not one of {', '.join(RUN_STATUSES)}.")
    return str(status)


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
