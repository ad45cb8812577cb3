"""Internal helpers for the generators: Zipf weights, buffered categorical draws, pseudo-words."""

from __future__ import annotations

import numpy as np


def zipf_probs(n: int, a: float, offset: float = 1.0) -> np.ndarray:
    """Zipf(-Mandelbrot) probabilities ``p_r ∝ (r + offset)^(-a)`` for ranks r = 0..n-1."""
    w = (np.arange(n, dtype=np.float64) + offset) ** (-float(a))
    return w / w.sum()


class Draws:
    """Buffered draws from fixed categorical distributions (fast inner loops, deterministic).

    The Python-level generators consume many small random choices; drawing them one at a time
    from ``rng.choice(p=...)`` is slow, so each distribution keeps a buffer of pre-drawn values
    refilled in blocks from the same Generator. The result is a deterministic function of the
    seed and the order of requests.
    """

    def __init__(self, rng: np.random.Generator, block: int = 4096):
        self.rng = rng
        self.block = block
        self._cdfs: dict = {}
        self._buf: dict = {}
        self._pos: dict = {}

    def add(self, key, p: np.ndarray) -> None:
        cdf = np.cumsum(np.asarray(p, dtype=np.float64))
        cdf /= cdf[-1]
        self._cdfs[key] = cdf
        self._buf[key] = np.empty(0, dtype=np.int64)
        self._pos[key] = 0

    def __call__(self, key) -> int:
        pos = self._pos[key]
        buf = self._buf[key]
        if pos >= buf.size:
            cdf = self._cdfs[key]
            buf = np.minimum(np.searchsorted(cdf, self.rng.random(self.block), side="right"),
                             cdf.size - 1).astype(np.int64)
            self._buf[key] = buf
            pos = 0
        self._pos[key] = pos + 1
        return int(buf[pos])

    def uniform(self) -> float:
        """A U(0, 1) draw from the ``"__u"`` buffer."""
        if "__u" not in self._buf:
            self._buf["__u"] = np.empty(0)
            self._pos["__u"] = 0
        pos = self._pos["__u"]
        buf = self._buf["__u"]
        if pos >= buf.size:
            buf = self.rng.random(self.block)
            self._buf["__u"] = buf
            pos = 0
        self._pos["__u"] = pos + 1
        return float(buf[pos])

    def coin(self, p: float) -> bool:
        return self.uniform() < p


_CONS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def pseudo_words(n: int, seed: int, exclude=()) -> list[str]:
    """``n`` distinct pronounceable pseudo-words (CV syllables), deterministic in ``seed``.

    Two-syllable words come first (shorter words for the frequent ranks), then three-syllable.
    """
    rng = np.random.default_rng(seed)
    syll = [c + v for c in _CONS for v in _VOWELS]  # 70 syllables
    two = [a + b for a in syll for b in syll]
    three_needed = max(0, n - len(two) + len(exclude) + 16)
    words = [two[i] for i in rng.permutation(len(two))]
    if three_needed:
        seen = set(words)
        while three_needed > 0:
            idx = rng.integers(0, len(syll), size=(three_needed * 2, 3))
            for a, b, c in idx:
                w = syll[a] + syll[b] + syll[c]
                if w not in seen:
                    seen.add(w)
                    words.append(w)
                    three_needed -= 1
                    if three_needed == 0:
                        break
    excl = set(exclude)
    out = [w for w in words if w not in excl][:n]
    if len(out) < n:  # pragma: no cover - n is far below the pool size in practice
        raise ValueError(f"cannot make {n} pseudo-words")
    return out


def split_counts(n_total: int, fractions) -> list[int]:
    """Split ``n_total`` into integer parts proportional to ``fractions`` (largest remainder)."""
    f = np.asarray(fractions, dtype=np.float64)
    raw = f / f.sum() * n_total
    base = np.floor(raw).astype(int)
    rem = n_total - base.sum()
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rem]] += 1
    return base.tolist()
