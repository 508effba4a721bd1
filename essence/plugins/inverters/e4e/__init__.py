"""e4e and pSp inverters: feed-forward encoders from an aligned face photo to StyleGAN2 W+ latents.

``model`` holds the networks, ``checkpoint`` reads the official ``e4e_ffhq_encode.pt`` /
``psp_ffhq_encode.pt`` files safely and converts them to safetensors, ``assets.json`` lists the known
weight files. Heavy imports stay inside those modules: importing this package loads no torch.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field

import essence

ASSETS = Path(__file__).with_name("assets.json")
#: A few-hundred-kilobyte encoder of the same architecture (every layer kind), for the contract test.
TINY = {"weights": "random", "arch": {"num_ws": 8, "units": [1, 1, 1, 1], "widths": [16, 24, 32, 48]}}


class E4EConfig(essence.ComponentConfig):
    weights: str = Field(
        "e4e-ffhq", description="An asset name (essence weights list), a checkpoint file (official .pt or "
        "converted .safetensors), or 'random' (seeded random weights, for tests)."
    )
    arch: Optional[dict[str, Any]] = Field(
        None, description="With weights='random': the encoder's shape (num_ws, units, widths); default the official."
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps ...")


def build(config: E4EConfig, kind: Literal["e4e", "psp"] = "e4e") -> Any:
    """Feed-forward encoder from an aligned face photo to StyleGAN2 FFHQ W+ latents (e4e or pSp)."""
    import torch

    from essence.plugins.inverters.e4e.checkpoint import load_inverter
    from essence.plugins.inverters.e4e.model import E4EInverter, EncoderArch, build_encoder

    device = essence.resolve_device(config.device)
    if config.weights == "random":
        try:
            arch = EncoderArch(**(config.arch or {}))
        except (TypeError, ValueError) as exc:
            raise essence.ConfigError(f"Invalid arch for the {kind} inverter: {exc}") from None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            encoder = build_encoder(kind, arch)
        return E4EInverter(encoder, torch.zeros(arch.num_ws, arch.w_dim), kind=kind).to(device)
    if config.arch is not None:
        raise essence.ConfigError("arch is only for weights='random': a checkpoint says its own architecture.")
    path = essence.resolve_weights(config.weights, kind="inverter")
    return load_inverter(path, device=device, weights_id=essence.sha256_file(path)[:16])


def _detect(path: Any) -> bool:
    from essence.plugins.inverters.e4e.checkpoint import detect

    return detect(path)


def _convert(src: Any, dst: Any) -> dict[str, Any]:
    from essence.plugins.inverters.e4e.checkpoint import convert

    return convert(src, dst)


@essence.hookimpl
def register_inverters(register):
    register("e4e", partial(build, kind="e4e"), config=E4EConfig, tiny=TINY,
             description="e4e (Tov et al. 2021): IR-SE50 encoder, aligned FFHQ faces -> StyleGAN2 FFHQ W+.")
    register("psp", partial(build, kind="psp"), config=E4EConfig, defaults={"weights": "psp-ffhq"}, tiny=TINY,
             description="pSp (Richardson et al. 2021): IR-SE50 encoder, aligned FFHQ faces -> StyleGAN2 FFHQ W+.")


@essence.hookimpl
def register_assets(register):
    register(essence.load_assets(ASSETS))


@essence.hookimpl
def register_converters(register):
    register("e4e", _detect, _convert, description="e4e / pSp checkpoints (.pt, read with weights_only=True) -> safetensors.")
