"""Long-range dependency tasks for the efficient-attention chapter (§7).

Three synthetic sequence-classification tasks, each with a *controllable dependency distance*:
the number of positions between the last input position (where a classifier reads out, or
where a causal model must answer) and the farthest token that decides the target. A model
whose receptive field at the read-out position is ``w`` — a sliding-window / local attention
of width ``w`` stacked once (§7.1 sparse and local patterns: Longformer, BigBird, Sparse
Transformer), a truncated-context RNN, a bag of the last ``w`` tokens — sees nothing beyond
distance ``w - 1`` and cannot beat chance on those examples, while full attention
(Survey Eq. (68)) and the linear-complexity approximations (§7.2) can.
:func:`sliding_window_ceiling` gives the best accuracy such a model can reach.

- :func:`make_associative_recall` — ``k_1 v_1 k_2 v_2 ... k_n v_n <query> k_q`` -> the value
  paired with ``k_q`` (Ba et al. 2016; used by the H3/Zoology line of work to separate
  attention from its approximations).
- :func:`make_copy` — a prefix of symbols, a delay of blanks, then a position query
  ``@i``: reproduce prefix symbol ``i`` (the classification form of the copy-memory task of
  Hochreiter & Schmidhuber 1997); the full prefix is kept as a sequence target in ``meta``.
- :func:`make_needle` — random filler with one needle token ``n<c>`` at distance ``d`` from
  the end: the label is ``c``.

All three return a :class:`~refimpl.data.tasks.SequenceTask` with one target per sequence, so
a Transformer classifier ``model(X, lengths) -> (B, n_classes)`` trains on them directly.
"""

from __future__ import annotations

import numpy as np

from refimpl.data.tasks import SequenceTask
from refimpl.data.vocab import Vocab, pad_sequences
from refimpl.utils import as_rng, check_array, check_int

__all__ = ["make_associative_recall", "make_copy", "make_needle", "sliding_window_ceiling"]


def _distance_range(min_distance, max_distance, lo, hi, what):
    lo_d = lo if min_distance is None else check_int(min_distance, "min_distance", lo, hi)
    hi_d = hi if max_distance is None else check_int(max_distance, "max_distance", lo, hi)
    if lo_d > hi_d:
        raise ValueError(f"min_distance ({lo_d}) must be <= max_distance ({hi_d}) for {what}")
    return lo_d, hi_d


def _splits(name, vocab, seqs, y, dist, n_train, n_val, n_classes, label_names, meta,
            max_len=None):
    X, L = pad_sequences(seqs, max_len=max_len)
    y = np.asarray(y, dtype=np.int64)
    dist = np.asarray(dist, dtype=np.int64)
    a, b = n_train, n_train + n_val
    return SequenceTask(
        name=name, vocab=vocab,
        X_train=X[:a], len_train=L[:a], y_train=y[:a], dist_train=dist[:a],
        X_val=X[a:b], len_val=L[a:b], y_val=y[a:b], dist_val=dist[a:b],
        X_test=X[b:], len_test=L[b:], y_test=y[b:], dist_test=dist[b:],
        n_classes=n_classes, label_names=label_names, meta=meta)


def make_associative_recall(n_train: int = 2000, n_val: int = 200, n_test: int = 500,
                            n_pairs: int = 8, n_keys: int = 16, n_values: int = 8,
                            gap: int = 0, min_distance: int | None = None,
                            max_distance: int | None = None, rng=0) -> SequenceTask:
    """Associative recall: key-value pairs, then a query key; the target is its value.

    Sequence (length ``2 n_pairs + gap + 2``)::

        k_1 v_1 k_2 v_2 ... k_n v_n [f ... f] <query> k_q      -> target: v_q

    with distinct keys per sequence, values drawn uniformly, ``gap`` filler tokens before the
    query. The dependency distance is from the last position (``k_q``) back to the queried
    key: ``2 (n - j) + gap + 1`` for pair ``j`` (0-based), so it ranges over
    ``gap + 3, gap + 5, ..., 2 n + gap + 1``.

    Parameters
    ----------
    n_train, n_val, n_test : int
    n_pairs : int
        Pairs per sequence (``<= n_keys``).
    n_keys, n_values : int
        Key and value alphabet sizes; ``n_classes = n_values``.
    gap : int
        Filler tokens between the pairs and the query (shifts every distance by ``gap``).
    min_distance, max_distance : int, optional
        Only query pairs whose distance lies in this range (default: all pairs).
    rng : int or Generator

    Returns
    -------
    SequenceTask
        ``X_*`` of shape (N, 2 n_pairs + gap + 2) int64, ``y_*`` (N,) value index,
        ``dist_*`` (N,) dependency distance.
    """
    n_train, n_val, n_test = (check_int(v, k, 1) for k, v in
                              (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)))
    n_keys = check_int(n_keys, "n_keys", 1)
    n_pairs = check_int(n_pairs, "n_pairs", 1, n_keys)
    n_values = check_int(n_values, "n_values", 2)
    gap = check_int(gap, "gap", 0)
    lo, hi = _distance_range(min_distance, max_distance, 1, 2 * n_pairs + gap + 1,
                             "associative recall")
    dists = 2 * (n_pairs - np.arange(n_pairs)) + gap + 1  # (n_pairs,)
    allowed = np.flatnonzero((dists >= lo) & (dists <= hi))
    if allowed.size == 0:
        raise ValueError(f"no pair has a distance in [{lo}, {hi}]; possible distances are "
                         f"{sorted(dists.tolist())}")
    rng = as_rng(rng)
    keys = [f"k{i}" for i in range(n_keys)]
    values = [f"v{i}" for i in range(n_values)]
    fillers = ["_"]
    vocab = Vocab(keys + values + fillers + ["<query>"])
    k_id = vocab.encode(keys)
    v_id = vocab.encode(values)
    f_id, q_id = vocab.token_to_id("_"), vocab.token_to_id("<query>")
    N = n_train + n_val + n_test
    K = np.argsort(rng.random((N, n_keys)), axis=1)[:, :n_pairs]  # (N, n_pairs) distinct keys
    Vv = rng.integers(0, n_values, size=(N, n_pairs))  # (N, n_pairs)
    j = allowed[rng.integers(0, allowed.size, size=N)]  # (N,) queried pair
    T = 2 * n_pairs + gap + 2
    X = np.full((N, T), f_id, dtype=np.int64)
    X[:, 0:2 * n_pairs:2] = k_id[K]
    X[:, 1:2 * n_pairs:2] = v_id[Vv]
    X[:, T - 2] = q_id
    X[:, T - 1] = k_id[K[np.arange(N), j]]
    y = Vv[np.arange(N), j]
    dist = dists[j]
    return _splits("recall", vocab, list(X), y, dist, n_train, n_val, n_values, values,
                   dict(generator="make_associative_recall", n_pairs=n_pairs, n_keys=n_keys,
                        n_values=n_values, gap=gap))


def make_copy(n_train: int = 2000, n_val: int = 200, n_test: int = 500, prefix_len: int = 4,
              n_symbols: int = 8, min_delay: int = 0, max_delay: int = 16, rng=0) -> SequenceTask:
    """Copy after a delay, one target per sequence: recall the prefix symbol at a queried slot.

    Sequence::

        a_0 a_1 ... a_{m-1}  _ _ ... _ (delay)  @i      -> target: a_i

    The delay is drawn uniformly in ``[min_delay, max_delay]`` per example (so lengths vary and
    rows are padded) and the slot ``i`` uniformly in ``[0, m)``. The dependency distance is
    ``m + delay - i`` (from ``@i`` back to ``a_i``). ``meta["Y_copy_<split>"]`` holds the whole
    prefix, shape (N, m), for sequence-output models.

    Parameters
    ----------
    n_train, n_val, n_test : int
    prefix_len : int
        ``m``, the number of symbols to remember.
    n_symbols : int
        Symbol alphabet size; ``n_classes = n_symbols``.
    min_delay, max_delay : int
    rng : int or Generator

    Returns
    -------
    SequenceTask
        ``X_*`` of shape (N, m + max_delay + 1) int64.
    """
    n_train, n_val, n_test = (check_int(v, k, 1) for k, v in
                              (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)))
    m = check_int(prefix_len, "prefix_len", 1)
    n_symbols = check_int(n_symbols, "n_symbols", 2)
    min_delay = check_int(min_delay, "min_delay", 0)
    max_delay = check_int(max_delay, "max_delay", min_delay)
    rng = as_rng(rng)
    syms = [f"s{i}" for i in range(n_symbols)]
    slots = [f"@{i}" for i in range(m)]
    vocab = Vocab(syms + ["_"] + slots)
    s_id, blank = vocab.encode(syms), vocab.token_to_id("_")
    slot_id = vocab.encode(slots)
    N = n_train + n_val + n_test
    A = rng.integers(0, n_symbols, size=(N, m))  # (N, m)
    delay = rng.integers(min_delay, max_delay + 1, size=N)
    slot = rng.integers(0, m, size=N)
    seqs = [np.concatenate([s_id[A[n]], np.full(delay[n], blank), [slot_id[slot[n]]]])
            for n in range(N)]
    y = A[np.arange(N), slot]
    dist = m + delay - slot
    a, b = n_train, n_train + n_val
    meta = dict(generator="make_copy", prefix_len=m, n_symbols=n_symbols, min_delay=min_delay,
                max_delay=max_delay, Y_copy_train=A[:a], Y_copy_val=A[a:b], Y_copy_test=A[b:])
    return _splits("copy", vocab, seqs, y, dist, n_train, n_val, n_symbols, syms, meta,
                   max_len=m + max_delay + 1)


def make_needle(n_train: int = 2000, n_val: int = 200, n_test: int = 500, seq_len: int = 64,
                n_classes: int = 4, n_filler: int = 32, min_distance: int = 0,
                max_distance: int | None = None, rng=0) -> SequenceTask:
    """Needle at distance ``d``: one class-marker token in random filler decides the label.

    Sequence of length ``seq_len``: filler tokens drawn uniformly from ``n_filler`` symbols,
    with exactly one needle ``n<c>`` at position ``seq_len - 1 - d``; the label is ``c``. The
    distance ``d`` is drawn uniformly in ``[min_distance, max_distance]`` per example.

    A model that pools over all positions finds the needle anywhere; one that reads out at the
    last position through a window of width ``w`` finds it only when ``d < w``.

    Parameters
    ----------
    n_train, n_val, n_test : int
    seq_len : int
    n_classes : int
        Number of needle kinds (labels), balanced in expectation.
    n_filler : int
    min_distance, max_distance : int
        In ``[0, seq_len - 1]``; default the whole sequence.
    rng : int or Generator

    Returns
    -------
    SequenceTask
        ``X_*`` of shape (N, seq_len) int64.
    """
    n_train, n_val, n_test = (check_int(v, k, 1) for k, v in
                              (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)))
    seq_len = check_int(seq_len, "seq_len", 1)
    n_classes = check_int(n_classes, "n_classes", 2)
    n_filler = check_int(n_filler, "n_filler", 1)
    lo, hi = _distance_range(min_distance, max_distance, 0, seq_len - 1, "needle")
    rng = as_rng(rng)
    needles = [f"n{c}" for c in range(n_classes)]
    fill = [f"f{i}" for i in range(n_filler)]
    vocab = Vocab(needles + fill)
    n_id, f_id = vocab.encode(needles), vocab.encode(fill)
    N = n_train + n_val + n_test
    X = f_id[rng.integers(0, n_filler, size=(N, seq_len))]  # (N, seq_len)
    y = rng.integers(0, n_classes, size=N)
    dist = rng.integers(lo, hi + 1, size=N)
    X[np.arange(N), seq_len - 1 - dist] = n_id[y]
    return _splits("needle", vocab, list(X), y, dist, n_train, n_val, n_classes, needles,
                   dict(generator="make_needle", seq_len=seq_len, n_filler=n_filler))


def sliding_window_ceiling(dist, window: int, n_classes: int) -> float:
    """Best accuracy of a model that sees only the last ``window`` positions.

    Examples whose dependency lies within the window (``dist < window``) can be solved; the
    rest are at chance ``1 / n_classes`` (targets are uniform and independent of everything
    the window shows).

    Parameters
    ----------
    dist : array_like of shape (N,), int
        Dependency distances (``task.dist_test``).
    window : int
        Receptive field at the read-out position, in positions (the read-out token itself
        counts, so distance ``d`` needs ``window >= d + 1``).
    n_classes : int

    Returns
    -------
    float
        ``mean(dist < window) + mean(dist >= window) / n_classes``.
    """
    dist = check_array(dist, "dist", ndim=1, dtype_kind="iu")
    window = check_int(window, "window", 1)
    n_classes = check_int(n_classes, "n_classes", 2)
    inside = dist < window
    return float(inside.mean() + (~inside).mean() / n_classes)
