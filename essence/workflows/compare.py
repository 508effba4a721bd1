"""``essence compare``: ours and the three baselines on the same target and sources, the paper's Figure 1, metrics.

The run config (``essence run``'s) decides the generator, encoder, target, sources, seed and held-out
sources; the baselines take the same, so the four methods are judged on identical held-out sources. The
output folder holds the four run folders (``essence/``, ``stylegan-blend/``, ``clip-blend/``, ``gatys/``),
``figure.png`` (target at the left, sources on top, one row per method), ``metrics.json`` (the
``essence eval`` report of the four) and ``metrics.md`` (its table). Gatys's feature network is
``blend.features`` (default ``vgg19``; ``--features`` on the command line).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from essence.core.errors import EssenceError

#: (sub-folder, row label of the figure) in the paper's order.
METHODS = (("essence", "ours"), ("stylegan-blend", "StyleGAN blend"), ("clip-blend", "CLIP blend"), ("gatys", "Gatys"))
#: Sub-folder -> ``essence blend --method``.
BASELINES = {"stylegan-blend": "stylegan", "clip-blend": "clip", "gatys": "gatys"}
COMPARE_FILES = ("figure.png", "metrics.json", "metrics.md")


def split_sets(items: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """``--set`` items for the run, the blends (``blend.KEY``) and the judging encoder (``judge.KEY``)."""
    run, blend, judge = [], [], []
    for item in items:
        key = item.partition("=")[0].strip()
        if key.startswith("blend."):
            blend.append(item[item.index("blend.") + len("blend.") :])
        elif key.startswith("judge."):
            judge.append("encoder." + item[item.index("judge.") + len("judge.") :])
        else:
            run.append(item)
    return run, blend, judge


def blend_settings(run_config: Any, method: str, target_latent: str | None, overrides: Mapping[str, Any]) -> Any:
    """A BlendConfig with the run's generator, encoder, target, sources, seed and held-out sources."""
    from essence.core.config import deep_merge
    from essence.workflows.blend import validate_blend_config

    h = run_config.heldout
    data: dict[str, Any] = {
        "method": method,
        "generator": run_config.generator.model_dump(mode="json"),
        "encoder": run_config.encoder.model_dump(mode="json"),
        "target": list(run_config.target),
        "target_latent": target_latent,
        "sources": run_config.sources.model_dump(mode="json"),
        "inversion": run_config.inversion.model_dump(mode="json"),
        "seed": run_config.seed,
        "device": run_config.device,
        "chunk": run_config.chunk,
        "heldout": {"count": h.count, "seed": h.seed, "truncation": h.truncation, "latents": h.latents},
    }
    return validate_blend_config(deep_merge(data, dict(overrides)))


@dataclass
class CompareOutcome:
    out: Path
    status: str  # completed, or the essence run's status when it did not complete
    report: dict[str, Any] | None
    figure: Path | None
    folders: dict[str, Path]


def execute_compare(
    run_config: Any,
    *,
    out: str | Path,
    target_latent: str | None = None,
    blend_overrides: Mapping[str, Any] | None = None,
    eval_config: Any = None,
    overwrite: bool = False,
    run_callbacks: Mapping[str, Callable[..., Any]] | None = None,
    notify: Callable[[str], None] | None = None,
    progress: Callable[[str, int, int, float], None] | None = None,
    judged: Callable[[int, int], None] | None = None,
) -> CompareOutcome:
    """Run ours, the StyleGAN blend, the CLIP blend and Gatys, then the figure and the metrics.

    Every setting of all four (and of the judge) is validated before the first model is built.
    ``run_callbacks``: ``callback``/``on_start``/``notify`` passed to :func:`essence.method.runner.execute_run`;
    ``judged(done, total)`` follows the judging of the four.
    """
    from essence.core.files import write_json, write_text
    from essence.method.rundir import check_latent_files, prepare_out
    from essence.method.runner import execute_run
    from essence.workflows.blend import execute_blend
    from essence.workflows.evaluate import Components, EvalConfig, evaluate_runs, metrics_markdown, selected_metrics

    blend_overrides = dict(blend_overrides or {})
    eval_config = eval_config or EvalConfig()
    if not run_config.target:
        raise EssenceError("No target image: pass --target FILE.")
    blends = {name: blend_settings(run_config, m, target_latent, blend_overrides) for name, m in BASELINES.items()}
    check_latent_files([(target_latent, "Target latent file")])
    components = Components(run_config.device)
    components.validate("generator", run_config.generator)
    components.validate("encoder", run_config.encoder)
    components.validate("features", blends["gatys"].features)
    if eval_config.encoder is not None:
        components.validate("encoder", eval_config.encoder)
    selected_metrics(eval_config.metrics)
    root = prepare_out(Path(out), COMPARE_FILES, overwrite=overwrite, what="a comparison")
    folders = {name: root / name for name, _ in METHODS}

    if notify is not None:
        notify(f"1/{len(METHODS)} ours: essence run ({run_config.steps} steps x {run_config.restarts} restart(s))")
    outcome = execute_run(
        run_config.model_copy(update={"out": str(folders["essence"])}),
        overwrite=overwrite,
        handle_sigint=True,
        **dict(run_callbacks or {}),
    )
    if outcome.status == "interrupted":
        return CompareOutcome(root, outcome.status, None, None, folders)
    for k, name in enumerate(BASELINES, start=2):
        if notify is not None:
            notify(f"{k}/{len(METHODS)} {name}")
        execute_blend(blends[name], out=folders[name], overwrite=overwrite, notify=notify, progress=progress)

    report = evaluate_runs([folders[name] for name, _ in METHODS], eval_config, judged=judged)
    for run, (name, _) in zip(report["runs"], METHODS):
        run["label"] = name
    write_json(root / "metrics.json", report)
    write_text(root / "metrics.md", metrics_markdown(report, [name for name, _ in METHODS]))
    figure = write_figure(root, folders)
    return CompareOutcome(root, "completed", report, figure, folders)


def write_figure(root: Path, folders: Mapping[str, Path]) -> Path:
    """figure.png from the run folders' images (sources, targets and each method's results)."""
    from essence.core.images import load_image, save_image
    from essence.method.figures import comparison_figure, sheet_tile

    first = folders["essence"] / "images"
    sources = [load_image(p) for p in sorted(first.glob("source_[0-9][0-9].png"))]
    targets = [load_image(p) for p in sorted(first.glob("target_[0-9][0-9].png"))]
    rows = []
    for name, label in METHODS:
        results = [load_image(p) for p in sorted((folders[name] / "images").glob("result_[0-9][0-9].png"))]
        rows.append((label, results))
    tile = sheet_tile(sources[0].width) if sources else 96
    save_image(comparison_figure(targets, sources, rows, tile=tile), root / "figure.png")
    return root / "figure.png"
