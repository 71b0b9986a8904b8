"""Text input: token ids → one vector per row, through any encoder ``nn.Module``.

The contract of a text encoder is ``encoder(ids [B, L] long, mask [B, L] bool) → [B, D]``
(mask True on real tokens) plus an ``output_dim`` attribute. Built-ins, registered by name in
``TEXT_ENCODERS``: ``cnn`` (embedding + 1-d convolutions + masked max-pool over time, Kim 2014)
and ``transformer`` (embedding + learned positions + a small transformer encoder + masked mean
pool). A pretrained model plugs in by registering a factory in ``TEXT_ENCODERS`` (usable from
YAML) or by passing the module itself as ``model.params.input.encoder`` (see docs/text.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from mtlkit.data.prepare import InputSpec
from mtlkit.models import register_input
from mtlkit.registry import Registry

TEXT_ENCODERS: Registry[nn.Module] = Registry("text encoder")
register_text_encoder = TEXT_ENCODERS.register


class CNNTextEncoder(nn.Module):
    """Embedding → one Conv1d per kernel size → ReLU → max over the real positions → concat."""

    def __init__(self, vocab_size: int, pad_id: int = 0, embedding_dim: int = 32,
                 channels: int = 32, kernel_sizes: tuple[int, ...] = (3, 5),
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.convs = nn.ModuleList(
            nn.Conv1d(embedding_dim, channels, k, padding=k // 2) for k in kernel_sizes
        )
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.output_dim = channels * len(kernel_sizes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids).transpose(1, 2)  # [B, E, L]
        # windows centred on padding are excluded; a row with no token keeps position 0
        keep = mask.clone()
        keep[:, 0] = True
        fill = torch.finfo(x.dtype).min
        pooled = [conv(x)[..., : ids.shape[1]].relu().masked_fill(~keep[:, None, :], fill)
                  .amax(-1) for conv in self.convs]
        return self.dropout(torch.cat(pooled, dim=1))


class TransformerTextEncoder(nn.Module):
    """Embedding + learned positions → ``layers`` pre-norm transformer layers → masked mean."""

    def __init__(self, vocab_size: int, max_len: int, pad_id: int = 0, dim: int = 64,
                 heads: int = 4, layers: int = 2, ff_dim: int = 128,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.position = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, ff_dim, dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.output_dim = dim

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.clone()
        mask[:, 0] = True  # a row with no token attends to (and pools) position 0
        h = self.embedding(ids) + self.position[:, : ids.shape[1]]
        h = self.norm(self.encoder(h, src_key_padding_mask=~mask))
        w = mask.unsqueeze(-1).to(h.dtype)
        return (h * w).sum(1) / w.sum(1)


@register_text_encoder("cnn")
def _cnn(vocab_size: int, max_len: int, pad_id: int = 0, **params) -> CNNTextEncoder:
    return CNNTextEncoder(vocab_size, pad_id, **params)


@register_text_encoder("transformer")
def _transformer(vocab_size: int, max_len: int, pad_id: int = 0,
                 **params) -> TransformerTextEncoder:
    return TransformerTextEncoder(vocab_size, max_len, pad_id, **params)


class TextInput(nn.Module):
    """Wraps a text encoder: ``features["tokens"]`` → ``encoder(ids, ids != pad_id)``."""

    def __init__(self, encoder: nn.Module, pad_id: int = 0) -> None:
        super().__init__()
        if not isinstance(getattr(encoder, "output_dim", None), int):
            raise TypeError(f"text encoder {type(encoder).__name__} must have an int "
                            "`output_dim` attribute (the width of the vector it returns)")
        self.encoder = encoder
        self.pad_id = pad_id
        self.output_dim = encoder.output_dim

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = features["tokens"]
        return self.encoder(ids, ids != self.pad_id)


@register_input("text")
def text_input(
    spec: InputSpec, encoder: str | nn.Module | Callable[[InputSpec], nn.Module] = "cnn",
    **params,
) -> TextInput:
    """``encoder``: a ``TEXT_ENCODERS`` name (``params`` go to it), an ``nn.Module`` (copied,
    so every single-task network gets its own), or a factory called with the input spec."""
    e = spec.extra
    if isinstance(encoder, str):
        module = TEXT_ENCODERS.create(encoder, vocab_size=e["vocab_size"], max_len=e["max_len"],
                                      pad_id=e.get("pad_id", 0), **params)
    elif params:
        raise TypeError(f"text input: params {sorted(params)} only apply to a named encoder")
    elif isinstance(encoder, nn.Module):
        module = copy.deepcopy(encoder)
    else:
        module = encoder(spec)
    return TextInput(module, e.get("pad_id", 0))
