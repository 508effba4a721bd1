"""The weights cache: one folder per asset, described by a JSON record that is written last.

Layout under ``essence_home()`` (``$ESSENCE_HOME``, else the per-user cache folder)::

    weights/
        <name>/
            <filename>              the file as published (e.g. stylegan2-ffhq-config-f.pkl)
            <filename>.part(.json)  an unfinished download and its URL; the next pull resumes it
            <name>.safetensors      the converted weights, for assets with a converter
            <name>.json             the record (source URL, SHA256s, sizes, dates, converter output)
        .locks/<name>.lock          held by the process writing <name>/

The record only ever describes finished files: it is replaced atomically after each step (download,
then conversion) and deleted first when anything is removed or replaced. A file without a record is
never trusted as is: a pull checks it (size, SHA256 when known) before recording it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence.core.errors import EssenceError, WeightsError
from essence.core.files import check_zip_sizes, sha256_file
from essence.core.paths import essence_home
from essence.weights.assets import Asset, Converter, get_asset, get_converters
from essence.weights.download import (
    DEFAULT_TIMEOUT,
    DownloadError,
    ProgressCallback,
    download,
    file_looks_like_html,
    part_path,
)
from essence.weights.lock import FileLock

if TYPE_CHECKING:
    from rich.console import Console

RECORD_VERSION = 1
_TRUE = ("1", "true", "yes", "on")


def weights_root() -> Path:
    return essence_home() / "weights"


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` when given, else whether ``ESSENCE_OFFLINE`` is set to 1/true/yes/on."""
    if offline is not None:
        return offline
    return os.environ.get("ESSENCE_OFFLINE", "").strip().lower() in _TRUE


@dataclass(frozen=True)
class CacheEntry:
    """What the cache holds for one asset. ``status`` is one of :data:`STATUSES`."""

    asset: Asset
    folder: Path
    status: str
    record: dict[str, Any] | None

    @property
    def source(self) -> Path:
        """The file as downloaded."""
        return self.folder / self.asset.filename

    @property
    def converted(self) -> Path:
        return self.folder / f"{self.asset.name}.safetensors"

    @property
    def path(self) -> Path:
        """The file components load: the converted safetensors, or the download when there is no converter."""
        return self.converted if self.asset.convert else self.source

    @property
    def record_path(self) -> Path:
        return self.folder / f"{self.asset.name}.json"


STATUSES = {
    "cached": "ready to use",
    "not converted": "downloaded and checked, conversion still to do (needs no network)",
    "unverified": "a file without a record (copied by hand or a killed process): checked on the next pull",
    "partial": "an unfinished download: the next pull resumes it",
    "missing": "not in the cache",
}


def _as_asset(asset: Asset | str) -> Asset:
    return asset if isinstance(asset, Asset) else get_asset(asset)


def cache_entry(asset: Asset | str) -> CacheEntry:
    """The cache state of ``asset``, from file sizes and the record (no hashing, no lock)."""
    asset = _as_asset(asset)
    folder = weights_root() / asset.name
    record = _read_record(folder / f"{asset.name}.json")
    if record is not None and asset.sha256 and record["source"].get("sha256") != asset.sha256:
        record = None  # the registry now names another file (a corrected SHA256): check again
    entry = CacheEntry(asset, folder, "missing", None)
    if record is not None and _has_size(entry.source, record["source"].get("size")):
        conv = record.get("converted")
        done = not asset.convert or (
            isinstance(conv, dict)
            and conv.get("converter") == asset.convert
            and _has_size(entry.converted, conv.get("size"))
        )
        return CacheEntry(asset, folder, "cached" if done else "not converted", record)
    if entry.source.is_file():
        return CacheEntry(asset, folder, "unverified", None)
    if part_path(entry.source).is_file():
        return CacheEntry(asset, folder, "partial", None)
    return entry


def pull(
    asset: Asset | str,
    *,
    force: bool = False,
    offline: bool | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    console: Console | None = None,
    deadline: float | None = None,
) -> CacheEntry:
    """Make ``asset`` ready in the cache: check a file already there, else download it, then convert.

    Shows the licence before downloading and a progress bar on ``console`` (default: stderr).
    Offline (``offline=True`` or ``ESSENCE_OFFLINE=1``) never opens a socket: it only finishes what
    the cache already holds, and otherwise says which command or file would fix it.
    """
    asset = _as_asset(asset)
    offline = is_offline(offline)
    console = console or _stderr()
    if force and offline:
        raise WeightsError(
            f"Re-downloading {asset.name!r} (--force) needs the network, and offline mode is on "
            f"({_offline_reason()}). Drop one of them."
        )
    with _lock(asset, console):
        if force:
            _clear(cache_entry(asset))
        entry = cache_entry(asset)
        if entry.status == "cached":
            return entry
        record = entry.record if entry.status == "not converted" else None
        if entry.status == "unverified":
            record = _adopt(entry, console)
        if record is None:
            if offline:
                raise _offline_error(entry)
            record = _download(entry, progress, timeout, console, deadline)
        if asset.convert:
            _convert_cached(entry, record, console)
        return cache_entry(asset)


def import_file(asset: Asset | str, path: str | Path, *, console: Console | None = None) -> CacheEntry:
    """Check a file downloaded by hand against ``asset`` (HTML, size, SHA256 when known), copy it into
    the cache and convert it. Replaces whatever the cache held for ``asset``."""
    asset = _as_asset(asset)
    path = Path(path).expanduser()
    console = console or _stderr()
    if not path.is_file():
        raise WeightsError(f"No such file: {path}")
    _check_cheap(asset, path)
    with _lock(asset, console):
        entry = cache_entry(asset)
        same = entry.source.exists() and os.path.samefile(path, entry.source)
        if same:
            entry.record_path.unlink(missing_ok=True)
            digest = sha256_file(path)
            _check_digest(asset, path, digest)
            record = _new_record(asset, digest, entry.source.stat().st_size, url=None, imported_from=str(path))
            _write_record(entry.record_path, record)
            _tell_new_digest(asset, digest, entry.record_path, console)
            if asset.convert:
                _convert_cached(entry, record, console)
            return cache_entry(asset)
        # Checked and converted aside (same file system, so the swap is a rename): a bad file never
        # costs the good entry the cache holds.
        stage = weights_root() / ".incoming" / f"{asset.name}.{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        try:
            staged = CacheEntry(asset, stage, "unverified", None)
            digest = _copy_hashing(path, staged.source)
            _check_digest(asset, path, digest)
            record = _new_record(asset, digest, staged.source.stat().st_size, url=None, imported_from=str(path))
            if asset.convert:
                conv = _converter_for(staged)
                console.print(f"Converting {asset.name} with {conv.name} ...")
                try:
                    if not _detects(conv, staged.source):
                        raise WeightsError(f"it is not a {asset.format} file that the {conv.name!r} converter reads.")
                    _, info = convert_file(staged.source, staged.converted, converter=conv)
                except EssenceError as exc:
                    kept = " The cache still holds the previous entry." if entry.folder.exists() else ""
                    raise WeightsError(f"Could not convert {path} for {asset.name!r}: {exc}{kept}") from exc
                record["converted"] = _converted_facts(staged.converted, conv, info)
            _clear(entry)
            entry.folder.mkdir(parents=True, exist_ok=True)
            os.replace(staged.source, entry.source)
            if asset.convert:
                os.replace(staged.converted, entry.converted)
            _write_record(entry.record_path, record)
            _tell_new_digest(asset, digest, entry.record_path, console)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return cache_entry(asset)


@dataclass(frozen=True)
class Check:
    path: Path
    ok: bool
    detail: str


def verify(asset: Asset | str) -> list[Check]:
    """Re-hash the cached files of ``asset`` against its record (and the registry's SHA256)."""
    entry = cache_entry(asset)
    asset = entry.asset
    if entry.status == "missing":
        raise WeightsError(f"{asset.name!r} is not in the cache; run `essence weights pull {asset.name}`.")
    if entry.record is None:
        return [Check(entry.folder, False, f"incomplete ({entry.status}); run `essence weights pull {asset.name}`")]
    checks = [_check_hash(entry.source, entry.record["source"], asset.sha256)]
    conv = entry.record.get("converted")
    if conv:
        checks.append(_check_hash(entry.converted, conv, None))
    elif asset.convert:
        checks.append(Check(entry.converted, False, f"not converted yet; run `essence weights pull {asset.name}`"))
    return checks


def remove(asset: Asset | str, *, console: Console | None = None) -> bool:
    """Delete everything the cache holds for ``asset`` (record first). False when there was nothing."""
    asset = _as_asset(asset)
    with _lock(asset, console or _stderr()):
        entry = cache_entry(asset)
        if not entry.folder.exists():
            return False
        _clear(entry)
        return True


# -- converters ------------------------------------------------------------------------------------


def find_converters(path: str | Path) -> list[Converter]:
    """The registered converters whose ``detect`` recognises ``path``."""
    check_zip_sizes(path)
    found = []
    for conv in get_converters().values():
        try:
            if conv.detect(Path(path)):
                found.append(conv)
        except Exception:  # a detector that chokes on a foreign file simply does not recognise it
            continue
    return found


def known_formats() -> str:
    convs = get_converters()
    if not convs:
        return "none (no installed plugin provides a converter; see `essence plugins`)"
    return ", ".join(f"{c.name} ({c.description})" if c.description else c.name for c in convs.values())


def convert_file(
    src: str | Path, dst: str | Path, *, converter: str | Converter | None = None
) -> tuple[Converter, dict[str, Any]]:
    """Convert ``src`` to safetensors at ``dst`` (atomically) with ``converter``, else the one whose
    ``detect`` recognises it. Returns the converter and what it reported."""
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if not src.is_file():
        raise WeightsError(f"No such file: {src}")
    check_zip_sizes(src)
    if file_looks_like_html(src):
        raise WeightsError(f"{src} is an HTML page, not a checkpoint (a quota or login page saved as the file?).")
    if dst.exists() and (os.path.samefile(src, dst) or dst.resolve() == src.resolve()):
        raise WeightsError(f"{dst} is the source file itself; give another destination (nothing was changed).")
    if isinstance(converter, str):
        convs = get_converters()
        if converter not in convs:
            raise WeightsError(f"Unknown format {converter!r}. Known formats: {known_formats()}.")
        converter = convs[converter]
    if converter is None:
        found = find_converters(src)
        if not found:
            raise WeightsError(f"No converter recognises {src}. Known formats: {known_formats()}.")
        if len(found) > 1:
            names = ", ".join(c.name for c in found)
            raise WeightsError(f"Several converters recognise {src} ({names}); choose one with --format.")
        converter = found[0]
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.partial.safetensors")
    try:  # before any work: a destination we cannot write is the user's to change
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b"")
    except OSError as exc:
        reason = "a file is in the way" if isinstance(exc, (FileExistsError, NotADirectoryError)) else exc.strerror
        raise WeightsError(f"Cannot write {dst}: {reason or exc}. Choose another destination.") from None
    try:
        info = converter.convert(src, tmp)
        if not tmp.is_file():
            raise WeightsError(f"The converter {converter.name!r} wrote no file for {src}.")
        _check_safetensors(tmp, converter)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return converter, json.loads(json.dumps(dict(info or {}), default=str))


def _check_safetensors(path: Path, converter: Converter) -> None:
    """A safetensors file starts with an 8-byte little-endian header length and a JSON object."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= size - 8:
                raise ValueError
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError
    except ValueError:
        raise WeightsError(
            f"The converter {converter.name!r} (plugin {converter.plugin}) wrote a file that is not safetensors."
        ) from None


# -- steps -----------------------------------------------------------------------------------------


def _download(
    entry: CacheEntry, progress: ProgressCallback | None, timeout: float, console: Console, deadline: float | None = None
) -> dict[str, Any]:
    asset = entry.asset
    fix = f"download {asset.filename} yourself and run `essence weights import {asset.name} FILE`"
    if not asset.urls:
        raise WeightsError(f"{asset.name!r} has no download URL; {fix}.")
    size = f" ({human_size(asset.size)})" if asset.size else ""
    licence = f"; see {asset.license_url}" if asset.license_url else ""
    console.print(f"Downloading [bold]{asset.name}[/]{size} from {asset.urls[0]}")
    console.print(f"Licence: {asset.license}{licence}")
    try:
        got = download(
            asset.urls,
            entry.source,
            sha256=asset.sha256,
            size=asset.size,
            progress=progress,
            timeout=timeout,
            console=console,
            label=asset.name,
            deadline=deadline,
        )
    except DownloadError as exc:
        _drop_if_empty(entry.folder)
        raise DownloadError(f"{exc} Or {fix}.", exc.reasons) from None
    record = _new_record(asset, got.sha256, got.size, url=got.url)
    _write_record(entry.record_path, record)
    _tell_new_digest(asset, got.sha256, entry.record_path, console)
    return record


def _adopt(entry: CacheEntry, console: Console) -> dict[str, Any] | None:
    """Check a file found without a record; record it if it is the asset, else delete it."""
    console.print(f"Checking {entry.source}, found in the cache without a record ...")
    try:
        _check_cheap(entry.asset, entry.source)
        digest = sha256_file(entry.source)
        _check_digest(entry.asset, entry.source, digest)
    except WeightsError as exc:
        console.print(f"[yellow]Deleting a bad file from the cache:[/] {exc}")
        entry.source.unlink(missing_ok=True)
        return None
    record = _new_record(entry.asset, digest, entry.source.stat().st_size, url=None, imported_from=str(entry.source))
    _write_record(entry.record_path, record)
    _tell_new_digest(entry.asset, digest, entry.record_path, console)
    return record


def _converter_for(entry: CacheEntry) -> Converter:
    asset = entry.asset
    conv = get_converters().get(asset.convert or "")
    if conv is None:
        raise WeightsError(
            f"{asset.name!r} needs the converter {asset.convert!r}, which no installed plugin provides "
            f"(known formats: {known_formats()}). The download is kept at {entry.source}; "
            f"install the plugin and run `essence weights pull {asset.name}` again."
        )
    return conv


def _detects(conv: Converter, path: Path) -> bool:
    try:
        return bool(conv.detect(path))
    except Exception:  # a detector that chokes on a foreign file does not recognise it
        return False


def _converted_facts(path: Path, conv: Converter, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "file": path.name,
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
        "converter": conv.name,
        "plugin": conv.plugin,
        "info": info,
        "date": _now(),
    }


def _convert_cached(entry: CacheEntry, record: dict[str, Any], console: Console) -> None:
    asset = entry.asset
    conv = _converter_for(entry)
    console.print(f"Converting {asset.name} with {conv.name} ...")
    record = dict(record, converted=None)
    _write_record(entry.record_path, record)
    try:
        _, info = convert_file(entry.source, entry.converted, converter=conv)
    except EssenceError as exc:
        raise WeightsError(
            f"Could not convert {entry.source} for {asset.name!r}: {exc} Pulling again would only retry this file: "
            f"run `essence weights rm {asset.name}`, then `essence weights pull {asset.name}` (or import a good copy)."
        ) from exc
    record["converted"] = _converted_facts(entry.converted, conv, info)
    _write_record(entry.record_path, record)


def _drop_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _clear(entry: CacheEntry) -> None:
    entry.record_path.unlink(missing_ok=True)
    if entry.folder.exists():
        shutil.rmtree(entry.folder)


# -- checks ----------------------------------------------------------------------------------------


def _check_cheap(asset: Asset, path: Path) -> None:
    if file_looks_like_html(path):
        raise WeightsError(
            f"{path} is an HTML page, not {asset.filename} (a quota, login or error page saved as the file?)."
        )
    size = path.stat().st_size
    if asset.size is not None and size != asset.size:
        raise WeightsError(
            f"{path} has {size} bytes, but {asset.name!r} ({asset.filename}) has {asset.size} (an incomplete download?)."
        )


def _check_digest(asset: Asset, path: Path, digest: str) -> None:
    if asset.sha256 is not None and digest != asset.sha256:
        raise WeightsError(
            f"{path} is not {asset.name!r} ({asset.filename}): its SHA256 is {digest}, expected {asset.sha256}."
        )


def _check_hash(path: Path, facts: dict[str, Any], registry_sha: str | None) -> Check:
    if not path.is_file():
        return Check(path, False, "missing")
    digest = sha256_file(path)
    if digest != facts.get("sha256"):
        return Check(path, False, f"SHA256 {digest} differs from the recorded {facts.get('sha256')}")
    if registry_sha is not None and digest != registry_sha:
        return Check(path, False, f"SHA256 {digest} differs from the registry's {registry_sha}")
    return Check(path, True, digest)


def _copy_hashing(src: Path, dst: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(1 << 20):
            h.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


# -- records ---------------------------------------------------------------------------------------


def _new_record(asset: Asset, digest: str, size: int, *, url: str | None, imported_from: str | None = None) -> dict[str, Any]:
    from essence.version import __version__

    source: dict[str, Any] = {
        "file": asset.filename,
        "size": size,
        "sha256": digest,
        "sha256_published": asset.sha256 is not None,
        "url": url,
        "date": _now(),
    }
    if imported_from is not None:
        source["imported_from"] = imported_from
    return {
        "record_version": RECORD_VERSION,
        "name": asset.name,
        "format": asset.format,
        "license": asset.license,
        "essence_version": __version__,
        "source": source,
        "converted": None,
    }


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("source"), dict) else None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _tell_new_digest(asset: Asset, digest: str, record: Path, console: Console) -> None:
    if asset.sha256 is None:
        console.print(f"{asset.name} has no published SHA256; recorded {digest} in {record}")


def _has_size(path: Path, size: Any) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


# -- messages and locks ----------------------------------------------------------------------------


def _offline_reason() -> str:
    if os.environ.get("ESSENCE_OFFLINE", "").strip().lower() in _TRUE:
        return "ESSENCE_OFFLINE is set"
    return "--offline"


def _offline_error(entry: CacheEntry) -> WeightsError:
    asset = entry.asset
    partial = " (a partial download is kept and will resume)" if entry.status == "partial" else ""
    where = f"download {asset.urls[0]} yourself" if asset.urls else f"get {asset.filename} yourself"
    return WeightsError(
        f"Weights {asset.name!r} are not in the cache{partial} and offline mode is on ({_offline_reason()}). "
        f"Run `essence weights pull {asset.name}` while online, or {where} and run "
        f"`essence weights import {asset.name} {asset.filename}` (the cache keeps it at {entry.source})."
    )


def _lock(asset: Asset, console: Console) -> FileLock:
    path = weights_root() / ".locks" / f"{asset.name}.lock"

    def on_wait() -> None:
        console.print(f"Waiting for another essence process that is writing {asset.name} (lock {path}) ...")

    return FileLock(path, on_wait=on_wait)


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


__all__ = [
    "STATUSES",
    "CacheEntry",
    "Check",
    "cache_entry",
    "convert_file",
    "find_converters",
    "import_file",
    "is_offline",
    "known_formats",
    "pull",
    "remove",
    "verify",
    "weights_root",
]
