"""Configuration: pydantic models that reject unknown fields, one way to build them, one error formatter.

Every config in essence (a component's, a run's, apply's, a blend's, eval's) is built the same way: layers of
plain dicts, lowest first (a config file, options, ``--set key=value`` items), expanded from their short forms,
merged key by key, then validated into the model. A validation error becomes one :class:`ConfigError` line,
with "did you mean" for unknown keys at any depth.
"""

from __future__ import annotations

import copy
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from essence.core.errors import ConfigError, did_you_mean

M = TypeVar("M", bound=BaseModel)

#: Settings nest at most this deep (a config is a few tables, not a tree): deeper data is refused.
MAX_DEPTH = 32
#: The largest float any setting may hold: tensors are float32, so larger values overflow to inf.
MAX_FLOAT = 3.0e38
#: Integers (seeds, counts) must fit in 64 bits with room for derived seeds (seed + 1000000 ...).
MAX_INT = 2**63 - 1
#: Upper bounds of sizes, so an absurd value is refused before anything is allocated.
MAX_IMAGES = 10_000  # sources, held-out sources: 10 000 W+ latents of FFHQ are ~370 MB
MAX_STEPS = 10_000_000
MAX_TILE = 2048


class Strict(BaseModel):
    """A settings model: unknown fields are an error. A subclass may accept a short form of itself
    (``generator = "name"``) by overriding :meth:`shorthand`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        """The long form (a dict) of a value that is not a dict; unchanged when there is no short form."""
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """``true`` where a number belongs (``--set sources.count=true``) is a mistake, not 1."""
        if isinstance(value, bool) and info.field_name in cls.model_fields:
            args = set(typing.get_args(cls.model_fields[info.field_name].annotation)) - {type(None)}
            numeric = args or {cls.model_fields[info.field_name].annotation}
            if numeric <= {int, float}:
                raise ValueError(f"give a number, not {str(value).lower()}")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _representable(cls, value: Any) -> Any:
        """A value parsed from text ("1e39", "99999999999999999999") is checked as the file's values are."""
        problem = _value_problem(value, 0)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="before")
    @classmethod
    def _expand_short_form(cls, data: Any) -> Any:
        return data if isinstance(data, Mapping) else cls.shorthand(data)


class ComponentConfig(Strict):
    """Base class of every component's configuration. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


class EmptyConfig(ComponentConfig):
    """For components without options."""


class ComponentSpec(Strict):
    """A registered component by name, with overrides of its own configuration (``"name"`` is short for it)."""

    name: str
    config: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class ComponentChoice(Strict):
    """A component by name, or None for the default the context picks, with overrides of its configuration."""

    name: Union[str, None] = None
    config: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        return ComponentSpec.shorthand(value)


# -- building --------------------------------------------------------------------------------------


def validate_config(model: type[M], data: Mapping[str, Any] | M, what: str, hint: str = "") -> M:
    """``data`` validated into ``model``; pydantic's report becomes one short ConfigError about ``what``."""
    if isinstance(data, model):
        return data
    check_values(data, what)
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, what, hint)) from None


def check_values(data: Any, what: str = "settings", where: str = "") -> None:
    """Refuse, with a ConfigError naming the key, what no setting may hold: NaN, inf or floats that overflow
    float32, integers beyond 64 bits, strings with NUL bytes, and data nested deeper than :data:`MAX_DEPTH`."""
    _check_value(data, what, where, 0)


def _check_value(value: Any, what: str, where: str, depth: int) -> None:
    name = where or "(root)"
    if depth > MAX_DEPTH:
        raise ConfigError(f"Invalid {what}: {name} is nested more than {MAX_DEPTH} levels deep; settings are flat tables.")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_value(item, what, f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(item, what, f"{where}[{i}]", depth + 1)
    else:
        problem = _value_problem(value, depth)
        if problem:
            raise ConfigError(f"Invalid {what}: {name}: {problem}.")


def _value_problem(value: Any, depth: int) -> str:
    """Why a plain value cannot be a setting, or ''. Containers are walked (to :data:`MAX_DEPTH`)."""
    if depth > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"{value!r} is not a finite number"
        if abs(value) > MAX_FLOAT:
            return f"{value:g} overflows float32 (at most {MAX_FLOAT:g})"
    elif isinstance(value, int):
        if abs(value) > MAX_INT:
            return f"{value} does not fit in 64 bits (at most {MAX_INT})"
    elif isinstance(value, str):
        if "\x00" in value:
            return "it holds a NUL character"
    elif isinstance(value, Mapping):
        return next((p for p in (_value_problem(v, depth + 1) for v in value.values()) if p), "")
    elif isinstance(value, (list, tuple)):
        return next((p for p in (_value_problem(v, depth + 1) for v in value) if p), "")
    return ""


def build_config(
    model: type[M],
    *layers: Mapping[str, Any] | None,
    file: str | Path | None = None,
    sets: Sequence[str] = (),
    what: str = "settings",
) -> M:
    """The config file, then ``layers`` in order, then ``--set`` items, merged and validated into ``model``."""
    merged: dict[str, Any] = expand_shorthands(model, load_config_file(file)) if file is not None else {}
    for layer in (*layers, parse_set(list(sets))):
        if layer:
            check_values(layer, what)  # before merging: the merge recurses as deep as the data
            merged = deep_merge(merged, expand_shorthands(model, layer))
    return validate_config(model, merged, what)


def expand_shorthands(model: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """Short forms in ``data`` (at any depth) in their long form, so that they merge like them."""
    out = dict(data)
    fields = getattr(model, "model_fields", None) if _is_model(model) else None
    if not fields:
        return out
    for key, value in out.items():
        field = fields.get(key)
        sub = _model_of(field.annotation) if field is not None else None
        if sub is None:
            continue
        if not isinstance(value, Mapping) and issubclass(sub, Strict):
            value = sub.shorthand(value)
        if isinstance(value, Mapping):
            value = expand_shorthands(sub, value)
        out[key] = value
    return out


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: dicts merge recursively, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["steps=5", "generator.config.size=32"]`` -> nested dict; values parsed as JSON when possible."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: write key=value, for example --set steps=300.")
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            value = raw
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--set {item!r}: {key} must be a finite number.")
        parts = key.split(".")
        if len(parts) > MAX_DEPTH:
            raise ConfigError(f"--set {key[:60]}...: more than {MAX_DEPTH} levels of keys; settings are flat tables.")
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML or JSON file -> a dict (not validated yet)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file not found: {p}")
    suffix = p.suffix.lower()
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Config file {p} is not UTF-8 text (byte {exc.start}): save it as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {p}: {exc.strerror or exc}.") from None
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"Config file {p}: use a .toml or .json file.")
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"Config file {p} is nested too deeply; settings are flat tables.") from None
    except Exception as exc:
        raise ConfigError(f"Cannot parse config file {p}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {p} must hold a table/object of settings.")
    check_values(data, f"config file {p}")
    return data


# -- errors ----------------------------------------------------------------------------------------


def format_validation_error(exc: ValidationError, model: type[BaseModel], what: str, hint: str = "") -> str:
    """Pydantic's report in one line, with did-you-mean for unknown keys at any depth of ``model``."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = ".".join(loc) or "(root)"
        if err["type"] == "extra_forbidden":
            close = did_you_mean(loc[-1], _fields_at(loc[:-1], model))
            tip = f" (did you mean {'.'.join([*loc[:-1], close[0]])!r}?)" if close else ""
            problems.append(f"unknown field {where!r}{tip}")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, (dict, BaseModel)) else f" (got {got!r})"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}{shown}" if loc else f"{msg}{shown}")
    message = f"Invalid {what}: " + "; ".join(problems) + "."
    return message + (f" {hint}" if hint else "")


def _fields_at(path: list[str], root: type[BaseModel]) -> list[str]:
    model: Any = root
    for part in path:
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _model_of(field.annotation)
    return list(model.model_fields) if _is_model(model) else []


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model in an annotation such as ``Union[ComponentSpec, None]``, or None."""
    for arg in (annotation, *typing.get_args(annotation)):
        if _is_model(arg):
            return arg
    return None


# -- describing ------------------------------------------------------------------------------------


def type_name(annotation: Any) -> str:
    """A short, readable name for a field's type annotation."""
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return type_name(typing.get_args(annotation)[0])
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def describe_fields(model: type[BaseModel], defaults: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Name, type, default and description of each field, with registration defaults applied."""
    defaults = defaults or {}
    rows = []
    for name, field in model.model_fields.items():
        if name in defaults:
            default = defaults[name]
        elif field.is_required():
            default = "(required)"
        else:
            default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        rows.append(
            {
                "name": name,
                "type": type_name(field.annotation),
                "default": default,
                "description": field.description or "",
            }
        )
    return rows
