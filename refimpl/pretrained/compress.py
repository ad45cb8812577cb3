"""Chapter 9: a real pretrained Transformer (all-MiniLM-L6-v2) compressed with every chapter's
methods, one row per method, every row measured the same way (Survey §2–§7 on the setting of
the survey's tables; the §8 comparison on a real model).

Each method starts from a copy of the loaded model (the original is never modified), applies
the chapter's own mechanism to the ``refimpl.nn`` modules, and is measured by
:func:`measure`:

* **bytes**, exactly, of what the compressed model stores (:func:`stored_bits`): float32
  parameters at 32 bits; CSR values, column indices and row pointers
  (:class:`refimpl.pruning.sparse_linear.CSRLinear`); packed k-bit codes, codebooks and per-row
  scales (:class:`refimpl.quantization.packed_linear.PackedLinear`); factors of their actual
  shapes; pruned heads' rows/columns are not counted;
* **fidelity**: mean cosine between the compressed and the original sentence embeddings on
  held-out real text (paragraphs of the Python standard library's docstrings,
  :func:`refimpl.pretrained.evaluate.real_text`);
* **retrieval**: recall@1 and MRR of finding a docstring's body from its summary line among
  all bodies of the set (:func:`refimpl.pretrained.evaluate.docstring_retrieval_pairs`);
  texts and metrics are :mod:`refimpl.pretrained.evaluate`'s (:func:`prepare_data`,
  :func:`evaluate_embeddings`);
* **STS-B** Spearman × 100 when the CSV files are given;
* **latency** per sentence through the kernels the method stores (CSR kernel, k-bit packed
  kernel, TT row lookup, fused sliding-window attention kernel), at batch size 1 and at a
  large batch.

=========================  ==================================================================
row                        survey §, method (paper)
=========================  ==================================================================
``heads-25``, ``heads-50``  §2.4.1 Eq. (18) head importance on real text, lowest heads sliced
                           out (Michel et al. 2019)
``magnitude-50/80/90``     §2.1.2 one-shot magnitude pruning of every encoder matrix, CSR
                           kernel (Han et al. 2015)
``uniform-8``, ``-4``      §3.3.1 Eqs. (37)–(39) affine uniform codes per row, packed
``kmeans-8``, ``-4``       §3.3.3 Eq. (49) k-means weight sharing per matrix (Han et al. 2016)
``binary-ffn``             §3.1.3 BWN (Eqs. 22–24) on the FFN matrices (Rastegari et al. 2016)
``ternary-ffn``            §3.2.2 TWN (Eqs. 30–34) on the FFN matrices (Li et al. 2016)
``svd-ffn-192``, ``-96``   §6.1 truncated SVD of the FFN matrices
``albert-embedding``       §5.3 ALBERT's factorised word embedding V·E + E·H (Lan et al. 2020)
``tt-embedding``           §6.3 TT-embedding of the 30 522 × 384 table (Khrulkov et al. 2019)
``layerdrop-every-other``  §2.4.2 keep layers 1, 3, 5 (Fan et al. 2019)
``sliding-window``         §7.2 Longformer band + global [CLS] (Beltagy et al. 2020)
``distil-3l``              §4.4 3-layer student from every other teacher layer, MiniLM
                           attention + value-relation losses (Wang et al. 2020) + embedding
                           cosine loss, on unlabelled real text
``fastformers``            §8 distil → prune heads and FFN units → 8-bit (Kim & Awadalla 2020)
=========================  ==================================================================
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from refimpl.nn import Embedding, Linear, Module, ModuleList, MultiHeadAttention, Tensor, \
    data_of, fit, masked_mean_pool, no_grad
from refimpl.nn import functional as F
from refimpl.nn.surgery import replace_modules
from refimpl.utils import check_choice, progress_bar

__all__ = ["RealConfig", "QUICK", "FULL", "TokenBatch", "RealData", "Row", "METHODS",
           "tokenize", "prepare_data", "encoder_forward", "embed", "stored_bits",
           "evaluate_embeddings", "measure_latency", "gate_importance", "prune_heads_",
           "distil_student", "compress", "compress_table", "rows_to_markdown", "write_outputs",
           "plot_rows", "FactorizedEmbedding", "TTWordEmbedding"]

_NEG = -1e30
#: At most this many Lloyd iterations in the k-means rows (Han et al. give no count; lloyd_kmeans'
#: default). An iteration of scalar_kmeans costs O(k log n), so this does not bound the time.
KMEANS_ITERS = 300


# ---------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class RealConfig:
    """Sizes of one chapter-9 run.

    Attributes
    ----------
    n_eval : int
        Held-out paragraphs for fidelity (``real_text(n_eval, "heldout")``).
    n_retrieval : int
        Summary → body pairs for retrieval (``docstring_retrieval_pairs(n_retrieval)``;
        candidates = all bodies of the set). The library has about 2 000 such items; at most
        about 1 900 leave room for the importance pairs.
    n_train : int
        Unlabelled training paragraphs (distillation) — disjoint from the evaluation texts.
    n_importance : int
        Summary/body pairs, disjoint from the evaluation texts, for the Eq. (18) importances.
    max_len : int
        Tokens per text ([CLS] and [SEP] included).
    distil_epochs, distil_batch : int
    distil_lr : float
    latency_small, latency_large : int
        Sentences timed at batch size 1 and at batch size ``large_batch``.
    large_batch : int
    repeat : int
        Latency is the best of ``repeat`` timed passes (after one warm-up pass).
    seed : int
    n_stsb : int or None
        Use only the first ``n_stsb`` STS-B test pairs (None: all 1 379).
    window : int
        Sliding-window width (keys per query, besides the global [CLS]).
    """

    n_eval: int = 192
    n_retrieval: int = 1000
    n_train: int = 640
    n_importance: int = 64
    max_len: int = 48
    distil_epochs: int = 2
    distil_batch: int = 32
    distil_lr: float = 3e-4
    latency_small: int = 8
    latency_large: int = 64
    large_batch: int = 32
    repeat: int = 1
    seed: int = 0
    n_stsb: int | None = None
    window: int = 16


#: The full-size run of the notebook and ``refimpl real``: 1 950 retrieval items (of the 2 021
#: the standard library's docstrings give; 64 others are the Eq. (18) importance pairs), 192
#: held-out fidelity texts; STS-B adds its 1 379 pairs per row when given.
FULL = RealConfig(n_retrieval=1950)
#: The quick sizes of the CI notebook and ``refimpl real --quick`` (a few minutes).
QUICK = RealConfig(n_eval=32, n_retrieval=32, n_train=32, n_importance=8, max_len=32,
                   distil_epochs=1, distil_batch=16, latency_small=2, latency_large=16,
                   large_batch=16, repeat=1, n_stsb=256)


# ---------------------------------------------------------------------------------- data
@dataclass
class TokenBatch:
    """Token ids (N, n) int64, padded with 0, and the attention mask (N, n) bool."""

    ids: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, idx) -> "TokenBatch":
        idx = np.asarray(idx)
        ids, mask = self.ids[idx], self.mask[idx]
        n = max(1, int(mask.sum(axis=1).max())) if len(idx) else 1
        return TokenBatch(ids[:, :n], mask[:, :n])


@dataclass
class RealData:
    """Tokenised real text of one run (see :func:`prepare_data`)."""

    eval: TokenBatch
    queries: TokenBatch
    docs: TokenBatch
    train: TokenBatch
    pair_a: TokenBatch
    pair_b: TokenBatch
    stsb: tuple | None = None  # (TokenBatch, TokenBatch, gold scores (N,))
    texts: dict = field(default_factory=dict)


def tokenize(tokenizer, texts, max_len: int) -> TokenBatch:
    """``tokenizer.encode(text)`` (ids with [CLS] … [SEP]) for each text, truncated to
    ``max_len`` tokens keeping the final [SEP] (as sentence-transformers truncates), padded
    with 0."""
    if max_len < 2:
        raise ValueError(f"max_len must be at least 2, got {max_len}")
    rows = []
    for t in texts:
        ids = list(tokenizer.encode(t))
        if len(ids) > max_len:
            ids = ids[:max_len - 1] + ids[-1:]
        rows.append(ids)
    n = max(len(r) for r in rows)
    ids = np.zeros((len(rows), n), dtype=np.int64)
    mask = np.zeros((len(rows), n), dtype=bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = True
    return TokenBatch(ids, mask)


def _disjoint(texts, others, n: int) -> list[str]:
    """Every k-th of the ``texts`` that occur in none of ``others`` (substring test), ``n`` of
    them spread over the list (as :func:`refimpl.pretrained.evaluate.real_text` spreads)."""
    joined = "\n".join(others)
    keep = [t for t in texts if t not in joined]
    step = max(1, len(keep) // n)
    return keep[::step][:n]


def prepare_data(tokenizer, config: RealConfig = FULL, stsb=None) -> RealData:
    """Tokenise the evaluation and training texts of a run, selected by
    :mod:`refimpl.pretrained.evaluate` (deterministic, no random draw).

    * fidelity: ``real_text(n_eval, "heldout")`` — paragraphs of the held-out fifth of the
      standard library's modules;
    * retrieval: ``docstring_retrieval_pairs(n_retrieval)`` — summary line → body;
    * Eq. (18) importances: ``n_importance`` further summary → body pairs of
      ``docstring_retrieval_pairs`` that are not retrieval items and contain no held-out
      paragraph;
    * distillation: ``real_text(·, "train")`` paragraphs that occur in no retrieval or
      importance pair (and, by the split, in no held-out module): the training text is
      disjoint from both evaluation sets.

    ``stsb`` is the STS-B directory or CSV (optional), read by :func:`refimpl.data.load_stsb`.
    """
    from refimpl.pretrained.evaluate import docstring_retrieval_pairs, real_text

    ev = real_text(config.n_eval, "heldout")
    ret = docstring_retrieval_pairs(config.n_retrieval)
    every = docstring_retrieval_pairs(10 ** 9)  # all items, in the same order
    chosen = set(ret.names)
    rest = [(q, d) for q, d, name in zip(every.queries, every.documents, every.names)
            if name not in chosen]
    held = real_text(10 ** 9, "heldout")
    held_joined = "\n".join(held)
    rest = [(q, d) for q, d in rest
            if not (_overlaps(q, held, held_joined) or _overlaps(d, held, held_joined))]
    step = max(1, len(rest) // max(1, config.n_importance))
    imp = rest[::step][:config.n_importance]
    used = list(ret.queries) + list(ret.documents) + [t for pair in imp for t in pair]
    tr = _disjoint(real_text(10 ** 9, "train"), used, config.n_train)
    got = {"n_eval": len(ev), "n_retrieval": len(ret), "n_importance": len(imp),
           "n_train": len(tr)}
    short = {k: v for k, v in got.items() if v < getattr(config, k)}
    if short:
        raise ValueError(f"the standard library gives only {short} texts, the config needs "
                         f"{ {k: getattr(config, k) for k in short} }")
    L = config.max_len
    tok = lambda texts: tokenize(tokenizer, texts, L)  # noqa: E731
    data = RealData(eval=tok(ev), queries=tok(ret.queries), docs=tok(ret.documents),
                    train=tok(tr), pair_a=tok([q for q, _ in imp]),
                    pair_b=tok([d for _, d in imp]),
                    texts={"eval": ev, "retrieval": ret, "importance": imp, "train": tr})
    if stsb is not None:
        from refimpl.data import load_stsb

        st = load_stsb(stsb, "test")
        k = len(st.scores) if config.n_stsb is None else min(len(st.scores), config.n_stsb)
        data.stsb = (tok(list(st.sentence1[:k])), tok(list(st.sentence2[:k])),
                     np.asarray(st.scores[:k], dtype=np.float64))
    return data


def _overlaps(text: str, held: list[str], held_joined: str) -> bool:
    """Whether ``text`` contains a held-out paragraph or is contained in the held-out text."""
    return text in held_joined or any(h in text for h in held)


# ---------------------------------------------------------------------------------- forward
def encoder_forward(model, ids, mask, **kw):
    """``model.encoder(model.embeddings(ids), key_padding_mask=~mask, **kw)`` — the gates
    ``head_mask`` / ``ffn_mask`` / ``layer_mask`` and ``output_attentions`` pass through."""
    h = model.embeddings(np.asarray(ids))
    return model.encoder(h, key_padding_mask=~np.asarray(mask, dtype=bool), **kw)


def _pooled(model, ids, mask, **kw):
    out = encoder_forward(model, ids, mask, **kw)
    h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out
    return masked_mean_pool(h, mask)  # (B, d)


def _batches(batch: TokenBatch, batch_size: int):
    """Length-sorted index batches (as sentence-transformers batches), each trimmed."""
    lengths = batch.mask.sum(axis=1)
    order = np.argsort(-lengths, kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        yield idx, batch.take(idx)


def embed(model, batch: TokenBatch, batch_size: int = 64) -> np.ndarray:
    """L2-normalised mean-pooled sentence embeddings (N, d) in float64 (no gradients)."""
    out = None
    with no_grad():
        for idx, b in _batches(batch, batch_size):
            e = np.asarray(_pooled(model, b.ids, b.mask).data, dtype=np.float64)
            if out is None:
                out = np.empty((len(batch), e.shape[1]))
            out[idx] = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return out


# ---------------------------------------------------------------------------------- metrics
def evaluate_embeddings(E, E_ref, Q, D, stsb=None) -> dict:
    """Every row's numbers, by :mod:`refimpl.pretrained.evaluate`'s metrics: fidelity
    :func:`~refimpl.pretrained.evaluate.mean_cosine` of ``E`` (N, d) against ``E_ref`` (N, d);
    recall@1 and MRR of query ``Q[i]`` → document ``D[i]`` among all documents
    (:func:`~refimpl.pretrained.evaluate.retrieval_scores`, ties in the query's favour); with
    ``stsb = (A, B, gold)``, STS-B 100 × :func:`~refimpl.pretrained.evaluate.spearman` of
    ``cos(A_i, B_i)`` against the gold scores (as
    :func:`~refimpl.pretrained.evaluate.stsb_spearman`)."""
    from refimpl.pretrained.evaluate import mean_cosine, retrieval_scores, spearman

    r = retrieval_scores(Q, D)
    out = {"fidelity": mean_cosine(E, E_ref), "recall1": r["recall_at_1"], "mrr": r["mrr"]}
    if stsb is not None:
        a, b, y = stsb
        cos = np.sum(a * b, axis=1) / np.maximum(
            np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-24)
        out["stsb"] = 100.0 * spearman(cos, y)
    return out


def measure_latency(model, batch: TokenBatch, batch_size: int, repeat: int = 1) -> float:
    """Milliseconds per sentence of the forward pass + pooling (tokenisation excluded), best of
    ``repeat`` passes over ``batch`` after one warm-up pass (Numba compilation)."""
    best = math.inf
    with no_grad():
        for r in range(repeat + 1):
            t0 = time.perf_counter()
            for _, b in _batches(batch, batch_size):
                _pooled(model, b.ids, b.mask)
            if r:
                best = min(best, time.perf_counter() - t0)
    return 1e3 * best / len(batch)


# ---------------------------------------------------------------------------------- sizes
def _sub_bits(lin, rows=None, cols=None) -> int:
    """Exact stored bits of ``lin`` restricted to ``rows`` (out) and ``cols`` (in)."""
    from refimpl.quantization.packed_linear import PackedLinear

    if isinstance(lin, PackedLinear):
        codes = lin.codes()
        r = slice(None) if rows is None else rows
        c = slice(None) if cols is None else cols
        sub = lambda v: None if v is None else v[r]  # noqa: E731
        return PackedLinear(codes[r][:, c], lin.bits,
                            lin.codebook[:lin.codebook_size] if lin.stored_codebook else None,
                            row_scale=sub(lin.row_scale), row_offset=sub(lin.row_offset),
                            b=sub(lin.bias), dtype=lin.dtype).stored_bits()
    if type(lin) is not Linear:
        raise TypeError(f"cannot count pruned heads of a {type(lin).__name__}")
    n_out = lin.out_features if rows is None else len(rows)
    n_in = lin.in_features if cols is None else len(cols)
    fb = lin.W.data.dtype.itemsize * 8
    return fb * (n_out * n_in + (0 if lin.b is None else n_out))


def _mha_bits(mha, seen) -> int:
    """A MultiHeadAttention whose persistent ``head_mask`` zeroes heads: the kept heads' rows
    of W_q, W_k, W_v and columns of W_o are what is stored."""
    gates = np.asarray(mha.head_mask)
    keep = np.flatnonzero(gates != 0)
    dh = mha.d_head
    idx = (keep[:, None] * dh + np.arange(dh)[None, :]).ravel()  # kept rows/columns
    for lin in (mha.W_q, mha.W_k, mha.W_v, mha.W_o):
        seen.add(id(lin))
    return (sum(_sub_bits(lin, rows=idx) for lin in (mha.W_q, mha.W_k, mha.W_v))
            + _sub_bits(mha.W_o, cols=idx))


def _module_bits(m, seen: set) -> int:
    if id(m) in seen:
        return 0
    seen.add(id(m))
    if hasattr(m, "stored_bits"):
        return int(m.stored_bits())
    total = 0
    if isinstance(m, MultiHeadAttention) and m.head_mask is not None \
            and np.any(np.asarray(m.head_mask) == 0):
        total += _mha_bits(m, seen)
    for v in vars(m).values():
        if isinstance(v, Tensor) and type(v).__name__ == "Parameter" and id(v) not in seen:
            seen.add(id(v))
            total += v.size * v.data.dtype.itemsize * 8
    for _, child in m.named_children():
        total += _module_bits(child, seen)
    return total


def stored_bits(model) -> int:
    """Exact bits the model's embeddings and encoder store (shared modules counted once)."""
    seen: set = set()
    return _module_bits(model.embeddings, seen) + _module_bits(model.encoder, seen)


# ---------------------------------------------------------------------------------- Eq. (18)
def gate_importance(model, a: TokenBatch, b: TokenBatch, *, ffn: bool = False,
                    batch_size: int = 16):
    """Head (and FFN-unit) importance on real text, Survey Eq. (18), §2.4.1.

    ``I_h = E_x |∂L(x)/∂ξ_h|`` with per-example gates ξ of shape (L, B, H) on every head
    (and, with ``ffn=True``, per-example gates m of shape (L, B, d_ff) on every FFN unit), where
    ``L(x) = 1 − cos(e(summary), e(body))`` is the loss of a docstring pair (labels for free:
    a summary belongs to its body). One gate per example and the pair's two forward passes
    share it, so the gradient of the summed loss is each pair's own ``∂L(x)/∂ξ``.

    Returns
    -------
    head_imp : ndarray of shape (L, H)
    ffn_imp : ndarray of shape (L, d_ff) or None

    References
    ----------
    .. [1] P. Michel, O. Levy, G. Neubig, "Are Sixteen Heads Really Better than One?",
       NeurIPS 2019.
    """
    layers = model.encoder.layers
    L, H, d_ff = len(layers), layers[0].num_heads, layers[0].d_ff
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"a and b must hold the same positive number of texts, got {len(a)} "
                         f"and {len(b)}")
    hsum, fsum = np.zeros((L, H)), np.zeros((L, d_ff))
    dt = model.embeddings.word.W.data.dtype if hasattr(model.embeddings, "word") else np.float32
    for s in range(0, len(a), batch_size):
        idx = np.arange(s, min(len(a), s + batch_size))
        B = len(idx)
        xi = Tensor(np.ones((L, B, H), dtype=dt), requires_grad=True)
        nu = Tensor(np.ones((L, B, d_ff), dtype=dt), requires_grad=True) if ffn else None
        embs = []
        for tb in (a.take(idx), b.take(idx)):
            e = _pooled(model, tb.ids, tb.mask, head_mask=xi, ffn_mask=nu)
            embs.append(e / ((e * e).sum(axis=1, keepdims=True) + 1e-24).sqrt())
        loss = (1.0 - (embs[0] * embs[1]).sum(axis=1)).sum()  # Σ_x L(x)
        loss.backward()
        hsum += np.abs(xi.grad).sum(axis=1)
        if ffn:
            fsum += np.abs(nu.grad).sum(axis=1)
    return hsum / len(a), (fsum / len(a) if ffn else None)


def prune_heads_(model, importance, fraction: float) -> np.ndarray:
    """Remove the ``round(fraction · L · H)`` heads of lowest importance, each layer's scores
    first divided by their L2 norm (Michel et al.), in place: every layer's attention is
    replaced by :meth:`refimpl.nn.MultiHeadAttention.keep_heads` of its kept heads (their rows
    of W_q, W_k, W_v and columns of W_o; the others are sliced out, so they cost neither bytes
    nor time). A layer that would lose every head keeps one head gated to 0 (persistent
    ``head_mask``; its output is then ``b_o``, and the gated head is not counted in bytes).
    Returns the (L, H) 0/1 mask."""
    imp = np.asarray(importance, dtype=np.float64)
    imp = imp / np.maximum(np.linalg.norm(imp, axis=1, keepdims=True), 1e-30)
    k = int(round(fraction * imp.size))
    mask = np.ones(imp.size)
    mask[np.argsort(imp.ravel(), kind="stable")[:k]] = 0.0
    mask = mask.reshape(imp.shape)
    for layer, row in zip(model.encoder.layers, mask):
        keep = np.flatnonzero(row)
        if keep.size:
            layer.self_attn = layer.self_attn.keep_heads(keep)
        else:
            layer.self_attn = layer.self_attn.keep_heads([0])
            layer.self_attn.head_mask = np.zeros(1, layer.self_attn.W_q.W.data.dtype)
    return mask


# ---------------------------------------------------------------------------------- helpers
def _encoder_linears(model, which: str = "all"):
    """Predicate for the encoder's Linear layers: all, or the FFN's linear1/linear2."""
    ffn = set()
    for layer in model.encoder.layers:
        ffn.update((id(layer.linear1), id(layer.linear2)))
    if which == "ffn":
        return lambda m: type(m) is Linear and id(m) in ffn
    return lambda m: type(m) is Linear


def _set_layers(model, keep_idx) -> None:
    layers = list(model.encoder.layers)
    model.encoder.layers = ModuleList(layers[i] for i in keep_idx)
    model.encoder.num_layers = len(keep_idx)


class FactorizedEmbedding(Module):
    """ALBERT's factorised word embedding (Survey §5.3; Lan et al. 2020, §3.1): a V × E table
    followed by an E → H projection, ``V·E + E·H`` numbers instead of ``V·H``.

    :meth:`from_dense` initialises it by the truncated SVD of a pretrained table
    (``W ≈ (U_E Σ_E) V_Eᵀ``, the Eckart–Young optimum, :func:`~refimpl.decomposition.
    low_rank.truncated_svd`). ``forward(ids)``: (B, n) -> (B, n, H).
    """

    def __init__(self, table: Embedding, projection: Linear):
        self.table = table
        self.projection = projection

    @classmethod
    def from_dense(cls, W, embed_dim: int) -> "FactorizedEmbedding":
        from refimpl.decomposition.low_rank import truncated_svd

        W = np.asarray(W)
        A, Bf = truncated_svd(W.astype(np.float64), embed_dim)  # (V, E), (E, H)
        table = Embedding(A.shape[0], embed_dim)
        table.W.data = A.astype(W.dtype)
        proj = Linear(embed_dim, Bf.shape[1], bias=False)
        proj.W.data = np.ascontiguousarray(Bf.T).astype(W.dtype)  # (H, E)
        return cls(table, proj)

    def forward(self, ids):
        return self.projection(self.table(ids))  # (B, n, E) -> (B, n, H)


class TTWordEmbedding(Module):
    """A :class:`refimpl.decomposition.TTEmbedding` looked up with the TT row kernel
    (:func:`refimpl.decomposition.tensor_train.tt_embedding_rows`; Survey §6.3) for inference;
    the wrapped module's tape ``forward`` is the reference it is tested against."""

    def __init__(self, tt):
        self.tt = tt

    @classmethod
    def from_dense(cls, W, rank: int, voc_dims, emb_dims) -> "TTWordEmbedding":
        from refimpl.decomposition.tensor_train import TTEmbedding

        W = np.asarray(W)
        tt = TTEmbedding.from_dense(W.astype(np.float64), voc_dims=voc_dims,
                                    emb_dims=emb_dims, rank=rank)
        for G in tt.cores:
            G.data = G.data.astype(W.dtype)
        return cls(tt)

    def forward(self, ids):
        from refimpl.decomposition.tensor_train import tt_embedding_rows

        ids = np.asarray(data_of(ids))
        return Tensor(tt_embedding_rows([G.data for G in self.tt.cores], ids))


# ---------------------------------------------------------------------------------- distillation
def _masked_scores(q, k, allow):
    """``q kᵀ / √d`` with disallowed keys at a large negative value, on the tape."""
    d = q.shape[-1]
    S = F.matmul(q, F.transpose(k, (0, 1, 3, 2))) * float(1.0 / np.sqrt(d))  # (B, H, n, n)
    return F.masked_fill(S, np.broadcast_to(~allow, S.shape), _NEG)


def _softmax_np(S):
    S = S - S.max(axis=-1, keepdims=True)
    E = np.exp(S)
    return E / E.sum(axis=-1, keepdims=True)


def distil_student(teacher, data: RealData, config: RealConfig = FULL, *,
                   keep=(0, 2, 4), progress=None):
    """A student of the teacher's embeddings and every other layer, distilled on unlabelled text.

    Loss per batch (Survey §4.4): MiniLM's last-layer self-attention transfer
    ``KL(A_t ‖ A_s)`` and value-relation transfer ``KL(VR_t ‖ VR_s)`` with
    ``VR = softmax(V Vᵀ / √d_k)`` (Wang et al. 2020, Eqs. 5–7, through
    :func:`refimpl.distillation.transformers.attention_kl_t`; padded keys masked), plus the
    sentence-embedding cosine loss ``1 − cos(e_s, e_t)``. The student's layers start as copies
    of teacher layers ``keep`` (DistilBERT's every-other-layer initialisation); the embeddings
    are copied and frozen. Trained with :func:`refimpl.nn.fit` (Adam).

    Returns
    -------
    student : a copy of ``teacher`` with ``len(keep)`` layers
    info : dict (``seconds``, ``steps``, ``epoch_loss``, ``step_loss``)
    """
    from refimpl.distillation.transformers import attention_kl_t

    student = teacher.copy() if hasattr(teacher, "copy") else copy.deepcopy(teacher)
    _set_layers(student, keep)
    X = data.train.ids
    lengths = data.train.mask.sum(axis=1).astype(np.int64)
    y = np.zeros(len(X), dtype=np.int64)

    def forward(encoder, ids, lens):
        n = ids.shape[1]
        mask = np.arange(n)[None, :] < lens[:, None]  # (B, n) real tokens
        allow = mask[:, None, None, :]  # (B, 1, 1, n) keys
        rows = np.broadcast_to(mask[:, None, :], (len(ids), encoder.layers[0].num_heads, n))
        with no_grad():
            t = encoder_forward(teacher, ids, mask, output_attentions=True)
            ta = t.attentions[-1]
            P_t = np.asarray(ta.probs.data, dtype=np.float64)
            V_t = np.asarray(ta.value.data, dtype=np.float64)
            dv = V_t.shape[-1]
            VR_t = _softmax_np(np.where(allow, V_t @ V_t.transpose(0, 1, 3, 2) / np.sqrt(dv),
                                        _NEG))
            e_t = np.asarray(masked_mean_pool(t.last_hidden_state, mask).data, np.float64)
            e_t /= np.linalg.norm(e_t, axis=1, keepdims=True)
            h0 = student.embeddings(ids).data  # frozen embeddings
        s = encoder(h0, key_padding_mask=~mask, output_attentions=True)
        sa = s.attentions[-1]
        l_att = attention_kl_t(P_t, _masked_scores(sa.query, sa.key, allow), mask=rows)
        l_vr = attention_kl_t(VR_t, _masked_scores(sa.value, sa.value, allow), mask=rows)
        e_s = masked_mean_pool(s.last_hidden_state, mask)  # (B, d)
        cos = (e_s * e_t.astype(e_s.dtype)).sum(axis=1) / ((e_s * e_s).sum(axis=1) + 1e-24).sqrt()
        return l_att + l_vr + (1.0 - cos).mean()

    t0 = time.perf_counter()
    hist = fit(student.encoder, (X, lengths, y), loss_fn=lambda out, _y: out, forward=forward,
               epochs=config.distil_epochs, batch_size=config.distil_batch, lr=config.distil_lr,
               rng=config.seed, progress=progress, blas_threads=None)
    secs = time.perf_counter() - t0
    return student, {"seconds": secs, "steps": len(hist.step_loss),
                     "epoch_loss": [float(v) for v in hist.train_loss],
                     "step_loss": [float(v) for v in hist.step_loss]}


def _prune_ffn_units_(model, ffn_imp, fraction: float) -> None:
    """Remove the ``fraction`` of each layer's FFN units with the lowest Eq. (18)-style
    importance ``E_x |∂L/∂m_j|`` (rows of W_1 and b_1, columns of W_2; Survey §2.2, §2.4.3)."""
    from refimpl.pruning.neurons import remove_neurons

    for layer, imp in zip(model.encoder.layers, ffn_imp):
        n_keep = layer.d_ff - int(round(fraction * layer.d_ff))
        keep = np.sort(np.argsort(-imp, kind="stable")[:n_keep])
        W1, b1, W2 = remove_neurons(layer.linear1.W.data, layer.linear1.b.data,
                                    layer.linear2.W.data, keep)
        dt = layer.linear1.W.data.dtype
        l1, l2 = Linear(W1.shape[1], W1.shape[0]), Linear(W2.shape[1], W2.shape[0])
        l1.W.data, l1.b.data = W1.astype(dt), b1.astype(dt)
        l2.W.data, l2.b.data = W2.astype(dt), layer.linear2.b.data.copy()
        layer.linear1, layer.linear2, layer.d_ff = l1, l2, n_keep


# ---------------------------------------------------------------------------------- methods
@dataclass
class _Ctx:
    model: object
    data: RealData
    config: RealConfig
    progress: object = None
    cache: dict = field(default_factory=dict)

    def copy(self):
        if hasattr(self.model, "copy"):  # MiniLM.copy: new arrays, the tokenizer shared
            return self.model.copy()
        return copy.deepcopy(self.model)

    def importance(self):
        if "imp" not in self.cache:
            self.cache["imp"] = gate_importance(self.model, self.data.pair_a,
                                                self.data.pair_b)[0]
        return self.cache["imp"]

    def student(self):
        if "student" not in self.cache:
            self.cache["student"] = distil_student(self.model, self.data, self.config,
                                                   progress=self.progress)
        return self.cache["student"]


@dataclass(frozen=True)
class _Method:
    name: str
    section: str
    fn: Callable


METHODS: dict[str, _Method] = {}


def _method(name: str, section: str):
    def deco(fn):
        METHODS[name] = _Method(name, section, fn)
        return fn
    return deco


@_method("original", "—")
def _original(ctx):
    return ctx.model, "float32, as loaded"


def _heads(ctx, fraction):
    m = ctx.copy()
    mask = prune_heads_(m, ctx.importance(), fraction)
    per_layer = (mask == 0).sum(axis=1).astype(int).tolist()
    return m, (f"{int((mask == 0).sum())}/{mask.size} heads removed by Eq. (18) on "
               f"{len(ctx.data.pair_a)} docstring pairs (per layer {per_layer}; sliced out of "
               f"W_q, W_k, W_v, W_o); no fine-tuning")


@_method("heads-25", "2.4.1")
def _heads25(ctx):
    return _heads(ctx, 0.25)


@_method("heads-50", "2.4.1")
def _heads50(ctx):
    return _heads(ctx, 0.5)


def _magnitude(ctx, sparsity):
    from refimpl.pruning.sparse_linear import CSRLinear
    from refimpl.pruning.weights import magnitude_mask

    m = ctx.copy()
    replace_modules(m.encoder, _encoder_linears(m),
                    lambda lin: CSRLinear.from_linear(lin, magnitude_mask(lin.W.data, sparsity)))
    return m, (f"every encoder matrix {int(100 * sparsity)}% sparse (per matrix), CSR kernel "
               f"(float32 values, uint16 columns, int64 row pointers); embeddings dense; "
               f"no fine-tuning")


for _s in (0.5, 0.8, 0.9):
    _method(f"magnitude-{int(100 * _s)}", "2.1.2")(lambda ctx, s=_s: _magnitude(ctx, s))


def _quantize(ctx, scheme, bits, which="all", embeddings=True):
    from refimpl.quantization.packed_linear import PackedEmbedding, PackedLinear

    m = ctx.copy()
    replace_modules(m.encoder, _encoder_linears(m, which),
                    lambda lin: PackedLinear.quantize(lin, scheme, bits, max_iter=KMEANS_ITERS))
    if embeddings:
        m.embeddings.word = PackedEmbedding.from_embedding(m.embeddings.word, scheme, bits,
                                                           max_iter=KMEANS_ITERS)
    return m


for _b in (8, 4):
    _method(f"uniform-{_b}", "3.3.1")(lambda ctx, b=_b: (
        _quantize(ctx, "uniform", b),
        f"{b}-bit affine codes per row (α, β float32 per row) of every encoder matrix and the "
        f"word table, k-bit packed kernel; no fine-tuning"))
    _method(f"kmeans-{_b}", "3.3.3")(lambda ctx, b=_b: (
        _quantize(ctx, "kmeans", b),
        f"{2 ** b} shared float32 values per matrix (k-means, linear init, ≤ {KMEANS_ITERS} "
        f"Lloyd iterations), encoder matrices and word table, k-bit packed kernel; "
        f"no fine-tuning"))


@_method("binary-ffn", "3.1.3")
def _binary_ffn(ctx):
    return (_quantize(ctx, "binary", 1, "ffn", embeddings=False),
            "BWN α_n·sign(W_n) per row on the 12 FFN matrices (1 bit), attention and "
            "embeddings float32; no fine-tuning")


@_method("ternary-ffn", "3.2.2")
def _ternary_ffn(ctx):
    return (_quantize(ctx, "ternary", 2, "ffn", embeddings=False),
            "TWN per row (Δ = 0.7·mean abs(W)) on the FFN matrices (2 bits), rest float32; "
            "no fine-tuning")


def _svd_ffn(ctx, fraction):
    from refimpl.decomposition.low_rank import LowRankLinear

    m = ctx.copy()
    rank = max(1, int(round(fraction * m.encoder.layers[0].linear1.in_features)))

    def make(lin):
        dt = lin.W.data.dtype
        new = LowRankLinear.from_dense(lin.W.data.astype(np.float64),
                                       lin.b.data.astype(np.float64), rank=rank)
        return new.astype(dt)

    replace_modules(m.encoder, _encoder_linears(m, "ffn"), make)
    return m, (f"rank-{rank} truncated SVD of W_1 and W_2 in every layer (W = A B, two BLAS "
               f"products); no fine-tuning")


@_method("svd-ffn-192", "6.1")
def _svd192(ctx):
    return _svd_ffn(ctx, 0.5)  # rank d_model/2 = 192 on MiniLM


@_method("svd-ffn-96", "6.1")
def _svd96(ctx):
    return _svd_ffn(ctx, 0.25)  # rank 96 on MiniLM


@_method("albert-embedding", "5.3")
def _albert(ctx):
    m = ctx.copy()
    E = min(128, m.embeddings.word.W.shape[1] // 3)
    m.embeddings.word = FactorizedEmbedding.from_dense(m.embeddings.word.W.data, E)
    return m, (f"word table V×H → V×{E} · {E}×H (truncated SVD init); position/type tables and "
               f"the LayerNorm stay as in BERT (ALBERT's LayerNorm-before-projection layout "
               f"would need pretraining); no fine-tuning")


def _dims3(n: int) -> tuple[int, int, int]:
    """Three near-equal factors with product ≥ n (the padded vocabulary)."""
    v = int(math.ceil(n ** (1 / 3)))
    for a in range(v, v + 8):
        for b in range(a, a + 8):
            c = int(math.ceil(n / (a * b)))
            if a * b * c >= n:
                return (a, b, c)
    return (v, v, v)


def _emb_dims3(d: int) -> tuple[int, int, int]:
    best = None
    for a in range(1, d + 1):
        for b in range(a, d + 1):
            if d % (a * b) == 0:
                c = d // (a * b)
                if c >= b:
                    score = c - a
                    if best is None or score < best[0]:
                        best = (score, (a, b, c))
    return best[1]


@_method("tt-embedding", "6.3")
def _tt_emb(ctx):
    m = ctx.copy()
    V, D = m.embeddings.word.W.shape
    voc, emb = _dims3(V), _emb_dims3(D)
    rank = 64 if V > 1000 else 4
    m.embeddings.word = TTWordEmbedding.from_dense(m.embeddings.word.W.data, rank, voc, emb)
    return m, (f"TT-SVD of the word table, vocabulary padded to {'×'.join(map(str, voc))}, "
               f"embedding {'×'.join(map(str, emb))}, TT-ranks ≤ {rank}; TT row-lookup "
               f"kernel; no fine-tuning")


@_method("layerdrop-every-other", "2.4.2")
def _layerdrop(ctx):
    from refimpl.pruning.heads_layers import every_other_keep

    m = ctx.copy()
    keep = np.flatnonzero(every_other_keep(len(m.encoder.layers), 0.5))
    _set_layers(m, keep)
    return m, (f"kept layers {[int(i) + 1 for i in keep]} (1-based); the model was not trained "
               f"with LayerDrop (Fan et al. train with it), no fine-tuning")


@_method("sliding-window", "7.2")
def _window(ctx):
    from refimpl.attention.hooks import LongformerHook

    m = ctx.copy()
    w = ctx.config.window
    for layer in m.encoder.layers:
        layer.self_attn.attention = LongformerHook(w, 1, (0,), fused=True)
    return m, (f"window {w} (±{w // 2} tokens) + global [CLS] in every layer, fused "
               f"sliding-window kernel; texts ≤ {ctx.config.max_len} tokens; no fine-tuning")


@_method("distil-3l", "4.4")
def _distil(ctx):
    student, info = ctx.student()
    return student, (
        f"layers 1, 3, 5 of the teacher as init, MiniLM attention + value-relation KL + "
        f"embedding cosine on {len(ctx.data.train)} docstring paragraphs, {info['steps']} Adam steps "
        f"in {info['seconds']:.0f} s; embeddings frozen")


@_method("fastformers", "8")
def _fastformers(ctx):
    from refimpl.quantization.packed_linear import PackedEmbedding, PackedLinear

    student, info = ctx.student()
    m = student.copy() if hasattr(student, "copy") else copy.deepcopy(student)
    h_imp, f_imp = gate_importance(m, ctx.data.pair_a, ctx.data.pair_b, ffn=True)
    mask = prune_heads_(m, h_imp, 0.25)
    _prune_ffn_units_(m, f_imp, 0.5)
    replace_modules(m.encoder, _encoder_linears(m), lambda lin: PackedLinear.uniform(lin, 8))
    m.embeddings.word = PackedEmbedding.from_embedding(m.embeddings.word, "uniform", 8)
    return m, (f"distil-3l → {int((mask == 0).sum())}/{mask.size} heads removed and half of "
               f"each FFN's units removed (Eq. (18) importances) → 8-bit uniform per row "
               f"(encoder and word table); no fine-tuning after pruning")


# ---------------------------------------------------------------------------------- the table
@dataclass
class Row:
    """One method's measurements (``stsb`` NaN when no STS-B path was given)."""

    method: str
    section: str
    bytes: int
    ratio: float
    fidelity: float
    recall1: float
    mrr: float
    stsb: float
    ms_batch1: float
    ms_batch_large: float
    seconds: float
    notes: str


def compress(model, name: str, data: RealData, config: RealConfig = FULL, *, progress=None):
    """``(compressed copy, notes)`` of ``model`` by method ``name`` (``model`` is not changed;
    ``data`` gives the texts the data-driven methods use)."""
    check_choice(name, "name", tuple(METHODS))
    return METHODS[name].fn(_Ctx(model, data, config, progress))


def compress_table(model, data: RealData, config: RealConfig = FULL, methods=None, *,
                   progress=None, log: Callable | None = None) -> list[Row]:
    """Compress ``model`` with every method (or ``methods``) and measure each row.

    A method that raises becomes a row with NaN numbers and the error in its notes, never a
    crash. ``log(str)`` receives one line per finished row (the CLI prints it to stderr).
    """
    names = list(METHODS) if methods is None else list(methods)
    for n in names:
        check_choice(n, "methods", tuple(METHODS))
    if "original" not in names:
        names = ["original"] + names
    ctx = _Ctx(model, data, config, progress)
    ref = {k: embed(model, getattr(data, k)) for k in ("eval",)}
    base_bits = stored_bits(model)
    lat_small = data.eval.take(np.arange(min(config.latency_small, len(data.eval))))
    lat_large = data.eval.take(np.arange(min(config.latency_large, len(data.eval))))
    rows = []
    for name in progress_bar(names, desc="chapter 9 methods", progress=progress):
        t0 = time.perf_counter()
        try:
            m, notes = METHODS[name].fn(ctx)
            bits = stored_bits(m)
            E = embed(m, data.eval)
            Q, D = embed(m, data.queries), embed(m, data.docs)
            st = None
            if data.stsb is not None:
                st = (embed(m, data.stsb[0]), embed(m, data.stsb[1]), data.stsb[2])
            ev = evaluate_embeddings(E, ref["eval"], Q, D, st)
            ms1 = measure_latency(m, lat_small, 1, config.repeat)
            msl = measure_latency(m, lat_large, config.large_batch, config.repeat)
            row = Row(name, METHODS[name].section, int(math.ceil(bits / 8)),
                      base_bits / bits, ev["fidelity"], ev["recall1"], ev["mrr"],
                      ev.get("stsb", float("nan")), ms1, msl, 0.0, notes)
        except Exception as err:  # noqa: BLE001 - a failing method is a row, not a crash
            nan = float("nan")
            row = Row(name, METHODS[name].section, 0, nan, nan, nan, nan, nan, nan, nan, 0.0,
                      f"FAILED: {type(err).__name__}: {err}")
        row = replace(row, seconds=time.perf_counter() - t0)
        rows.append(row)
        if log is not None:
            log(_row_line(row))
    return rows


def _row_line(r: Row) -> str:
    return (f"{r.method:<22} {_mb(r.bytes):>9} {r.ratio:6.2f}× fid {r.fidelity:.4f} "
            f"R@1 {r.recall1:.3f} MRR {r.mrr:.3f} STS-B {r.stsb:5.1f} "
            f"{r.ms_batch1:7.2f} / {r.ms_batch_large:6.2f} ms ({r.seconds:.0f} s)")


def _mb(n) -> str:
    return f"{n / 2 ** 20:.2f} MiB" if n == n else "—"


def rows_to_markdown(rows: list[Row], config: RealConfig | None = None) -> str:
    """The table as Markdown (sizes in MiB, latency in ms per sentence)."""
    big = "" if config is None else f" (batch {config.large_batch})"
    head = ("| method | § | bytes | ratio | fidelity | R@1 | MRR | STS-B | ms/sent. batch 1 | "
            f"ms/sent. large{big} | notes |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    lines = [head]
    for r in rows:
        f = lambda v, p: "—" if v != v else f"{v:.{p}f}"  # noqa: E731
        lines.append(f"| {r.method} | {r.section} | {r.bytes:,} ({_mb(r.bytes)}) | "
                     f"{f(r.ratio, 2)}× | {f(r.fidelity, 4)} | {f(r.recall1, 3)} | "
                     f"{f(r.mrr, 3)} | {f(r.stsb, 1)} | {f(r.ms_batch1, 2)} | "
                     f"{f(r.ms_batch_large, 2)} | {r.notes.replace('|', '/')} |")
    return "\n".join(lines)


def plot_rows(rows: list[Row], ax=None):
    """Bytes (log scale) against fidelity, one labelled point per method."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        if r.fidelity != r.fidelity:
            continue
        ax.scatter(r.bytes / 2 ** 20, r.fidelity, s=25)
        ax.annotate(r.method, (r.bytes / 2 ** 20, r.fidelity), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("stored size (MiB, log scale)")
    ax.set_ylabel("fidelity: mean cosine to the original embedding")
    ax.set_title("all-MiniLM-L6-v2 compressed (Survey §2–§7 methods)")
    ax.grid(True, alpha=0.3)
    return ax


def write_outputs(rows: list[Row], out_dir, config: RealConfig | None = None) -> dict:
    """Write ``real_model.csv``, ``real_model.md`` and ``real_model.png`` into ``out_dir``."""
    import matplotlib

    if "inline" not in matplotlib.get_backend().lower():  # keep a notebook's inline figures
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f"real_model.{k}") for k in ("csv", "md", "png")}
    with open(paths["csv"], "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
    with open(paths["md"], "w", encoding="utf-8") as fh:
        fh.write(rows_to_markdown(rows, config) + "\n")
    fig, ax = plt.subplots(figsize=(8, 5))
    plot_rows(rows, ax)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=120)
    plt.close(fig)
    return paths
