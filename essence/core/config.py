"""Configuration models: pydantic, strict about unknown fields, with errors a user can act on."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from essence.core.errors import ConfigError, did_you_mean


class ComponentConfig(BaseModel):
    """Base class of every component's configuration. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class EmptyConfig(ComponentConfig):
    """For components without options."""


def validate_config(model: type[BaseModel], data: Mapping[str, Any], what: str, hint: str = "") -> Any:
    """Validate ``data`` against ``model``; turn pydantic's report into one short ConfigError."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, what, hint)) from None


def format_validation_error(exc: ValidationError, model: type[BaseModel], what: str, hint: str = "") -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            close = did_you_mean(str(err["loc"][-1]), model.model_fields)
            tip = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown field {loc!r}{tip}")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, (dict, BaseModel)) else f" (got {got!r})"
            problems.append(f"{loc}: {err['msg']}{shown}")
    message = f"Invalid configuration for {what}: " + "; ".join(problems) + "."
    return message + (f" {hint}" if hint else "")


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
