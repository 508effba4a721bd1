"""The registry of components (generators, encoders, losses, metrics, aligners, inverters), filled by hooks.

``register(name, factory, config=..., defaults=..., aliases=..., description=..., tiny=..., needs=...)`` records
which plugin registered what; a name (or alias) registered twice is an error naming both plugins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from essence.core.config import ComponentConfig, EmptyConfig, describe_fields, validate_config
from essence.core.errors import DuplicateNameError, EssenceError, MissingExtraError, UnknownComponentError
from essence.core.interfaces import LOSS_NEEDS
from essence.core.plugins import PluginHost, get_host

#: kind -> the hook that registers it.
KINDS: dict[str, str] = {
    "generator": "register_generators",
    "encoder": "register_encoders",
    "loss": "register_losses",
    "metric": "register_metrics",
    "aligner": "register_aligners",
    "inverter": "register_inverters",
    "features": "register_features",
}


#: The attribute :meth:`Registration.build` sets on what it builds: "generator 'name' (plugin 'dist')".
COMPONENT_LABEL = "essence_component"


def component_label(component: Any, kind: str) -> str:
    """How errors name a built component: its kind, registered name and plugin when the registry built it."""
    label = getattr(component, COMPONENT_LABEL, None)
    return f"The {label}" if isinstance(label, str) else f"The {kind} {type(component).__name__}"


def plural(kind: str) -> str:
    return "losses" if kind == "loss" else kind if kind.endswith("s") else f"{kind}s"


def normalize_kind(kind: str) -> str:
    """Accept 'generator' or 'generators' (and so on)."""
    k = kind.lower()
    for known in KINDS:
        if k in (known, plural(known)):
            return known
    choices = ", ".join(plural(k) for k in KINDS)
    raise EssenceError(f"Unknown kind {kind!r}. Use one of: {choices}.")


@dataclass(frozen=True)
class Registration:
    kind: str
    name: str
    factory: Callable[[Any], Any]
    config: type[ComponentConfig]
    plugin: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    description: str = ""
    #: Config overrides that build a tiny instance with no weights and no network (contract tests).
    tiny: Mapping[str, Any] | None = None
    #: Modules it needs beyond essence's own dependencies, and the extra that installs them.
    requires: tuple[str, ...] = ()
    extra: str | None = None
    #: A loss term's extra inputs (``images``, ``source_images``, ``source_ws``): the engine fills those
    #: LossContext fields only when an active term asked (see ``interfaces.LOSS_NEEDS``).
    needs: frozenset[str] = frozenset()
    #: A generator's W+ shape ``(num_ws, w_dim)`` from its validated config, without building it or
    #: loading weights (``wplus(config)``; None, or returning None: not known until it is built).
    wplus: Callable[[Any], tuple[int, int] | None] | None = None

    def wplus_shape(self, **config: Any) -> tuple[int, int] | None:
        """``(num_ws, w_dim)`` of this generator at ``config``, from metadata only; None when unknown."""
        if self.wplus is None:
            return None
        try:
            validated = self.validate(**config)
        except EssenceError:  # a config that cannot be complete yet (no weights named): not known
            return None
        return self.wplus(validated)

    def missing(self) -> list[str]:
        """The modules of ``requires`` that are not installed (found without importing them)."""
        import importlib.util

        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def ensure_available(self) -> None:
        """Raise MissingExtraError, saying what to install, when a required module is missing."""
        missing = self.missing()
        if missing:
            raise MissingExtraError(f"The {self.kind} {self.name!r}", self.extra or self.name, missing)

    def validate(self, **config: Any) -> ComponentConfig:
        hint = f"Run `essence info {self.kind} {self.name}` to see its options."
        what = f"configuration for {self.kind} {self.name!r}"
        return validate_config(self.config, {**self.defaults, **config}, what, hint)

    def build(self, **config: Any) -> Any:
        validated = self.validate(**config)
        self.ensure_available()
        component = self.factory(validated)
        try:  # who made it, for errors about what it returns (see component_label)
            setattr(component, COMPONENT_LABEL, f"{self.kind} {self.name!r} (plugin {self.plugin!r})")
        except Exception:  # a component with __slots__, frozen or validating: errors name its class
            pass
        return component

    def build_tiny(self) -> Any:
        return self.build(**(self.tiny or {}))

    def fields(self) -> list[dict[str, Any]]:
        return describe_fields(self.config, self.defaults)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "plugin": self.plugin,
            "description": self.description,
        }


class Registry:
    def __init__(self) -> None:
        self._main: dict[str, dict[str, Registration]] = {k: {} for k in KINDS}
        self._lookup: dict[str, dict[str, Registration]] = {k: {} for k in KINDS}

    def add(self, reg: Registration) -> None:
        lookup = self._lookup[reg.kind]
        for key in (reg.name, *reg.aliases):
            if key in lookup:
                other = lookup[key].plugin
                raise DuplicateNameError(
                    f"The {reg.kind} name {key!r} is registered by two plugins: {other!r} and "
                    f"{reg.plugin!r}. Uninstall one, or leave it out with ESSENCE_LOAD_PLUGINS."
                )
        self._main[reg.kind][reg.name] = reg
        for key in (reg.name, *reg.aliases):
            lookup[key] = reg

    def get(self, kind: str, name: str) -> Registration:
        kind = normalize_kind(kind)
        try:
            return self._lookup[kind][name]
        except KeyError:
            raise UnknownComponentError(kind, name, self._lookup[kind]) from None

    def list(self, kind: str) -> list[Registration]:
        return sorted(self._main[normalize_kind(kind)].values(), key=lambda r: r.name)

    def create(self, kind: str, name: str, **config: Any) -> Any:
        return self.get(kind, name).build(**config)

    def registrar(self, kind: str, plugin: str) -> Callable[..., None]:
        def register(
            name: str,
            factory: Callable[[Any], Any],
            *,
            config: type[ComponentConfig] | None = None,
            defaults: Mapping[str, Any] | None = None,
            aliases: tuple[str, ...] | list[str] = (),
            description: str = "",
            tiny: Mapping[str, Any] | None = None,
            requires: tuple[str, ...] | list[str] = (),
            extra: str | None = None,
            needs: Iterable[str] = (),
            wplus: Callable[[Any], tuple[int, int] | None] | None = None,
        ) -> None:
            wanted = frozenset(needs)
            if wanted and kind != "loss":
                raise EssenceError(f"{plugin}: needs= is for loss terms, not the {kind} {name!r}.")
            unknown = sorted(wanted - LOSS_NEEDS)
            if unknown:
                raise EssenceError(
                    f"{plugin}: the loss {name!r} needs {', '.join(map(repr, unknown))}; "
                    f"a loss term may need only {', '.join(sorted(LOSS_NEEDS))}."
                )
            if wplus is not None and kind != "generator":
                raise EssenceError(f"{plugin}: wplus= is for generators, not the {kind} {name!r}.")
            if not description:
                doc = (getattr(factory, "__doc__", None) or "").strip()
                description = doc.splitlines()[0] if doc else ""
            self.add(
                Registration(
                    kind=kind,
                    name=name,
                    factory=factory,
                    config=config or EmptyConfig,
                    plugin=plugin,
                    defaults=dict(defaults or {}),
                    aliases=tuple(aliases),
                    description=description,
                    tiny=dict(tiny) if tiny is not None else None,
                    requires=tuple(requires),
                    extra=extra,
                    needs=wanted,
                    wplus=wplus,
                )
            )

        return register


def build_registry(host: PluginHost) -> Registry:
    """Every component the host's plugins register, one hook per kind."""
    registry = Registry()
    for kind, hook in KINDS.items():
        host.call_each(hook, lambda plugin, kind=kind: {"register": registry.registrar(kind, plugin)})
    return registry


def get_registry() -> Registry:
    """The process-wide registry, built from the loaded plugins on first use."""
    return get_host().table("registry", build_registry)


def get_generator(name: str, **config: Any) -> Any:
    """Build the generator registered as ``name`` (or an alias) with ``config`` overrides."""
    return get_registry().create("generator", name, **config)


def get_encoder(name: str, **config: Any) -> Any:
    """Build the encoder registered as ``name`` (or an alias) with ``config`` overrides."""
    return get_registry().create("encoder", name, **config)


def get_loss(name: str, **config: Any) -> Any:
    """Build the loss term registered as ``name`` (or an alias) with ``config`` overrides."""
    return get_registry().create("loss", name, **config)


def get_metric(name: str, **config: Any) -> Any:
    """Build the metric registered as ``name`` (or an alias) with ``config`` overrides."""
    return get_registry().create("metric", name, **config)


def get_aligner(name: str, **config: Any) -> Any:
    """Build the aligner registered as ``name`` (or an alias) with ``config`` overrides."""
    return get_registry().create("aligner", name, **config)


def get_inverter(name: str, **config: Any) -> Any:
    """Build the inverter registered as ``name`` (or an alias) with ``config`` overrides."""
    return get_registry().create("inverter", name, **config)


def get_features(name: str, **config: Any) -> Any:
    """Build the feature network registered as ``name`` (or an alias) with ``config`` overrides."""
    return get_registry().create("features", name, **config)


def list_components(kind: str | None = None) -> dict[str, list[Registration]]:
    """Registrations per kind (see :data:`KINDS`), or of one kind."""
    registry = get_registry()
    kinds = [normalize_kind(kind)] if kind else list(KINDS)
    return {k: registry.list(k) for k in kinds}
