"""Word tokenizer built from the text itself: lowercase word split, train-only vocabulary.

Ids: 0 = padding, 1 = out-of-vocabulary, then words by decreasing training count (ties
alphabetical). A word is a run of letters/digits, optionally with inner apostrophes
(``don't``); everything else separates words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch

PAD_ID = 0
OOV_ID = 1
WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """``"Don't LOVE it... 5 stars!"`` → ``["don't", "love", "it", "5", "stars"]``."""
    return WORD.findall(text.lower())


class WordTokenizer:
    """Vocabulary fitted on training texts; ``transform`` gives padded id matrices."""

    def __init__(self, min_count: int = 2, max_vocab: int | None = None) -> None:
        self.min_count = min_count
        self.max_vocab = max_vocab
        self.vocabulary: list[str] = []

    def fit(self, texts: Iterable[str]) -> WordTokenizer:
        if self.min_count < 1:
            raise ValueError(f"min_count must be ≥ 1, got {self.min_count}")
        counts = Counter(w for text in texts for w in tokenize(text))
        words = sorted((w for w, c in counts.items() if c >= self.min_count),
                       key=lambda w: (-counts[w], w))
        self.vocabulary = words[: self.max_vocab] if self.max_vocab else words
        return self

    @property
    def vocab_size(self) -> int:
        """Number of ids including padding and OOV."""
        return len(self.vocabulary) + 2

    def transform(self, texts: Iterable[str], max_len: int) -> torch.Tensor:
        """Ids ``[N, max_len]`` (long): the first ``max_len`` words, right-padded with 0."""
        if not self.vocabulary:
            raise RuntimeError("WordTokenizer.transform called before fit (or empty vocabulary)")
        tokens = [tokenize(t)[:max_len] for t in texts]
        lengths = np.fromiter((len(t) for t in tokens), np.int64, len(tokens))
        flat = pd.Series([w for t in tokens for w in t], dtype=object)
        index = {w: i + 2 for i, w in enumerate(self.vocabulary)}
        ids = flat.map(index).fillna(OOV_ID).to_numpy(np.int64)
        out = np.full((len(tokens), max_len), PAD_ID, dtype=np.int64)
        rows = np.repeat(np.arange(len(tokens)), lengths)
        cols = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[rows, cols] = ids
        return torch.from_numpy(out)

    def to_dict(self) -> dict[str, Any]:
        return {"min_count": self.min_count, "max_vocab": self.max_vocab,
                "vocabulary": self.vocabulary, "pad_id": PAD_ID, "oov_id": OOV_ID}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> WordTokenizer:
        tok = cls(state["min_count"], state["max_vocab"])
        tok.vocabulary = list(state["vocabulary"])
        return tok
