"""Known weight files (assets) and checkpoint converters, registered by plugins."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from essence.core.errors import DuplicateNameError, UnknownComponentError
from essence.core.plugins import PluginHost, get_host


class Asset(BaseModel):
    """One downloadable weights file, as data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Registry name, e.g. 'stylegan2-ffhq'.")
    kind: Literal["generator", "encoder", "inverter", "aligner", "features", "other"]
    format: str = Field(description="File format as downloaded, e.g. 'stylegan2-tf-pkl'.")
    filename: str = Field(description="File name of the download.")
    urls: list[str] = Field(description="Primary URL first, then mirrors.")
    size: int | None = Field(None, description="Size in bytes, when known.")
    sha256: str | None = Field(None, description="SHA256 of the download, when known.")
    license: str = Field(description="Licence name, shown before the first download.")
    license_url: str | None = None
    used_by: list[str] = Field(default_factory=list, description="Components or presets that use it.")
    convert: str | None = Field(None, description="Converter to safetensors; None keeps the file as is.")
    description: str = ""
    plugin: str = ""

    # Names and file names become paths in the cache: keep them to one plain path component.
    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("use letters, digits, '.', '_' and '-', starting with a letter or digit")
        return v

    @field_validator("filename")
    @classmethod
    def _plain_filename(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("a file name without folders, e.g. 'model.pkl'")
        return v

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError("a SHA256 is 64 hexadecimal digits")
        return v

    @field_validator("urls")
    @classmethod
    def _some_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.match(r"(https?|file)://", url):
                raise ValueError(f"{url!r}: URLs must start with https://, http:// or file://")
        return v


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Converter:
    name: str
    detect: Callable[[Path], bool]
    convert: Callable[[Path, Path], dict[str, Any]]
    description: str
    plugin: str


def load_assets(path: str | Path) -> list[Asset]:
    """Read assets from a JSON file holding one asset object or a list of them."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    items = data if isinstance(data, list) else [data]
    return [Asset.model_validate(item) for item in items]


def collect_assets(host: PluginHost) -> dict[str, Asset]:
    """Every asset the host's plugins register; a name registered twice is an error naming both."""
    found: dict[str, Asset] = {}

    def make(plugin: str) -> dict[str, Any]:
        def register(asset: Asset | list[Asset]) -> None:
            for a in asset if isinstance(asset, list) else [asset]:
                if a.name in found:
                    raise DuplicateNameError(
                        f"The asset {a.name!r} is registered by two plugins: {found[a.name].plugin!r} and {plugin!r}."
                    )
                found[a.name] = a.model_copy(update={"plugin": plugin})

        return {"register": register}

    host.call_each("register_assets", make)
    return found


def collect_converters(host: PluginHost) -> dict[str, Converter]:
    """Every checkpoint converter the host's plugins register."""
    found: dict[str, Converter] = {}

    def make(plugin: str) -> dict[str, Any]:
        def register(name: str, detect: Callable, convert: Callable, description: str = "") -> None:
            if name in found:
                raise DuplicateNameError(
                    f"The converter {name!r} is registered by two plugins: {found[name].plugin!r} and {plugin!r}."
                )
            found[name] = Converter(name, detect, convert, description, plugin)

        return {"register": register}

    host.call_each("register_converters", make)
    return found


def get_assets() -> dict[str, Asset]:
    """The known weight files, by name."""
    return get_host().table("assets", collect_assets)


def get_asset(name: str) -> Asset:
    assets = get_assets()
    if name not in assets:
        err = UnknownComponentError("asset", name, assets)
        if not err.suggestions:
            err.args = (f"Unknown asset {name!r}. Run `essence weights list` to see the known ones.",)
        raise err
    return assets[name]


def get_converters() -> dict[str, Converter]:
    """The registered checkpoint converters, by name."""
    return get_host().table("converters", collect_converters)
