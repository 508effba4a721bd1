"""``essence eval``: judge run folders (ours and the blends) on held-out sources with registered metrics.

For each run: draw the held-out sources its settings name (count, seed, truncation, or a latent file),
re-apply the run's method to them (``G(w + alpha b)`` for a direction, the blend for a baseline), render
sources and results once, then call every metric: encoder-based ones once per judging encoder (the run's
own and, to avoid grading its own homework, a second one), the others once. A value a metric cannot define
(the consistency of edits that are zero) is None: ``null`` in JSON, ``n/a`` in tables, never a number.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from pydantic import Field

from essence.core.config import MAX_IMAGES, ComponentSpec, Strict, build_config
from essence.core.devices import resolve_device
from essence.core.errors import ConfigError, EssenceError
from essence.method.rundir import check_latent_files, component_config
from essence.method.runconfig import MAX_ALPHA

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from essence.method.artifacts import Direction
    from essence.core.interfaces import MetricContext

#: Held-out sources when a run's own count is 0 (its check was off).
DEFAULT_HELDOUT = 8


class EvalHeldout(Strict):
    count: Union[int, None] = Field(None, ge=1, le=MAX_IMAGES, description="Default: the run's held-out count (8 when it had none).")
    seed: Union[int, None] = Field(None, description="Default: the run's held-out seed.")
    alpha: Union[float, None] = Field(
        None, ge=-MAX_ALPHA, le=MAX_ALPHA,
        description="Strength of a direction; default: its apply_alpha (a preset's), else the run's held-out alpha.",
    )


class EvalConfig(Strict):
    """How ``essence eval`` judges: the second encoder, held-out overrides, which metrics."""

    encoder: Union[ComponentSpec, None] = Field(None, description="A second, judging encoder besides each run's own.")
    heldout: EvalHeldout = Field(default_factory=EvalHeldout)
    metrics: Union[list[str], None] = Field(None, description="Metric names; default: every registered metric.")
    device: str = "auto"
    chunk: int = Field(8, ge=1, description="Most images per pass.")


def build_eval_config(options: Mapping[str, Any], sets: Sequence[str] = ()) -> EvalConfig:
    return build_config(EvalConfig, options, sets=sets, what="eval settings")


# -- run folders -----------------------------------------------------------------------------------


@dataclass
class RunFolder:
    """What ``essence eval`` needs from a run folder, whichever method wrote it."""

    path: Path
    method: str  # essence, stylegan-blend, clip-blend, gatys
    config: Any  # RunConfig or BlendConfig
    generator: ComponentSpec
    encoder: ComponentSpec
    targets: list[Image.Image]
    heldout_count: int
    heldout_seed: int
    heldout_truncation: float
    heldout_latents: str | None
    alpha: float | None = None
    direction: Direction | None = None
    status: str = "completed"


def _here(spec: ComponentSpec) -> ComponentSpec:
    """A run's component without the device it ran on: ``essence eval --device`` decides."""
    return ComponentSpec(name=spec.name, config={k: v for k, v in spec.config.items() if k != "device"})


def open_run(path: str | Path) -> RunFolder:
    """Read a run folder written by ``essence run`` or ``essence blend`` (no model is built)."""
    from essence.workflows.blend import read_blend_config, target_images

    p = Path(path)
    if not (p / "config.json").is_file():
        raise EssenceError(f"{p} is not a run folder (it has no config.json): give folders written by essence run or blend.")
    from essence.method.rundir import read_run_json, read_run_status

    data = read_run_json(p / "config.json")  # a run folder may come from anyone: checked like options
    status = read_run_status(p) or "unknown"  # no metrics.json: judge the run all the same
    if isinstance(data, dict) and data.get("kind") == "blend":
        cfg = read_blend_config(p)
        h = cfg.heldout
        return RunFolder(
            p, cfg.label, cfg, _here(cfg.generator), _here(cfg.encoder), target_images(p, cfg.target),
            h.count, cfg.heldout_seed, h.truncation, h.latents, status=status,
        )
    from essence.method.artifacts import load_direction
    from essence.method.runconfig import validate_run_config

    if not (p / "direction.safetensors").is_file():
        raise EssenceError(f"{p} has no direction.safetensors: is it a finished `essence run` folder?")
    try:
        cfg = validate_run_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{p / 'config.json'}: {exc}") from None
    h = cfg.heldout
    direction = load_direction(p / "direction.safetensors")
    alpha = direction.apply_alpha or cfg.apply_alpha or h.alpha  # the strength the run says to apply it with
    return RunFolder(
        p, "essence", cfg, _here(cfg.generator), _here(cfg.encoder),
        target_images(p, cfg.target) if cfg.target else [],
        h.count, cfg.heldout_seed, h.truncation, h.latents, alpha=alpha,
        direction=direction, status=status,
    )


class Components:
    """Generators and encoders built once per (name, config), so judging several runs builds each once."""

    def __init__(self, device: str) -> None:
        self.device = resolve_device(device)
        self._built: dict[str, Any] = {}

    def validate(self, kind: str, spec: ComponentSpec) -> dict[str, Any]:
        from essence.core.registry import get_registry

        return component_config(get_registry().get(kind, spec.name), spec.config, self.device)

    def get(self, kind: str, spec: ComponentSpec) -> Any:
        from essence.core.registry import get_registry

        config = self.validate(kind, spec)
        key = json.dumps([kind, spec.name, config], sort_keys=True, default=str)
        if key not in self._built:
            self._built[key] = get_registry().create(kind, spec.name, **config)
        return self._built[key]


def encoder_label(spec: ComponentSpec) -> str:
    if not spec.config:
        return spec.name
    return f"{spec.name} ({', '.join(f'{k}={v}' for k, v in sorted(spec.config.items()))})"


# -- editing held-out sources ----------------------------------------------------------------------


def heldout_settings(run: RunFolder, config: EvalConfig) -> dict[str, Any]:
    """The held-out sources and strength to judge ``run`` on: the run's, with ``config``'s overrides."""
    h = config.heldout
    use_file = run.heldout_latents is not None and h.count is None and h.seed is None
    return {
        "count": h.count or run.heldout_count or DEFAULT_HELDOUT,
        "seed": run.heldout_seed if h.seed is None else h.seed,
        "truncation": run.heldout_truncation,
        "latents": run.heldout_latents if use_file else None,
        "alpha": (h.alpha if h.alpha is not None else run.alpha) if run.method == "essence" else None,
    }


def heldout_latents(generator: Any, settings: Mapping[str, Any]) -> torch.Tensor:
    from essence.method.artifacts import load_latents

    if settings["latents"]:
        return load_latents(settings["latents"], num_ws=generator.num_ws, w_dim=generator.w_dim, what="Held-out latent file")
    return generator.sample_ws(settings["count"], seed=settings["seed"], truncation=settings["truncation"]).cpu()


def edit_sources(
    run: RunFolder, generator: Any, encoder: Any, ws: torch.Tensor, alpha: float | None, chunk: int
) -> torch.Tensor:
    """The run's method applied to new sources ``ws``."""
    from essence.workflows.blend import clip_blend, load_target_latent, stylegan_blend
    from essence.method.engine import embed_target

    if run.method == "essence":
        assert run.direction is not None
        run.direction.check_fits(generator, source=f"The direction of {run.path}")
        return ws + (1.0 if alpha is None else alpha) * run.direction.b.to(ws)[None]
    cfg = run.config
    if run.method == "stylegan-blend":
        latent = run.path / "target_latent.safetensors"
        if not latent.is_file():
            raise EssenceError(f"{run.path} has no target_latent.safetensors: the StyleGAN blend cannot be re-applied.")
        return stylegan_blend(ws, load_target_latent(str(latent), generator).cpu(), cfg.weight)
    if run.method == "clip-blend":
        target = embed_target(encoder, run.targets).to(generator.device)
        results, _ = clip_blend(generator, encoder, target, ws, steps=cfg.steps, lr=cfg.lr, weight=cfg.weight, chunk=cfg.chunk)
        return results.cpu()
    raise EssenceError(f"{run.path}: unknown method {run.method!r}.")


def gatys_results(run: RunFolder, components: Components, source_images: torch.Tensor) -> torch.Tensor:
    """The Gatys baseline of a blend folder re-applied to rendered held-out source images."""
    from essence.workflows.blend import gatys_images

    cfg = run.config
    features = components.get("features", cfg.features)
    from essence.core.interfaces import module_device

    device = module_device(features, source_images.device)
    images, _ = gatys_images(cfg, features, source_images.to(device), run.targets)
    return images.to(source_images.device)


# -- metrics ---------------------------------------------------------------------------------------


def selected_metrics(names: Sequence[str] | None) -> list[tuple[str, Any, Any]]:
    """(name, metric, registration) for the named metrics, or every registered one."""
    from essence.core.registry import get_registry

    registry = get_registry()
    regs = [registry.get("metric", n) for n in names] if names else registry.list("metric")
    if not regs:
        raise EssenceError("No metric is registered: is the built-in metrics plugin left out?")
    return [(r.name, r.build(), r) for r in regs]


def _clean(value: Any, name: str, plugin: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # a 0-d tensor or numpy scalar
        except (TypeError, ValueError):
            raise EssenceError(
                f"Metric {name!r} (plugin {plugin!r}) returned {type(value).__name__}, not a number or None."
            ) from None
    value = float(value)
    return value if math.isfinite(value) else None


def compute_metrics(
    metrics: Sequence[tuple[str, Any, Any]],
    ctx: MetricContext,
    encoders: Sequence[tuple[str, str, Any]],
) -> list[dict[str, Any]]:
    """One record per metric (and per encoder for encoder-based metrics): its value, which way is better,
    and (only for metrics that ask for one) ``baseline``, the value on the unedited sources.
    ``encoders``: (label, role, encoder) with role ``run`` (the run's own) or ``judge``."""
    records = []
    for name, metric, reg in metrics:
        uses_encoder = getattr(metric, "uses_encoder", True)
        judges = list(encoders) if uses_encoder else [(None, None, None)]
        for label, role, enc in judges:
            c = dataclasses.replace(ctx, encoder=enc, encoder_name=label)
            record = {
                "metric": name,
                "encoder": label,
                "role": role,
                "value": _clean(metric(c), name, reg.plugin),
                "higher_is_better": getattr(metric, "higher_is_better", None),
            }
            if getattr(metric, "baseline", False):
                unedited = dataclasses.replace(c, results=c.sources, result_ws=c.source_ws)
                record["baseline"] = _clean(metric(unedited), name, reg.plugin)
            records.append(record)
    return records


# -- evaluating runs -------------------------------------------------------------------------------


def evaluate_run(
    run: RunFolder, config: EvalConfig, components: Components, metrics: Sequence[tuple[str, Any, Any]]
) -> dict[str, Any]:
    from essence.core.interfaces import MetricContext
    from essence.method.engine import Renderer

    started = time.perf_counter()
    settings = heldout_settings(run, config)
    generator = components.get("generator", run.generator)
    own = components.get("encoder", run.encoder)
    encoders = [(encoder_label(run.encoder), "run", own)]
    if config.encoder is not None:
        judge_label = encoder_label(config.encoder)
        if judge_label != encoders[0][0]:
            encoders.append((judge_label, "judge", components.get("encoder", config.encoder)))
    ws = heldout_latents(generator, settings)
    settings["count"] = int(ws.shape[0])  # a latent file decides its own count
    renderer = Renderer(generator, chunk=config.chunk)
    source_images = renderer.images(ws)
    if run.method == "gatys":  # pixels: the method edits the rendered sources, there are no result latents
        results = None
        result_images = gatys_results(run, components, source_images)
    else:
        results = edit_sources(run, generator, own, ws, settings["alpha"], config.chunk)
        result_images = renderer.images(results)
    ctx = MetricContext(
        sources=source_images,
        results=result_images,
        targets=run.targets,
        target_texts=list(getattr(run.config, "target_text", [])),
        source_ws=ws,
        result_ws=results,
        method=run.method,
        chunk=config.chunk,
        extras={"run": str(run.path), "generator": run.generator.name},
    )
    records = compute_metrics(metrics, ctx, encoders)
    return {
        "run": str(run.path),
        "method": run.method,
        "status": run.status,
        "generator": run.generator.name,
        "encoder": encoders[0][0],
        "heldout": settings,
        "metrics": records,
        "seconds": time.perf_counter() - started,
    }


def evaluate_runs(
    paths: Sequence[str | Path], config: EvalConfig, judged: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Judge every run folder; all inputs (folders, names, options) are checked before any model is built.
    ``judged(done, total)`` follows the runs."""
    runs = [open_run(p) for p in paths]
    if not runs:
        raise EssenceError("Give at least one run folder.")
    components = Components(config.device)
    metrics = selected_metrics(config.metrics)
    for run in runs:
        components.validate("generator", run.generator)
        components.validate("encoder", run.encoder)
        if run.method == "gatys":
            components.validate("features", run.config.features)
        if heldout_settings(run, config)["latents"]:
            check_latent_files([(run.heldout_latents, "Held-out latent file")])
    if config.encoder is not None:
        components.validate("encoder", config.encoder)
    reports = []
    for run in runs:
        if judged is not None:
            judged(len(reports), len(runs))
        reports.append(evaluate_run(run, config, components, metrics))
    if judged is not None:
        judged(len(reports), len(runs))
    return {"judge": None if config.encoder is None else encoder_label(config.encoder), "runs": reports}


# -- presenting ------------------------------------------------------------------------------------


def format_value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def table_cells(
    report: Mapping[str, Any], labels: Sequence[str] | None = None
) -> tuple[str, list[str], list[list[str]]]:
    """Title, column headers and rows of the metrics table: one row per metric and judging encoder, one
    column per run; undefined values are ``n/a``."""
    runs = report["runs"]
    labels = list(labels) if labels is not None else [_short(r["run"]) for r in runs]
    title = "essence eval: held-out sources (↑ higher is better, ↓ lower is better)"
    if report.get("judge") is None:
        title += " (judged by each run's own encoder only: pass --encoder for an independent judge)"
    headers = ["metric", "encoder"]
    for label, run in zip(labels, runs):
        method = "" if label == run["method"] else f"{run['method']}, "
        headers.append(f"{label}\n{method}n={run['heldout']['count']}")
    keys: list[tuple[str, str | None, str | None]] = []
    for run in runs:
        for rec in run["metrics"]:
            if _key(rec) not in keys:
                keys.append(_key(rec))
    rows = []
    for metric, role, judge in keys:
        arrow = ""
        cells = []
        for run in runs:
            rec = next((r for r in run["metrics"] if _key(r) == (metric, role, judge)), None)
            if rec is None:
                cells.append("")
                continue
            arrow = {True: " ↑", False: " ↓"}.get(rec["higher_is_better"], arrow)
            cell = format_value(rec["value"])
            if "baseline" in rec:
                cell += f" (sources {format_value(rec['baseline'])})"
            cells.append(cell)
        where = {"run": "run's own", "judge": judge, None: "-"}[role]
        rows.append([metric + arrow, str(where), *cells])
    return title, headers, rows


def metrics_table(report: Mapping[str, Any], labels: Sequence[str] | None = None) -> Any:
    """The metrics table for the terminal (rich)."""
    from rich.table import Table

    title, headers, rows = table_cells(report, labels)
    table = Table(title=title, title_justify="left")
    for k, header in enumerate(headers):
        table.add_column(header, justify="right" if k >= 2 else "left")
    for row in rows:
        table.add_row(*row)
    return table


def metrics_markdown(report: Mapping[str, Any], labels: Sequence[str] | None = None) -> str:
    """The metrics table as Markdown, for a file beside a figure."""
    title, headers, rows = table_cells(report, labels)
    lines = [f"{title}", "", "| " + " | ".join(h.replace("\n", " (") + (")" if "\n" in h else "") for h in headers) + " |"]
    lines.append("|" + "---|" * len(headers))
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _key(rec: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """Rows of the table: a metric with the run's own encoder (whichever it is), with a judge, or alone."""
    return rec["metric"], rec["role"], rec["encoder"] if rec["role"] == "judge" else None


def _short(path: str) -> str:
    p = Path(path)
    return p.name or str(p)
