"""The essence-transfer engine: find one direction b in W+ whose edit carries the target's essence (eq. 8).

One step (see docs/specs/targetclip-reference.md for the official loop it can reproduce):
render the shifted sources G(w_s + c_s b) in one batch, embed them, sum the weighted loss terms on the
embeddings, back-propagate, step the coefficients' Adam (when on), then the direction's Adam (classic L2
weight decay) with the scheduled lr. Trace values are logged before the update. The source embeddings are
computed once: they do not depend on b. A loss term that asked at registration for the images (an identity
loss) gets G(w_s + c_s b) and G(w_s) too; runs without one keep only the embeddings. Nothing is rendered to
disk while optimising.

The engine takes ready-made components, so tests and notebooks can pass any Generator and Encoder;
``essence run`` (essence.method.runner) builds them from a RunConfig and writes the run folder.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Union

from essence.core.errors import EssenceError
from essence.method.runconfig import RunConfig, validate_run_config

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from essence.core.interfaces import Encoder, Generator

TargetLike = Union[str, "os.PathLike[str]", "Image.Image", "torch.Tensor"]

#: Terms always reported in the trace, computed with the registered losses even at weight 0.
TRACED_TERMS = ("transfer", "consistency")


class NonFiniteError(EssenceError):
    """The loss or the updated direction became NaN or infinite."""


def lr_at(step: int, steps: int, lr: float, schedule: str = "ramp", rampup: float = 0.005, rampdown: float = 0.75) -> float:
    """The learning rate of step ``step`` of ``steps``.

    ``ramp`` is the official schedule: a cosine ramp-down over the last ``rampdown`` of the run times a
    linear warm-up over the first ``rampup``, so the lr is exactly 0 at step 0.
    """
    if schedule == "constant":
        return lr
    t = step / steps
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / rampup)
    return lr * ramp


# -- results ---------------------------------------------------------------------------------------


@dataclass
class TraceRecord:
    """One step, logged before that step's update (as the golden trace is).

    ``direction_norm`` is the Frobenius norm of the whole b ``(num_ws, w_dim)``; ``mean_coefficient`` the
    mean of the per-source coefficients (1.0 when they are off). ``terms`` holds every term's unweighted value.
    """

    step: int
    lr: float
    loss: float
    transfer: float
    consistency: float
    direction_norm: float
    mean_coefficient: float
    terms: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        row = {k: v for k, v in asdict(self).items() if k != "terms"}
        row.update({k: v for k, v in self.terms.items() if k not in row})
        return row


@dataclass
class StepEvent:
    """Passed to ``callback`` after every step. ``direction``/``coefficients`` are the live tensors after
    the update: clone them to keep them."""

    restart: int
    step: int
    steps: int
    record: TraceRecord
    direction: torch.Tensor
    coefficients: torch.Tensor | None
    best_loss: float
    best_step: int


@dataclass
class RestartResult:
    """The outcome of one optimisation from one init."""

    restart: int
    direction: torch.Tensor
    final_direction: torch.Tensor
    coefficients: torch.Tensor | None
    best_coefficients: torch.Tensor | None
    best_step: int
    best_loss: float
    trace: list[TraceRecord]
    embedding_direction: torch.Tensor | None = None
    heldout: dict[str, Any] | None = None
    status: str = "completed"
    init_seed: int | None = None
    #: With ``--steps auto``: steps done, why it stopped, the held-out checks (step, loss).
    stopping: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in asdict(self).items() if k != "trace"}
        state["trace"] = [asdict(r) for r in self.trace]
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RestartResult:
        state = dict(state)
        state["trace"] = [TraceRecord(**r) for r in state["trace"]]
        return cls(**state)


@dataclass
class TransferResult:
    """What :func:`optimize_direction` returns: the selected restart's result, and all of them.

    ``direction`` is the best b ``(num_ws, w_dim)`` (by the config's ``best`` rule); ``final_direction``
    is b after the last step; ``coefficients`` the final per-source coefficients (None when off);
    ``embedding_direction`` is d, the unit mean edit in the encoder's space at ``direction``;
    ``heldout`` the held-out report (None when off or not reached); ``status`` is ``completed``,
    ``interrupted`` or ``nonfinite`` (then ``message`` says what happened).
    """

    direction: torch.Tensor
    final_direction: torch.Tensor
    coefficients: torch.Tensor | None
    best_coefficients: torch.Tensor | None
    best_step: int
    best_loss: float
    trace: list[TraceRecord]
    embedding_direction: torch.Tensor | None
    heldout: dict[str, Any] | None
    status: str
    message: str
    restart: int
    restarts: list[RestartResult]
    config: RunConfig

    def trace_values(self, name: str) -> list[float]:
        """One column of the trace: ``lr``, ``loss``, ``transfer``, ``consistency``, ``direction_norm``,
        ``mean_coefficient`` or a term's name."""
        return [float(r.row()[name]) for r in self.trace]


# -- rendering -------------------------------------------------------------------------------------


class Renderer:
    """Images and embeddings of W+ latents: batched, optionally chunked, bf16-autocast or compiled.

    Everything that renders goes through it (the engine, apply, the blends, eval), so chunking and
    precision mean the same everywhere. ``encoder`` may be None for image-only use.
    """

    def __init__(
        self,
        generator: Generator,
        encoder: Encoder | None = None,
        *,
        chunk: int | None = None,
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        self.generator = generator
        self.encoder = encoder
        self.chunk = chunk
        self.precision = precision
        self._fn: Callable[[torch.Tensor], torch.Tensor] = self._embed
        #: The first output of G and of C is checked (shape, dtype, finite) once, then never again.
        self._checked = {"generator": False, "encoder": False}
        import torch

        if torch.device(generator.device).type == "cuda":
            # Every step renders the same shapes: let cuDNN time its convolution algorithms once.
            torch.backends.cudnn.benchmark = True
        if compile:
            self._fn = torch.compile(self._embed)

    def _embed(self, ws: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            raise EssenceError("This renderer has no encoder: it renders images only.")
        return self.encoder.embed(self.generator.synthesize(ws))

    def _autocast(self, device_type: str) -> Any:
        import contextlib

        import torch

        if self.precision == "bf16":
            return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def embed(self, ws: torch.Tensor) -> torch.Tensor:
        """One pass (no chunking), differentiable when grad is enabled; float32 embeddings."""
        with self._autocast(ws.device.type):
            if not all(self._checked.values()) and self.encoder is not None:
                images = self._check_images(self.generator.synthesize(ws), ws)
                return self._check_embeddings(self.encoder.embed(images), images).float()
            return self._fn(ws).float()

    def _check_images(self, images: Any, ws: torch.Tensor) -> torch.Tensor:
        """G's first output, checked once: ``(n, 3, H, W)`` floating-point, finite for finite latents."""
        if not self._checked["generator"]:
            check_images(self.generator, images, ws)
            self._checked["generator"] = True
        return images

    def _check_embeddings(self, emb: Any, images: torch.Tensor) -> torch.Tensor:
        """C's first output, checked once: ``(n, embed_dim)`` floating-point, finite for finite images."""
        if not self._checked["encoder"]:
            check_embeddings(self.encoder, emb, images)
            self._checked["encoder"] = True
        return emb

    def slices(self, n: int) -> list[slice]:
        size = self.chunk or n
        return [slice(i, min(i + size, n)) for i in range(0, n, size)]

    def render(self, ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One differentiable pass that keeps the images: ``(G(ws), C(G(ws)))``, both float32 (for loss
        terms that need the images)."""
        if self.encoder is None:
            raise EssenceError("This renderer has no encoder: it renders images only.")
        with self._autocast(ws.device.type):
            images = self.generator.synthesize(ws)
            return images.float(), self.encoder.embed(images).float()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """C(images) in one pass, differentiable with respect to the images; float32."""
        if self.encoder is None:
            raise EssenceError("This renderer has no encoder: it renders images only.")
        with self._autocast(images.device.type):
            return self.encoder.embed(images).float()

    def synthesize(self, ws: torch.Tensor) -> torch.Tensor:
        """G(ws) in one pass, differentiable; float32."""
        with self._autocast(ws.device.type):
            return self.generator.synthesize(ws).float()

    def embed_nograd(self, ws: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            return torch.cat([self.embed(ws[s]) for s in self.slices(ws.shape[0])])

    def images(self, ws: torch.Tensor) -> torch.Tensor:
        """G(ws) without gradients, chunk by chunk on the generator's device; float32, on ``ws``'s device
        (full precision: these are the pictures a user looks at)."""
        import torch

        device = self.generator.device
        with torch.no_grad():
            return torch.cat(
                [
                    self._check_images(self.generator.synthesize(ws[s].to(device)), ws[s]).float().to(ws.device)
                    for s in self.slices(ws.shape[0])
                ]
            )

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's float32 embeddings of rendered images, chunk by chunk, without gradients."""
        import torch

        if self.encoder is None:
            raise EssenceError("This renderer has no encoder: it renders images only.")
        device = self.generator.device
        with torch.no_grad():
            return torch.cat(
                [
                    self._check_embeddings(self.encoder.embed(images[s].to(device)), images[s]).float()
                    for s in self.slices(images.shape[0])
                ]
            )


def check_embeddings(encoder: Any, emb: Any, given: torch.Tensor) -> None:
    """:func:`check_output` for an encoder: ``(n, embed_dim)`` for the ``n`` inputs ``given``."""
    dim = getattr(encoder, "embed_dim", None)
    fits = lambda t: t.dim() == 2 and (not isinstance(dim, int) or t.shape[1] == dim)  # noqa: E731
    check_output(encoder, "encoder", emb, given, fits, f"(n, {dim if isinstance(dim, int) else 'embed_dim'})")


def check_images(generator: Any, images: Any, ws: torch.Tensor) -> None:
    """G's output for ``ws``: ``(n, 3, H, W)`` floating-point, finite for finite latents (:func:`check_output`)."""
    check_output(generator, "generator", images, ws, lambda t: t.dim() == 4 and t.shape[1] == 3, "(n, 3, H, W)")


def check_generator(generator: Any) -> None:
    """G's output on one random latent, checked before something other than the renderer (an inverter) uses G."""
    import torch

    with torch.no_grad():
        ws = generator.sample_ws(1, seed=0)
        check_images(generator, generator.synthesize(ws), ws)


def check_output(component: Any, kind: str, out: Any, given: torch.Tensor, fits: Callable[[Any], bool], shape: str) -> None:
    """Refuse what a plugin's component returned when it is not what the interface promises, with an
    EssenceError naming the component and its plugin (called once per run, not per step)."""
    import torch

    from essence.core.registry import component_label

    who = component_label(component, kind)
    n = int(given.shape[0])
    if not isinstance(out, torch.Tensor):
        raise EssenceError(f"{who} returned {type(out).__name__}, not a tensor {shape}: a bug in that plugin.")
    if not fits(out) or out.shape[0] != n:
        raise EssenceError(
            f"{who} returned shape {tuple(out.shape)} for {n} input(s); the interface is {shape}: a bug in that plugin."
        )
    if not out.is_floating_point():
        raise EssenceError(f"{who} returned {out.dtype} values; expected floating-point: a bug in that plugin.")
    if bool(torch.isfinite(given).all()) and not bool(torch.isfinite(out.detach()).all()):
        raise EssenceError(
            f"{who} returned NaN or infinite values for finite inputs: a bug in that plugin, broken weights, "
            "or inputs far outside its range."
        )


# -- loss terms ------------------------------------------------------------------------------------


@dataclass
class WeightedTerm:
    name: str
    term: Callable[[Any], torch.Tensor]
    weight: float
    #: The LossContext fields beyond the embeddings it asked for at registration (images, source_images, source_ws).
    needs: frozenset[str] = frozenset()


def needs_of(terms: Sequence[WeightedTerm]) -> frozenset[str]:
    """Every extra input some term asked for: the engine computes these, and only these."""
    return frozenset().union(*(t.needs for t in terms))


def build_terms(config: RunConfig) -> list[WeightedTerm]:
    """The configured loss terms from the registry, plus transfer/consistency at weight 0 for the trace."""
    from essence.core.registry import get_registry

    registry = get_registry()
    terms = [
        WeightedTerm(name, registry.create("loss", name, **spec.config), spec.weight, registry.get("loss", name).needs)
        for name, spec in config.loss_weights().items()
    ]
    names = {t.name for t in terms}
    terms += [
        WeightedTerm(n, registry.create("loss", n), 0.0, registry.get("loss", n).needs)
        for n in TRACED_TERMS if n not in names
    ]
    return terms


def evaluate_terms(terms: Sequence[WeightedTerm], ctx: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted sum (differentiable) and every term's value; weight-0 terms are computed without grad."""
    import torch

    total: torch.Tensor | None = None
    values: dict[str, torch.Tensor] = {}
    for t in terms:
        if t.weight == 0:
            with torch.no_grad():
                values[t.name] = t.term(ctx).detach()
            continue
        value = t.term(ctx)
        values[t.name] = value.detach()
        total = t.weight * value if total is None else total + t.weight * value
    if total is None:
        raise EssenceError("Every loss term has weight 0: give at least one a non-zero weight.")
    return total, values


# -- one optimisation ------------------------------------------------------------------------------


class DirectionSearch:
    """The loop for one init: b, the optional per-source coefficients, their optimisers and the best so far.

    :func:`step_together` steps one search, or several at once in one batch (``--pack``)."""

    def __init__(
        self,
        renderer: Renderer,
        terms: Sequence[WeightedTerm],
        target: torch.Tensor,
        sources: torch.Tensor,
        source_embeddings: torch.Tensor,
        init: torch.Tensor,
        config: RunConfig,
        restart: int = 0,
        init_seed: int | None = None,
        target_weights: torch.Tensor | None = None,
        source_images: torch.Tensor | None = None,
    ) -> None:
        import torch

        self.renderer, self.terms, self.config = renderer, list(terms), config
        self.needs = needs_of(self.terms)
        self.source_images = source_images
        self.target, self.sources, self.source_embeddings = target, sources, source_embeddings
        self.target_weights = target_weights
        self.restart, self.init_seed = restart, init_seed
        #: b is exactly 0 (init 'zeros', until the first update that moves it): every edit C(G(w + 0)) - C(G(w)) is 0.
        self.zero_start = not bool(init.detach().any())
        self.direction = init.detach().clone().float().to(sources.device).requires_grad_(True)
        cc = config.coefficients
        self.coefficients = (
            torch.ones(sources.shape[0], device=sources.device, requires_grad=True) if cc.enabled else None
        )
        self.optimizer = torch.optim.Adam(
            [self.direction], lr=config.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=config.weight_decay
        )
        self.coefficient_optimizer = (
            self._coefficient_adam() if cc.enabled and cc.optimizer == "persistent" else None
        )
        self.step_index = 0
        self.best = self.direction.detach().clone()
        self.best_coefficients = None if self.coefficients is None else self.coefficients.detach().clone()
        self.best_loss = math.inf
        self.best_step = -1
        self.trace: list[TraceRecord] = []
        #: True while parameters are being updated: an interrupt then leaves no consistent checkpoint.
        self.updating = False
        #: ``--steps auto``: the held-out checks so far [(step, loss)], the best one, checks since it, and why it stopped.
        self.checks: list[tuple[int, float]] = []
        self.best_check = math.inf
        self.stale_checks = 0
        self.stop_reason: str | None = None

    def _coefficient_adam(self) -> torch.optim.Optimizer:
        import torch

        return torch.optim.Adam(
            [self.coefficients],
            lr=self.config.coefficient_lr,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=self.config.coefficients.weight_decay,
        )

    @property
    def done(self) -> bool:
        return self.stop_reason is not None or self.step_index >= self.config.steps

    def auto_stop_check(self, loss: float) -> None:
        """Book one held-out check of ``--steps auto``; stop when ``patience`` checks brought no improvement."""
        rule = self.config.auto_stop
        self.checks.append((self.step_index, loss))
        if loss < self.best_check * (1 - rule.min_delta) or not math.isfinite(self.best_check):
            self.best_check, self.stale_checks = loss, 0
        else:
            self.stale_checks += 1
        if self.stale_checks >= rule.patience:
            self.stop_reason = (
                f"held-out loss not improved by {rule.min_delta:g} (relative) in {rule.patience} checks of every "
                f"{rule.every} steps"
            )

    def stopping(self) -> dict[str, Any] | None:
        if not self.config.auto_stop.enabled:
            return None
        reason = self.stop_reason or (f"reached the most steps ({self.config.steps})" if self.step_index >= self.config.steps else "not finished")
        return {
            "rule": self.config.auto_stop.model_dump(mode="json"),
            "steps_done": self.step_index,
            "stopped_early": self.stop_reason is not None,
            "reason": reason,
            "best_heldout_loss": self.best_check if math.isfinite(self.best_check) else None,
            "checks": [[s, v] for s, v in self.checks],
        }

    def shifted_ws(self) -> torch.Tensor:
        """w_s + c_s b for every source (c_s = 1 without coefficients)."""
        b = self.direction[None]
        if self.coefficients is not None:
            b = self.coefficients[:, None, None] * b
        return self.sources + b

    def context(self, shifted: torch.Tensor, lr: float, images: torch.Tensor | None = None) -> Any:
        """The :class:`LossContext` of this step for the embeddings ``shifted`` (and, when a term needs them,
        the rendered ``images``) of this search's sources."""
        from essence.core.interfaces import LossContext

        sources = self.source_embeddings
        if self.zero_start:
            # At b = 0 the edits are exactly 0, but this pass (packed with other directions, or chunked unlike
            # the sources' pass) may round C(G(w)) differently: near-zero edits whose normalised gradients are
            # noise. Their exact value is shifted itself, so the first step is the same however it is batched.
            sources = shifted.detach()
        return LossContext(
            target=self.target,
            sources=sources,
            shifted=shifted,
            direction=self.direction,
            coefficients=self.coefficients,
            step=self.step_index,
            extras={"lr": lr, "steps": self.config.steps, "restart": self.restart},
            target_weights=self.target_weights,
            images=images if "images" in self.needs else None,
            source_images=self.source_images if "source_images" in self.needs else None,
            source_ws=self.sources if "source_ws" in self.needs else None,
        )

    def lr(self) -> float:
        cfg = self.config
        return lr_at(self.step_index, cfg.steps, cfg.lr, cfg.lr_schedule, cfg.lr_rampup, cfg.lr_rampdown)

    def step(self) -> TraceRecord:
        """One optimisation step; raises NonFiniteError (state unchanged) when the loss or update is not finite."""
        (outcome,) = step_together(self.renderer, [self])
        if isinstance(outcome, NonFiniteError):
            raise outcome
        return outcome

    def update(self, loss: torch.Tensor, values: dict[str, torch.Tensor], lr: float, coefficient_optimizer: Any) -> TraceRecord:
        """After the backward pass: log the trace record, step the optimisers, keep the best direction."""
        import torch

        cfg = self.config
        i = self.step_index
        names = list(values)
        stats = torch.stack(
            [
                loss.detach().float(),
                *[values[k].float() for k in names],
                self.direction.detach().norm(),
                self.coefficients.detach().mean() if self.coefficients is not None else loss.new_tensor(1.0),
            ]
        ).tolist()
        loss_value, term_values, norm, mean_c = stats[0], dict(zip(names, stats[1:-2])), stats[-2], stats[-1]
        if not math.isfinite(loss_value):
            raise NonFiniteError(f"The loss became {loss_value} at step {i} (restart {self.restart}).")
        record = TraceRecord(
            step=i,
            lr=lr,
            loss=loss_value,
            transfer=term_values["transfer"],
            consistency=term_values["consistency"],
            direction_norm=norm,
            mean_coefficient=mean_c,
            terms=term_values,
        )

        before = self.direction.detach().clone()
        before_c = None if self.coefficients is None else self.coefficients.detach().clone()
        self.updating = True
        if coefficient_optimizer is not None:
            coefficient_optimizer.step()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        if self.zero_start:  # still exactly 0 (the warm-up's lr is 0 at step 0)?
            self.zero_start = not bool(self.direction.detach().any())
        finite = bool(torch.isfinite(self.direction).all())
        if self.coefficients is not None:
            finite = finite and bool(torch.isfinite(self.coefficients).all())
        if not finite:
            with torch.no_grad():
                self.direction.copy_(before)
                if self.coefficients is not None:
                    self.coefficients.copy_(before_c)
            self.updating = False
            raise NonFiniteError(f"The direction's update became NaN/inf at step {i} (restart {self.restart}).")
        if loss_value < self.best_loss:
            self.best_loss, self.best_step = loss_value, i
            if cfg.best == "post-update":
                self.best = self.direction.detach().clone()
                self.best_coefficients = None if self.coefficients is None else self.coefficients.detach().clone()
            else:
                self.best, self.best_coefficients = before, before_c
        self.trace.append(record)
        self.step_index += 1
        self.updating = False
        return record

    # -- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def cpu(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().cpu().clone()

        return {
            "restart": self.restart,
            "init_seed": self.init_seed,
            "step": self.step_index,
            "direction": cpu(self.direction),
            "coefficients": cpu(self.coefficients),
            "optimizer": self.optimizer.state_dict(),
            "coefficient_optimizer": (
                None if self.coefficient_optimizer is None else self.coefficient_optimizer.state_dict()
            ),
            "best": cpu(self.best),
            "best_coefficients": cpu(self.best_coefficients),
            "best_loss": self.best_loss,
            "best_step": self.best_step,
            "trace": [asdict(r) for r in self.trace],
            "auto_stop": {"checks": [list(c) for c in self.checks], "best": self.best_check, "stale": self.stale_checks,
                          "reason": self.stop_reason},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        device = self.sources.device
        with torch.no_grad():
            self.direction.copy_(state["direction"].to(device))
            if self.coefficients is not None:
                self.coefficients.copy_(state["coefficients"].to(device))
        self.optimizer.load_state_dict(state["optimizer"])
        if self.coefficient_optimizer is not None:
            self.coefficient_optimizer.load_state_dict(state["coefficient_optimizer"])
        self.zero_start = self.zero_start and not bool(self.direction.detach().any())
        self.step_index = int(state["step"])
        self.best = state["best"].to(device)
        self.best_coefficients = None if state["best_coefficients"] is None else state["best_coefficients"].to(device)
        self.best_loss = float(state["best_loss"])
        self.best_step = int(state["best_step"])
        self.trace = [TraceRecord(**r) for r in state["trace"]]
        auto = state.get("auto_stop") or {}
        self.checks = [(int(s), float(v)) for s, v in auto.get("checks", [])]
        self.best_check = float(auto.get("best", math.inf))
        self.stale_checks = int(auto.get("stale", 0))
        self.stop_reason = auto.get("reason")


def step_together(renderer: Renderer, searches: Sequence[DirectionSearch]) -> list[TraceRecord | NonFiniteError]:
    """One step of several searches (``--pack K``) in one batch of their shifted sources.

    Each search keeps its own loss, optimisers, lr schedule, weight decay and best direction: the losses
    depend on disjoint rows of the batch and are summed only to back-propagate once, so each direction
    gets exactly the gradient of its own loss, as in a run of its own. One search alone is the plain
    step. Returns each search's trace record, or the NonFiniteError that stopped it (its state unchanged).
    """
    import torch

    lrs = [s.lr() for s in searches]
    coefficient_optimizers = []
    for s in searches:
        opt = s.coefficient_optimizer
        if s.coefficients is not None and opt is None:
            opt = s._coefficient_adam()  # the official quirk: fresh moments every step
        s.optimizer.zero_grad(set_to_none=True)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        coefficient_optimizers.append(opt)
    sizes = [s.sources.shape[0] for s in searches]

    def shifted_ws() -> torch.Tensor:
        return torch.cat([s.shifted_ws() for s in searches]) if len(searches) > 1 else searches[0].shifted_ws()

    def losses(
        shifted: torch.Tensor, images: torch.Tensor | None = None
    ) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        parts = shifted.split(sizes)
        pictures = [None] * len(searches) if images is None else images.split(sizes)
        return [evaluate_terms(s.terms, s.context(e, lr, im)) for s, e, im, lr in zip(searches, parts, pictures, lrs)]

    # No host sync before backward: a non-finite loss is caught before the update instead.
    slices = renderer.slices(sum(sizes))
    if any("images" in s.needs for s in searches):
        # A term looks at the images themselves (an identity loss): keep G(w + b) for the loss.
        if len(slices) == 1:
            images, embeddings = renderer.render(shifted_ws())
            results = losses(embeddings, images)
            torch.stack([loss for loss, _ in results]).sum().backward()
        else:
            # Chunked as below, one level down: the loss's gradient w.r.t. the images, then G per chunk.
            images = renderer.images(shifted_ws().detach()).requires_grad_(True)
            results = losses(renderer.encode(images), images)
            torch.stack([loss for loss, _ in results]).sum().backward()
            grad = images.grad
            for sl in slices:
                renderer.synthesize(shifted_ws()[sl]).backward(grad[sl])
    elif len(slices) == 1:
        results = losses(renderer.embed(shifted_ws()))
        torch.stack([loss for loss, _ in results]).sum().backward()
    else:
        # Chunked: embeddings without a graph, the loss's gradient w.r.t. them, then one
        # forward+backward per chunk with that gradient. Exact, at the cost of one extra forward.
        shifted = renderer.embed_nograd(shifted_ws().detach()).requires_grad_(True)
        results = losses(shifted)
        torch.stack([loss for loss, _ in results]).sum().backward()
        grad = shifted.grad
        for sl in slices:
            renderer.embed(shifted_ws()[sl]).backward(grad[sl])

    outcomes: list[TraceRecord | NonFiniteError] = []
    for s, (loss, values), lr, opt in zip(searches, results, lrs, coefficient_optimizers):
        try:
            outcomes.append(s.update(loss, values, lr, opt))
        except NonFiniteError as exc:
            outcomes.append(exc)
    return outcomes


# -- evaluation ------------------------------------------------------------------------------------


def embedding_direction(source_embeddings: torch.Tensor, shifted: torch.Tensor) -> torch.Tensor:
    """d: the unit mean of the unit edits C(G(w + b)) - C(G(w)) over sources."""
    import torch.nn.functional as F

    return F.normalize(F.normalize(shifted - source_embeddings, dim=-1).mean(0), dim=0)


def evaluate_direction(
    renderer: Renderer,
    terms: Sequence[WeightedTerm],
    target: torch.Tensor,
    ws: torch.Tensor,
    direction: torch.Tensor,
    *,
    alpha: float = 1.0,
    source_embeddings: torch.Tensor | None = None,
    target_weights: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Transfer, consistency and the weighted loss of G(w + alpha b) on the sources ``ws``, without
    coefficients; ``transfer_unedited`` is the transfer of the sources themselves, for comparison. With
    several targets, ``transfer_per_target`` is each target's own transfer (edited, then unedited)."""
    import torch

    from essence.core.interfaces import LossContext

    ws = ws.to(direction.device)
    src = renderer.embed_nograd(ws) if source_embeddings is None else source_embeddings
    shifted = renderer.embed_nograd(ws + alpha * direction[None])
    needs = needs_of(terms)
    with torch.no_grad():
        ctx = LossContext(
            target=target, sources=src, shifted=shifted, direction=alpha * direction, target_weights=target_weights,
            images=renderer.images(ws + alpha * direction[None]) if "images" in needs else None,
            source_images=renderer.images(ws) if "source_images" in needs else None,
            source_ws=ws if "source_ws" in needs else None,
        )
        values = {t.name: float(t.term(ctx)) for t in terms}
        loss = sum(t.weight * values[t.name] for t in terms if t.weight != 0)
        transfer = next(t for t in terms if t.name == "transfer").term

        def transfer_of(emb: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None) -> float:
            return float(transfer(LossContext(target=targets, sources=src, shifted=emb, target_weights=weights)))

        report = {"count": int(ws.shape[0]), "alpha": alpha, "loss": loss, **values}
        report["transfer_unedited"] = transfer_of(src, target, target_weights)
        if target.shape[0] > 1:
            report["transfer_per_target"] = [
                [transfer_of(shifted, target[k : k + 1], None), transfer_of(src, target[k : k + 1], None)]
                for k in range(target.shape[0])
            ]
    return report


# -- the whole optimisation ------------------------------------------------------------------------


def embed_target(
    encoder: Encoder, target: TargetLike | Sequence[TargetLike] | None, texts: Sequence[str] = ()
) -> torch.Tensor:
    """Target embeddings ``(T, D)``: the images first (paths, PIL images, preprocessed inputs ``(3|1x3, R, R)``,
    or embeddings ``(T, D)`` used as they are), then the ``texts`` through the encoder's text tower."""
    import torch
    from PIL import Image

    items = [] if target is None else list(target) if isinstance(target, (list, tuple)) else [target]
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not items and not texts:
        raise EssenceError("No target given: pass a target image (--target FILE) or a text (--target-text TEXT).")
    out = []

    def checked(emb: Any, rows: int) -> torch.Tensor:  # what the encoder made of a target, checked once
        check_embeddings(encoder, emb, torch.zeros(rows))
        return emb.float()

    with torch.no_grad():
        for item in items:
            if isinstance(item, torch.Tensor):
                if item.dim() == 2:
                    out.append(item.float())
                    continue
                x = item[None] if item.dim() == 3 else item
                if x.dim() != 4:
                    raise EssenceError(f"A target tensor must be (3, R, R), (n, 3, R, R) or (T, D); got {tuple(item.shape)}.")
                out.append(checked(encoder.embed_preprocessed(x), x.shape[0]))
            elif isinstance(item, Image.Image):
                out.append(checked(encoder.embed_pil(item), 1))
            elif isinstance(item, (str, os.PathLike)):
                out.append(checked(encoder.embed_file(item), 1))
            else:
                raise EssenceError(f"A target must be an image path, a PIL image or a tensor, not {type(item).__name__}.")
        if texts:
            device = out[0].device if out else None
            emb = checked(encoder.embed_text(texts), len(texts))
            out.append(emb if device is None else emb.to(device))
    return torch.cat(out)


def target_weights(weights: Sequence[float] | None, count: int) -> torch.Tensor | None:
    """The targets' weights ``(T,)``, summing to 1, or None for equal weights (``target_weights`` unset)."""
    import torch

    if weights is None:
        return None
    if len(weights) != count:
        raise EssenceError(
            f"{len(weights)} target weight(s) for {count} target(s): give one weight per target, "
            "image targets first, then text targets (--target-weights 1,0.5)."
        )
    w = torch.tensor([float(x) for x in weights], dtype=torch.float32)
    return w / w.sum()


def describe_targets(target: torch.Tensor, weights: torch.Tensor | None = None) -> dict[str, Any]:
    """How much several targets agree in the encoder's space: the mean cosine over pairs of targets, the
    lowest pair, and each target's cosine with their (weighted) mean. Low values: they do not share one
    essence, and one direction will find a compromise (image and text embeddings of CLIP sit far apart even
    when they agree, so compare pairs of the same kind)."""
    import torch
    import torch.nn.functional as F

    t = F.normalize(target.float(), dim=-1)
    count = int(t.shape[0])
    report: dict[str, Any] = {"count": count, "weights": None if weights is None else weights.tolist()}
    if count < 2:
        return {**report, "mean_pairwise_cosine": None, "min_pairwise_cosine": None, "cosine_to_mean": [1.0] * count}
    cos = t @ t.T
    pairs = cos[~torch.eye(count, dtype=torch.bool, device=cos.device)]
    w = torch.full((count,), 1.0 / count) if weights is None else weights
    mean = F.normalize((w.to(t)[:, None] * t).sum(0), dim=0)
    return {
        **report,
        "mean_pairwise_cosine": float(pairs.mean()),
        "min_pairwise_cosine": float(pairs.min()),
        "cosine_to_mean": (t @ mean).tolist(),
    }


def resolve_sources(generator: Generator, sources: Any, config: RunConfig) -> torch.Tensor:
    """Source latents ``(N, num_ws, w_dim)``: a tensor, a count, a latent file, or None (the config's)."""
    import torch

    from essence.method.artifacts import load_latents

    if sources is None:
        if config.sources.latents:
            sources = config.sources.latents
        else:
            sources = config.sources.count
    if isinstance(sources, bool):
        raise EssenceError("sources must be latents, a count or a latent file.")
    if isinstance(sources, int):
        return generator.sample_ws(sources, seed=config.sources_seed, truncation=config.sources.truncation)
    if isinstance(sources, (str, os.PathLike)):
        sources = load_latents(sources, num_ws=generator.num_ws, w_dim=generator.w_dim, what="Sources latent file")
    if not isinstance(sources, torch.Tensor):
        raise EssenceError(f"sources must be latents, a count or a latent file, not {type(sources).__name__}.")
    ws = sources[None] if sources.dim() == 2 else sources
    if ws.dim() != 3 or tuple(ws.shape[1:]) != (generator.num_ws, generator.w_dim):
        raise EssenceError(
            f"Source latents of shape {tuple(sources.shape)} do not fit the generator: "
            f"expected (N, {generator.num_ws}, {generator.w_dim})."
        )
    return ws.detach().float().to(generator.device)


def resolve_heldout(generator: Generator, heldout: Any, config: RunConfig) -> torch.Tensor | None:
    """Held-out latents: a tensor, a count, a latent file, or None (the config's); None when the count is 0."""
    h = config.heldout
    if heldout is None:
        heldout = h.latents if h.latents else h.count
    if isinstance(heldout, int) and not isinstance(heldout, bool):
        if heldout == 0:
            return None
        return generator.sample_ws(heldout, seed=config.heldout_seed, truncation=h.truncation)
    return resolve_sources(generator, heldout, config)


#: Bytes a differentiable pass of G and C takes per image pixel (activations kept for the backward pass),
#: measured on the CPU with the FFHQ-1024 generator and ViT-B/32 (benchmarks/bench_engine.py: --sources 32
#: --chunk 4 peaked at 6.93 GiB, --sources 32 in chunks of 8 at 14.70 GiB: about 1.6 GiB per 1024-px image).
BYTES_PER_PIXEL = 1600
#: The share of the free memory a run's images may take when ``chunk`` is not given.
MEMORY_SHARE = 0.5


def memory_chunk(generator: Generator, free: int | None = None) -> int | None:
    """The most images per differentiable pass that fit in ``MEMORY_SHARE`` of the free memory on the
    generator's device (``chunk`` when the config gives none); None when the free memory cannot be told."""
    from essence.core.devices import available_memory

    free = available_memory(generator.device) if free is None else free
    resolution = getattr(generator, "resolution", None)
    if free is None or not isinstance(resolution, int) or resolution <= 0:
        return None
    return max(1, int(free * MEMORY_SHARE) // (BYTES_PER_PIXEL * resolution * resolution))


def resolve_init(generator: Generator, init: Any, config: RunConfig, restart: int) -> tuple[torch.Tensor, int | None]:
    """b's start ``(num_ws, w_dim)`` and the seed it came from (None when not random)."""
    import torch

    from essence.method.artifacts import load_latents

    if init is None:
        init = config.init.path if config.init.mode == "file" else config.init.mode
    if isinstance(init, str) and init == "auto":  # nothing inverted the target here (`essence run` does):
        init = "random"  # the fallback, the paper's start
    if isinstance(init, str) and init == "random":
        seed = config.init_seed(restart)
        return generator.sample_ws(1, seed=seed, truncation=config.init.truncation)[0], seed
    if isinstance(init, str) and init == "zeros":
        return torch.zeros(generator.num_ws, generator.w_dim, device=generator.device), None
    if isinstance(init, str) and init == "target":
        raise EssenceError("init 'target' starts b at the inverted target: `essence run` inverts it; here, pass its latent as init.")
    if isinstance(init, (str, os.PathLike)):
        init = load_latents(init, num_ws=generator.num_ws, w_dim=generator.w_dim, what="Init latent file")
    if not isinstance(init, torch.Tensor):
        raise EssenceError(f"init must be 'random', 'zeros', a latent file or a tensor, not {type(init).__name__}.")
    b = init[0] if init.dim() == 3 and init.shape[0] == 1 else init
    if tuple(b.shape) != (generator.num_ws, generator.w_dim):
        raise EssenceError(
            f"An init of shape {tuple(init.shape)} does not fit the generator: "
            f"expected ({generator.num_ws}, {generator.w_dim}) or (1, {generator.num_ws}, {generator.w_dim})."
        )
    return b.detach().float().to(generator.device), None


class TransferOptimizer:
    """Restarts of :class:`DirectionSearch`, the held-out check, selection, interruption and checkpoints.

    ``run()`` optimises it alone; :func:`optimize_together` steps several (one per target) in one batch.
    """

    def __init__(
        self,
        generator: Generator,
        encoder: Encoder,
        target: TargetLike | Sequence[TargetLike] | None,
        sources: Any = None,
        config: RunConfig | dict[str, Any] | str | None = None,
        init: Any = None,
        *,
        heldout: Any = None,
        callback: Callable[[StepEvent], None] | None = None,
        texts: Sequence[str] = (),
    ) -> None:
        self.config = cfg = validate_run_config(config)
        self.generator, self.encoder = generator, encoder
        self.callback = callback
        self.init = init
        if init is not None and not isinstance(init, str) and cfg.restarts > 1:
            raise EssenceError("Restarts need different inits: use init='random' with restarts > 1.")
        chunk = cfg.chunk if cfg.chunk is not None else memory_chunk(generator)
        self.renderer = Renderer(generator, encoder, chunk=chunk, precision=cfg.precision, compile=cfg.compile)
        self.terms = build_terms(cfg)
        self.target = embed_target(encoder, target, texts).to(generator.device)
        weights = target_weights(cfg.target_weights, self.target.shape[0])
        self.target_weights = None if weights is None else weights.to(generator.device)
        self.sources = resolve_sources(generator, sources, cfg)
        self.heldout_ws = resolve_heldout(generator, heldout, cfg)
        self._heldout_embeddings: torch.Tensor | None = None
        self.source_embeddings = self.renderer.embed_nograd(self.sources)
        #: G(w_s), only when a loss term asked for it (they do not depend on b: rendered once).
        self.source_images = self.renderer.images(self.sources) if "source_images" in needs_of(self.terms) else None
        self.restart = 0
        self.completed: list[RestartResult] = []
        self.search: DirectionSearch | None = None
        self.stop_requested = False
        #: Time spent in optimisation steps (not held-out checks), and how many ran, in this process.
        self.step_seconds = 0.0
        self.steps_run = 0
        self.status = "running"
        self.message = ""

    # -- running ----------------------------------------------------------------------------------
    def _new_search(self, restart: int) -> DirectionSearch:
        b, seed = resolve_init(self.generator, self.init, self.config, restart)
        return DirectionSearch(
            self.renderer, self.terms, self.target, self.sources, self.source_embeddings, b, self.config, restart,
            seed, self.target_weights, self.source_images,
        )

    def run(self) -> TransferResult:
        """Optimise (or continue) until done, interrupted (KeyboardInterrupt or ``stop_requested``) or non-finite."""
        return optimize_together([self])[0]

    def current_search(self) -> DirectionSearch | None:
        """The search to step next, finishing the restarts that are done (their held-out check); None (and
        status ``completed``) once every restart is."""
        while self.restart < self.config.restarts:
            if self.search is None:
                self.search = self._new_search(self.restart)
            if not self.search.done:
                return self.search
            self.completed.append(self._finish(self.search, "completed"))
            self.search = None
            self.restart += 1
        self.status = "completed"
        return None

    def heldout_report(self, direction: torch.Tensor) -> dict[str, Any]:
        """The held-out check of ``direction`` (``--steps auto`` runs it every few steps, every restart at its
        end); the held-out sources' embeddings do not depend on b, so they are computed once."""
        if self._heldout_embeddings is None:
            self._heldout_embeddings = self.renderer.embed_nograd(self.heldout_ws)
        return evaluate_direction(
            self.renderer, self.terms, self.target, self.heldout_ws, direction, alpha=self.config.heldout.alpha,
            source_embeddings=self._heldout_embeddings, target_weights=self.target_weights,
        )

    def after_step(self, s: DirectionSearch, record: TraceRecord | NonFiniteError, seconds: float) -> None:
        """Book one step of the search ``s``: its time and the callback, or the non-finite stop."""
        if isinstance(record, NonFiniteError):
            self.status, self.message = "nonfinite", str(record) + " Kept the last good direction."
            return
        self.step_seconds += seconds
        self.steps_run += 1
        rule = self.config.auto_stop
        if rule.enabled and self.heldout_ws is not None and s.step_index % rule.every == 0 and not s.done:
            report = self.heldout_report(s.best)
            s.auto_stop_check(float(report["loss"]))
        if self.callback is not None:
            self.callback(
                StepEvent(
                    s.restart, record.step, self.config.steps, record, s.direction.detach(),
                    None if s.coefficients is None else s.coefficients.detach(), s.best_loss, s.best_step,
                )
            )

    @property
    def checkpoint_consistent(self) -> bool:
        """False when an interrupt hit in the middle of a parameter update."""
        return self.search is None or not self.search.updating

    def _finish(self, s: DirectionSearch, status: str) -> RestartResult:
        heldout = None
        if status == "completed" and self.heldout_ws is not None:
            report = self.heldout_report(s.best)
            heldout = {"seed": self.config.heldout_seed if self.config.heldout.latents is None else None, **report}
        with_best = self.renderer.embed_nograd(self.sources + s.best[None])
        return RestartResult(
            restart=s.restart,
            direction=s.best.detach().clone(),
            final_direction=s.direction.detach().clone(),
            coefficients=None if s.coefficients is None else s.coefficients.detach().clone(),
            best_coefficients=s.best_coefficients,
            best_step=s.best_step,
            best_loss=s.best_loss,
            trace=list(s.trace),
            embedding_direction=embedding_direction(self.source_embeddings, with_best),
            heldout=heldout,
            status=status,
            init_seed=s.init_seed,
            stopping=s.stopping(),
        )

    def result(self) -> TransferResult:
        """The best restart: by held-out loss when every candidate has one, else by training loss.

        When stopped early, the unfinished restart is a candidate only if no restart completed.
        """
        candidates = list(self.completed)
        if not candidates and self.search is not None:
            candidates = [self._finish(self.search, self.status)]
        if not candidates:
            raise EssenceError("The run stopped before its first step; there is no direction yet.")
        if all(c.heldout is not None for c in candidates):
            chosen = min(candidates, key=lambda c: c.heldout["loss"])
        else:
            chosen = min(candidates, key=lambda c: c.best_loss)
        return TransferResult(
            direction=chosen.direction,
            final_direction=chosen.final_direction,
            coefficients=chosen.coefficients,
            best_coefficients=chosen.best_coefficients,
            best_step=chosen.best_step,
            best_loss=chosen.best_loss,
            trace=chosen.trace,
            embedding_direction=chosen.embedding_direction,
            heldout=chosen.heldout,
            status=self.status,
            message=self.message,
            restart=chosen.restart,
            restarts=candidates,
            config=self.config,
        )

    # -- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        import torch

        return {
            "format": "essence-checkpoint",
            "version": 1,
            "restart": self.restart,
            "completed": [r.state_dict() for r in self.completed],
            "search": None if self.search is None else self.search.state_dict(),
            "rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        if state.get("format") != "essence-checkpoint":
            raise EssenceError("Not an essence checkpoint.")
        self.restart = int(state["restart"])
        self.completed = [RestartResult.from_state_dict(r) for r in state["completed"]]
        self.search = None
        if state["search"] is not None:
            self.search = self._new_search(int(state["search"]["restart"]))
            self.search.load_state_dict(state["search"])
        torch.set_rng_state(state["rng"])


def optimize_together(optimizers: Sequence[TransferOptimizer]) -> list[TransferResult]:
    """Run several optimisers (one per target) to the end, stepping their current searches in one batch.

    Each keeps its restarts, held-out check, selection and state (a packed run equals separate runs);
    one that finishes or becomes non-finite leaves the batch, and the rest go on. A KeyboardInterrupt, or
    ``stop_requested`` on any of them, interrupts all of them after the current step.
    """
    first = optimizers[0]
    for o in optimizers[1:]:
        if o.generator is not first.generator or o.encoder is not first.encoder:
            raise EssenceError("Directions optimised together must share one generator and one encoder.")
    for o in optimizers:
        if o.status == "interrupted":
            o.status, o.message = "running", ""  # run() again continues
    try:
        while True:
            pairs = [(o, s) for o in optimizers if o.status == "running" and (s := o.current_search()) is not None]
            if not pairs:
                break
            if any(o.stop_requested for o in optimizers):  # after the searches exist: a stop at step 0 keeps b's start
                raise KeyboardInterrupt
            started = time.perf_counter()
            records = step_together(first.renderer, [s for _, s in pairs])
            seconds = time.perf_counter() - started
            for (o, s), record in zip(pairs, records):
                o.after_step(s, record, seconds)
    except KeyboardInterrupt:
        for o in optimizers:
            if o.status == "running":
                o.status, o.message = "interrupted", "Interrupted."
    return [o.result() for o in optimizers]


def optimize_direction(
    generator: Generator,
    encoder: Encoder,
    target: TargetLike | Sequence[TargetLike] | None = None,
    sources: Any = None,
    config: RunConfig | dict[str, Any] | str | None = None,
    init: Any = None,
    *,
    heldout: Any = None,
    callback: Callable[[StepEvent], None] | None = None,
    texts: Sequence[str] = (),
) -> TransferResult:
    """Find the essence direction b of ``target`` for ``generator`` and ``encoder`` (paper eq. 8).

    - ``target``: an image path, a PIL image, a preprocessed encoder input ``(1, 3, R, R)`` (used as is),
      target embeddings ``(T, D)``, or a list of these (several images: one essence; see docs/method.md).
    - ``texts``: text targets, embedded by the encoder's text tower (after the images).
    - ``sources``: W+ latents ``(N, num_ws, w_dim)``, a count (random, from the config's seed), a latent
      file, or None (the config's ``sources``).
    - ``config``: a RunConfig, a dict (``{"preset": "targetclip", "steps": 25}``), a preset name, or None
      (the ``paper`` preset). Its ``target_weights`` weigh the targets (images first, then texts).
      Component settings in it (``generator``, ``encoder``, ``device``) and its ``target``/``target_text``
      are not used here: the components and targets are given.
    - ``init``: b's start ``(num_ws, w_dim)`` or ``(1, num_ws, w_dim)``, ``"random"``, ``"zeros"``, a latent
      file, or None (the config's ``init``).
    - ``heldout``: held-out latents, a count, a file, or None (the config's ``heldout``; count 0 skips it).
    - ``callback(event)``: called after every step with a :class:`StepEvent`.
    """
    return TransferOptimizer(
        generator, encoder, target, sources, config, init, heldout=heldout, callback=callback, texts=texts
    ).run()
