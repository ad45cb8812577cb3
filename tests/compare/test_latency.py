"""Stored-kernel latency (#19 item 5): each stored format runs through its kernel (checked by
the dispatch log and by exactness against the dense product), never a dense simulation."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.compare.latency import infer_format, stored_latency, stored_ops
from refimpl.compare.pipelines import Record
from refimpl.kernels import record_calls
from refimpl.nn import Linear, Module


class _Two(Module):
    def __init__(self, W1, W2):
        super().__init__()
        self.a = Linear(W1.shape[1], W1.shape[0], rng=0)
        self.b = Linear(W2.shape[1], W2.shape[0], rng=0)
        self.a.W.data, self.b.W.data = W1, W2


def test_infer_format():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((16, 16))
    assert infer_format(W)[0] == "dense"
    S = W * (rng.random(W.shape) < 0.3)
    assert infer_format(S)[0] == "csr"
    Q = np.where(W > 0, 0.5, -0.5)
    assert infer_format(Q) == ("binary", 0.5)
    T = np.where(W > 0.5, 0.25, np.where(W < -0.5, -0.25, 0.0))
    assert infer_format(T) == ("ternary", 0.25)
    Q2 = np.where(W > 0, 0.5, -1.5)  # two levels, not ±α: 1-bit codes with a codebook
    fmt, (bits, codes, cb) = infer_format(Q2)
    assert fmt == "kbit" and bits == 1 and np.array_equal(cb[codes], Q2)
    # a 2 × 2 dense matrix has <= 4 distinct values by chance: not called 2-bit
    assert infer_format(rng.standard_normal((2, 2)))[0] == "dense"


@pytest.mark.parametrize("how", ["inferred", "records"])
def test_each_format_runs_its_kernel_exactly(how):
    rng = np.random.default_rng(1)
    W1 = rng.standard_normal((24, 40)) * (rng.random((24, 40)) < 0.2)  # sparse
    cb = np.array([-1.5, -0.5, 0.5, 1.5])
    codes = rng.integers(0, 4, size=(8, 24))
    W2 = cb[codes]  # 2-bit codes
    model = _Two(W1, W2)
    records = None
    if how == "records":
        records = {"a.W": Record(mask=W1 != 0),
                   "b.W": Record(codes=codes.ravel(), bits=2, codebook=cb, scheme="kmeans")}
    ops = stored_ops(model, records)
    assert [op.fmt for op in ops] == ["csr", "kbit2"]
    X1 = rng.standard_normal((3, 40)).astype(np.float32)
    X2 = rng.standard_normal((3, 24)).astype(np.float32)
    with record_calls() as log:
        Y1, Y2 = ops[0].run(X1), ops[1].run(X2)
    kernels = {k for k, _ in log}
    assert any(k.startswith("kbit_") for k in kernels) and any("csr" in k for k in kernels), \
        kernels
    # float32 products of float64-exact weights: error bounded by K · eps32 · Σ|x||w|
    for Y, X, W in ((Y1, X1, W1), (Y2, X2, W2)):
        ref = X.astype(np.float64) @ W.T
        bound = X.shape[1] * np.finfo(np.float32).eps * (np.abs(X) @ np.abs(W).T) + 1e-30
        assert np.all(np.abs(Y - ref) <= bound)


def test_structured_record_stores_the_smaller_matrix():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((6, 5))
    mask = np.zeros_like(W, bool)
    mask[[0, 3]] = True
    W = W * mask
    model = _Two(W, rng.standard_normal((4, 6)))
    ops = stored_ops(model, {"a.W": Record(mask=mask, structured=True)})
    assert ops[0].fmt == "dense" and ops[0].in_features == 5
    X = rng.standard_normal((2, 5)).astype(np.float32)
    assert ops[0].run(X).shape == (2, 2)  # only the two kept rows are computed


def test_stored_latency_reports_both_batches():
    rng = np.random.default_rng(3)
    model = _Two(rng.standard_normal((8, 8)), rng.standard_normal((8, 8)))
    out = stored_latency(model, batches=(1, 64), repeat=3)
    assert set(out) == {"ms_b1", "ms_b64", "formats", "n_ops"} | {
        f"{k}_ms_b{B}" for k in ("weight", "embedding", "attention") for B in (1, 64)}
    assert out["ms_b1"] > 0 and out["ms_b64"] > 0 and out["formats"] == "dense×2"
    assert out["embedding_ms_b1"] == out["attention_ms_b64"] == 0.0  # _Two has neither
    with pytest.raises(ValueError, match="repeat"):
        stored_latency(model, repeat=0)


# ------------------------------------------------------------ embedding lookups (#16 item 2)
class _Emb(Module):
    def __init__(self, W):
        super().__init__()
        from refimpl.nn import Embedding

        self.embedding = Embedding(W.shape[0], W.shape[1], rng=0)
        self.embedding.W.data = W


def _lookup(model, records=None):
    ops = stored_ops(model, records, kinds=("embedding",))
    assert len(ops) == 1 and ops[0].kind == "embedding"
    return ops[0]


def test_embedding_lookups_run_their_stored_format_exactly():
    rng = np.random.default_rng(4)
    ids = np.array([0, 5, 5, 29, 17])
    W = rng.standard_normal((30, 12))
    op = _lookup(_Emb(W))
    assert op.fmt == "gather"
    np.testing.assert_array_equal(op.run(ids), W[ids].astype(np.float32))
    S = W * (rng.random(W.shape) < 0.2)  # mostly zeros: CSR rows
    op = _lookup(_Emb(S))
    assert op.fmt == "gather-csr"
    np.testing.assert_array_equal(op.run(ids), S[ids].astype(np.float32))
    cb = np.array([-0.75, -0.25, 0.25, 0.75])
    codes = rng.integers(0, 4, W.shape)
    for records in (None, {"embedding.W": Record(codes=codes.ravel(), bits=2, codebook=cb,
                                                 scheme="kmeans")}):
        op = _lookup(_Emb(cb[codes]), records)
        assert op.fmt == "gather-kbit2"
        with record_calls() as log:
            out = op.run(ids)
        assert any(k.startswith("unpack_codes") for k, _ in log), log
        np.testing.assert_array_equal(out, cb[codes][ids].astype(np.float32))
    # batch inputs are token ids in range
    X = op.input(64, np.random.default_rng(0))
    assert X.shape == (64,) and X.dtype.kind == "i" and 0 <= X.min() and X.max() < 30


def test_tt_and_subvector_lookups_match_their_modules():
    from refimpl.decomposition.tensor_train import TTEmbedding
    from refimpl.sharing.subvectors import SubvectorEmbedding

    rng = np.random.default_rng(5)
    model = Module()
    model.tt = TTEmbedding(50, voc_dims=(4, 4, 4), emb_dims=(2, 2, 2), rank=3, rng=1)
    model.sv = SubvectorEmbedding(50, 8, num_blocks=2, num_refs=8, rng=2)
    ops = {op.fmt: op for op in stored_ops(model)}
    assert set(ops) == {"tt-lookup", "gather-subvec"}
    ids = rng.integers(0, 50, 7)
    with record_calls() as log:
        tt = ops["tt-lookup"].run(ids)
    assert any(k.startswith("tt_embedding_lookup") for k, _ in log), log
    ref = model.tt.weight()[ids]
    # float32 cores: each entry is a sum of products of 3 cores, error ~ 3 eps32 Σ|terms|
    np.testing.assert_allclose(tt, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(ops["gather-subvec"].run(ids), model.sv(ids).data, rtol=1e-6)


# ----------------------------------------------------------------- attention (#16 item 2)
def _transformer(hook=None, n=16, H=2, d=16):
    from refimpl.nn import TransformerClassifier

    m = TransformerClassifier(vocab_size=40, d_model=d, num_heads=H, d_ff=32, num_layers=1,
                              max_len=n, n_classes=2, rng=0)
    if hook is not None:
        m.layers[0].self_attn.attention = hook
    return m


def test_attention_ops_use_the_variant_function_not_dense():
    from refimpl.attention.dense import dense_attention
    from refimpl.attention.hooks import LinearAttentionHook, LongformerHook
    from refimpl.attention.linear import linear_attention, longformer_mask

    rng = np.random.default_rng(6)
    base = stored_ops(_transformer(), kinds=("attention",))
    assert [op.fmt for op in base] == ["attn-dense"] and base[0].in_features == 16
    Q, K, V = base[0].input(3, rng)
    assert Q.shape == (3, 2, 16, 8)
    win = stored_ops(_transformer(LongformerHook(4, 1, (0,), fused=True)), kinds=("attention",))
    assert [op.fmt for op in win] == ["attn-window"]
    with record_calls() as log:
        out = win[0].run((Q, K, V))
    assert any("sliding_window" in k for k, _ in log), log
    ref = dense_attention(Q.astype(np.float64), K.astype(np.float64), V.astype(np.float64),
                          longformer_mask(16, 4, 1, (0,)))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)  # float32 softmax of O(1) scores
    # the causal window of a causal LM: timed through the kernel's causal form
    cw = stored_ops(_transformer(LongformerHook(4, fused=True, causal=True)),
                    kinds=("attention",))
    assert [op.fmt for op in cw] == ["attn-window-causal"]
    refc = dense_attention(Q.astype(np.float64), K.astype(np.float64), V.astype(np.float64),
                           longformer_mask(16, 4) & np.tril(np.ones((16, 16), dtype=bool)))
    np.testing.assert_allclose(cw[0].run((Q, K, V)), refc, rtol=0, atol=1e-5)
    lin = stored_ops(_transformer(LinearAttentionHook()), kinds=("attention",))
    assert [op.fmt for op in lin] == ["attn-linear"]
    np.testing.assert_allclose(lin[0].run((Q, K, V)), linear_attention(Q, K, V), rtol=1e-6)


def test_pruned_heads_are_not_computed():
    m = _transformer(H=4)
    m.layers[0].self_attn.head_mask = np.array([1.0, 0.0, 1.0, 0.0])
    (op,) = stored_ops(m, kinds=("attention",))
    assert op.input(1, np.random.default_rng(0))[0].shape == (1, 2, 16, 4)


def test_stored_latency_reports_each_kind():
    out = stored_latency(_transformer(), batches=(1, 4), repeat=2)
    for B in (1, 4):
        parts = [out[f"{k}_ms_b{B}"] for k in ("weight", "embedding", "attention")]
        assert all(p > 0 for p in parts)
        assert sum(parts) <= out[f"ms_b{B}"] * (1 + 1e-9)  # each share is its own best run
    assert "attn-dense×1" in out["formats"] and "gather×1" in out["formats"]
    with pytest.raises(ValueError, match="kinds"):
        stored_ops(_transformer(), kinds=("softmax",))


def test_factorised_layers_without_a_kernel_run_their_own_forward():
    from refimpl.decomposition.block_term import BTLinear
    from refimpl.nn import Tensor

    model = Module()
    model.bt = BTLinear((4, 4), (2, 4), rank=2, n_blocks=2, rng=0)
    (op,) = stored_ops(model)
    assert op.fmt == "btlinear" and op.in_features == 16
    X = np.random.default_rng(7).standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(op.run(X).data), model.bt(Tensor(X)).data)


@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_bwn_twn_weights_run_the_sign_plane_kernels(kind):
    rng = np.random.default_rng(8)
    W = rng.standard_normal((20, 70))
    S = np.sign(W) if kind == "binary" else np.where(np.abs(W) > 0.6, np.sign(W), 0.0)
    model = _Two(0.3 * S, rng.standard_normal((4, 20)))
    ops = stored_ops(model)
    assert [op.fmt for op in ops] == [kind, "dense"]
    X = rng.standard_normal((3, 70)).astype(np.float32)
    with record_calls() as log:
        Y = ops[0].run(X)
    assert any(k.startswith(f"{kind}_weight_gemv") for k, _ in log), log
    ref = X.astype(np.float64) @ (0.3 * S).T
    bound = 70 * np.finfo(np.float32).eps * (np.abs(X) @ np.abs(0.3 * S).T) + 1e-30
    assert np.all(np.abs(Y - ref) <= bound)
    # as an embedding table the same values are gathered as 1- / 2-bit code rows
    op = _lookup(_Emb(0.3 * S[:, :16]))
    assert op.fmt == ("gather-kbit1" if kind == "binary" else "gather-kbit2")
    np.testing.assert_array_equal(op.run(np.array([3, 0, 19])),
                                  (0.3 * S[[3, 0, 19], :16]).astype(np.float32))


def test_bank_balanced_weights_run_the_bbs_kernel():
    from refimpl.pruning.blocks import bank_balanced_mask

    rng = np.random.default_rng(9)
    W = rng.standard_normal((12, 32))
    B = W * bank_balanced_mask(W, 16, 0.75)  # 4 of every 16 columns kept in each row
    assert infer_format(B) == ("bbs", 16)
    (op, _) = stored_ops(_Two(B, rng.standard_normal((4, 12))))
    assert op.fmt == "bbs"
    X = rng.standard_normal((5, 32)).astype(np.float32)
    with record_calls() as log:
        Y = op.run(X)
    assert any(k.startswith("bbs") for k, _ in log), log
    bound = 32 * np.finfo(np.float32).eps * (np.abs(X) @ np.abs(B).T) + 1e-30
    assert np.all(np.abs(Y - X.astype(np.float64) @ B.T) <= bound)
    # unbalanced sparsity stays CSR
    U = W * (rng.random(W.shape) < 0.25)
    assert infer_format(U)[0] == "csr"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multibit_weights_run_k_binary_gemvs_exactly(dtype):
    """Xu et al.'s per-row W = α₁ B₁ + α₂ B₂ (the tour's multibit-2bit) is timed through what it
    stores: two sign planes, two binary_weight_gemv calls, never a dense product; the result
    equals X Wᵀ within the rounding bound of a K-term float32 sum per plane."""
    from refimpl.compare.latency import multibit_planes
    from refimpl.quantization import multibit_alternating_rows

    rng = np.random.default_rng(10)
    K = 70
    a, B = multibit_alternating_rows(rng.standard_normal((20, K)), 2)
    W = np.einsum("ri,rin->rn", a, B).astype(np.float32)  # baked as the tour bakes it
    assert infer_format(W)[0] == "multibit"
    al, Bp = multibit_planes(W)
    assert al.shape == (20, 2) and Bp.shape == (20, 2, K) and set(np.unique(Bp)) <= {-1., 1.}
    # the recovered form reproduces the values up to the rounding of (p ± q) / 2
    rec = np.einsum("ri,rin->rn", al, Bp)
    assert np.all(np.abs(rec - W) <= 2 * np.finfo(np.float64).eps * np.abs(W).max(1)[:, None])
    ops = stored_ops(_Two(W, rng.standard_normal((4, 20))))
    assert [op.fmt for op in ops] == ["multibit2", "dense"]
    X = rng.standard_normal((3, K)).astype(dtype)
    with record_calls() as log:
        Y = ops[0].run(X)
    calls = [k for k, _ in log]
    assert sum(k.startswith("binary_weight_gemv") for k in calls) == 2, calls
    assert Y.dtype == dtype
    ref = X.astype(np.float64) @ W.astype(np.float64).T
    # each plane: a K-term sum and one scale product in X's precision (the scales are stored
    # as float32: relative error u₃₂ on α), so |Y − ref| ≤ (K + 4) ε₃₂ Σ_k |x_k| (|α₁| + |α₂|)
    bound = (K + 4) * np.finfo(np.float32).eps * (np.abs(X).sum(1)[:, None]
                                                   * np.abs(al).sum(1)[None, :])
    assert np.all(np.abs(Y - ref) <= bound)
    # as an embedding table: the k sign rows and scales gathered, unpacked and summed
    op = _lookup(_Emb(W[:, :32]))
    assert op.fmt == "gather-multibit2"
    ids = np.array([3, 0, 19, 3])
    with record_calls() as log:
        out = op.run(ids)
    assert any(k.startswith("unpack_codes") for k, _ in log), log
    a32 = multibit_planes(W[:, :32])[0].astype(np.float32)
    assert np.all(np.abs(out - W[ids, :32]) <= 4 * np.finfo(np.float32).eps
                  * np.abs(a32[ids]).sum(1)[:, None])


def test_multibit_planes_recovers_one_and_two_magnitudes_only():
    from refimpl.compare.latency import multibit_planes

    rng = np.random.default_rng(11)
    S = np.where(rng.random((6, 16)) < 0.5, -1.0, 1.0)
    al = np.arange(1, 7, dtype=float)[:, None]
    a, B = multibit_planes(al * S)  # per-row binary: one plane
    assert a.shape == (6, 1) and np.array_equal(a[:, 0], al[:, 0]) and np.array_equal(B[:, 0], S)
    # hand-worked row: values {±3, ±1} → α = (2, 1); b₁ = sign, b₂ = b₁ where |w| = 3
    W = np.tile([3.0, 1.0, -1.0, -3.0], (2, 4))
    a, B = multibit_planes(W)
    assert np.array_equal(a, [[2.0, 1.0], [2.0, 1.0]])
    assert np.array_equal(B[0, :, :4], [[1, 1, -1, -1], [1, -1, 1, -1]])
    # a zero magnitude (per-row ternary {−α, 0, α}) is α₁ = α₂ = α/2, zero as +1 then −1
    T = np.tile([0.5, 0.0, -0.5, 0.0], (2, 4))
    a, B = multibit_planes(T)
    assert np.array_equal(a, [[0.25, 0.25]] * 2)
    assert np.array_equal(np.einsum("ri,rin->rn", a, B), T)
    # three magnitudes in a row, too short rows, a dense matrix: no multi-bit form
    assert multibit_planes(np.tile([3.0, 2.0, 1.0, -1.0], (2, 4))) is None
    assert multibit_planes(np.tile([3.0, 1.0, -1.0, -3.0], (2, 2))) is None
    assert multibit_planes(rng.standard_normal((8, 32))) is None
