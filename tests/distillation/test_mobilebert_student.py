"""MobileBERT's student with stacked FFNs and NoNorm (mobilebert_student_ with num_ffn, norm,
activation): exact parameter change, every norm replaced, the old defaults unchanged, the
progressive layer-wise transfer trains it (NoNorm's γ, β included), bad input."""

import numpy as np
import pytest

from refimpl.distillation import fit_mobilebert_progressive, mobilebert_student_
from refimpl.nn import LayerNorm, NoNorm, TransformerClassifier
from refimpl.nn.bottleneck import BottleneckEncoderLayer


def _tf(layers=2, d=8, d_ff=16, seed=0, norm_first=False):
    return TransformerClassifier(vocab_size=20, d_model=d, num_heads=2, d_ff=d_ff,
                                 num_layers=layers, max_len=6, n_classes=2, rng=seed,
                                 norm_first=norm_first)


def _data(n=32, T=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(1, 20, (n, T))
    L = rng.integers(2, T + 1, n)
    y = (X[:, 0] % 2).astype(np.int64)
    return X, L, y


def _layer_params(d, d_ff):
    """A post-norm TransformerEncoderLayer: attention 4(d² + d), FFN 2 d d_ff + d_ff + d, two
    LayerNorms 4 d."""
    return 4 * (d * d + d) + 2 * d * d_ff + d_ff + d + 4 * d


def _block_params(d_o, d_i, d_ff, k):
    return 2 * d_o * d_i + 3 * d_o + 4 * d_i * d_i + 9 * d_i + k * (2 * d_i * d_ff + d_ff + 3 * d_i)


def test_paper_student_exact_size_and_norms():
    m = _tf(layers=3, d=16, d_ff=64)
    # MobileBERT's proportions: d_inner = d/4, d_ff = 4 d_inner, 4 stacked FFNs, NoNorm, ReLU
    removed = mobilebert_student_(m, d_inner=4, d_ff=16, rng=0, num_ffn=4, norm="nonorm",
                                  activation="relu")
    assert removed == 3 * (_layer_params(16, 64) - _block_params(16, 4, 16, 4))
    for layer in m.layers:
        assert isinstance(layer, BottleneckEncoderLayer) and layer.num_ffn == 4
        assert layer.inner.activation == "relu" and all(f.activation == "relu"
                                                        for f in layer.ffns)
    norms = [mod for mod in m.layers.modules() if isinstance(mod, (LayerNorm, NoNorm))]
    assert len(norms) == 3 * (4 + 3) and all(isinstance(z, NoNorm) for z in norms)
    X, L, _ = _data(4)
    assert m(X, L).shape == (4, 2)


def test_nonorm_replaces_a_pre_norm_models_final_norm():
    m = _tf(norm_first=True)
    assert isinstance(m.final_norm, LayerNorm)
    n0 = m.num_parameters()
    removed = mobilebert_student_(m, d_inner=4, rng=0, norm="nonorm")
    assert isinstance(m.final_norm, NoNorm) and removed == n0 - m.num_parameters()
    m = _tf(norm_first=True)
    mobilebert_student_(m, d_inner=4, rng=0)
    assert isinstance(m.final_norm, LayerNorm)


def test_defaults_are_the_old_student():
    """Without the new options the student is the one built before them: one FFN of
    2·d_inner, LayerNorm, GELU, the same weights for the same seed."""
    a, b = _tf(seed=3), _tf(seed=3)
    ra = mobilebert_student_(a, d_inner=4, rng=7)
    rb = mobilebert_student_(b, d_inner=4, d_ff=8, rng=7, num_ffn=1, norm="layernorm",
                             activation="gelu")
    assert ra == rb == 2 * (_layer_params(8, 16) - _block_params(8, 4, 8, 1))
    for (ka, pa), (kb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert ka == kb
        np.testing.assert_array_equal(pa.data, pb.data)
    assert all(len(layer.ffns) == 0 and isinstance(layer.norm_in, LayerNorm)
               for layer in a.layers)


def test_progressive_transfer_trains_the_stacked_nonorm_student():
    X, L, y = _data(32)
    teacher = _tf(seed=0)
    student = _tf(seed=6)
    mobilebert_student_(student, d_inner=4, d_ff=16, rng=0, num_ffn=4, norm="nonorm",
                        activation="relu")
    before = {k: v.data.copy() for k, v in student.named_parameters()}
    hist = fit_mobilebert_progressive(student, teacher, (X, L, y), epochs_per_layer=3,
                                      epochs_final=1, lr=1e-2, rng=0, progress=False)
    assert len(hist) == 3
    for h in hist[:2]:  # each layer's transfer loss (feature map + attention) decreases
        assert h.train_loss[-1] < h.train_loss[0]
    changed = {k for k, v in student.named_parameters() if not np.array_equal(v.data, before[k])}
    # NoNorm's γ and β, the last stacked FFN and the output bottleneck of both layers learn
    for i in (0, 1):
        for name in ("norm_in.gamma", "inner.norm1.beta", "ffns.2.linear2.W", "ffns.2.norm.gamma",
                     "norm_out.beta"):
            assert f"layers.{i}.{name}" in changed
    assert np.isfinite(student(X, L).data).all()


def test_bad_input():
    with pytest.raises(ValueError, match="num_ffn"):
        mobilebert_student_(_tf(), d_inner=4, num_ffn=0)
    with pytest.raises(TypeError, match="num_ffn"):
        mobilebert_student_(_tf(), d_inner=4, num_ffn=2.5)
    with pytest.raises(ValueError, match="norm"):
        mobilebert_student_(_tf(), d_inner=4, norm="batchnorm")
    with pytest.raises(ValueError, match="activation"):
        mobilebert_student_(_tf(), d_inner=4, activation="tanh")
    with pytest.raises(ValueError, match="d_inner"):
        mobilebert_student_(_tf(), d_inner=3, num_ffn=4, norm="nonorm")
    m = _tf()
    state = {k: v.data.copy() for k, v in m.named_parameters()}
    with pytest.raises(ValueError):
        mobilebert_student_(m, d_inner=4, norm="nonorm ")
    # a refused call leaves the model as it was
    assert {k: v.data.tolist() for k, v in m.named_parameters()} == \
        {k: v.tolist() for k, v in state.items()}
