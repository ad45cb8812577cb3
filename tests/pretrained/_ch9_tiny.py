"""A tiny randomly initialised model of MiniLM's structure (BertEmbeddings + a 6-layer post-LN
TransformerEncoder) and a word-hashing tokenizer, for fast tests of the chapter-9 methods."""

from __future__ import annotations

import zlib

import numpy as np

from refimpl.nn import BertEmbeddings, TransformerEncoder


class HashTokenizer:
    """``[CLS] hash(word) … [SEP]`` ids (deterministic, crc32 of each word)."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def encode(self, text: str) -> list[int]:
        body = [5 + zlib.crc32(w.encode()) % (self.vocab_size - 5) for w in text.split()]
        return [1] + body + [2]


class TinyModel:
    """The attributes the chapter-9 code uses: ``embeddings``, ``encoder``, ``tokenizer``."""

    def __init__(self, *, vocab_size=300, d_model=24, num_heads=4, d_ff=48, num_layers=6,
                 max_position=64, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.embeddings = BertEmbeddings(vocab_size=vocab_size, d_model=d_model,
                                         max_position=max_position, rng=rng)
        self.encoder = TransformerEncoder(num_layers=num_layers, d_model=d_model,
                                          num_heads=num_heads, d_ff=d_ff, activation="gelu",
                                          layer_norm_eps=1e-12, rng=rng)
        for m in (self.embeddings, self.encoder):
            m.astype(dtype)
            m.eval()
        self.tokenizer = HashTokenizer(vocab_size)
