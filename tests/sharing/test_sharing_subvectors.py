"""Shared reference vectors / Slim Embeddings (Survey §5.2): registered check, hand values,
training through an LSTM LM and SGNS, bits, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import check
from refimpl.nn import Embedding, LSTMLanguageModel, fit, fit_lm
from refimpl.sharing import (
    SkipGramNS,
    SubvectorEmbedding,
    block_kmeans,
    random_assignment,
    skipgram_pairs,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_registered_check(seed):
    check.verify("shared-reference-vectors", seed=seed)


def test_hand_values():
    a = np.array([[0, 1], [1, 1], [1, 0]])
    e = SubvectorEmbedding(3, 4, num_blocks=2, num_refs=2, assignment=a, rng=0)
    e.R.data = np.arange(8.0).reshape(2, 2, 2)       # R[b, k] = (4b + 2k, 4b + 2k + 1)
    assert e(np.array([0, 1, 2])).data.tolist() == [[0, 1, 6, 7], [2, 3, 6, 7], [2, 3, 4, 5]]
    assert e.storage_bits(32) == 8 * 32 + 3 * 2 * 1
    pad = SubvectorEmbedding(3, 4, num_blocks=2, num_refs=2, assignment=a, padding_idx=0, rng=0)
    assert np.all(pad(np.array([0])).data == 0)
    # pairs of a 3-token stream, window 1: (1,2), (2,3) and the reverses
    c, o, n = skipgram_pairs(np.array([1, 2, 3]), window=1, num_negatives=2, num_words=4, rng=0)
    assert sorted(zip(c.tolist(), o.tolist())) == [(1, 2), (2, 1), (2, 3), (3, 2)]
    assert n.shape == (4, 2) and np.all(n > 0)       # word 0 never occurs: never a negative


def test_random_assignment_distinct_and_seeded():
    a = random_assignment(200, 2, 16, seed=3)
    assert np.unique(a, axis=0).shape[0] == 200
    assert np.array_equal(a, random_assignment(200, 2, 16, seed=3))
    assert not np.array_equal(a, random_assignment(200, 2, 16, seed=4))
    assert random_assignment(10, 1, 3, seed=0).max() < 3     # K^B < V: repeats unavoidable


def test_slim_embeddings_train_in_an_lstm_lm():
    rng = np.random.default_rng(0)
    X = np.concatenate([np.full((64, 1), 2), rng.integers(4, 40, (64, 8)), np.full((64, 1), 3)],
                       1)
    lm = LSTMLanguageModel(vocab_size=40, d_emb=8, d_hidden=8, rng=0)
    lm.embedding = SubvectorEmbedding(40, 8, num_blocks=4, num_refs=4, seed=0, padding_idx=0,
                                      rng=0)
    hist = fit_lm(lm, (X, np.full(64, 10)), epochs=3, batch_size=16, lr=1e-2, rng=0,
                  progress=False)
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert lm.embedding.num_parameters() == 4 * 4 * 2


def test_sgns_learns_a_cooccurrence():
    # words 1..4 always co-occur as (1, 2) and (3, 4): after training u_2·v_1 > u_4·v_1
    tokens = np.array([1, 2, 3, 4] * 50)
    c, o, n = skipgram_pairs(tokens, window=1, num_negatives=2, num_words=5, rng=0)
    keep = ((c == 1) & (o == 2)) | ((c == 2) & (o == 1)) | ((c == 3) & (o == 4)) | \
        ((c == 4) & (o == 3))
    c, o, n = c[keep], o[keep], n[keep]
    model = SkipGramNS(SubvectorEmbedding(5, 4, num_blocks=2, num_refs=4, seed=0, rng=0),
                       Embedding(5, 4, rng=1))
    fit(model, (c, o, n, np.zeros(len(c))), forward=lambda m, *a: m(*a),
        loss_fn=lambda out, _y: out, epochs=20, lr=5e-2, rng=0, progress=False)
    v = model.input_embedding.virtual_weight()
    u = model.output_embedding.W.data
    assert u[2] @ v[1] > u[4] @ v[1] and u[4] @ v[3] > u[2] @ v[3]


def test_block_kmeans_recovers_a_clustered_table():
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((2, 3, 2)) * 10           # 3 well-separated refs per block
    a = np.stack([np.repeat(np.arange(3), 4), np.tile(np.arange(3), 4)], 1)   # (12, 2)
    E = refs[np.arange(2), a].reshape(12, 4)
    ka, kR = block_kmeans(E, 2, 3, rng=1)
    rebuilt = kR[np.arange(2), ka].reshape(12, 4)
    np.testing.assert_allclose(rebuilt, E, atol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="num_blocks"):
        SubvectorEmbedding(5, 6, num_blocks=4, num_refs=2)
    with pytest.raises(ValueError, match="assignment"):
        SubvectorEmbedding(2, 4, num_blocks=2, num_refs=2, assignment=np.full((2, 2), 2))
    with pytest.raises(ValueError, match="assignment"):
        SubvectorEmbedding(2, 4, num_blocks=2, num_refs=2, assignment="kmeans")
    with pytest.raises(ValueError, match="num_refs"):
        block_kmeans(np.ones((3, 4)), 2, 4)
    with pytest.raises(ValueError, match="idx"):
        SubvectorEmbedding(3, 2, num_blocks=1, num_refs=2)(np.array([3]))
    with pytest.raises(ValueError, match="dim"):
        SkipGramNS(Embedding(3, 2), Embedding(3, 4))
    with pytest.raises(ValueError, match="tokens"):
        skipgram_pairs(np.array([0, 5]), window=1, num_negatives=1, num_words=5)
