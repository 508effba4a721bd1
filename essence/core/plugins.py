"""Plugin loading: built-ins first, then the ``essence`` entry-point group, one failure at a time.

``ESSENCE_LOAD_PLUGINS`` limits third-party plugins: unset loads all, ``''`` loads none, a comma list
loads only those distributions (or entry-point names). Built-in plugins always load.
``ESSENCE_TRACE_PLUGINS=1`` prints every hook call to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, TypeVar

import pluggy

from essence.core import hookspecs
from essence.core.errors import EssenceError, PluginLoadWarning

ENTRY_POINT_GROUP = "essence"
T = TypeVar("T")

#: Modules registered exactly as entry points are, imported by name when the host is first used.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "essence.plugins.losses.paper",
    "essence.plugins.losses.preservation",
    "essence.plugins.generators.stylegan2",
    "essence.plugins.encoders.clip",
    "essence.plugins.metrics.encoder",
    "essence.plugins.aligners",
    "essence.plugins.aligners.ffhq",
    "essence.plugins.inverters.projector",
    "essence.plugins.inverters.e4e",
    "essence.plugins.features",
    "essence.plugins.toy",
)


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str | None
    builtin: bool
    hooks: list[str] = field(default_factory=list)


@dataclass
class PluginError:
    plugin: str
    stage: str  # "import" or the hook name
    error: str
    details: str = ""


class PluginHost:
    """A pluggy manager plus what was loaded and what failed, for ``essence plugins`` and ``doctor``."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.errors: list[PluginError] = []
        #: Warnings about the loading that are no plugin's failure (an unknown name in ESSENCE_LOAD_PLUGINS),
        #: kept so that the CLI shows them too.
        self.notes: list[str] = []
        self.trace = os.environ.get("ESSENCE_TRACE_PLUGINS", "") not in ("", "0")
        #: Tables built from the hooks on first use (the registry, the assets, ...), dropped with the host.
        self._tables: dict[str, Any] = {}

    def table(self, name: str, build: Callable[[PluginHost], T]) -> T:
        """The table ``name``, built once by ``build(host)`` from the loaded plugins (the component registry,
        the known weights, ...). Lower layers hang their tables here instead of keeping globals, so
        :func:`reset` forgets them all and no module reaches into another's state."""
        if name not in self._tables:
            self._tables[name] = build(self)
        return self._tables[name]

    def refresh(self) -> None:
        """Forget the built tables, so they are built again on next use (a plugin changed what it registers)."""
        self._tables.clear()

    # -- loading ---------------------------------------------------------------------------------
    def add(self, module: ModuleType | Any, name: str, version: str | None, builtin: bool) -> None:
        self.refresh()  # a new plugin may register more
        try:
            self.pm.register(module, name=name)
            unknown = [c.name for c in self.pm.get_hookcallers(module) or [] if c.spec is None]
            if unknown:
                self.pm.unregister(module)
                raise pluggy.PluginValidationError(
                    module, f"unknown hook {', '.join(unknown)} (not one of essence's hooks: a typo?)"
                )
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # an invalid hookimpl, sys.exit ...: report it, keep the rest
            self.fail(name, "register", exc)
            return
        hooks = sorted(
            impl_name
            for impl_name in dir(self.pm.hook)
            if not impl_name.startswith("_")
            and any(i.plugin_name == name for i in getattr(self.pm.hook, impl_name).get_hookimpls())
        )
        self.plugins[name] = PluginInfo(name, getattr(module, "__name__", str(module)), version, builtin, hooks)

    def fail(self, plugin: str, stage: str, exc: BaseException) -> None:
        error = describe_failure(exc)
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.errors.append(PluginError(plugin, stage, error, details))
        where = "failed to load" if stage in ("import", "register") else f"failed in {stage}()"
        warnings.warn(
            f"Plugin {plugin!r} {where}: {error}. Other plugins still work; "
            f"set ESSENCE_LOAD_PLUGINS to leave it out.",
            PluginLoadWarning,
            stacklevel=2,
        )

    # -- calling ---------------------------------------------------------------------------------
    def call_each(self, hook_name: str, make_kwargs: Any, *, only: str | None = None) -> None:
        """Call every implementation of a hook, in load order, attributing work and errors.

        ``make_kwargs(plugin_name)`` returns the arguments for that plugin, so callbacks know who
        is registering. A plugin whose hook raises (sys.exit too; Ctrl-C still stops) is reported and
        skipped; an EssenceError (such as a duplicate name) is the user's to fix and propagates. ``only``:
        call just that plugin's implementation.
        """
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            if only is not None and impl.plugin_name != only:
                continue
            kwargs = make_kwargs(impl.plugin_name)
            start = time.perf_counter()
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except EssenceError:
                raise
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # sys.exit, GeneratorExit ...: named and skipped
                self.fail(impl.plugin_name, hook_name, exc)
            if self.trace:
                ms = (time.perf_counter() - start) * 1000
                print(f"essence trace: {hook_name}() in {impl.plugin_name} ({ms:.1f} ms)", file=sys.stderr)


def describe_failure(exc: BaseException) -> str:
    """One line for what a plugin raised at import or in a hook (``sys.exit(3)`` says so, not ``SystemExit: 3``).

    Anything but Ctrl-C is contained there: a plugin that calls ``sys.exit`` or raises another BaseException
    is named and skipped, and essence goes on."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    if not isinstance(exc, Exception):
        return f"it raised {type(exc).__name__} (a BaseException){f': {exc}' if str(exc) else ''}"
    return f"{type(exc).__name__}: {exc}"


def _selected_plugins() -> set[str] | None:
    raw = os.environ.get("ESSENCE_LOAD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def load(builtins: tuple[str, ...] = BUILTIN_PLUGINS) -> PluginHost:
    host = PluginHost()
    for modname in builtins:
        try:
            module = importlib.import_module(modname)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # sys.exit, GeneratorExit ...: named and skipped
            host.fail(modname, "import", exc)
            continue
        host.add(module, modname, None, builtin=True)

    selected = _selected_plugins()
    seen: set[str] = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ep.name
        if selected is not None and dist not in selected and ep.name not in selected:
            continue
        seen.update({dist, ep.name})
        name = dist if dist not in host.plugins else f"{dist}:{ep.name}"
        try:
            module = ep.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # sys.exit, GeneratorExit ...: named and skipped
            host.fail(name, "import", exc)
            continue
        version = ep.dist.version if ep.dist is not None else None
        host.add(module, name, version, builtin=False)
    for missing in sorted((selected or set()) - seen):
        note = (
            f"ESSENCE_LOAD_PLUGINS names {missing!r}, but no installed plugin has that name; "
            "run `essence plugins` to see the installed ones."
        )
        host.notes.append(note)
        warnings.warn(note, PluginLoadWarning, stacklevel=2)
    return host


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use (never at import time)."""
    global _host
    if _host is None:
        _host = load()
    return _host


def reset() -> None:
    """Forget the loaded plugins and every table built from them, so the next use loads afresh."""
    global _host
    _host = None
