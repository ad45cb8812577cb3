"""Task containers returned by the generators and loaders of :mod:`refimpl.data`.

All token arrays are int64, right-padded with ``0 = <pad>`` (see :mod:`refimpl.data.vocab`),
with an int64 lengths array beside each. Four kinds:

- :class:`ClassificationTask` — one label per sentence (sentiment, stdlib topics, user CSV);
  the classifiers of ``refimpl.nn`` are called as ``model(X, lengths)``.
- :class:`LMTask` — language modelling on sentences ``<bos> w_1 ... w_n <eos>``; the model
  predicts ``X[:, 1:]`` from ``X[:, :-1]``. For generated languages it carries the exact
  Bayes-optimal test NLL (the floor any LM can reach).
- :class:`Seq2SeqTask` — source/target pairs for sequence-level distillation (§4.1) and BLEU.
- :class:`SequenceTask` — long-range classification (associative recall, copy, needle) with
  the distance of the dependency per example, used by the efficient-attention chapter (§7).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from refimpl.data.vocab import BOS, EOS, Vocab

__all__ = ["ClassificationTask", "LMTask", "Seq2SeqTask", "SequenceTask", "lm_targets"]

_SPLITS = ("train", "val", "test")


def _check_xy(name, X, lengths, y=None):
    if X.ndim != 2 or X.dtype != np.int64:
        raise ValueError(f"{name}: X must be int64 of shape (N, T), got {X.dtype} {X.shape}")
    if lengths.shape != (X.shape[0],):
        raise ValueError(f"{name}: lengths must have shape ({X.shape[0]},), got {lengths.shape}")
    if y is not None and y.shape[0] != X.shape[0]:
        raise ValueError(f"{name}: y must have {X.shape[0]} rows, got {y.shape}")


@dataclass
class ClassificationTask:
    """A sentence-classification task, split into train/val/test.

    Attributes
    ----------
    name : str
    vocab : Vocab
    X_train, X_val, X_test : ndarray of shape (N_split, T), int64
        Token ids padded with 0 = <pad>.
    len_train, len_val, len_test : ndarray of shape (N_split,), int64
        True lengths (>= 1).
    y_train, y_val, y_test : ndarray of shape (N_split,), int64
        Labels in ``[0, n_classes)``.
    n_classes : int
    label_names : list of str
        ``label_names[c]`` names class ``c``.
    texts_train, texts_val, texts_test : list of str, optional
        The sentences as text (for inspection and for the rule-based reader).
    meta : dict
        Generator settings and extra numbers (e.g. the label-noise rate).
    """

    name: str
    vocab: Vocab
    X_train: np.ndarray
    len_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    len_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    len_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    label_names: list
    texts_train: list | None = None
    texts_val: list | None = None
    texts_test: list | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for s in _SPLITS:
            _check_xy(f"{self.name}.{s}", getattr(self, f"X_{s}"), getattr(self, f"len_{s}"),
                      getattr(self, f"y_{s}"))
        if len(self.label_names) != self.n_classes:
            raise ValueError(f"label_names must have n_classes={self.n_classes} entries, "
                             f"got {len(self.label_names)}")

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X, lengths, y)`` of split ``which`` in {"train", "val", "test"}."""
        if which not in _SPLITS:
            raise ValueError(f"which must be one of {_SPLITS}, got {which!r}")
        return (getattr(self, f"X_{which}"), getattr(self, f"len_{which}"),
                getattr(self, f"y_{which}"))

    def summary(self) -> str:
        """A few lines describing sizes, vocabulary, class balance and an example."""
        lines = [f"ClassificationTask {self.name!r}: {self.n_classes} classes "
                 f"{list(self.label_names)}, vocab {len(self.vocab)}"]
        for s in _SPLITS:
            X, L, y = self.split(s)
            bal = np.bincount(y, minlength=self.n_classes) / max(len(y), 1)
            lines.append(f"  {s:5s}: N={X.shape[0]:6d}  T={X.shape[1]:3d}  mean len "
                         f"{L.mean():5.1f}  class fractions {np.round(bal, 3).tolist()}")
        if self.texts_train:
            lines.append(f"  e.g. [{self.label_names[self.y_train[0]]}] {self.texts_train[0]}")
        return "\n".join(lines)


def lm_targets(X: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, targets and mask for next-token prediction on ``<bos> ... <eos>`` rows.

    Parameters
    ----------
    X : ndarray of shape (N, T), int64
    lengths : ndarray of shape (N,), int64
        Row lengths including ``<bos>`` and ``<eos>``.

    Returns
    -------
    inputs : ndarray of shape (N, T-1), int64
        ``X[:, :-1]``.
    targets : ndarray of shape (N, T-1), int64
        ``X[:, 1:]``.
    mask : ndarray of shape (N, T-1), bool
        True where a target is a real token (``t + 1 < lengths``); ``mask.sum()`` is the number
        of predicted tokens the per-token NLL averages over.
    """
    T = X.shape[1]
    mask = np.arange(1, T)[None, :] < lengths[:, None]  # (N, T-1)
    return X[:, :-1], X[:, 1:], mask


@dataclass
class LMTask:
    """A language-modelling task on sentences.

    Each row is ``<bos> w_1 ... w_n <eos>`` padded with 0; a model reads ``X[:, :-1]`` and
    predicts ``X[:, 1:]`` (:func:`lm_targets`). Perplexity is ``exp`` of the mean NLL over all
    predicted tokens (the words and the ``<eos>``, not ``<bos>`` and not padding), in nats.

    Attributes
    ----------
    name : str
    vocab : Vocab
    train, valid, test : ndarray of shape (N_split, T), int64
    len_train, len_valid, len_test : ndarray of shape (N_split,), int64
        Row lengths including ``<bos>`` and ``<eos>``.
    bayes_nll : float or None
        Exact mean per-token NLL (nats) of the *test* split under the true generator, or None
        for real text. No model can have a lower expected test NLL.
    bayes_perplexity : float or None
        ``exp(bayes_nll)``.
    generator : dict
        Parameters of the true generator (e.g. the HMM's ``pi``, ``A``, ``end``, ``B``), empty
        for real text.
    meta : dict
    """

    name: str
    vocab: Vocab
    train: np.ndarray
    len_train: np.ndarray
    valid: np.ndarray
    len_valid: np.ndarray
    test: np.ndarray
    len_test: np.ndarray
    bayes_nll: float | None = None
    bayes_perplexity: float | None = None
    generator: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for s in ("train", "valid", "test"):
            X, L = getattr(self, s), getattr(self, f"len_{s}")
            _check_xy(f"{self.name}.{s}", X, L)
            if X.shape[0] and (np.any(X[:, 0] != BOS) or np.any(L < 2)):
                raise ValueError(f"{self.name}.{s}: every row must start with <bos> and have "
                                 "length >= 2")
            if X.shape[0] and np.any(X[np.arange(X.shape[0]), L - 1] != EOS):
                raise ValueError(f"{self.name}.{s}: every row must end with <eos>")
        if self.bayes_nll is not None and self.bayes_perplexity is None:
            self.bayes_perplexity = float(np.exp(self.bayes_nll))

    def n_tokens(self, which: str = "test") -> int:
        """Number of predicted tokens (words + ``<eos>``) in split ``which``."""
        if which not in ("train", "valid", "test"):
            raise ValueError(f"which must be one of ('train', 'valid', 'test'), got {which!r}")
        return int((getattr(self, f"len_{which}") - 1).sum())

    def stream(self, which: str = "train") -> np.ndarray:
        """Split ``which`` as one 1-D int64 stream ``w w w <eos> w w <eos> ...`` (no bos/pad)."""
        if which not in ("train", "valid", "test"):
            raise ValueError(f"which must be one of ('train', 'valid', 'test'), got {which!r}")
        X, L = getattr(self, which), getattr(self, f"len_{which}")
        if X.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([X[i, 1:L[i]] for i in range(X.shape[0])]).astype(np.int64)

    def summary(self) -> str:
        """A few lines describing sizes and the Bayes floor."""
        lines = [f"LMTask {self.name!r}: vocab {len(self.vocab)}"]
        for s in ("train", "valid", "test"):
            X = getattr(self, s)
            lines.append(f"  {s:5s}: {X.shape[0]:6d} sentences, {self.n_tokens(s):7d} "
                         f"predicted tokens, T={X.shape[1]}")
        if self.bayes_nll is not None:
            lines.append(f"  Bayes-optimal test NLL {self.bayes_nll:.4f} nats/token "
                         f"(perplexity {self.bayes_perplexity:.2f})")
        return "\n".join(lines)


@dataclass
class Seq2SeqTask:
    """A sequence-to-sequence task (synthetic translation).

    Source rows are the source tokens then ``<eos>``; target rows are
    ``<bos> y_1 ... y_m <eos>`` (teacher forcing reads ``tgt[:, :-1]`` and predicts
    ``tgt[:, 1:]``). All arrays int64, padded with 0.

    Attributes
    ----------
    name : str
    src_vocab, tgt_vocab : Vocab
    src_train, src_val, src_test : ndarray of shape (N_split, T_src), int64
    src_len_train, src_len_val, src_len_test : ndarray of shape (N_split,), int64
    tgt_train, tgt_val, tgt_test : ndarray of shape (N_split, T_tgt), int64
    tgt_len_train, tgt_len_val, tgt_len_test : ndarray of shape (N_split,), int64
    bos_id, eos_id : int
    meta : dict
    """

    name: str
    src_vocab: Vocab
    tgt_vocab: Vocab
    src_train: np.ndarray
    src_len_train: np.ndarray
    tgt_train: np.ndarray
    tgt_len_train: np.ndarray
    src_val: np.ndarray
    src_len_val: np.ndarray
    tgt_val: np.ndarray
    tgt_len_val: np.ndarray
    src_test: np.ndarray
    src_len_test: np.ndarray
    tgt_test: np.ndarray
    tgt_len_test: np.ndarray
    bos_id: int = BOS
    eos_id: int = EOS
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for s in _SPLITS:
            _check_xy(f"{self.name}.src_{s}", getattr(self, f"src_{s}"),
                      getattr(self, f"src_len_{s}"))
            _check_xy(f"{self.name}.tgt_{s}", getattr(self, f"tgt_{s}"),
                      getattr(self, f"tgt_len_{s}"))
            if getattr(self, f"tgt_{s}").shape[0] != getattr(self, f"src_{s}").shape[0]:
                raise ValueError(f"{self.name}: src_{s} and tgt_{s} must have the same number "
                                 "of rows")

    def references(self, which: str = "test") -> list[list[str]]:
        """Target sentences of split ``which`` as token lists (no bos/eos), for :func:`bleu`."""
        X, L = getattr(self, f"tgt_{which}"), getattr(self, f"tgt_len_{which}")
        return [self.tgt_vocab.decode(X[i, : L[i]]) for i in range(X.shape[0])]

    def summary(self) -> str:
        lines = [f"Seq2SeqTask {self.name!r}: src vocab {len(self.src_vocab)}, tgt vocab "
                 f"{len(self.tgt_vocab)}"]
        for s in _SPLITS:
            lines.append(f"  {s:5s}: N={getattr(self, f'src_{s}').shape[0]:6d}  "
                         f"T_src={getattr(self, f'src_{s}').shape[1]}  "
                         f"T_tgt={getattr(self, f'tgt_{s}').shape[1]}")
        return "\n".join(lines)


@dataclass
class SequenceTask:
    """A long-range sequence-classification task: one target per sequence.

    Attributes
    ----------
    name : str
    vocab : Vocab
    X_train, X_val, X_test : ndarray of shape (N_split, T), int64
    len_train, len_val, len_test : ndarray of shape (N_split,), int64
    y_train, y_val, y_test : ndarray of shape (N_split,), int64
        Targets in ``[0, n_classes)``.
    dist_train, dist_val, dist_test : ndarray of shape (N_split,), int64
        Distance (in positions) from the last input position back to the token that decides
        the target; a model whose receptive field at the read-out position is narrower than
        this cannot beat chance on that example.
    n_classes : int
    label_names : list of str
    meta : dict
        Task-specific extras (e.g. the copy task's full prefix targets ``Y_copy_*``).
    """

    name: str
    vocab: Vocab
    X_train: np.ndarray
    len_train: np.ndarray
    y_train: np.ndarray
    dist_train: np.ndarray
    X_val: np.ndarray
    len_val: np.ndarray
    y_val: np.ndarray
    dist_val: np.ndarray
    X_test: np.ndarray
    len_test: np.ndarray
    y_test: np.ndarray
    dist_test: np.ndarray
    n_classes: int
    label_names: list
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for s in _SPLITS:
            _check_xy(f"{self.name}.{s}", getattr(self, f"X_{s}"), getattr(self, f"len_{s}"),
                      getattr(self, f"y_{s}"))
            if getattr(self, f"dist_{s}").shape != getattr(self, f"y_{s}").shape[:1]:
                raise ValueError(f"{self.name}.dist_{s} must have one entry per example")

    def split(self, which: str):
        """``(X, lengths, y, dist)`` of split ``which``."""
        if which not in _SPLITS:
            raise ValueError(f"which must be one of {_SPLITS}, got {which!r}")
        return tuple(getattr(self, f"{k}_{which}") for k in ("X", "len", "y", "dist"))

    def summary(self) -> str:
        lines = [f"SequenceTask {self.name!r}: {self.n_classes} classes, vocab {len(self.vocab)}"]
        for s in _SPLITS:
            X, L, y, d = self.split(s)
            lines.append(f"  {s:5s}: N={X.shape[0]:6d}  T={X.shape[1]:4d}  dependency distance "
                         f"{int(d.min())}..{int(d.max())} (mean {d.mean():.1f})")
        return "\n".join(lines)
