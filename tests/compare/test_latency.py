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
    fmt, (bits, codes, cb) = infer_format(Q)
    assert fmt == "kbit" and bits == 1 and np.array_equal(cb[codes], Q)
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
    assert set(out) == {"ms_b1", "ms_b64", "formats", "n_ops"}
    assert out["ms_b1"] > 0 and out["ms_b64"] > 0 and out["formats"] == "dense×2"
    with pytest.raises(ValueError, match="repeat"):
        stored_latency(model, repeat=0)
