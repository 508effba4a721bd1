"""The paper's baselines (section 5): blends of each source with the target, one per source.

- StyleGAN blend: the average of the source's and the target's latents, ``w + weight (w_t - w)``
  (weight 0.5 is the average). The target must be a latent: a latent file, or the target image aligned and
  inverted by the configured inverter (``inversion``; default: the generator's own, as for photos).
- CLIP blend: per source, optimise a latent (starting at the source's) so that its embedding matches
  the normalised average of the source's and the target's embeddings,
  ``normalise((1 - weight) C(G(w)) + weight C(I_t))``, by Adam on ``1 - cos``.
- Gatys style transfer (Gatys et al. 2016, the paper's third baseline): per source, the source image's
  pixels optimised (Adam, from the source image) so that the Gram matrices of a feature network's maps
  match the target's (style) while the maps of its content layers stay those of the source (content):
  ``style_weight * sum_l |Gram_l(x) - Gram_l(t)|^2 + content_weight * sum_l |F_l(x) - F_l(s)|^2``. The
  feature network is a registered ``features`` component: ``vgg19`` (torchvision's layout and ImageNet
  weights, as the paper) or, in the toy world, ``toy-clip-features``. Its results are pixels, not latents.

Neither finds a direction: each result is made for its own source. ``essence blend`` writes a run folder
like ``essence run``'s (config.json, metrics.json, sheet.png, images/, trace.csv and loss.png when something
was optimised) plus the latents of the sources and results; ``essence eval`` re-applies the method to
held-out sources.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from essence.core.config import (
    MAX_IMAGES,
    MAX_STEPS,
    ComponentSpec,
    Strict,
    build_config,
    deep_merge,
    expand_shorthands,
    validate_config,
)
from essence.core.devices import resolve_device
from essence.core.errors import EssenceError
from essence.method.runconfig import DEFAULT_COMPONENTS, DerivedSeeds, SourcesConfig
from essence.method.rundir import check_latent_files, component_config, default_out, prepare_out
from essence.method.photos import InversionSettings, check_inversion_settings, check_photos

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from essence.method.engine import Renderer

METHODS = {"stylegan": "stylegan-blend", "clip": "clip-blend", "gatys": "gatys"}
BLEND_FILES = (
    "config.json", "metrics.json", "sheet.png", "trace.csv", "loss.png",
    "sources.safetensors", "results.safetensors", "target_latent.safetensors",
)


class BlendHeldout(Strict):
    """Sources ``essence eval`` judges the method on (the same rule as a run's held-out sources)."""

    count: int = Field(8, ge=0, le=MAX_IMAGES)
    seed: Union[int, None] = Field(None, description="Default: seed + 1000000, as runs.")
    truncation: float = 0.7
    latents: Union[str, None] = None


class BlendConfig(DerivedSeeds, Strict):
    """Everything ``essence blend`` needs; ``config.json`` in a blend folder is this, validated."""

    method: Literal["stylegan", "clip", "gatys"]
    generator: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="stylegan2-ffhq"))
    encoder: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="clip-vitb32"))
    target: list[str] = Field(default_factory=list, description="Target image file(s).")
    target_latent: Union[str, None] = Field(None, description="The target's W+ latent: one (num_ws, w_dim).")
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    weight: float = Field(0.5, description="How far towards the target: 0.5 is the average the paper uses.")
    steps: int = Field(200, ge=1, le=MAX_STEPS, description="CLIP blend and Gatys: Adam steps per source.")
    lr: float = Field(0.05, gt=0, description="CLIP blend and Gatys (on pixels in [-1, 1]): Adam's learning rate (constant).")
    features: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(name="vgg19"), description="Gatys: the feature network (vgg19; toy-clip-features)."
    )
    style_weight: float = Field(1e4, ge=0, description="Gatys: weight of the Gram-matrix (style) term.")
    content_weight: float = Field(1.0, ge=0, description="Gatys: weight of the content term (maps of the source).")
    inversion: InversionSettings = Field(
        default_factory=InversionSettings, description="How the target image (StyleGAN blend) and source photos become latents."
    )
    heldout: BlendHeldout = Field(default_factory=BlendHeldout)
    seed: int = 0
    device: str = "auto"
    chunk: Union[int, None] = Field(None, ge=1, description="Most images per pass.")
    out: Union[str, None] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return deep_merge(DEFAULT_COMPONENTS, expand_shorthands(cls, data))

    @field_validator("target", mode="before")
    @classmethod
    def _one_target(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def label(self) -> str:
        return METHODS[self.method]


def validate_blend_config(data: Mapping[str, Any] | BlendConfig) -> BlendConfig:
    return validate_config(BlendConfig, data, "blend settings")


def build_blend_config(
    *layers: Mapping[str, Any] | None, file: str | Path | None = None, sets: Sequence[str] = ()
) -> BlendConfig:
    """file < layers < ``--set`` items, as :func:`essence.method.runconfig.build_run_config`."""
    return build_config(BlendConfig, *layers, file=file, sets=sets, what="blend settings")


# -- the two methods -------------------------------------------------------------------------------


def stylegan_blend(ws: torch.Tensor, target_ws: torch.Tensor, weight: float = 0.5) -> torch.Tensor:
    """``w + weight (w_t - w)`` for every source: the average of the latents at weight 0.5."""
    return ws + weight * (target_ws.to(ws).reshape(1, *ws.shape[1:]) - ws)


def mean_target(target_embeddings: torch.Tensor) -> torch.Tensor:
    """One unit target embedding ``(1, D)`` from ``(T, D)``."""
    import torch.nn.functional as F

    return F.normalize(F.normalize(target_embeddings.float(), dim=-1).mean(0, keepdim=True), dim=-1)


def clip_blend(
    generator: Any,
    encoder: Any,
    target_embedding: torch.Tensor,
    ws: torch.Tensor,
    *,
    steps: int = 200,
    lr: float = 0.05,
    weight: float = 0.5,
    chunk: int | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Per source, the latent (from the source's) whose embedding best matches the blend of embeddings.

    Sources are optimised together but independently (a sum of per-source losses, element-wise Adam);
    each keeps the latent with its lowest loss. Returns the results and one trace row per step.
    """
    import torch
    import torch.nn.functional as F

    device = generator.device
    ws = ws.detach().float().to(device)
    n = ws.shape[0]
    size = chunk or n
    parts = [slice(i, min(i + size, n)) for i in range(0, n, size)]
    target = mean_target(target_embedding).to(device)

    def embed(x: torch.Tensor) -> torch.Tensor:
        return F.normalize(encoder.embed(generator.synthesize(x)).float(), dim=-1)

    with torch.no_grad():
        sources = torch.cat([embed(ws[s]) for s in parts])
    mix = F.normalize((1 - weight) * sources + weight * target, dim=-1)
    w = ws.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    best, best_loss = ws.clone(), torch.full((n,), float("inf"), device=device)
    trace = []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        losses, transfer = [], []
        for s in parts:
            emb = embed(w[s])
            per_source = 1 - (emb * mix[s]).sum(-1)
            per_source.sum().backward()
            losses.append(per_source.detach())
            transfer.append((1 - emb.detach() @ target.T).reshape(-1))
        per = torch.cat(losses)
        better = per < best_loss
        best[better], best_loss[better] = w.detach()[better], per[better]
        value = float(per.mean())
        trace.append({"step": step, "lr": lr, "loss": value, "transfer": float(torch.cat(transfer).mean())})
        opt.step()
        if callback is not None:
            callback(step, value)
    return best, trace


def gram(maps: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``(n, c, c)`` of feature maps ``(n, c, h, w)``, normalised by ``c h w``."""
    n, c, h, w = maps.shape
    f = maps.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def gatys_transfer(
    features: Any,
    sources: torch.Tensor,
    target: torch.Tensor,
    *,
    steps: int = 200,
    lr: float = 0.05,
    style_weight: float = 1e4,
    content_weight: float = 1.0,
    chunk: int | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Gatys et al.'s style transfer of every source image ``(n, 3, H, W)`` in [-1, 1] towards the target
    image(s) ``(T, 3, H', W')`` (several targets: their Gram matrices averaged). Pixels start at the source's
    and stay in [-1, 1]; each source is optimised independently (a sum of per-source losses, element-wise
    Adam) and keeps its lowest-loss image. Returns the images ``(n, 3, H, W)`` and one trace row per step.
    """
    import torch

    style_at, content_at = tuple(features.style_layers), tuple(features.content_layers)
    sources = sources.detach().float()
    n = sources.shape[0]
    size = chunk or n
    parts = [slice(i, min(i + size, n)) for i in range(0, n, size)]
    with torch.no_grad():
        t_maps = features.features(target.float())
        t_grams = [gram(t_maps[i]).mean(0, keepdim=True) for i in style_at]
        s_content = [torch.cat([features.features(sources[s])[i] for s in parts]) for i in content_at]
    x = sources.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    best, best_loss = sources.clone(), torch.full((n,), float("inf"))
    trace = []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        losses, styles, contents = [], [], []
        for s in parts:
            maps = features.features(x[s])
            style = sum(((gram(maps[i]) - g) ** 2).flatten(1).sum(1) for i, g in zip(style_at, t_grams))
            content = sum(((maps[i] - c[s]) ** 2).flatten(1).mean(1) for i, c in zip(content_at, s_content))
            per_source = style_weight * style + content_weight * content
            per_source.sum().backward()
            losses.append(per_source.detach().cpu())
            styles.append(style.detach().cpu())
            contents.append(content.detach().cpu())
        per = torch.cat(losses)
        better = per < best_loss
        best[better.to(best.device)], best_loss[better] = x.detach()[better.to(x.device)], per[better]
        value = float(per.mean())
        trace.append({
            "step": step, "lr": lr, "loss": value,
            "style": float(torch.cat(styles).mean()), "content": float(torch.cat(contents).mean()),
        })
        opt.step()
        with torch.no_grad():
            x.clamp_(-1, 1)
        if callback is not None:
            callback(step, value)
    return best, trace


def image_tensor(images: Sequence[Image.Image], resolution: int, device: Any = "cpu") -> torch.Tensor:
    """PIL images -> ``(n, 3, R, R)`` in [-1, 1] (bicubic resize to the generator's resolution)."""
    import numpy as np
    import torch
    from PIL import Image as PILImage

    arrays = [np.asarray(im.convert("RGB").resize((resolution, resolution), PILImage.BICUBIC), dtype=np.float32) for im in images]
    return (torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1).to(device)


def gatys_images(cfg: BlendConfig, features: Any, source_images: torch.Tensor, targets: Sequence[Image.Image],
                 progress: Callable[[str, int, int, float], None] | None = None) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """The Gatys baseline on rendered source images with a config's settings."""
    target = image_tensor(targets, source_images.shape[-1], source_images.device)
    return gatys_transfer(
        features, source_images, target, steps=cfg.steps, lr=cfg.lr, style_weight=cfg.style_weight,
        content_weight=cfg.content_weight, chunk=cfg.chunk,
        callback=None if progress is None else (lambda i, v: progress("blend", i, cfg.steps, v)),
    )


# -- one blend run: prepare, run, write the folder ---------------------------------------------------


@dataclass
class PreparedBlend:
    """A blend's checked settings and output folder, before any model is built."""

    config: BlendConfig
    out: Path
    generator_config: dict[str, Any]
    encoder_config: dict[str, Any]
    targets: list[Image.Image]
    features_config: dict[str, Any] | None = None


@dataclass
class BlendResult:
    """What a blend computed: the sources, their results, the target's latent and how it was found.

    ``results`` are latents, except for Gatys, whose results are images (``result_images``; ``results`` None)."""

    sources: torch.Tensor
    results: torch.Tensor | None
    target_ws: torch.Tensor | None
    targets: list[Image.Image]
    target_embedding: torch.Tensor
    inversion: dict[str, Any] | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)
    result_images: torch.Tensor | None = None


@dataclass
class BlendOutcome:
    out: Path
    config: BlendConfig
    metrics: dict[str, Any]


def blend_sources(cfg: BlendConfig, generator: Any, progress: Callable[[str, int, int, float], None] | None) -> torch.Tensor:
    """The sources: random, a latent file's, or photos aligned and inverted; on the generator's device."""
    from essence.method.artifacts import source_latents
    from essence.method.photos import invert_photos

    if not cfg.sources.photos:
        return source_latents(generator, cfg.sources, cfg.sources_seed).to(generator.device)
    follow = None if progress is None else (lambda i, n, v: progress("inversion", i, n, v))
    inv = invert_photos(cfg.sources.photos, generator, cfg.generator.name, cfg.inversion, device=generator.device, progress=follow)
    inv.warn()
    return inv.ws.to(generator.device)


def latent_files(cfg: BlendConfig) -> list[tuple[str | None, str]]:
    return [
        (cfg.target_latent, "Target latent file"),
        (cfg.sources.latents, "Sources latent file"),
        (cfg.heldout.latents, "Held-out latent file"),
    ]


def load_target_latent(path: str, generator: Any) -> torch.Tensor:
    """The target's W+ latent ``(1, num_ws, w_dim)`` from a latent file holding exactly one."""
    from essence.method.artifacts import load_latents

    ws = load_latents(path, num_ws=generator.num_ws, w_dim=generator.w_dim, what="Target latent file")
    if ws.shape[0] != 1:
        raise EssenceError(f"Target latent file {path} holds {ws.shape[0]} latents; give one (num_ws, w_dim).")
    return ws.to(generator.device)


def paper_report(target: torch.Tensor, sources: torch.Tensor, results: torch.Tensor) -> dict[str, Any]:
    """The paper's transfer and consistency (the registered loss terms) of results on their sources, and
    the transfer of the sources themselves."""
    import torch

    from essence.core.interfaces import LossContext
    from essence.core.registry import get_loss

    transfer, consistency = get_loss("transfer"), get_loss("consistency")
    with torch.no_grad():
        ctx = LossContext(target=target, sources=sources, shifted=results)
        unedited = LossContext(target=target, sources=sources, shifted=sources)
        return {
            "count": int(sources.shape[0]),
            "transfer": float(transfer(ctx)),
            "consistency": float(consistency(ctx)),
            "transfer_unedited": float(transfer(unedited)),
        }


def prepare_blend(
    config: BlendConfig | Mapping[str, Any], *, out: str | Path | None = None, overwrite: bool = False
) -> PreparedBlend:
    """Every check that needs no model: components, targets, latent files, the output folder."""
    from essence.core.images import load_image
    from essence.core.registry import get_registry

    cfg = validate_blend_config(config)
    registry = get_registry()
    device = resolve_device(cfg.device)
    gen_config = component_config(registry.get("generator", cfg.generator.name), cfg.generator.config, device)
    enc_config = component_config(registry.get("encoder", cfg.encoder.name), cfg.encoder.config, device)
    if not cfg.target and not cfg.target_latent:
        raise EssenceError("No target: pass --target IMAGE or --target-latent FILE.")
    features_config = None
    if cfg.method == "gatys":
        features_config = component_config(registry.get("features", cfg.features.name), cfg.features.config, device)
    targets = [load_image(t) for t in cfg.target]
    check_latent_files(latent_files(cfg))
    if cfg.sources.photos or (cfg.method == "stylegan" and not cfg.target_latent):
        check_inversion_settings(cfg.inversion, registry.get("generator", cfg.generator.name), gen_config)
    check_photos(cfg.sources.photos)
    stem = Path(cfg.target[0]).stem if cfg.target else Path(str(cfg.target_latent)).stem
    run_dir = Path(out) if out is not None else (Path(cfg.out) if cfg.out else default_out(stem, kind=cfg.label))
    run_dir = prepare_out(run_dir, BLEND_FILES, overwrite=overwrite, what="a run")
    cfg = cfg.model_copy(update={"out": str(run_dir)})
    if cfg.method == "gatys" and not targets:
        raise EssenceError("Gatys style transfer needs a target image: pass --target IMAGE (a latent is not a style).")
    return PreparedBlend(cfg, run_dir, gen_config, enc_config, targets, features_config)


def run_blend(
    p: PreparedBlend,
    renderer: Renderer,
    *,
    notify: Callable[[str], None] | None = None,
    progress: Callable[[str, int, int, float], None] | None = None,
    features: Any = None,
) -> BlendResult:
    """The blend itself: the sources, the target's latent (inverting the target when needed), the results.
    ``features``: the built feature network (Gatys only)."""
    from essence.core.images import to_pil
    from essence.method.engine import embed_target
    from essence.method.photos import invert_photos

    cfg, generator, encoder = p.config, renderer.generator, renderer.encoder
    ws = blend_sources(cfg, generator, progress)
    trace: list[dict[str, Any]] = []
    inversion = None
    targets = list(p.targets)
    target_ws = load_target_latent(cfg.target_latent, generator) if cfg.target_latent else None
    if cfg.method == "stylegan" and target_ws is None:
        if notify is not None:
            notify("Inverting the target image: the StyleGAN blend needs a latent.")

        def follow(step: int, steps: int, loss: float) -> None:
            trace.append({"stage": "inversion", "step": step, "loss": loss})
            if progress is not None:
                progress("inversion", step, steps, loss)

        inv = invert_photos(
            [(cfg.target[0], targets[0])], generator, cfg.generator.name, cfg.inversion,
            device=generator.device, progress=follow, what="target",
        )
        target_ws = inv.ws[:1].to(generator.device)
        inversion = {"aligner": inv.aligner, "inverter": inv.inverter, "final_loss": trace[-1]["loss"] if trace else None}
    if not targets:  # only a latent: the target is its image
        assert target_ws is not None
        targets = to_pil(renderer.images(target_ws))
    target_embedding = embed_target(encoder, targets).to(generator.device)
    if cfg.method == "gatys":
        if features is None:
            raise EssenceError("Gatys style transfer needs its feature network (run_blend(..., features=...)).")
        images, blend_trace = gatys_images(cfg, features, renderer.images(ws), targets, progress)
        trace = [{"stage": "blend", **row} for row in blend_trace]
        return BlendResult(ws, None, target_ws, targets, target_embedding, inversion, trace, result_images=images)
    if cfg.method == "stylegan":
        assert target_ws is not None
        results = stylegan_blend(ws, target_ws, cfg.weight)
    else:
        results, blend_trace = clip_blend(
            generator, encoder, target_embedding, ws, steps=cfg.steps, lr=cfg.lr, weight=cfg.weight, chunk=cfg.chunk,
            callback=None if progress is None else (lambda i, v: progress("blend", i, cfg.steps, v)),
        )
        trace = [{"stage": "blend", **row} for row in blend_trace]
    return BlendResult(ws, results, target_ws, targets, target_embedding, inversion, trace)


def write_blend_folder(
    p: PreparedBlend, renderer: Renderer, result: BlendResult, *, names: tuple[str, str], seconds: float
) -> dict[str, Any]:
    """The latents, images, sheet, trace and metrics.json of a finished blend; returns the metrics."""
    from essence.core.files import write_json
    from essence.core.images import save_image, to_pil
    from essence.method.artifacts import save_latents, write_trace_csv
    from essence.method.figures import contact_sheet, loss_plot, sheet_tile

    cfg, out, generator, encoder = p.config, p.out, renderer.generator, renderer.encoder
    files = ["config.json", "metrics.json", "sheet.png", "sources.safetensors", "results.safetensors"]
    meta = {"format": "essence-latents", "method": cfg.label, "generator": names[0]}
    if result.target_ws is not None:
        save_latents(out / "target_latent.safetensors", result.target_ws, metadata={**meta, "role": "target"})
        files.append("target_latent.safetensors")
    save_latents(out / "sources.safetensors", result.sources, metadata={**meta, "role": "sources"})
    source_images = renderer.images(result.sources)
    if result.results is not None:
        save_latents(out / "results.safetensors", result.results, metadata={**meta, "role": "results"})
        result_images = renderer.images(result.results)
    else:  # Gatys: pixels
        files.remove("results.safetensors")
        assert result.result_images is not None
        result_images = result.result_images.to(source_images)
    report = paper_report(
        result.target_embedding.float().cpu(),
        renderer.embed_images(source_images).cpu(),
        renderer.embed_images(result_images).cpu(),
    )

    (out / "images").mkdir(exist_ok=True)
    sources_pil, results_pil = to_pil(source_images), to_pil(result_images)
    for i, (s, r) in enumerate(zip(sources_pil, results_pil)):
        save_image(s, out / "images" / f"source_{i:02d}.png")
        save_image(r, out / "images" / f"result_{i:02d}.png")
        files += [f"images/source_{i:02d}.png", f"images/result_{i:02d}.png"]
    for i, t in enumerate(result.targets):
        save_image(t, out / "images" / f"target_{i:02d}.png")
        files.append(f"images/target_{i:02d}.png")
    inverted = None if result.target_ws is None else to_pil(renderer.images(result.target_ws))[0]
    if result.inversion is not None:
        assert inverted is not None
        save_image(inverted, out / "images" / "target_inverted.png")
        files.append("images/target_inverted.png")
    # The StyleGAN blend mixes G(w_t), not the photo: the sheet shows it beside the sources.
    label = "inverted target" if result.inversion is not None else "G(target latent)"
    sheet = contact_sheet(
        result.targets, sources_pil, results_pil, tile=sheet_tile(generator.resolution), inverted=inverted,
        inverted_label=label,
    )
    save_image(sheet, out / "sheet.png")
    trace = result.trace
    if trace:
        write_trace_csv(out / "trace.csv", trace)
        title = f"{cfg.label}: {trace[0]['stage']} loss"
        save_image(loss_plot({"loss": [r["loss"] for r in trace]}, title=title), out / "loss.png")
        files += ["trace.csv", "loss.png"]
    metrics = {
        "status": "completed",
        "method": cfg.label,
        "generator": names[0],
        "encoder": names[1],
        "generator_weights_id": getattr(generator, "weights_id", "unknown"),
        "encoder_weights_id": getattr(encoder, "weights_id", "unknown"),
        "device": str(generator.device),
        "sources": int(result.sources.shape[0]),
        "report": report,
        "inversion": result.inversion,
        "final_loss": trace[-1]["loss"] if trace else None,
        "seconds": seconds,
        "files": sorted(files),
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def execute_blend(
    config: BlendConfig | Mapping[str, Any],
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    notify: Callable[[str], None] | None = None,
    progress: Callable[[str, int, int, float], None] | None = None,
) -> BlendOutcome:
    """Run a blend baseline end to end and write its folder. Inputs are checked before any model is built.

    ``progress(stage, step, steps, loss)`` is called after every optimisation step (stage ``inversion`` or
    ``blend``); ``notify`` receives one-line messages.
    """
    from essence.core.files import write_json
    from essence.core.registry import get_registry
    from essence.method.engine import Renderer

    p = prepare_blend(config, out=out, overwrite=overwrite)
    cfg = p.config
    started = time.perf_counter()
    registry = get_registry()
    gen_reg, enc_reg = registry.get("generator", cfg.generator.name), registry.get("encoder", cfg.encoder.name)
    generator = gen_reg.build(**p.generator_config)
    encoder = enc_reg.build(**p.encoder_config)
    write_json(p.out / "config.json", {"kind": "blend", **cfg.model_dump(mode="json")})
    check_latent_files([(cfg.heldout.latents, "Held-out latent file")], generator)
    renderer = Renderer(generator, encoder, chunk=cfg.chunk or 8)
    features = None
    if cfg.method == "gatys":
        assert p.features_config is not None
        features = registry.get("features", cfg.features.name).build(**p.features_config)
    result = run_blend(p, renderer, notify=notify, progress=progress, features=features)
    metrics = write_blend_folder(
        p, renderer, result, names=(gen_reg.name, enc_reg.name), seconds=time.perf_counter() - started
    )
    return BlendOutcome(p.out, cfg, metrics)


def read_blend_config(run_dir: Path) -> BlendConfig:
    from essence.core.errors import ConfigError
    from essence.method.rundir import read_run_json

    data = read_run_json(run_dir / "config.json")
    data.pop("kind", None)
    try:
        return validate_blend_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{run_dir / 'config.json'}: {exc}") from None


def target_images(run_dir: Path, paths: Sequence[str]) -> list[Image.Image]:
    """A run's target images: the copies in its folder, else the files its config names."""
    from essence.core.images import load_image

    copies = sorted((run_dir / "images").glob("target_[0-9][0-9].png"))
    if copies:
        return [load_image(p) for p in copies]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing or not paths:
        raise EssenceError(
            f"{run_dir} has no copy of its target images and {', '.join(missing) or 'no target file'} cannot be found: "
            "run `essence eval` from the folder the run was started in."
        )
    return [load_image(p) for p in paths]
