"""CLIP's text tower, for text targets (``--target-text``): texts -> embeddings in the image tower's space.

The image encoders embed generator images on every step; the text tower runs once per run, so it is
built only when a text is first embedded (``CLIPEncoder.embed_text``), from the same weights file.

* openai-clip models: :class:`OpenAITextTower`, OpenAI's text transformer with the state-dict keys of
  ``clip.model.CLIP`` (``token_embedding``, ``positional_embedding``, ``transformer.*``, ``ln_final.*``,
  ``text_projection``), tokenised by openai-clip's BPE tokenizer (shipped in that package).
* open_clip models: the model's own ``encode_text`` and ``open_clip.get_tokenizer``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from essence import ConfigError, WeightsError
from essence.plugins.encoders.clip.backends import import_clip, import_open_clip, seeded

#: Texts -> unnormalised text features ``(T, D)``.
TextFn = Callable[[Sequence[str]], torch.Tensor]
#: The keys of a CLIP state dict that belong to the text tower (OpenAI's layout, also open_clip's CLIP).
TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


def text_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The text tower's part of a CLIP state dict (empty when the file holds an image tower only)."""
    return {k: v for k, v in state.items() if k.startswith(TEXT_KEYS)}


class OpenAITextTower(nn.Module):
    """OpenAI CLIP's text transformer: token and position embeddings, a causal transformer, the final
    LayerNorm, and the projection of the end token's features into the joint space."""

    def __init__(self, arch: Mapping[str, Any]) -> None:
        super().__init__()
        model = import_clip().model
        width, context = int(arch["transformer_width"]), int(arch["context_length"])
        self.context_length = context
        self.token_embedding = nn.Embedding(int(arch["vocab_size"]), width)
        self.positional_embedding = nn.Parameter(torch.empty(context, width))
        causal = torch.full((context, context), float("-inf")).triu_(1)
        self.transformer = model.Transformer(width, int(arch["transformer_layers"]), int(arch["transformer_heads"]), causal)
        self.ln_final = model.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, int(arch["embed_dim"])))
        self._initialise()

    def _initialise(self) -> None:
        """CLIP's initialisation (for random weights; a weights file replaces all of it)."""
        width, layers = self.transformer.width, self.transformer.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=width**-0.5 * (2 * layers) ** -0.5)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=width**-0.5 * (2 * layers) ** -0.5)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)  # the blocks take (L, N, D)
        x = self.ln_final(x)
        # The end-of-text token has the highest id: its features are the text's.
        return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection


def openai_text(arch: Mapping[str, Any], state: Mapping[str, torch.Tensor] | None, device: torch.device, where: Any) -> TextFn:
    """Texts -> features with OpenAI's text tower: random (``state`` None) or loaded from ``state``."""
    clip = import_clip()
    with seeded(0):
        tower = OpenAITextTower(arch)
    if state is not None:
        missing, unexpected = tower.load_state_dict(text_state(state), strict=False)
        if missing or unexpected:
            raise WeightsError(
                f"{where}: the text weights do not fit CLIP's text tower (missing {sorted(missing)[:4]}, "
                f"unexpected {sorted(unexpected)[:4]})."
            )
    tower = tower.float().to(device).eval().requires_grad_(False)

    def encode(texts: Sequence[str]) -> torch.Tensor:
        try:
            tokens = clip.tokenize(list(texts), context_length=tower.context_length)
        except RuntimeError as exc:  # "Input ... is too long for context length 77"
            raise ConfigError(f"A text target is too long for this CLIP: {exc}") from None
        if int(tokens.max()) >= tower.token_embedding.num_embeddings:
            raise ConfigError("This CLIP's text vocabulary is smaller than openai-clip's tokenizer: it cannot embed text.")
        return tower(tokens.to(device))

    return encode


def openclip_text(model: Any, arch: str, device: torch.device) -> TextFn:
    """Texts -> features with an open_clip model's own text tower and tokenizer."""
    open_clip = import_open_clip()
    model = model.float().to(device).eval().requires_grad_(False)
    model.visual = None  # the encoder holds its own image tower; this copy is not needed
    context = getattr(model, "context_length", None)
    tokenizer = open_clip.get_tokenizer(arch, context_length=context) if context else open_clip.get_tokenizer(arch)

    vocab = getattr(model, "vocab_size", None)

    def encode(texts: Sequence[str]) -> torch.Tensor:
        tokens = tokenizer(list(texts))
        if vocab is not None and int(tokens.max()) >= vocab:
            raise ConfigError("This CLIP's text vocabulary is smaller than its tokenizer's: it cannot embed text.")
        return model.encode_text(tokens.to(device))

    return encode
