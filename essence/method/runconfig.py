"""The run configuration: one pydantic model, presets as data, loading from TOML/JSON and ``--set`` overrides.

Layering, lowest first: the field defaults, the preset named by ``preset`` (``presets.json``), the config
file, then command-line options and ``--set key=value``. Presets are applied when the model is validated,
so ``RunConfig.model_validate({"preset": "targetclip", "steps": 25})`` is the targetclip preset with 25 steps.
Dicts merge key by key; any other value replaces what is below it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from essence.core.errors import ConfigError, did_you_mean


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class _Seeds:
    """The seeds a config with ``seed``, ``sources`` and ``heldout`` fields derives (runs and blends)."""

    @property
    def sources_seed(self) -> int:
        return self.seed if self.sources.seed is None else self.sources.seed

    @property
    def heldout_seed(self) -> int:
        return self.seed + 1_000_000 if self.heldout.seed is None else self.heldout.seed


class ComponentSpec(_Strict):
    """A registered component by name, with overrides of its own configuration."""

    name: str
    config: dict[str, Any] = Field(default_factory=dict)


class SourcesConfig(_Strict):
    count: int = Field(6, ge=1, description="Random sources drawn from `seed` (ignored with `latents`).")
    seed: Union[int, None] = Field(None, description="Seed of the random sources; default: the run's seed.")
    truncation: float = Field(0.7, description="Truncation psi of random sources, as the official code.")
    latents: Union[str, None] = Field(None, description="A latent file (N, num_ws, w_dim): all its rows are used.")


class InitConfig(_Strict):
    mode: Literal["random", "zeros", "file"] = Field(
        "random", description="random: a truncated random latent, as the official code; zeros; file: `path`."
    )
    path: Union[str, None] = None
    seed: Union[int, None] = Field(None, description="Seed of a random init; default: seed + 2000000 + restart.")
    truncation: float = 0.7

    @model_validator(mode="after")
    def _path_iff_file(self) -> InitConfig:
        if self.mode == "file" and not self.path:
            raise ValueError("init mode 'file' needs a path")
        if self.mode != "file" and self.path:
            raise ValueError(f"init path is only used with mode 'file', not {self.mode!r}")
        return self


class CoefficientsConfig(_Strict):
    enabled: bool = Field(False, description="Learn a scale c_s per source: G(w_s + c_s b).")
    optimizer: Literal["persistent", "per-step"] = Field(
        "persistent", description="per-step re-creates their Adam every step, as the official code."
    )
    lr: Union[float, None] = Field(None, description="Their Adam's lr (not scheduled); default: the run's lr.")
    weight_decay: float = 0.01


class HeldoutConfig(_Strict):
    count: int = Field(8, ge=0, description="Fresh sources the direction never saw; 0 turns the check off.")
    seed: Union[int, None] = Field(None, description="Seed of the held-out sources; default: seed + 1000000.")
    truncation: float = 0.7
    latents: Union[str, None] = Field(None, description="A latent file of held-out sources instead of random ones.")
    alpha: float = Field(1.0, description="Strength of the direction on held-out sources: G(w + alpha b).")


class LossSpec(_Strict):
    weight: float
    config: dict[str, Any] = Field(default_factory=dict)


#: Under every preset, so that a preset's or a user's component config keeps a name.
DEFAULT_COMPONENTS: dict[str, Any] = {"generator": {"name": "stylegan2-ffhq"}, "encoder": {"name": "clip-vitb32"}}


class RunConfig(_Seeds, _Strict):
    """Everything one essence-transfer run needs; ``config.json`` in a run folder is this, validated."""

    preset: str = Field("paper", description="Settings under everything else: paper, paper-ood or targetclip.")
    generator: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="stylegan2-ffhq"))
    encoder: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="clip-vitb32"))
    target: list[str] = Field(default_factory=list, description="Target image file(s).")
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    init: InitConfig = Field(default_factory=InitConfig)
    steps: int = Field(1000, ge=1)
    lr: float = Field(0.2, ge=0)
    lr_schedule: Literal["ramp", "constant"] = Field(
        "ramp", description="ramp: the official warm-up (lr 0 at step 0) and cosine ramp-down."
    )
    lr_rampup: float = Field(0.005, gt=0, description="Fraction of the steps to warm up over.")
    lr_rampdown: float = Field(0.75, gt=0, description="Fraction of the steps to ramp down over.")
    weight_decay: float = Field(0.007, ge=0, description="Classic L2 weight decay of Adam on the direction.")
    losses: dict[str, Union[float, LossSpec]] = Field(
        default_factory=lambda: {"transfer": 1.0, "consistency": 0.7},
        description="Loss terms by registered name: a weight, or {weight, config}; weight 0 drops a preset's term.",
    )
    coefficients: CoefficientsConfig = Field(default_factory=CoefficientsConfig)
    best: Literal["evaluated", "post-update"] = Field(
        "evaluated",
        description="evaluated: the direction that gave the lowest loss; post-update: the official rule.",
    )
    restarts: int = Field(1, ge=1, description="Directions optimised from different random inits.")
    heldout: HeldoutConfig = Field(default_factory=HeldoutConfig)
    seed: int = 0
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda, cuda:1, mps ...")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast of G and C (for CUDA).")
    compile: bool = Field(False, description="torch.compile the render-and-embed pass (for CUDA).")
    chunk: Union[int, None] = Field(None, ge=1, description="Most images per generator/encoder pass.")
    out: Union[str, None] = Field(None, description="Run folder; default: essence-runs/<target>-<time>.")
    checkpoint_every: int = Field(0, ge=0, description="Write a resumable checkpoint every K steps (0: never).")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = normalize_shorthands(data)
        base = deep_merge(DEFAULT_COMPONENTS, preset_config(data.get("preset", "paper")))
        return deep_merge(base, data)

    @field_validator("target", mode="before")
    @classmethod
    def _one_target(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("losses")
    @classmethod
    def _some_loss(cls, value: dict[str, Any]) -> dict[str, Any]:
        weights = [v.weight if isinstance(v, LossSpec) else v for v in value.values()]
        if not any(w != 0 for w in weights):
            raise ValueError("at least one loss term needs a non-zero weight")
        return value

    # -- derived values ------------------------------------------------------------------------
    def loss_weights(self) -> dict[str, LossSpec]:
        return {k: v if isinstance(v, LossSpec) else LossSpec(weight=v) for k, v in self.losses.items()}

    def loss_weight(self, name: str) -> float:
        spec = self.loss_weights().get(name)
        return spec.weight if spec is not None else 0.0

    def init_seed(self, restart: int = 0) -> int:
        base = self.seed + 2_000_000 if self.init.seed is None else self.init.seed
        return base + restart

    @property
    def coefficient_lr(self) -> float:
        return self.lr if self.coefficients.lr is None else self.coefficients.lr

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2)


# -- presets ---------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _presets() -> dict[str, dict[str, Any]]:
    return json.loads((Path(__file__).parent / "presets.json").read_text(encoding="utf-8"))


def list_presets() -> dict[str, str]:
    """Preset name -> description."""
    return {name: p["description"] for name, p in _presets().items()}


def preset_config(name: str) -> dict[str, Any]:
    presets = _presets()
    if name not in presets:
        close = did_you_mean(str(name), presets)
        tip = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown preset {name!r}.{tip} Presets: {', '.join(presets)}")
    return normalize_shorthands(copy.deepcopy(presets[name]["config"]))


# -- merging and shorthands ------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: dicts merge recursively, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def normalize_shorthands(data: Mapping[str, Any]) -> dict[str, Any]:
    """Expand the short forms (``generator = "name"``, ``init = "zeros"``, ``coefficients = true``) so
    they merge with presets like their long forms."""
    data = dict(data)
    for key in ("generator", "encoder"):
        if isinstance(data.get(key), str):
            data[key] = {"name": data[key]}
    init = data.get("init")
    if isinstance(init, str):
        data["init"] = {"mode": init, "path": None} if init in ("random", "zeros") else {"mode": "file", "path": init}
    if isinstance(data.get("coefficients"), bool):
        data["coefficients"] = {"enabled": data["coefficients"]}
    return data


# -- loading ---------------------------------------------------------------------------------------


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML or JSON file -> a dict (not validated yet)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file not found: {p}")
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
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
    except Exception as exc:
        raise ConfigError(f"Cannot parse config file {p}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {p} must hold a table/object of settings.")
    return data


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["steps=5", "generator.config.size=32"]`` -> nested dict; values parsed as JSON when possible."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: write key=value, for example --set steps=300.")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def build_run_config(
    *layers: Mapping[str, Any] | None,
    file: str | Path | None = None,
    sets: list[str] | tuple[str, ...] = (),
) -> RunConfig:
    """Validate file < layers (in order) < ``--set`` items into a RunConfig."""
    merged: dict[str, Any] = load_config_file(file) if file is not None else {}
    merged = normalize_shorthands(merged)
    for layer in (*layers, parse_set(list(sets))):
        if layer:
            merged = deep_merge(merged, normalize_shorthands(layer))
    return validate_run_config(merged)


def validate_run_config(data: Mapping[str, Any] | RunConfig | str | None) -> RunConfig:
    """A RunConfig from a RunConfig, a dict, a preset name or None (the defaults)."""
    if isinstance(data, RunConfig):
        return data
    if data is None:
        data = {}
    elif isinstance(data, str):
        data = {"preset": data}
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_config_errors(exc)) from None
    except ValueError as exc:  # a preset error raised before field validation
        raise ConfigError(f"Invalid configuration for the run: {exc}.") from None


def format_config_errors(
    exc: ValidationError, model: type[BaseModel] | None = None, what: str = "run configuration"
) -> str:
    """Pydantic's report in one line, with did-you-mean for unknown keys at any depth of ``model``."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = ".".join(loc) or "(root)"
        if err["type"] == "extra_forbidden":
            close = did_you_mean(loc[-1], _fields_at(loc[:-1], model or RunConfig))
            tip = f" (did you mean {'.'.join([*loc[:-1], close[0]])!r}?)" if close else ""
            problems.append(f"unknown field {where!r}{tip}")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, (dict, BaseModel)) else f" (got {got!r})"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}{shown}" if loc else f"{msg}{shown}")
    return f"Invalid {what}: " + "; ".join(problems) + "."


def _fields_at(path: list[str], root: type[BaseModel]) -> list[str]:
    model: Any = root
    for part in path:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = _model_of(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_of(annotation: Any) -> Any:
    """The pydantic model in an annotation such as ``Union[ComponentSpec, None]``."""
    import typing

    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation
