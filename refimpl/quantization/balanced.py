"""Survey §3.3.2 — balanced quantisation (Zhou et al. 2017): equal-frequency bins found by
recursive median splits (or the mean as a sort-free approximation of the median), histogram
equalisation to ``[0, 1]``, a uniform k-bit grid, and a scale back to the input's range.
"""

from __future__ import annotations

import numpy as np

from refimpl.utils import check_array, check_choice, check_int, validate_scalars

__all__ = ["recursive_split_edges", "balanced_codes", "balanced_quantize"]


@validate_scalars
def recursive_split_edges(W, bits: int, split: str = "median") -> np.ndarray:
    """Bin edges of ``2^k`` (approximately) equal-frequency bins by recursive splitting.

    Split the values at their median (``split="median"``) or mean (``split="mean"``, Zhou et
    al.'s sort-free approximation), then split each half the same way, ``k`` levels deep. With
    the median and ``n`` divisible by ``2^k`` (distinct values) every bin holds exactly
    ``n / 2^k`` values, i.e. the edges are the ``j/2^k`` percentiles.

    Parameters
    ----------
    W : ndarray of any shape
    bits : int in [1, 16]
    split : {"median", "mean"}

    Returns
    -------
    edges : ndarray of shape (2^k − 1,)
        Increasing inner edges; value ``w`` falls in bin ``searchsorted(edges, w, 'right')``.

    Notes
    -----
    Survey §3.3.2.

    References
    ----------
    .. [1] S.-C. Zhou et al., "Balanced Quantization: An Effective and Efficient Approach to
       Quantized Neural Networks", J. Comput. Sci. Technol. 32(4), 2017.
    """
    W = check_array(W, "W").ravel().astype(np.float64)
    bits = check_int(bits, "bits", 1, 16)
    check_choice(split, "split", ("median", "mean"))
    center = np.median if split == "median" else np.mean
    if 2 ** bits > W.size:
        raise ValueError(f"bits={bits} asks for 2^{bits} bins, more than the {W.size} weights "
                         "in W")

    edges: list[float] = []

    def rec(v, depth):
        if depth == 0:
            return
        c = float(center(v)) if v.size else np.nan
        lo, hi = v[v < c], v[v >= c]
        if split == "median" and v.size % 2 == 0 and v.size:
            # median of an even count lies between two values: split exactly in halves
            s = np.sort(v)
            lo, hi = s[: v.size // 2], s[v.size // 2:]
        rec(lo, depth - 1)
        edges.append(c)
        rec(hi, depth - 1)

    rec(W, bits)
    return np.asarray(edges)


@validate_scalars
def balanced_codes(W, bits: int, split: str = "median") -> tuple[np.ndarray, np.ndarray]:
    """Histogram equalisation + uniform k-bit grid: the level index of every weight.

    Bin ``j`` of :func:`recursive_split_edges` is mapped linearly onto ``[j/2^k, (j+1)/2^k]``
    (histogram equalisation), and the uniform grid assigns level ``⌊2^k x⌋`` (clipped to
    ``2^k − 1``), so each level receives one bin — the levels are used equally often.

    Returns
    -------
    codes : ndarray of uint16, shape of ``W``
    edges : ndarray of shape (2^k − 1,)

    Notes
    -----
    Survey §3.3.2.

    References
    ----------
    .. [1] S.-C. Zhou et al., "Balanced Quantization: An Effective and Efficient Approach to
       Quantized Neural Networks", J. Comput. Sci. Technol. 32(4), 2017.
    """
    Wa = check_array(W, "W")
    edges = recursive_split_edges(Wa, bits, split)
    codes = np.searchsorted(edges, Wa.ravel(), side="right").reshape(Wa.shape)
    return codes.astype(np.uint16), edges


@validate_scalars
def balanced_quantize(W, bits: int, split: str = "median", scale: str = "lsq") -> np.ndarray:
    """Balanced quantisation (Zhou et al. 2017), Survey §3.3.2.

    Codes from :func:`balanced_codes`; level ``j`` takes the value ``s · (2j/(2^k − 1) − 1)``
    (the grid of Eq. 36 on ``[-1, 1]``, centred at the mean of ``W`` so the range roughly
    matches the input's), with the scale ``s``:

    - ``"max"``: ``s = max|W − μ|`` (the range of the input);
    - ``"mean"``: ``s`` chosen so that the mean magnitude matches, ``mean|W − μ| /
      mean|levels|`` (Zhou et al.'s scaling by the mean);
    - ``"lsq"``: the least-squares ``s`` for the given codes.

    Parameters
    ----------
    W : ndarray of any shape
    bits : int in [1, 16]
    split : {"median", "mean"}
    scale : {"lsq", "max", "mean"}

    Returns
    -------
    ndarray of the shape of ``W``

    References
    ----------
    .. [1] Zhou, Ni, Zhou, Yao, Zou, Wen, "Balanced Quantization: An Effective and Efficient
       Approach to Quantized Neural Networks", J. Comput. Sci. Technol. 32(4), 2017.
    """
    Wa = check_array(W, "W")
    check_choice(scale, "scale", ("lsq", "max", "mean"))
    codes, _ = balanced_codes(Wa, bits, split)
    n = 2 ** bits - 1
    lev = 2.0 * codes / n - 1.0  # Eq. (36) grid, in [-1, 1]
    mu = float(Wa.mean())
    Wc = Wa - mu
    if scale == "max":
        s = float(np.abs(Wc).max())
    elif scale == "mean":
        den = float(np.abs(lev).mean())
        s = float(np.abs(Wc).mean()) / den if den > 0 else 0.0
    else:
        den = float((lev * lev).sum())
        s = float((Wc * lev).sum()) / den if den > 0 else 0.0
    return (s * lev + mu).astype(np.result_type(Wa.dtype, np.float32))
