"""Same seed -> bit-identical results; inputs are never mutated."""

import numpy as np

from refimpl.pruning import blocks as pb
from refimpl.pruning import heads_layers as hl
from refimpl.pruning import neurons as pn
from refimpl.nn import Module, Parameter, TransformerClassifier
from refimpl.pruning import weights as pw


class _Vec(Module):
    def __init__(self, w):
        self.w = Parameter(w.copy())

    def forward(self, X):
        return (self.w * X).sum(axis=1)


def test_no_input_mutation(rng):
    W = rng.normal(size=(8, 8))
    W0 = W.copy()
    pw.magnitude_prune(W, 0.5)
    pb.bank_balanced_mask(W, 4, 0.5)
    pb.block_mask(W, (2, 2), 0.5)
    pb.group_lasso_prox(W, (2, 2), 0.3)
    Hinv = np.eye(8)
    pw.obs_update(W[0], Hinv, 1)
    pw.obs_prune(W[0], Hinv, 3)
    pn.merge_neurons(W, W[0], W, 0, 1)
    pw.rpp_step(W, W, 0.1, 0.1, 1.0)
    pw.grow_and_prune_step(W, W, W > 0, 0.5, 0.5)
    pw.prune_train(_Vec(W[0]), (W, W[:, 0]), epochs=3, lr=0.1, names=["w"],
                   sparsity_fn=lambda t: 0.5, loss_fn=lambda out, y: ((out - y) ** 2).sum())
    assert np.array_equal(W, W0) and np.array_equal(Hinv, np.eye(8))


def test_same_seed_same_bits():
    X = np.random.default_rng(0).integers(4, 20, size=(16, 5))
    L = np.full(16, 5)
    y = (X[:, 0] > 11).astype(int)
    states = []
    for _ in range(2):
        m = TransformerClassifier(vocab_size=20, d_model=8, num_heads=2, d_ff=8, num_layers=2,
                                  max_len=5, n_classes=2, rng=3)
        hl.fit_gated(m, X, L, y, epochs=2, batch_size=8, rng=7,
                     gate_fn=lambda r: {"layer_mask": hl.layerdrop_gates(2, 0.3, r)})
        states.append(m.state_dict())
    assert all(np.array_equal(states[0][k], states[1][k]) for k in states[0])
    a = hl.hard_concrete_gate(np.zeros(5), 11).data
    b = hl.hard_concrete_gate(np.zeros(5), 11).data
    assert np.array_equal(a, b)
