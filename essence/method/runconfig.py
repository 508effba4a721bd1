"""The run configuration: one pydantic model, presets as data, loading from TOML/JSON and ``--set`` overrides.

Layering, lowest first: the field defaults, the preset named by ``preset`` (``presets.json``), the config
file, then command-line options and ``--set key=value``. Presets are applied when the model is validated,
so ``RunConfig.model_validate({"preset": "targetclip", "steps": 25})`` is the targetclip preset with 25 steps.
Dicts merge key by key; any other value replaces what is below it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from essence.core.config import MAX_IMAGES, MAX_STEPS, ComponentSpec, Strict, build_config, deep_merge, expand_shorthands, validate_config
from essence.core.errors import ConfigError, did_you_mean
from essence.method.photos import InversionSettings


#: The largest strength |alpha| of a direction anywhere (apply, sweep, held-out checks, eval): the paper's
#: are about 1; far beyond, G(w + alpha b) leaves every generator's range and renders inf or NaN.
MAX_ALPHA = 1000.0


class DerivedSeeds:
    """The seeds a config with ``seed``, ``sources`` and ``heldout`` fields derives (runs and blends)."""

    @property
    def sources_seed(self) -> int:
        return self.seed if self.sources.seed is None else self.sources.seed

    @property
    def heldout_seed(self) -> int:
        return self.seed + 1_000_000 if self.heldout.seed is None else self.heldout.seed


class SourcesConfig(Strict):
    count: int = Field(6, ge=1, le=MAX_IMAGES, description="Random sources drawn from `seed` (ignored with `latents`).")
    seed: Union[int, None] = Field(None, description="Seed of the random sources; default: the run's seed.")
    truncation: float = Field(0.7, description="Truncation psi of random sources, as the official code.")
    latents: Union[str, None] = Field(None, description="A latent file (N, num_ws, w_dim): all its rows are used.")
    photos: list[str] = Field(
        default_factory=list, description="Photos, aligned and inverted into the sources (the `inversion` settings)."
    )

    @model_validator(mode="after")
    def _latents_or_photos(self) -> SourcesConfig:
        if self.latents and self.photos:
            raise ValueError("give source photos or a latent file, not both")
        return self


class InitConfig(Strict):
    mode: Literal["auto", "random", "zeros", "file", "target"] = Field(
        "random",
        description="random: a truncated random latent, as the official code; zeros; file: `path`; target: the "
        "inverted target (in-domain targets); auto: target when the target image can be inverted here, else random.",
    )
    path: Union[str, None] = None
    auto: Union[str, None] = Field(
        None, max_length=2000, description="Written by a run whose init was 'auto': why it chose this mode."
    )
    seed: Union[int, None] = Field(None, description="Seed of a random init; default: seed + 2000000 + restart.")
    truncation: float = 0.7

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        """``"random"``, ``"zeros"`` or a latent file's path."""
        if not isinstance(value, str):
            return value
        named = value in ("auto", "random", "zeros", "target")
        return {"mode": value, "path": None} if named else {"mode": "file", "path": value}

    @model_validator(mode="after")
    def _path_iff_file(self) -> InitConfig:
        if self.mode == "file" and not self.path:
            raise ValueError("init mode 'file' needs a path")
        if self.mode != "file" and self.path:
            raise ValueError(f"init path is only used with mode 'file', not {self.mode!r}")
        if self.mode == "auto" and self.auto:
            raise ValueError("init.auto says why a run's 'auto' chose its mode; it goes with that mode, not with 'auto'")
        return self


class CoefficientsConfig(Strict):
    enabled: bool = Field(False, description="Learn a scale c_s per source: G(w_s + c_s b).")
    optimizer: Literal["persistent", "per-step"] = Field(
        "persistent", description="per-step re-creates their Adam every step, as the official code."
    )
    lr: Union[float, None] = Field(None, description="Their Adam's lr (not scheduled); default: the run's lr.")
    weight_decay: float = 0.01

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class HeldoutConfig(Strict):
    count: int = Field(8, ge=0, le=MAX_IMAGES, description="Fresh sources the direction never saw; 0 turns the check off.")
    seed: Union[int, None] = Field(None, description="Seed of the held-out sources; default: seed + 1000000.")
    truncation: float = 0.7
    latents: Union[str, None] = Field(None, description="A latent file of held-out sources instead of random ones.")
    alpha: float = Field(
        1.0, ge=-MAX_ALPHA, le=MAX_ALPHA, description="Strength of the direction on held-out sources: G(w + alpha b)."
    )


class AutoStopConfig(Strict):
    """``--steps auto``: stop a restart when its held-out loss has not improved for a while.

    Every ``every`` steps the held-out loss of the best direction so far is computed; a check improves when
    it is below the best check by more than ``min_delta`` (relative); after ``patience`` checks without
    improvement the restart ends (``steps`` is then the most it may take). Needs held-out sources."""

    enabled: bool = Field(False, description="Stop on the held-out check (`--steps auto`); steps is then the maximum.")
    every: int = Field(10, ge=1, description="Steps between held-out checks.")
    patience: int = Field(3, ge=1, description="Checks without improvement before the restart stops.")
    min_delta: float = Field(0.002, ge=0, description="Relative improvement of the held-out loss that counts.")
    max_steps: int = Field(1000, ge=1, le=MAX_STEPS, description="The steps `--steps auto` allows at most.")

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class LossSpec(Strict):
    weight: float
    config: dict[str, Any] = Field(default_factory=dict)


#: The preset of a run that names none (docs/method.md says why).
DEFAULT_PRESET = "essence-in"

#: Under every preset, so that a preset's or a user's component config keeps a name.
DEFAULT_COMPONENTS: dict[str, Any] = {"generator": {"name": "stylegan2-ffhq"}, "encoder": {"name": "clip-vitb32"}}


class RunConfig(DerivedSeeds, Strict):
    """Everything one essence-transfer run needs; ``config.json`` in a run folder is this, validated."""

    preset: str = Field(
        DEFAULT_PRESET, description="Settings under everything else: essence-in, essence-ood, paper, paper-ood or targetclip."
    )
    generator: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="stylegan2-ffhq"))
    encoder: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="clip-vitb32"))
    target: list[str] = Field(
        default_factory=list, description="Target image file(s); several images give one essence (one direction)."
    )
    target_text: list[str] = Field(
        default_factory=list, description="Text targets, embedded by the encoder's text tower (after the images)."
    )
    target_weights: Union[list[float], None] = Field(
        None, description="One weight per target, images first, then texts; default: equal weights."
    )
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    init: InitConfig = Field(default_factory=InitConfig)
    inversion: InversionSettings = Field(
        default_factory=InversionSettings, description="How source photos and an init target become latents."
    )
    steps: int = Field(1000, ge=1, le=MAX_STEPS, description="Steps per restart; 'auto': stop on the held-out check (auto_stop).")
    auto_stop: AutoStopConfig = Field(default_factory=AutoStopConfig)
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
    restarts: int = Field(1, ge=1, le=1000, description="Directions optimised from different random inits.")
    heldout: HeldoutConfig = Field(default_factory=HeldoutConfig)
    apply_alpha: Union[float, None] = Field(
        None, ge=-MAX_ALPHA, le=MAX_ALPHA, description="The strength to apply the direction with, written into its metadata: `essence apply` "
        "and `eval` use it unless given --alpha (None: 1.0)."
    )
    seed: int = 0
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda, cuda:1, mps ...")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast of G and C (for CUDA).")
    compile: bool = Field(False, description="torch.compile the render-and-embed pass (for CUDA).")
    chunk: Union[int, None] = Field(
        None, ge=1, description="Most images per generator/encoder pass; default: what fits in half the free memory."
    )
    out: Union[str, None] = Field(None, description="Run folder; default: essence-runs/<target>-<time>.")
    checkpoint_every: int = Field(0, ge=0, description="Write a resumable checkpoint every K steps (0: never).")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = expand_shorthands(cls, data)
        base = deep_merge(DEFAULT_COMPONENTS, preset_config(data.get("preset", DEFAULT_PRESET)))
        merged = deep_merge(base, data)
        if merged.get("steps") == "auto":  # the most steps auto_stop allows, and the stopping rule on
            auto = merged.get("auto_stop") if isinstance(merged.get("auto_stop"), Mapping) else {}
            merged["auto_stop"] = {**auto, "enabled": True}
            merged["steps"] = auto.get("max_steps", AutoStopConfig.model_fields["max_steps"].default)
        return merged

    @model_validator(mode="after")
    def _auto_stop_needs_heldout(self) -> RunConfig:
        if self.auto_stop.enabled and self.heldout.count == 0 and not self.heldout.latents:
            raise ValueError("steps 'auto' stops on the held-out check: give held-out sources (heldout.count > 0)")
        return self

    @field_validator("target", "target_text", mode="before")
    @classmethod
    def _one_target(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("target_text")
    @classmethod
    def _no_empty_text(cls, value: list[str]) -> list[str]:
        if any(not t.strip() for t in value):
            raise ValueError("a text target is empty")
        return value

    @field_validator("target_weights", mode="before")
    @classmethod
    def _weights_list(cls, value: Any) -> Any:
        """``"1,0.5"`` (as --target-weights and --set give it) or a list."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return [value]
        if isinstance(value, str):
            try:
                return [float(v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise ValueError(f"target weights must be numbers separated by commas, not {value!r}") from None
        return value

    @model_validator(mode="after")
    def _weights_fit_targets(self) -> RunConfig:
        w = self.target_weights
        if w is None:
            return self
        if any(x < 0 for x in w) or not any(x > 0 for x in w):
            raise ValueError("target weights must be >= 0, and at least one > 0")
        count = len(self.target) + len(self.target_text)
        if count and len(w) != count:
            raise ValueError(
                f"{len(w)} target weight(s) for {count} target(s) ({len(self.target)} image(s), "
                f"{len(self.target_text)} text(s)): give one weight per target, images first, then texts"
            )
        return self

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
    return expand_shorthands(RunConfig, copy.deepcopy(presets[name]["config"]))


# -- building --------------------------------------------------------------------------------------


def build_run_config(
    *layers: Mapping[str, Any] | None,
    file: str | Path | None = None,
    sets: Sequence[str] = (),
) -> RunConfig:
    """Validate file < layers (in order) < ``--set`` items into a RunConfig."""
    try:
        return build_config(RunConfig, *layers, file=file, sets=sets, what="run configuration")
    except ValueError as exc:  # a preset error raised before field validation
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"Invalid configuration for the run: {exc}.") from None


def validate_run_config(data: Mapping[str, Any] | RunConfig | str | None) -> RunConfig:
    """A RunConfig from a RunConfig, a dict, a preset name or None (the defaults)."""
    if data is None:
        data = {}
    elif isinstance(data, str):
        data = {"preset": data}
    try:
        return validate_config(RunConfig, data, "run configuration")
    except ValueError as exc:  # a preset error raised before field validation
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"Invalid configuration for the run: {exc}.") from None
