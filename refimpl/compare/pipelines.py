r"""Combinations of compression methods as composable pipelines (Survey §8.1, §8.3).

The survey's §8.1 lists the combinations shown to work — pruning + quantisation (Deep
Compression), pruning + decomposition, distillation + quantisation, distillation + pruning,
decomposition + sharing, decomposition + quantisation — and Fastformers' distillation →
structured pruning → 8-bit. Here each is a :class:`Pipeline` of :class:`Step` objects. A step
takes a trained model (inside a :class:`Compressed`) and returns it compressed further; every
step is built from the chapters' own functions (one implementation of each mechanism):

=====================  ==================================================================
step                   mechanism (where it lives)
=====================  ==================================================================
:class:`Distil`        Hinton KD, ``kd_loss_t`` at T = 4, α = 0.5 (``distillation``, §4.1);
                       per-token soft targets for a language model;
                       :class:`MutualLearning`: deep mutual learning of two peers
                       (``mutual_learning_losses``, §4.2)
:class:`LowRank`       truncated-SVD layers (``decomposition.tour.svd_compress_linears``, §6.1)
:class:`TTEmbed`       TT-embedding (``decomposition.tour.tt_compress_embeddings``, §6.3)
:class:`HashRecurrent` HashedNets recurrent weights (``sharing.tour.hash_recurrent_weights_``,
                       §5.2)
:class:`Prune`         magnitude masks, class-uniform (``pruning.network``, §2.1.2)
:class:`PruneHeadsFFN` head importance Eq. (18) (``pruning.heads_layers``) + FFN-unit norms,
                       whole heads and units removed (§2.4, Fastformers)
:class:`Quantize`      k-means codebooks (``quantization.kmeans``, §3.3.3) or affine uniform
                       codes (``quantization.uniform``, Eq. 39)
:class:`Huffman`       canonical Huffman coding of the code and index streams
                       (``kernels.huffman``; Deep Compression's third stage)
=====================  ==================================================================

Storage accounting that composes exactly
----------------------------------------
:class:`Compressed` keeps, per stored parameter, how it is stored (a :class:`Record`), and
:meth:`Compressed.storage` counts every part in bits:

* dense: ``32 n`` (``values``);
* unstructured mask: CSR with :data:`INDEX_BITS`-bit relative indices and filler entries
  (Han et al.; :func:`refimpl.pruning.storage.encode_delta_csr`): ``pointers`` ``32 (rows+1)``,
  ``indices`` ``INDEX_BITS`` per entry, ``values`` 32 per entry (fillers included) — the same
  count as :func:`refimpl.pruning.network.model_bits`;
* structured mask (whole heads / FFN units): the kept entries densely, plus one keep bit per
  head and per unit (``tables``);
* quantised: ``codes`` ``bits`` per stored entry instead of ``values``, plus the ``codebook``
  (k-means: ``2^bits`` float32 values, or ``2^bits − 1`` when code 0 is the implicit exact zero
  that CSR fillers need) or the ``scales`` (uniform: α and β, 64 bits);
* Huffman: ``codes`` and ``indices`` become the Huffman stream lengths of each matrix's code
  stream and gap stream, plus each code's length table (``huffman_tables``,
  :data:`refimpl.kernels.huffman.LENGTH_FIELD_BITS` per alphabet symbol);
* HashedNets: the two 32-bit hash seeds per hashed matrix (``seeds``).

Order rules (checked when a pipeline is built, before any training): distillation trains a
new student, so it comes first; structural changes (low-rank, TT, hashing) come before pruning;
pruning before quantisation; Huffman last, after quantisation or pruning. Anything else — e.g.
a TT decomposition of an already bit-packed matrix — is refused with the reason.

References
----------
.. [1] S. Han, H. Mao, W. J. Dally, "Deep Compression: Compressing Deep Neural Networks with
   Pruning, Trained Quantization and Huffman Coding", ICLR 2016.
.. [2] Y. J. Kim, H. H. Awadalla, "FastFormers: Highly Efficient Transformer Models for
   Natural Language Understanding", SustaiNLP 2020.
.. [3] M. Gupta, P. Agrawal, "Compression of Deep Learning Models for Text: A Survey", §8.1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from refimpl.kernels.huffman import HuffmanCode
from refimpl.utils import check_choice, check_float, check_fraction, check_int

__all__ = ["INDEX_BITS", "COMPONENTS", "component_of", "Record", "Compressed", "Step", "Distil",
           "MutualLearning", "LowRank", "TTEmbed",
           "HashRecurrent", "Prune", "PruneHeadsFFN", "Quantize", "Huffman", "Pipeline",
           "PIPELINES", "pipeline", "frontier_verdict", "parts_label"]

#: Bits of a relative (delta) column index in the CSR streams (Han et al. use 5 for FC layers
#: in their Huffman experiments... and 4/8 elsewhere; 5 is the chapter-2 tour's choice).
INDEX_BITS = 5
_POINTER_BITS = 32
_VALUE_BITS = 32
_SEED_BITS = 32

#: Stages in the order a pipeline may visit them.
_STAGES = ("distil", "structure", "prune", "quantise", "entropy")


#: The components a budget planner assigns methods to (Survey §8.3).
COMPONENTS = ("embedding", "attention", "ffn", "recurrent", "output", "other")


def component_of(name: str) -> str:
    """The model component a parameter belongs to, from its dotted name: ``"embedding"``,
    ``"attention"``, ``"ffn"``, ``"recurrent"`` (RNN weights), ``"output"`` (the classifier /
    decoder head) or ``"other"`` (positions, LayerNorms)."""
    low = name.lower()
    if "embed" in low:
        return "embedding"
    if "self_attn" in low or "attention" in low:
        return "attention"
    if "linear1" in low or "linear2" in low or "ffn" in low:
        return "ffn"
    if low.startswith(("rnn.", "lstm.", "gru.")) or ".w_ih" in low or ".w_hh" in low:
        return "recurrent"
    if low.startswith(("fc.", "decoder.", "out.", "head.", "classifier.")):
        return "output"
    return "other"


def _check_components(components):
    if components is None:
        return None
    components = tuple(components)
    for c in components:
        check_choice(c, "components", COMPONENTS)
    if not components:
        raise ValueError("components must name at least one component (or be None: all)")
    return components


def _in(name, components):
    return components is None or component_of(name) in components


@dataclass
class Record:
    """How one stored parameter is stored.

    Attributes
    ----------
    mask : ndarray of bool or None
        Kept entries (same shape as the parameter); ``None``: every entry.
    structured : bool
        The mask removes whole heads / units: kept entries are stored densely (no indices).
    codes : ndarray of int or None
        Code of every kept entry, in row-major order of the kept entries.
    bits : int
        Code width.
    codebook : ndarray or None
        Value of each code (``codebook[0] == 0`` when ``implicit_zero``).
    scheme : str
        ``"kmeans"`` (codebook stored) or ``"uniform"`` (α, β stored).
    implicit_zero : bool
        Code 0 is the exact zero of CSR fillers and is not stored in the codebook.
    """

    mask: np.ndarray | None = None
    structured: bool = False
    codes: np.ndarray | None = None
    bits: int = 0
    codebook: np.ndarray | None = None
    scheme: str = ""
    implicit_zero: bool = False


@dataclass
class Compressed:
    """A model part-way through a pipeline, with its exact storage ledger.

    Attributes
    ----------
    model : refimpl.nn.Module
    kind : str
        Which baseline family the model is (``"lstm"``, ``"transformer"``, ...).
    records : dict of str to Record
        Parameters stored other than densely, by name.
    huffman : bool
        Code and index streams are Huffman-coded.
    extra_bits : dict of str to int
        Model-level parts (hash ``seeds``, keep ``tables``).
    steps : list of str
        The steps applied so far.
    seconds : float
        Wall time spent in the steps (training cost).
    """

    model: object
    kind: str
    records: dict = field(default_factory=dict)
    huffman: bool = False
    extra_bits: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    seconds: float = 0.0

    # ------------------------------------------------------------------- accounting
    def _csr_structure(self, mask2d):
        from refimpl.pruning.storage import encode_delta_csr

        enc = encode_delta_csr(mask2d.astype(np.float64), INDEX_BITS)  # 1 = kept, 0 = filler
        return enc

    def param_storage(self, name: str, W: np.ndarray) -> dict:
        """Bits of each part of one stored parameter (see the module docstring)."""
        rec = self.records.get(name)
        n = int(W.size)
        if rec is None:
            return {"values": _VALUE_BITS * n}
        parts: dict = {}
        entry_codes = None
        if rec.mask is not None and not rec.structured:
            m2 = rec.mask.reshape(rec.mask.shape[0], -1)  # (rows, cols)
            enc = self._csr_structure(m2)
            n_entries = enc.n_entries
            parts["pointers"] = (m2.shape[0] + 1) * _POINTER_BITS
            if self.huffman:
                hc = HuffmanCode.fit(enc.gaps.astype(np.int64), 1 << INDEX_BITS)
                parts["indices"] = hc.stream_bits
                parts["huffman_tables"] = hc.table_bits
            else:
                parts["indices"] = n_entries * INDEX_BITS
            if rec.codes is not None:
                entry_codes = np.zeros(n_entries, dtype=np.int64)  # fillers: code 0 (= 0.0)
                entry_codes[enc.values != 0] = rec.codes
        elif rec.mask is not None:
            n_entries = int(rec.mask.sum())
        else:
            n_entries = n
        if rec.codes is None:
            parts["values"] = _VALUE_BITS * n_entries
            return parts
        if entry_codes is None:
            entry_codes = rec.codes
        if self.huffman:
            hc = HuffmanCode.fit(entry_codes, 1 << rec.bits)
            parts["codes"] = hc.stream_bits
            parts["huffman_tables"] = parts.get("huffman_tables", 0) + hc.table_bits
        else:
            parts["codes"] = rec.bits * n_entries
        if rec.scheme == "uniform":
            parts["scales"] = 2 * _VALUE_BITS
        else:
            parts["codebook"] = ((1 << rec.bits) - int(rec.implicit_zero)) * _VALUE_BITS
        return parts

    def storage(self) -> dict:
        """``{parameter name: {part: bits}}`` for every stored parameter, plus
        ``"(model)"``: the model-level parts."""
        out = {n: self.param_storage(n, p.data) for n, p in self.model.named_parameters()}
        if self.extra_bits:
            out["(model)"] = dict(self.extra_bits)
        return out

    def breakdown(self) -> dict:
        """Bits per part, summed over the parameters."""
        tot: dict = {}
        for parts in self.storage().values():
            for k, v in parts.items():
                tot[k] = tot.get(k, 0) + int(v)
        return tot

    @property
    def bits(self) -> int:
        """Exact stored bits of the whole model."""
        return int(sum(self.breakdown().values()))

    @property
    def params(self) -> int:
        """Stored numbers (values or codes; fillers included) — the ``params`` of a tour row."""
        total = 0
        for name, p in self.model.named_parameters():
            rec = self.records.get(name)
            if rec is None or rec.mask is None:
                total += int(p.size)
            elif rec.structured:
                total += int(rec.mask.sum())
            else:
                total += self._csr_structure(rec.mask.reshape(rec.mask.shape[0], -1)).n_entries
        return total

    def huffman_round_trip(self, backend: str | None = None) -> int:
        """Encode and decode every Huffman-coded stream; return the total stream bits.

        Raises AssertionError if a stream does not decode exactly or its length differs from
        the ledger's count (used by the registered check ``huffman-composed-bits``).
        """
        total = 0
        for name, _ in self.model.named_parameters():
            rec = self.records.get(name)
            if rec is None:
                continue
            streams = []
            if rec.mask is not None and not rec.structured:
                enc = self._csr_structure(rec.mask.reshape(rec.mask.shape[0], -1))
                streams.append((enc.gaps.astype(np.int64), 1 << INDEX_BITS))
                if rec.codes is not None:
                    ec = np.zeros(enc.n_entries, dtype=np.int64)
                    ec[enc.values != 0] = rec.codes
                    streams.append((ec, 1 << rec.bits))
            elif rec.codes is not None:
                streams.append((np.asarray(rec.codes, dtype=np.int64), 1 << rec.bits))
            for s, alphabet in streams:
                hc = HuffmanCode.fit(s, alphabet)
                payload, nb = hc.encode(s, backend=backend)
                assert nb == hc.stream_bits, (name, nb, hc.stream_bits)
                back = hc.decode(payload, nb, backend=backend)
                assert np.array_equal(back, s), f"{name}: Huffman round trip failed"
                total += nb
        return total


# ------------------------------------------------------------------------------- steps
class Step:
    """One stage of a pipeline: ``step(cm, ctx) -> cm`` (in place on ``cm.model``).

    ``stage`` orders the steps (:data:`_STAGES`); ``name`` is shown in the tables.
    """

    stage = ""
    name = "step"

    def __call__(self, cm: Compressed, ctx) -> Compressed:
        raise NotImplementedError

    def __repr__(self):
        return self.name


def _finetune(ctx, model, epochs=1, **kw):
    return ctx.fit(model, epochs=epochs, **kw)


def _widths(ctx, kind):
    return dict(getattr(ctx.config, "model_kwargs", {}).get(kind, {}))


def _is_lm(model) -> bool:
    from refimpl.nn import LSTMLanguageModel, TransformerLanguageModel

    return isinstance(model, (LSTMLanguageModel, TransformerLanguageModel))


def _lm_token_logits(model, X, lengths):
    """A language model's next-token logits at every real target position, as a classifier
    over the vocabulary: ``(logits (n_targets, V) Tensor, targets (n_targets,))`` for rows
    ``<bos> ... <eos>`` ``X`` (B, T) — the positions :meth:`LSTMLanguageModel.loss` scores."""
    X = np.asarray(X)
    lengths = np.asarray(lengths)
    T = X.shape[1]
    logits = model(X[:, :-1], lengths - 1)  # (B, T-1, V)
    valid = np.arange(1, T)[None, :] < lengths[:, None]  # (B, T-1): a real target
    rows = np.flatnonzero(valid)
    return logits.reshape(-1, logits.shape[-1])[rows], X[:, 1:].reshape(-1)[rows]


def _student(cm, ctx, rng=None):
    """A smaller untrained model of the same family as ``cm.model`` (the KD / DML student):
    LSTM (classifier or LM): half the embedding width, a quarter of the hidden width;
    Transformer (classifier or causal LM): half the layers and half the FFN width."""
    extra = {} if rng is None else {"rng": rng}
    if _is_lm(cm.model) and hasattr(cm.model, "layers"):  # Transformer LM
        t = cm.model
        return ctx.make_model("transformer", num_layers=max(1, t.num_layers // 2),
                              d_ff=max(4, t.layers[0].d_ff // 2), **extra)
    if _is_lm(cm.model):
        t = cm.model
        return ctx.make_model(d_emb=max(4, t.embedding.W.shape[1] // 2),
                              d_hidden=max(4, t.rnn.hidden_size // 4), **extra)
    w = _widths(ctx, cm.kind)
    if cm.kind in ("lstm", "gru"):
        return ctx.make_model(cm.kind, d_emb=max(4, int(w.get("d_emb", 32)) // 2),
                              d_hidden=max(4, int(w.get("d_hidden", 32)) // 4), **extra)
    if cm.kind == "transformer":
        return ctx.make_model("transformer", num_layers=max(1, int(w.get("num_layers", 2)) // 2),
                              d_ff=max(4, int(w.get("d_ff", 64)) // 2), **extra)
    raise ValueError(f"distillation supports lstm, gru and transformer baselines and LSTM "
                     f"language models, got {cm.kind!r}")


class Distil(Step):
    """Hinton KD into a smaller student of the same family (Survey §4.1, Eq. (1) of Hinton et
    al.: ``kd_loss_t`` at T = 4, α = 0.5, the chapter-4 tour's setting).

    LSTM student: half the embedding width and a quarter of the hidden width (as
    ``hinton-kd-lstm``); Transformer student: half the layers and half the FFN width.

    Language models (:class:`refimpl.nn.LSTMLanguageModel`,
    :class:`refimpl.nn.TransformerLanguageModel`): the same loss per token — the
    teacher's next-token distribution at every real position is the soft target of a classifier
    over the vocabulary (Hinton et al.'s loss averaged over the ``n_targets`` positions of the
    batch, the hard term on the true next token), as word-level KD for LMs does.
    """

    stage = "distil"

    def __init__(self, T: float = 4.0, alpha: float = 0.5):
        self.T = check_float(T, "T", 0.0, lo_open=True)
        self.alpha = check_float(alpha, "alpha", 0.0, 1.0)
        self.name = "distil"

    def __call__(self, cm, ctx):
        from refimpl.distillation.architectures import kd_loss_t
        from refimpl.nn import no_grad

        teacher = cm.model
        teacher.eval()
        student = _student(cm, ctx)
        soft = {}
        if _is_lm(teacher):
            def forward(model, X, lengths):  # per-token logits; the teacher's are the targets
                with no_grad():
                    soft["t"] = _lm_token_logits(teacher, X, lengths)[0].data
                out, soft["y"] = _lm_token_logits(model, X, lengths)
                return out

            ctx.fit(student, forward=forward, loss_fn=lambda out, _y: kd_loss_t(
                out, soft["t"], self.T, soft["y"], self.alpha))
        else:
            def forward(model, X, lengths):  # the teacher's logits of this batch: targets
                with no_grad():
                    soft["t"] = teacher(X, lengths).data
                return model(X, lengths)

            ctx.fit(student, forward=forward,
                    loss_fn=lambda out, y: kd_loss_t(out, soft["t"], self.T, y, self.alpha))
        cm.model = student
        return cm


class MutualLearning(Step):
    """Deep mutual learning (Survey §4.2, Zhang et al. 2018): two students of the
    :class:`Distil` size trained together from scratch, each on cross-entropy plus ``T²·KL``
    to the other's prediction (:func:`refimpl.distillation.mutual_learning_losses`, the
    simultaneous variant); peer 0 is kept. The trained model of ``cm`` only fixes the
    architecture family (DML needs no teacher).

    The peers start from different initialisations (seeds ``ctx.seed + 101`` and ``+ 102``):
    identical peers would get identical gradients and the KL terms would stay exactly 0.
    Language models: per-token, as :class:`Distil`.
    """

    stage = "distil"

    def __init__(self, T: float = 1.0):
        self.T = check_float(T, "T", 0.0, lo_open=True)
        self.name = "dml"

    def __call__(self, cm, ctx):
        from refimpl.distillation.collaborative import mutual_learning_losses
        from refimpl.nn import ModuleList
        from refimpl.nn import functional as F

        lm = _is_lm(cm.model)
        pair = ModuleList([_student(cm, ctx, rng=ctx.seed + 101 + k) for k in range(2)])
        st = {}

        def forward(model, X, lengths):  # (N, 2C): peer 0's logits, then peer 1's
            if lm:
                outs = [_lm_token_logits(p, X, lengths) for p in model]
                st["y"] = outs[0][1]
                outs = [o[0] for o in outs]
            else:
                outs = [p(X, lengths) for p in model]
            st["C"] = outs[0].shape[1]
            return F.concat(outs, axis=1)

        def loss_fn(out, y):
            C = st["C"]
            l0, l1 = mutual_learning_losses([out[:, :C], out[:, C:]],
                                            st["y"] if lm else y, self.T)
            return l0 + l1

        ctx.fit(pair, forward=forward, loss_fn=loss_fn)
        cm.model = pair[0]
        return cm


class LowRank(Step):
    """Truncated-SVD factors for every Linear and recurrent weight (Survey §6.1), fine-tuned."""

    stage = "structure"

    def __init__(self, rank_fraction: float = 1 / 3):
        self.rank_fraction = check_float(rank_fraction, "rank_fraction", 0.0, 1.0,
                                         lo_open=True)
        self.name = f"low-rank({self.rank_fraction:.2g})"

    def __call__(self, cm, ctx):
        from refimpl.decomposition.tour import svd_compress_linears

        if not svd_compress_linears(cm.model, self.rank_fraction):
            raise ValueError("LowRank: the model has no Linear/recurrent weight with both "
                             "sizes >= 16")
        _finetune(ctx, cm.model, lr=1e-3)
        return cm


class TTEmbed(Step):
    """The embedding as a TT-embedding (Survey §6.3; 3 cores, TT-rank ``rank``), fine-tuned."""

    stage = "structure"

    def __init__(self, rank: int = 8):
        self.rank = check_int(rank, "rank", 1)
        self.name = f"tt-embedding(r={self.rank})"

    def __call__(self, cm, ctx):
        from refimpl.decomposition.tour import tt_compress_embeddings

        if not tt_compress_embeddings(cm.model, rank=self.rank):
            raise ValueError("TTEmbed: no embedding whose width factors into 3 modes")
        _finetune(ctx, cm.model, lr=1e-3)
        return cm


class HashRecurrent(Step):
    """Every recurrent weight as a HashedNets layer with ``fraction`` of its entries as real
    weights (Survey §5.2), least-squares initialised, fine-tuned; two 32-bit seeds each."""

    stage = "structure"

    def __init__(self, fraction: float = 1 / 8):
        self.fraction = check_float(fraction, "fraction", 0.0, 1.0, lo_open=True)
        self.name = f"hashednets({self.fraction:.3g})"

    def __call__(self, cm, ctx):
        from refimpl.sharing.tour import hash_recurrent_weights_

        layers = hash_recurrent_weights_(cm.model, self.fraction, seed=ctx.seed)
        if not layers:
            raise ValueError("HashRecurrent: no dense recurrent weight matrix left to hash "
                             "(not an RNN, or already factorised)")
        cm.extra_bits["seeds"] = cm.extra_bits.get("seeds", 0) + 2 * _SEED_BITS * len(layers)
        _finetune(ctx, cm.model)
        return cm


class Prune(Step):
    """One-shot magnitude pruning of every 2-D weight to ``sparsity`` (class-uniform, Survey
    §2.1.2), fine-tuned with the masks fixed; stored as CSR with relative indices."""

    stage = "prune"

    def __init__(self, sparsity: float = 0.9, epochs: int = 1, components=None):
        self.sparsity = check_fraction(sparsity, "sparsity")
        self.epochs = check_int(epochs, "epochs", 0)
        self.components = _check_components(components)
        self.name = f"prune({self.sparsity:.2g})" + (
            "" if self.components is None else f"[{','.join(self.components)}]")

    def __call__(self, cm, ctx):
        from refimpl.pruning.network import apply_masks_, magnitude_masks, mask_after_step

        names = [n for n, p in cm.model.named_parameters()
                 if p.ndim == 2 and n not in cm.records and _in(n, self.components)]
        if not names:
            raise ValueError("Prune: no unpruned 2-D weight matrix left")
        masks = magnitude_masks(cm.model, self.sparsity, scheme="class-uniform", names=names)
        apply_masks_(cm.model, masks)
        if self.epochs:
            _finetune(ctx, cm.model, epochs=self.epochs, after_step=mask_after_step(masks))
        for n, m in masks.items():
            cm.records[n] = Record(mask=np.asarray(m, dtype=bool))
        return cm


class PruneHeadsFFN(Step):
    """Fastformers-style structured pruning of a Transformer: drop the ``heads`` fraction of
    attention heads with the lowest importance (Survey Eq. (18), Michel et al., normalised
    per layer) and the ``ffn`` fraction of FFN units with the smallest
    ``‖W_1[j,:]‖·‖W_2[:,j]‖``; fine-tune with the removed rows/columns held at zero.

    A removed head's rows of ``W_q, W_k, W_v`` (and biases) and columns of ``W_o`` are zero, so
    its output is exactly zero (= removed); a removed unit's row of ``W_1`` (and bias) and
    column of ``W_2`` likewise. Storage: the kept entries densely plus one keep bit per head
    and per unit. On a causal :class:`refimpl.nn.TransformerLanguageModel` the importance
    scores each training sentence's mean next-token NLL
    (:func:`refimpl.pruning.tour.importance_rows`).
    """

    stage = "prune"

    def __init__(self, heads: float = 0.5, ffn: float = 0.5):
        self.heads = check_fraction(heads, "heads")
        self.ffn = check_fraction(ffn, "ffn")
        self.name = f"prune-heads-ffn({self.heads:.2g},{self.ffn:.2g})"

    def __call__(self, cm, ctx):
        from refimpl.nn import MultiHeadAttention
        from refimpl.pruning.heads_layers import head_importance
        from refimpl.pruning.network import apply_masks_, mask_after_step
        from refimpl.pruning.tour import importance_rows

        model = cm.model
        layers = list(getattr(model, "layers", []))
        if not layers or not all(isinstance(getattr(lay, "self_attn", None),
                                            MultiHeadAttention) for lay in layers):
            raise ValueError("PruneHeadsFFN needs a Transformer (layers with self_attn)")
        # Eq. (18) on the task's first 512 training rows (a causal LM: each sentence's mean
        # next-token NLL)
        imp = head_importance(model, *importance_rows(ctx, model), normalize=True)  # (L, H)
        flat = imp.ravel()
        drop = np.argsort(flat, kind="stable")[:int(round(self.heads * flat.size))]
        keep_heads = np.ones(flat.size, bool)
        keep_heads[drop] = False
        keep_heads = keep_heads.reshape(imp.shape)
        for row in keep_heads:  # never remove every head of a layer
            if not row.any():
                row[0] = True
        params = dict(model.named_parameters())
        pname = {id(p): n for n, p in params.items()}
        masks = {}
        n_units = 0
        for li, lay in enumerate(layers):
            mha = lay.self_attn
            dh = mha.d_head
            rows = np.repeat(keep_heads[li], dh)  # (d_model,) kept output rows of Q, K, V
            for lin in (mha.W_q, mha.W_k, mha.W_v):
                masks[pname[id(lin.W)]] = np.broadcast_to(rows[:, None], lin.W.shape).copy()
                if lin.b is not None:
                    masks[pname[id(lin.b)]] = rows.copy()
            masks[pname[id(mha.W_o.W)]] = np.broadcast_to(rows[None, :], mha.W_o.W.shape).copy()
            W1, W2 = lay.linear1.W.data, lay.linear2.W.data  # (d_ff, d), (d, d_ff)
            score = np.linalg.norm(W1, axis=1) * np.linalg.norm(W2, axis=0)  # (d_ff,)
            keep_u = np.ones(score.size, bool)
            keep_u[np.argsort(score, kind="stable")[:int(round(self.ffn * score.size))]] = False
            if not keep_u.any():
                keep_u[np.argmax(score)] = True
            masks[pname[id(lay.linear1.W)]] = np.broadcast_to(keep_u[:, None], W1.shape).copy()
            if lay.linear1.b is not None:
                masks[pname[id(lay.linear1.b)]] = keep_u.copy()
            masks[pname[id(lay.linear2.W)]] = np.broadcast_to(keep_u[None, :], W2.shape).copy()
            n_units += score.size
        apply_masks_(model, masks)
        _finetune(ctx, model, after_step=mask_after_step(masks))
        for n_, m in masks.items():
            cm.records[n_] = Record(mask=m, structured=True)
        cm.extra_bits["tables"] = cm.extra_bits.get("tables", 0) + keep_heads.size + n_units
        return cm


class Quantize(Step):
    """Quantise every stored 2-D weight (its kept entries) to ``bits``-bit codes.

    ``scheme="kmeans"``: k-means weight sharing (Survey Eq. (49), §3.3.3) with ``2^bits``
    centroids (``2^bits − 1`` plus the implicit zero for CSR matrices), then Han et al.'s
    trained quantisation for ``epochs``: after every optimiser step each centroid becomes the
    mean of its cluster's weights and every weight its centroid (masked entries stay zero).
    ``scheme="uniform"``: affine uniform codes (Eq. 39, α = max − min, β = min per matrix),
    no fine-tuning.
    """

    stage = "quantise"

    def __init__(self, bits: int = 4, scheme: str = "kmeans", epochs: int = 1,
                 components=None):
        self.bits = check_int(bits, "bits", 1, 16)
        self.scheme = check_choice(scheme, "scheme", ("kmeans", "uniform"))
        self.epochs = check_int(epochs, "epochs", 0)
        self.components = _check_components(components)
        self.name = f"{scheme}-{self.bits}bit" + (
            "" if self.components is None else f"[{','.join(self.components)}]")

    def _quantise(self, w, implicit_zero, rng):
        from refimpl.quantization.kmeans import kmeans_quantize
        from refimpl.quantization.uniform import quantize_uniform

        k = 1 << self.bits
        if self.scheme == "uniform":
            lo, hi = float(w.min()), float(w.max())
            q = quantize_uniform(w, self.bits)  # Eq. (39)
            alpha = hi - lo
            codes = (np.zeros(w.size, np.int64) if alpha == 0 else
                     np.rint((q - lo) / alpha * (k - 1)).astype(np.int64))
            codebook = lo + alpha * np.arange(k) / (k - 1)
            return codes, codebook
        n_c = k - int(implicit_zero)
        n_c = min(n_c, w.size)
        cb, lab = kmeans_quantize(w, n_c, rng=rng)
        order = np.argsort(cb, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        codes = rank[lab] + int(implicit_zero)
        codebook = np.zeros(k)
        codebook[int(implicit_zero):int(implicit_zero) + n_c] = cb[order]
        return codes.astype(np.int64), codebook

    def __call__(self, cm, ctx):
        params = dict(cm.model.named_parameters())
        todo = [n for n, p in params.items() if p.ndim == 2 and _in(n, self.components)
                and (n not in cm.records or cm.records[n].codes is None)]
        if not todo:
            raise ValueError("Quantize: no unquantised 2-D weight matrix left")
        for i, n in enumerate(todo):
            p = params[n]
            rec = cm.records.get(n) or Record()
            sel = np.ones(p.shape, bool) if rec.mask is None else rec.mask
            implicit_zero = rec.mask is not None and not rec.structured
            codes, cb = self._quantise(p.data[sel], implicit_zero, ctx.seed + i)
            new = np.zeros_like(p.data)
            new[sel] = cb[codes]
            p.data = new.astype(p.data.dtype)
            rec.codes, rec.bits, rec.codebook = codes, self.bits, cb
            rec.scheme, rec.implicit_zero = self.scheme, implicit_zero
            cm.records[n] = rec
        if self.scheme == "kmeans" and self.epochs:
            _finetune(ctx, cm.model, epochs=self.epochs, after_step=self._tie(cm, todo))
        return cm

    @staticmethod
    def _tie(cm, names):
        """after_step hook: centroid = mean of its cluster, weights = their centroid."""
        def after_step(model):
            params = dict(model.named_parameters())
            for n in names:
                rec, p = cm.records[n], params[n]
                sel = np.ones(p.shape, bool) if rec.mask is None else rec.mask
                k = rec.codebook.size
                vals = p.data[sel]
                sums = np.bincount(rec.codes, weights=vals, minlength=k)
                cnt = np.bincount(rec.codes, minlength=k)
                cb = np.where(cnt > 0, sums / np.maximum(cnt, 1), rec.codebook)
                if rec.implicit_zero:
                    cb[0] = 0.0
                rec.codebook = cb
                new = np.zeros_like(p.data)
                new[sel] = cb[rec.codes]
                p.data = new
        return after_step


class Huffman(Step):
    """Huffman-code each matrix's code stream and relative-index stream (Deep Compression's
    third stage; :mod:`refimpl.kernels.huffman`). Lossless: the model is unchanged."""

    stage = "entropy"
    name = "huffman"

    def __call__(self, cm, ctx):
        if not any(r.codes is not None or (r.mask is not None and not r.structured)
                   for r in cm.records.values()):
            raise ValueError("Huffman needs a code or index stream: quantise or prune first")
        cm.huffman = True
        return cm


# ---------------------------------------------------------------------------- pipeline
class Pipeline:
    """An ordered list of steps applied to a copy of a trained baseline.

    Parameters
    ----------
    name : str
    steps : sequence of Step
    base : str
        The tour baseline the pipeline starts from (``"lstm"``, ``"transformer"``, ...).
    parts : sequence of str
        Names of the single-method tour rows this combination is compared with.
    description : str

    Raises
    ------
    ValueError
        An empty pipeline, or steps in an order that cannot work (module docstring).
    """

    def __init__(self, name: str, steps, *, base: str = "lstm", parts=(), description=""):
        steps = list(steps)
        if not steps:
            raise ValueError(f"pipeline {name!r} is empty: give at least one step")
        for s in steps:
            if not isinstance(s, Step):
                raise TypeError(f"pipeline {name!r}: steps must be Step objects, got "
                                f"{type(s).__name__}")
        for a, b in zip(steps, steps[1:]):
            ia, ib = _STAGES.index(a.stage), _STAGES.index(b.stage)
            if b.stage == "distil":
                raise ValueError(f"pipeline {name!r}: {b.name} cannot follow {a.name}: "
                                 f"distillation trains a new student and would discard the "
                                 f"compression before it; put it first")
            if ib < ia:
                why = {"structure": "it re-parameterises dense float weights, and they are "
                                    "already " + ("pruned" if a.stage == "prune" else
                                                  "bit-packed codes" if a.stage == "quantise"
                                                  else "entropy-coded"),
                       "prune": "the weights are already k-bit codes" if a.stage ==
                                "quantise" else "the streams are already entropy-coded",
                       "quantise": "the streams are already entropy-coded"}[b.stage]
                raise ValueError(f"pipeline {name!r}: {b.name} cannot follow {a.name}: "
                                 f"{why}; order: distil → low-rank/TT/hashing → prune → "
                                 f"quantise → Huffman")
            if b.stage == "entropy" and a.stage == "entropy":
                raise ValueError(f"pipeline {name!r}: Huffman twice")
        if steps[0].stage == "entropy":
            raise ValueError(f"pipeline {name!r}: Huffman needs a code or index stream: "
                             f"quantise or prune first")
        self.name, self.steps, self.base = name, steps, base
        self.parts, self.description = tuple(parts), description

    def run(self, ctx) -> Compressed:
        """Copy ``ctx``'s trained ``base`` baseline and apply every step."""
        cm = Compressed(ctx.copy_baseline(self.base), self.base)
        t0 = time.perf_counter()
        for s in self.steps:
            cm = s(cm, ctx)
            cm.steps.append(s.name)
        cm.seconds = time.perf_counter() - t0
        return cm

    def __repr__(self):
        return f"Pipeline({self.name!r}: {' → '.join(s.name for s in self.steps)})"


def _pipelines() -> dict:
    P = Pipeline
    return {p.name: p for p in [
        P("deep-compression", [Prune(0.9), Quantize(4), Huffman()], base="lstm",
          parts=("magnitude-90", "kmeans-4bit"),
          description="pruning + quantisation: prune 90% → 4-bit k-means (trained centroids) "
                      "→ Huffman (Han et al.)"),
        P("lowrank-prune", [LowRank(1 / 3), Prune(0.5)], base="lstm",
          parts=("svd-low-rank", "magnitude-90"),
          description="decomposition + pruning: SVD factors → prune the factors 50%"),
        P("kd-quantize", [Distil(), Quantize(4)], base="lstm",
          parts=("hinton-kd-lstm", "kmeans-4bit"),
          description="distillation + quantisation: KD student → 4-bit k-means"),
        P("kd-prune", [Distil(), Prune(0.5)], base="lstm",
          parts=("hinton-kd-lstm", "magnitude-90"),
          description="distillation + pruning: KD student → prune 50%"),
        P("tt-hashed", [TTEmbed(8), HashRecurrent(1 / 8)], base="lstm",
          parts=("tt-embedding", "hashednets-lstm"),
          description="decomposition + sharing: TT-embedding + HashedNets recurrent weights"),
        P("lowrank-quantize", [LowRank(1 / 3), Quantize(4)], base="lstm",
          parts=("svd-low-rank", "kmeans-4bit"),
          description="decomposition + quantisation: SVD factors → 4-bit k-means"),
        P("fastformers", [Distil(), PruneHeadsFFN(0.5, 0.5), Quantize(8, "uniform")],
          base="transformer", parts=("heads-50",),
          description="Fastformers: distil → prune half the heads and FFN units → 8-bit"),
    ]}


#: The survey's combinations (§8.1), by name.
PIPELINES = _pipelines()


def pipeline(name: str) -> Pipeline:
    """The registered pipeline ``name`` (see :data:`PIPELINES`)."""
    if name not in PIPELINES:
        raise ValueError(f"pipeline must be one of {sorted(PIPELINES)}, got {name!r}")
    return PIPELINES[name]


def frontier_verdict(combo: dict, parts: list, tol: float = 0.01) -> str:
    """Does a combination beat its parts on the size–quality frontier?

    ``combo`` and each part are dicts with ``method``, ``bytes`` and ``accuracy`` (tour rows;
    parts with no result are ignored). Returns

    * ``"dominated by X"`` when part X is at least as small and at least as accurate;
    * ``"beats its parts"`` when it is smaller than every part and at most ``tol`` less
      accurate than the most accurate part (one accuracy point by default: test-set noise);
    * ``"trade-off: ..."`` otherwise (smaller, or more accurate, but not both), saying by how
      much it trails the most accurate part.
    """
    ok = [p for p in parts if p.get("bytes") and p.get("accuracy") is not None]
    if combo.get("bytes") is None or combo.get("accuracy") is None:
        return "no result"
    if not ok:
        return "no parts measured"
    for p in ok:
        if p["bytes"] <= combo["bytes"] and p["accuracy"] >= combo["accuracy"]:
            return f"dominated by {p['method']}"
    best = max(ok, key=lambda p: p["accuracy"])
    smaller = all(combo["bytes"] < p["bytes"] for p in ok)
    gap = best["accuracy"] - combo["accuracy"]
    if smaller and gap <= tol:
        return "beats its parts"
    return (f"trade-off: {'smaller than every part' if smaller else 'not the smallest'}, "
            f"{-gap:+.3f} accuracy vs {best['method']}")


def parts_label(parts, ran) -> str:
    """The parenthesis after a verdict: the parts it was compared with, and the parts that
    did not run (a tour restricted with ``--methods``), so a verdict never names a part it did
    not see. ``parts``: the pipeline's part names; ``ran``: names of the rows with a result."""
    seen = [p for p in parts if p in ran]
    missing = [p for p in parts if p not in ran]
    out = ", ".join(seen)
    if missing:
        out += ("; " if out else "") + "parts not run: " + ", ".join(missing)
    return f" ({out})"


# ------------------------------------------------------------------- tour registration
#: Pipelines run by ``refimpl tour --quick`` too (the others only in the full tour).
QUICK_PIPELINES = ("deep-compression",)


def _register_all() -> None:
    """Register every pipeline as a ``refimpl tour`` method (family ``"combination"``)."""
    from refimpl.registry import MethodResult, register_method

    for p in PIPELINES.values():
        def method(ctx, _p=p):
            cm = _p.run(ctx)
            return MethodResult(cm.model, bits=cm.bits, params=cm.params,
                                notes=" → ".join(cm.steps),
                                extra={"baseline": _p.base, "records": cm.records,
                                       "breakdown": cm.breakdown()})

        method.__doc__ = p.description
        register_method(p.name, family="combination", section="8.1",
                        description=p.description,
                        quick=p.name in QUICK_PIPELINES)(method)


_register_all()
