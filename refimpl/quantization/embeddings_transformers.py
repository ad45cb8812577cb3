"""Survey §3.3.5 — quantisation of word embeddings and Transformers: quantising embeddings during
vs after training (Lam 2018), k-bit post-training quantisation of every Transformer weight
matrix (Cheong & Daniel 2019), and Q-BERT-style mixed precision from Hessian sensitivity per
layer, head or neuron group (Shen et al. 2020).
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

from refimpl.nn import Tensor
from refimpl.nn import functional as F
from refimpl.utils import (as_rng, check_array, check_float, check_int, check_values,
                           validate_arrays, validate_scalars)

__all__ = ["embedding_quantizer", "quantize_embedding_after", "hessian_vector_product",
           "top_hessian_eigenvalue", "group_sensitivities", "assign_mixed_precision",
           "quantize_model_weights_", "flat_grad_fn", "quantize_groups_uniform_",
           "transformer_groups", "group_sensitivities_model", "group_sizes"]


@validate_scalars(c=(0, None, "(]"))
def embedding_quantizer(bits: int = 1, c: float | None = None) -> Callable[[Tensor], Tensor]:
    """Quantisation *during* training (Lam 2018): the forward pass sees the quantised table,
    the straight-through gradient updates the full-precision one.

    ``bits = 1``: BS-Fixed ``±c`` (Lam uses ``c = 1/3``); ``bits = 2``: the four levels
    ``{−3c, −c, c, 3c}`` with thresholds at ``−2c, 0, 2c``. ``c=None`` uses ``mean|W|`` of the
    current table (1 bit) or ``mean|W|/2`` (2 bits).

    Survey §3.3.5.

    References
    ----------
    .. [1] M. Lam, "Word2Bits — Quantized Word Vectors", arXiv 1803.05651, 2018.
    """
    bits = check_int(bits, "bits", 1, 2)

    def fn(a):
        cc = c if c is not None else float(np.abs(a).mean()) / (1 if bits == 1 else 2)
        if bits == 1:
            return np.where(a >= 0, cc, -cc)
        return np.select([a < -2 * cc, a < 0, a < 2 * cc], [-3 * cc, -cc, cc], 3 * cc)

    return lambda W: F.straight_through(W, fn, name=f"emb{bits}")


@validate_scalars(c=(0, None, "(]"))
def quantize_embedding_after(W, bits: int = 1, c: float | None = None) -> np.ndarray:
    """Quantisation *after* training: the same quantiser applied once to a trained table.

    Survey §3.3.5. ``W`` of shape (V, D) -> (V, D).

    References
    ----------
    .. [1] M. Lam, "Word2Bits — Quantized Word Vectors", arXiv 1803.05651, 2018.
    """
    W = check_array(W, "W")
    return embedding_quantizer(bits, c)(Tensor(W)).data


def _check_model(model):
    if model is None or not callable(getattr(model, "named_parameters", None)):
        raise TypeError(f"model must be a refimpl.nn Module (with named_parameters), "
                        f"got {type(model).__name__}")
    return model


@validate_scalars
def quantize_model_weights_(model, quantize: Callable[[np.ndarray], np.ndarray],
                            min_ndim: int = 2) -> int:
    """Replace, in place, every parameter with ``ndim >= min_ndim`` by ``quantize(W)``.

    Biases and LayerNorm gains stay full precision (with the default ``min_ndim = 2``).

    Parameters
    ----------
    model : refimpl.nn.Module
        Modified in place (hence the trailing underscore); copy its ``state_dict()`` first to
        restore it.
    quantize : callable
        ``quantize(W) -> ndarray`` of ``W``'s size, applied to each selected parameter's data.
    min_ndim : int >= 0
        Only parameters with at least this many dimensions are quantised.

    Returns
    -------
    int
        The number of quantised scalars.

    Notes
    -----
    Survey §3.3.5.

    References
    ----------
    .. [1] R. Cheong, R. Daniel, "transformers.zip: Compressing Transformers with Pruning and
       Quantization", Stanford CS224n report, 2019.
    """
    _check_model(model)
    if not callable(quantize):
        raise TypeError(f"quantize must be callable, got {type(quantize).__name__}")
    min_ndim = check_int(min_ndim, "min_ndim", 0)
    n = 0
    for _, p in model.named_parameters():
        if p.ndim >= min_ndim:
            p.data = np.asarray(quantize(p.data), dtype=p.data.dtype).reshape(p.shape)
            n += p.size
    return n


def quantize_model_weights(model, quantize: Callable[[np.ndarray], np.ndarray],
                           min_ndim: int = 2) -> int:
    """Deprecated alias of :func:`quantize_model_weights_` (which modifies ``model`` in place:
    the name now says so). Emits a ``DeprecationWarning``."""
    warnings.warn("quantize_model_weights modifies the model in place and is renamed "
                  "quantize_model_weights_", DeprecationWarning, stacklevel=2)
    return quantize_model_weights_(model, quantize, min_ndim)


@validate_scalars(eps=(0, None, "(]"))
@validate_arrays(w={"ndim": 1}, v={"ndim": 1})
@validate_arrays(grad_fn={"kind": "callable"})
def hessian_vector_product(grad_fn: Callable[[np.ndarray], np.ndarray], w, v,
                           eps: float = 1e-4) -> np.ndarray:
    """``H v`` by central finite differences of gradients: ``(g(w + εv) − g(w − εv)) / 2ε``.

    ``ε`` is scaled by ``‖v‖`` so the step has length ``eps``. Exact for quadratic losses; the
    error is ``O(ε²)`` otherwise.

    Part of Survey §3.3.5 (Q-BERT-style mixed precision).
    """
    w = np.asarray(w, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    nv = float(np.linalg.norm(v))
    if nv == 0:
        return np.zeros_like(w)
    h = eps / nv
    return (np.asarray(grad_fn(w + h * v)) - np.asarray(grad_fn(w - h * v))) / (2 * h)


@validate_scalars(tol=(0, None), eps=(0, None, "(]"), n_iter=(1, None))
@validate_arrays(w={"ndim": 1}, mask={"optional": True, "ndim": 1, "dtype_kind": "b"})
@validate_arrays(grad_fn={"kind": "callable"})
def top_hessian_eigenvalue(grad_fn, w, mask=None, n_iter: int = 30, tol: float = 1e-6,
                           eps: float = 1e-4, rng=None) -> float:
    """Largest-magnitude eigenvalue of the Hessian (block) by power iteration on
    Hessian-vector products (Q-BERT, Shen et al. 2020, Survey §3.3.5).

    Parameters
    ----------
    grad_fn : callable
        ``grad_fn(w) -> ∇L(w)``, flat arrays of shape (n,).
    w : ndarray of shape (n,)
    mask : bool ndarray of shape (n,), optional
        Restrict to a parameter group: the power iteration runs on the diagonal block
        ``H[mask][:, mask]`` (``v`` is zero outside the group).
    n_iter, tol, eps : iteration cap, relative stopping tolerance, finite-difference step.

    Returns
    -------
    float
        The Rayleigh quotient ``vᵀHv`` at convergence (signed).
    """
    w = check_array(w, "w", ndim=1).astype(np.float64)
    m = np.ones(w.size, bool) if mask is None else np.asarray(mask, bool)
    v = as_rng(rng).standard_normal(w.size) * m
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(check_int(n_iter, "n_iter", 1)):
        Hv = hessian_vector_product(grad_fn, w, v, eps) * m
        new = float(v @ Hv)
        nrm = float(np.linalg.norm(Hv))
        if nrm == 0:
            return 0.0
        v = Hv / nrm
        if abs(new - lam) <= tol * max(abs(new), 1e-12):
            lam = new
            break
        lam = new
    return lam


@validate_scalars
@validate_arrays(w={"ndim": 1})
@validate_arrays(grad_fn={"kind": "callable"}, groups={"kind": "sequence"})
def group_sensitivities(grad_fn, w, groups: Sequence[np.ndarray], **kw) -> np.ndarray:
    """Top Hessian eigenvalue of each group's diagonal block (layers, heads or neuron groups).

    ``groups`` is a list of index arrays (or boolean masks) into the flat parameter vector.
    Returns ndarray of shape (len(groups),).

    Survey §3.3.5.

    References
    ----------
    .. [1] S. Shen et al., "Q-BERT: Hessian Based Ultra Low Precision Quantization of BERT", AAAI
       2020.
    """
    w = np.asarray(w, dtype=np.float64)
    out = []
    for g in groups:
        m = np.zeros(w.size, bool)
        m[np.asarray(g)] = True
        out.append(top_hessian_eigenvalue(grad_fn, w, m, **kw))
    return np.asarray(out)


@validate_scalars
def assign_mixed_precision(sensitivity, sizes, avg_bits: float,
                           choices: Sequence[int] = (2, 3, 4, 8)) -> np.ndarray:
    """Bits per group from Hessian sensitivity under an average-bit budget (Q-BERT style).

    Start every group at the lowest choice; then repeatedly raise the most sensitive group
    (largest ``|λ|``) that can still be raised to its next choice within the budget
    ``Σ bits_g · size_g ≤ avg_bits · Σ size_g``.

    Parameters
    ----------
    sensitivity : ndarray of shape (n_groups,)
        Finite sensitivities (e.g. top Hessian eigenvalues); only ``|λ|`` matters.
    sizes : ndarray of shape (n_groups,)
        Number of weights per group, ``>= 0``.
    avg_bits : float
        Average-bit budget, at least ``min(choices)``.
    choices : sequence of distinct int in [1, 32]
        The allowed bit widths.

    Returns
    -------
    ndarray of int, shape (n_groups,)

    Notes
    -----
    Survey §3.3.5.

    References
    ----------
    .. [1] S. Shen et al., "Q-BERT: Hessian Based Ultra Low Precision Quantization of BERT", AAAI
       2020.
    """
    s = np.abs(check_array(sensitivity, "sensitivity", ndim=1, dtype=np.float64))
    sizes = check_values(sizes, "sizes", 0.0, ndim=1, dtype=np.float64)
    if isinstance(choices, (str, bytes)) or not hasattr(choices, "__len__") or len(choices) == 0:
        raise TypeError(f"choices must be a non-empty sequence of bit widths, got {choices!r}")
    choices = sorted(check_int(c, "choices", 1, 32) for c in choices)
    if len(set(choices)) != len(choices):
        raise ValueError(f"choices must be distinct, got {choices}")
    if s.shape != sizes.shape:
        raise ValueError(f"sizes must have the shape of sensitivity {s.shape}, got {sizes.shape}")
    avg_bits = check_float(avg_bits, "avg_bits")
    if avg_bits < choices[0]:
        raise ValueError(f"avg_bits must be at least the lowest choice {choices[0]}, "
                         f"got {avg_bits}")
    level = np.zeros(s.size, int)
    budget = avg_bits * sizes.sum()
    while True:
        used = sum(choices[lv] * sz for lv, sz in zip(level, sizes))
        cand = [g for g in np.argsort(-s, kind="stable") if level[g] + 1 < len(choices) and
                used + (choices[level[g] + 1] - choices[level[g]]) * sizes[g] <= budget + 1e-9]
        if not cand:
            break
        level[cand[0]] += 1
    return np.array([choices[lv] for lv in level])


def flat_grad_fn(params, loss_closure: Callable[[], Tensor]):
    """Flatten ``params`` (a list of Parameters) into one vector for the Hessian routines.

    Returns
    -------
    w0 : ndarray of shape (n,)
        The current values, concatenated.
    grad_fn : callable
        ``grad_fn(w) -> ∇L(w)``: loads ``w`` into the parameters, runs ``loss_closure()`` and
        back-propagates; call ``restore()`` afterwards.
    restore : callable
        Puts ``w0`` back.
    slices : list of slice
        Where each parameter lives in the flat vector.

    Notes
    -----
    Part of Survey §3.3.5 (Q-BERT-style mixed precision).
    """
    params = list(params)
    sizes = [p.size for p in params]
    offs = np.cumsum([0] + sizes)
    slices = [slice(int(a), int(b)) for a, b in zip(offs[:-1], offs[1:])]
    w0 = np.concatenate([p.data.ravel() for p in params]).astype(np.float64)

    def load(w):
        for p, s in zip(params, slices):
            p.data = w[s].reshape(p.shape).astype(p.data.dtype)

    def grad_fn(w):
        load(w)
        for p in params:
            p.grad = None
        loss_closure().backward()
        return np.concatenate([(p.grad if p.grad is not None else np.zeros(p.shape)).ravel()
                               for p in params])

    return w0, grad_fn, (lambda: load(w0)), slices


@validate_scalars
def quantize_groups_uniform_(model, groups, bits) -> None:
    """Quantise, in place, each group with its own affine k-bit quantiser (Eq. 39).

    Parameters
    ----------
    model : refimpl.nn.Module
        Modified in place (hence the trailing underscore).
    groups : list of (param_name, index)
        ``index`` selects the group's entries of that parameter (``slice(None)`` for a whole
        matrix, a row slice for a head or neuron group).
    bits : sequence of int in [1, 16]
        One bit-width per group.

    Notes
    -----
    Survey §3.3.5 (Q-BERT-style mixed precision).
    """
    from refimpl.quantization.uniform import quantize_uniform

    _check_model(model)
    named = dict(model.named_parameters())
    if isinstance(groups, (str, bytes)) or not hasattr(groups, "__len__"):
        raise TypeError(f"groups must be a list of (param_name, index), got {groups!r}")
    if isinstance(bits, (str, bytes)) or not hasattr(bits, "__len__"):
        raise TypeError(f"bits must be a sequence of ints (one per group), got {bits!r}")
    if len(bits) != len(groups):
        raise ValueError(f"bits must give one bit-width per group ({len(groups)}), "
                         f"got {len(bits)}")
    bits = [check_int(k, "bits", 1, 16) for k in bits]
    for g in groups:
        if not (isinstance(g, tuple) and len(g) == 2) or g[0] not in named:
            raise ValueError(f"groups must hold (param_name, index) pairs naming parameters of "
                             f"the model, got {g!r}")
    for (name, index), k in zip(groups, bits):
        p = named[name]
        arr = p.data.copy()
        arr[index] = quantize_uniform(arr[index], k)
        p.data = arr


def quantize_groups_uniform(model, groups, bits) -> None:
    """Deprecated alias of :func:`quantize_groups_uniform_` (which modifies ``model`` in place:
    the name now says so). Emits a ``DeprecationWarning``."""
    warnings.warn("quantize_groups_uniform modifies the model in place and is renamed "
                  "quantize_groups_uniform_", DeprecationWarning, stacklevel=2)
    quantize_groups_uniform_(model, groups, bits)


@validate_scalars(n_neuron_groups=(1, None))
@validate_arrays(model={"kind": "module"})
def transformer_groups(model, granularity: str = "layer", n_neuron_groups: int = 4):
    """Parameter groups of a :class:`refimpl.nn.TransformerClassifier` (e.g.
    :func:`refimpl.quantization.training.tiny_transformer`), at Q-BERT's granularities.

    ``"layer"``: each weight matrix of every layer's attention and FFN, and the output layer.
    ``"head"``: per head ``h`` (of layer ``l``), its rows of ``W_q, W_k, W_v`` (``d_head`` rows
    each); named ``head<h>`` for a one-layer model, ``layer<l>.head<h>`` otherwise.
    ``"neuron"``: each layer's ``linear1`` rows (hidden neurons) split into
    ``n_neuron_groups`` groups.

    Returns
    -------
    list of (name, list of (param_name, index))
        ``index`` selects the group's entries of that parameter (for
        :func:`quantize_groups_uniform_`).

    Notes
    -----
    Part of Survey §3.3.5 (Q-BERT-style mixed precision).
    """
    if granularity not in ("layer", "head", "neuron"):
        raise ValueError(f"granularity must be 'layer', 'head' or 'neuron', got {granularity!r}")
    num_layers = len(model.layers)
    out = []
    for li, layer in enumerate(model.layers):
        pre = f"layers.{li}."
        tag = "" if num_layers == 1 else f"layer{li}."
        if granularity == "layer":
            names = [pre + f"self_attn.W_{c}.W" for c in "qkvo"]
            names += [pre + "linear1.W", pre + "linear2.W"]
            out += [(n, [(n, slice(None))]) for n in names]
        elif granularity == "head":
            H, dh = layer.self_attn.num_heads, layer.self_attn.d_head
            out += [(f"{tag}head{h}", [(pre + f"self_attn.W_{c}.W",
                                        slice(h * dh, (h + 1) * dh)) for c in "qkv"])
                    for h in range(H)]
        else:
            rows = layer.linear1.W.shape[0]
            edges = np.linspace(0, rows, n_neuron_groups + 1).astype(int)
            out += [(f"{tag}ffn[{a}:{b}]", [(pre + "linear1.W", slice(a, b))])
                    for a, b in zip(edges[:-1], edges[1:])]
    if granularity == "layer":
        out.append(("fc.W", [("fc.W", slice(None))]))
    return out


@validate_scalars
@validate_arrays(model={"kind": "module"}, loss_closure={"kind": "callable"},
                 groups={"kind": "sequence"})
def group_sensitivities_model(model, loss_closure, groups, **kw) -> np.ndarray:
    """Top Hessian eigenvalue (magnitude) of each group's diagonal block for a model.

    ``groups`` as returned by :func:`transformer_groups`; ``loss_closure()`` returns the loss
    Tensor on a fixed batch. Parameters are restored afterwards.

    Survey §3.3.5.

    References
    ----------
    .. [1] S. Shen et al., "Q-BERT: Hessian Based Ultra Low Precision Quantization of BERT", AAAI
       2020.
    """
    named = dict(model.named_parameters())
    pnames = sorted({pn for _, members in groups for pn, _ in members})
    w0, grad_fn, restore, slices = flat_grad_fn([named[n] for n in pnames], loss_closure)
    where = dict(zip(pnames, slices))
    flat_groups = []
    for _, members in groups:
        idx = []
        for pn, index in members:
            pos = np.arange(where[pn].start, where[pn].stop).reshape(named[pn].shape)
            idx.append(pos[index].ravel())
        flat_groups.append(np.concatenate(idx))
    try:
        return np.abs(group_sensitivities(grad_fn, w0, flat_groups, **kw))
    finally:
        restore()


@validate_scalars
@validate_arrays(model={"kind": "module"}, groups={"kind": "sequence"})
def group_sizes(model, groups) -> np.ndarray:
    """Number of scalars in each group of :func:`transformer_groups`: shape (n_groups,).

    Part of Survey §3.3.5 (Q-BERT-style mixed precision).
    """
    named = dict(model.named_parameters())
    return np.array([sum(int(np.empty(named[pn].shape)[index].size) for pn, index in members)
                     for _, members in groups])
