r"""Survey §5.1, character-aware language models: word vectors composed from characters.

A word-embedding table costs ``V × d`` numbers and has no row for a word it never saw. The
character-aware models of §5.1 share one small set of character parameters across the whole
vocabulary (hence "parameter sharing") and compose a vector for *any* spelling, including words
never seen in training.

======================  ===================================================================
:func:`char_table`      words -> the (V, L_c) character-id table ``<bow> c_1 … c_n <eow>``
:class:`C2W`            Ling et al. 2015: a BiLSTM over characters,
                        ``e_w = D_f s_f + D_b s_b + b`` (final forward / backward states)
:class:`CharCNN`        Kim et al. 2016: character embeddings, convolutions of several widths,
                        max-over-time of ``tanh``, then a highway network
                        (:class:`refimpl.nn.conv.Highway`, fixed gate offset −2 as in their code)
:class:`CharWordEmbedding`  a drop-in ``embedding`` for the ``refimpl.nn`` models: token ids
                        -> composed word vectors, **each distinct word composed once per
                        batch**; :meth:`CharWordEmbedding.embed_words` embeds new spellings
:class:`CNNSoftmax`     Jozefowicz et al. 2016: the output embedding of every word is built by
                        a (separate, unshared) character CNN, ``z_w = hᵀ P CNN(w)``
:class:`CharLSTMOutput` Jozefowicz et al. 2016: a small LSTM predicts the next word character by
                        character, ``log p(w | h) = Σ_k log p(c_k | c_<k, h)``
:func:`char_aware_lm`   Kim et al.'s model: an ``nn.LSTMLanguageModel`` whose embedding is a
                        :class:`CharWordEmbedding` (char CNN + highway), optionally with a
                        :class:`CNNSoftmax` output layer
:func:`c2w_num_params`, :func:`char_cnn_num_params`  exact parameter counts by formula
======================  ===================================================================

Character ids: 0 ``<pad>`` (its embedding row is fixed at zero, as Kim et al.'s zero-padding),
1 ``<bow>``, 2 ``<eow>``, 3 ``<unk>`` (a character outside the alphabet), then the alphabet.

References
----------
.. [1] W. Ling, T. Luís, L. Marujo, R. F. Astudillo, S. Amir, C. Dyer, A. W. Black, I. Trancoso,
   "Finding function in form: compositional character models for open vocabulary word
   representation", EMNLP 2015, §2.1, Eq. (C2W).
.. [2] Y. Kim, Y. Jernite, D. Sontag, A. M. Rush, "Character-aware neural language models",
   AAAI 2016, §2.
.. [3] R. Jozefowicz, O. Vinyals, M. Schuster, N. Shazeer, Y. Wu, "Exploring the limits of
   language modeling", arXiv 1602.02410, 2016, §3.2–3.3.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.conv import Conv1d, Highway
from refimpl.nn.layers import Embedding, Linear, check_features
from refimpl.nn.models import LSTMLanguageModel
from refimpl.nn.module import Module, ModuleList
from refimpl.nn.recurrent import LSTM
from refimpl.nn.tensor import Parameter, Tensor, data_of
from refimpl.utils import as_rng, check_bool, check_float, check_int

__all__ = ["PAD_CHAR", "BOW_CHAR", "EOW_CHAR", "UNK_CHAR", "char_table", "C2W", "CharCNN",
           "CharWordEmbedding", "CNNSoftmax", "CharLSTMOutput", "char_aware_lm",
           "c2w_num_params", "char_cnn_num_params"]

PAD_CHAR, BOW_CHAR, EOW_CHAR, UNK_CHAR = 0, 1, 2, 3
_N_SPECIAL = 4


# ------------------------------------------------------------------ character table
def char_table(words: Sequence[str], *, alphabet: str | None = None,
               max_len: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Character ids of ``<bow> c_1 … c_n <eow>`` for every word, right-padded with ``<pad>``.

    Parameters
    ----------
    words : sequence of str, length V
    alphabet : str, optional
        The characters with their own id (``4 + position``, a repeat keeps its first id);
        others map to ``<unk>`` (3).
        Default: the sorted distinct characters of ``words``.
    max_len : int >= 3, optional
        Table width ``L_c``; default the longest word + 2. Longer words are cut to
        ``max_len − 2`` characters (then ``<eow>``).

    Returns
    -------
    chars : int64 ndarray of shape (V, L_c)
    lengths : int64 ndarray of shape (V,)
        Real lengths including ``<bow>`` and ``<eow>``.
    alphabet : str
    """
    if isinstance(words, str) or not isinstance(words, Sequence) or len(words) == 0:
        raise TypeError(f"words must be a non-empty sequence of str, got {type(words).__name__}")
    if not all(isinstance(w, str) for w in words):
        raise TypeError("words must be a non-empty sequence of str")
    if alphabet is None:
        alphabet = "".join(sorted(set("".join(words))))
    elif not isinstance(alphabet, str):
        raise TypeError(f"alphabet must be a str or None, got {type(alphabet).__name__}")
    alphabet = "".join(dict.fromkeys(alphabet))          # a repeated character: first id
    longest = max(len(w) for w in words) + 2
    L = longest if max_len is None else check_int(max_len, "max_len", 3)
    index = {c: _N_SPECIAL + i for i, c in enumerate(alphabet)}
    chars = np.full((len(words), L), PAD_CHAR, dtype=np.int64)
    lengths = np.empty(len(words), dtype=np.int64)
    for r, w in enumerate(words):
        ids = [BOW_CHAR] + [index.get(c, UNK_CHAR) for c in w[:L - 2]] + [EOW_CHAR]
        chars[r, :len(ids)] = ids
        lengths[r] = len(ids)
    return chars, lengths, alphabet


def _pad_cols(chars: np.ndarray, L: int) -> np.ndarray:
    """Right-pad a character table with ``<pad>`` to at least ``L`` columns."""
    if chars.shape[1] >= L:
        return chars
    return np.pad(chars, ((0, 0), (0, L - chars.shape[1])), constant_values=PAD_CHAR)


def _check_chars(chars, lengths, num_chars: int, name: str = "chars",
                 lengths_name: str = "lengths"):
    if lengths is None and lengths_name != "lengths":
        raise TypeError(f"{lengths_name} must be an integer array, got None")
    c = np.asarray(data_of(chars))
    if c.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {c.dtype}")
    if c.ndim != 2 or c.size == 0:
        raise ValueError(f"{name} must have shape (N, L_c) with N, L_c >= 1, got {c.shape}")
    if c.min() < 0 or c.max() >= num_chars:
        raise ValueError(f"{name} must lie in [0, {num_chars}), got [{c.min()}, {c.max()}]")
    if lengths is None:
        return c, np.maximum((c != PAD_CHAR).sum(1), 1)
    n = np.asarray(data_of(lengths))
    if n.dtype.kind not in "iu":
        raise TypeError(f"{lengths_name} must be an integer array, got dtype {n.dtype}")
    if n.shape != (c.shape[0],) or n.min() < 1 or n.max() > c.shape[1]:
        raise ValueError(f"{lengths_name} must have shape ({c.shape[0]},) with values in "
                         f"[1, {c.shape[1]}], got shape {n.shape}")
    return c, n.astype(np.int64)


# ------------------------------------------------------------------ C2W (Ling et al.)
class C2W(Module):
    r"""C2W (Ling et al. 2015): a word vector from a bidirectional LSTM over its characters.

    Survey §5.1: ``e_w = D_f s_f + D_b s_b + b`` where ``s_f`` is the forward LSTM's state
    after the last character and ``s_b`` the backward LSTM's state after the first one.

    Parameters
    ----------
    num_chars, d_char, d_hidden, d_word : int (keyword-only)
        Character vocabulary ``C`` (incl. the 4 special ids), character-embedding size, LSTM
        state size ``H`` per direction, word-vector size.
    rng : Generator or int, optional

    Attributes
    ----------
    char_embedding : Embedding (C, d_char), row 0 (``<pad>``) fixed at zero
    lstm : LSTM (d_char -> H, bidirectional)
    D_f, D_b : Parameter of shape (d_word, H)
    b : Parameter of shape (d_word,)

    Notes
    -----
    Parameters (:func:`c2w_num_params`): ``C·d_c + 2(4H·d_c + 4H·H + 8H) + 2·d_w·H + d_w``,
    independent of the word vocabulary.
    """

    def __init__(self, *, num_chars: int, d_char: int, d_hidden: int, d_word: int, rng=None):
        self.num_chars = check_int(num_chars, "num_chars", _N_SPECIAL + 1)
        d_char = check_int(d_char, "d_char", 1)
        H = check_int(d_hidden, "d_hidden", 1)
        self.dim = check_int(d_word, "d_word", 1)
        rng = as_rng(rng)
        self.char_embedding = Embedding(self.num_chars, d_char, padding_idx=PAD_CHAR, rng=rng)
        self.lstm = LSTM(d_char, H, bidirectional=True, rng=rng)
        bound = 1.0 / np.sqrt(2 * H)
        self.D_f = Parameter(rng.uniform(-bound, bound, (self.dim, H)))
        self.D_b = Parameter(rng.uniform(-bound, bound, (self.dim, H)))
        self.b = Parameter(np.zeros(self.dim))

    def forward(self, chars, lengths=None) -> Tensor:
        """``chars`` (N, L_c) int, ``lengths`` (N,) -> word vectors (N, d_word)."""
        c, n = _check_chars(chars, lengths, self.num_chars)
        _, (h, _) = self.lstm(self.char_embedding(c), lengths=n)   # h: (2, N, H)
        s_f, s_b = h[0], h[1]                                       # (N, H) each
        # e = D_f s_f + D_b s_b + b
        return F.linear(s_f, self.D_f) + F.linear(s_b, self.D_b, self.b)


def c2w_num_params(*, num_chars: int, d_char: int, d_hidden: int, d_word: int) -> int:
    """Exact parameter count of :class:`C2W` (Survey §5.1):
    ``C·d_c + 2(4H·d_c + 4H·H + 8H) + 2·d_w·H + d_w``."""
    C = check_int(num_chars, "num_chars", 1)
    dc = check_int(d_char, "d_char", 1)
    H = check_int(d_hidden, "d_hidden", 1)
    dw = check_int(d_word, "d_word", 1)
    return C * dc + 2 * (4 * H * dc + 4 * H * H + 8 * H) + 2 * dw * H + dw


# ------------------------------------------------------------------ char CNN (Kim et al.)
class CharCNN(Module):
    r"""Kim et al.'s character CNN: ``y_k = max_t tanh(conv_k(Q[chars]))``, concatenated over
    the filters of every width, then a highway network (Survey §5.1; Kim et al. 2016, §2.2).

    Parameters
    ----------
    num_chars, d_char : int (keyword-only)
        ``C`` (incl. the 4 special ids) and the character-embedding size (Kim et al.: 15).
    widths, num_filters : sequence of int
        Filter widths ``w`` and the number of filters of each width (small model of Kim et al.:
        widths 1–6 with ``25·w`` filters).
    highway_layers : int >= 0
        0: no highway network.
    gate_offset : float
        The fixed constant inside the highway transform gate (Kim et al.'s code: −2).
    rng : Generator or int, optional

    Attributes
    ----------
    char_embedding : Embedding (C, d_char), the ``<pad>`` row fixed at zero
    convs : ModuleList of Conv1d (d_char -> num_filters[k], width widths[k])
    highway : Highway or None
    dim : int, Σ num_filters

    Notes
    -----
    A word shorter than the widest filter is padded with ``<pad>`` (zero vectors) in the table;
    windows over the padding take part in the max, as in Kim et al.'s code. Parameters
    (:func:`char_cnn_num_params`): ``C·d_c + Σ_k (f_k·d_c·w_k + f_k) + 2L_hw(n² + n)``.
    """

    def __init__(self, *, num_chars: int, d_char: int, widths: Sequence[int] = (1, 2, 3),
                 num_filters: Sequence[int] = (25, 50, 75), highway_layers: int = 1,
                 gate_offset: float = -2.0, rng=None):
        self.num_chars = check_int(num_chars, "num_chars", _N_SPECIAL + 1)
        d_char = check_int(d_char, "d_char", 1)
        if not isinstance(widths, (list, tuple)) or not widths:
            raise TypeError("widths must be a non-empty list or tuple of int")
        if not isinstance(num_filters, (list, tuple)) or len(num_filters) != len(widths):
            raise TypeError(f"num_filters must be a list or tuple of {len(widths)} int")
        self.widths = tuple(check_int(w, "widths", 1) for w in widths)
        filters = tuple(check_int(f, "num_filters", 1) for f in num_filters)
        highway_layers = check_int(highway_layers, "highway_layers", 0)
        gate_offset = check_float(gate_offset, "gate_offset")
        rng = as_rng(rng)
        self.char_embedding = Embedding(self.num_chars, d_char, padding_idx=PAD_CHAR, rng=rng)
        self.convs = ModuleList([Conv1d(d_char, f, w, rng=rng)
                                 for w, f in zip(self.widths, filters)])
        self.dim = int(sum(filters))
        self.highway = (Highway(self.dim, highway_layers, gate_offset=gate_offset, rng=rng)
                        if highway_layers else None)

    def forward(self, chars, lengths=None) -> Tensor:
        """``chars`` (N, L_c) int with ``L_c >= max(widths)`` -> (N, dim); ``lengths`` unused
        (the padding embeds to zero)."""
        c, _ = _check_chars(chars, lengths, self.num_chars)
        if c.shape[1] < max(self.widths):
            raise ValueError(f"chars must have at least max(widths)={max(self.widths)} "
                             f"columns, got shape {c.shape}")
        x = self.char_embedding(c)                                   # (N, L_c, d_char)
        # y_k = max_t tanh(conv_k(x)) for every filter, concatenated over the widths
        y = F.concat([F.max(F.tanh(conv(x)), axis=1) for conv in self.convs], axis=-1)
        return y if self.highway is None else self.highway(y)       # (N, dim)


def char_cnn_num_params(*, num_chars: int, d_char: int, widths: Sequence[int],
                        num_filters: Sequence[int], highway_layers: int = 1) -> int:
    """Exact parameter count of :class:`CharCNN` (Survey §5.1):
    ``C·d_c + Σ_k (f_k·d_c·w_k + f_k) + 2·L_hw·(n² + n)`` with ``n = Σ_k f_k``."""
    C = check_int(num_chars, "num_chars", 1)
    dc = check_int(d_char, "d_char", 1)
    if not isinstance(widths, (list, tuple)) or not isinstance(num_filters, (list, tuple)) \
            or len(widths) != len(num_filters) or not widths:
        raise TypeError("widths and num_filters must be non-empty lists/tuples of equal length")
    ws = [check_int(w, "widths", 1) for w in widths]
    fs = [check_int(f, "num_filters", 1) for f in num_filters]
    Lh = check_int(highway_layers, "highway_layers", 0)
    n = sum(fs)
    return C * dc + sum(f * dc * w + f for w, f in zip(ws, fs)) + 2 * Lh * (n * n + n)


# ------------------------------------------------------------------ word ids -> composed vectors
class CharWordEmbedding(Module):
    """Token ids -> word vectors composed from their spelling by ``encoder`` (Survey §5.1).

    A drop-in replacement for the ``embedding`` of :class:`refimpl.nn.LSTMLanguageModel`,
    :class:`refimpl.nn.BowClassifier` and :class:`refimpl.nn.RNNClassifier`. Each distinct
    word of a batch is composed once (``np.unique`` of the ids, as Ling et al. cache C2W vectors
    per batch), then gathered; the gather's backward sums the gradients of a word's uses.

    Parameters
    ----------
    encoder : C2W or CharCNN
    word_chars : int ndarray of shape (V, L_c)
        The spelling of every vocabulary id (:func:`char_table`); row ``padding_idx`` is ignored.
    word_char_lengths : int ndarray of shape (V,)
    padding_idx : int or None
        Its vector is zero (as the padding row of an ``Embedding``).

    Attributes
    ----------
    dim : int
    num_embeddings : int (V)
    """

    def __init__(self, encoder, word_chars, word_char_lengths, padding_idx: int | None = 0):
        if not isinstance(encoder, (C2W, CharCNN)):
            raise TypeError(f"encoder must be a C2W or CharCNN, got {type(encoder).__name__}")
        self.encoder = encoder
        c, n = _check_chars(word_chars, word_char_lengths, encoder.num_chars, "word_chars",
                            "word_char_lengths")
        self.word_chars, self.word_char_lengths = c.copy(), n.copy()
        self.num_embeddings = c.shape[0]
        if padding_idx is not None:
            padding_idx = check_int(padding_idx, "padding_idx", 0, self.num_embeddings - 1)
        self.padding_idx = padding_idx
        self.dim = encoder.dim

    def forward(self, idx) -> Tensor:
        """Integer ids of any shape -> Tensor of shape ``idx.shape + (dim,)``."""
        idx = np.asarray(data_of(idx))
        if idx.dtype.kind not in "iu":
            raise TypeError(f"idx (token ids) must be an integer array, got dtype {idx.dtype}")
        V = self.num_embeddings
        if idx.size == 0 or idx.min() < 0 or idx.max() >= V:
            raise ValueError(f"idx (token ids) must be non-empty and lie in [0, {V})")
        uniq, inv = np.unique(idx, return_inverse=True)           # each distinct word once
        E = self.encoder(self.word_chars[uniq], self.word_char_lengths[uniq])  # (U, dim)
        if self.padding_idx is not None and uniq[0] == self.padding_idx:
            keep = np.ones((len(uniq), 1))
            keep[0] = 0.0
            E = F.mask(E, keep)                                    # <pad> -> zero vector
        return F.embedding(E, inv.reshape(idx.shape))              # (..., dim)

    def embed_words(self, words: Sequence[str], alphabet: str) -> Tensor:
        """Vectors of arbitrary spellings (e.g. words never seen in training): (len(words), dim).

        ``alphabet`` must be the one the vocabulary table was built with (:func:`char_table`).
        """
        c, n, _ = char_table(words, alphabet=alphabet)
        c = _pad_cols(c, self.word_chars.shape[1])                 # at least the table's width
        return self.encoder(c, n)


# ------------------------------------------------------------------ CNN-Softmax (Jozefowicz)
class CNNSoftmax(Module):
    r"""CNN-Softmax (Jozefowicz et al. 2016, §3.2; Survey §5.1): output word embeddings built
    from characters, ``z_w = hᵀ P CNN(chars_w) (+ hᵀ M corr_w) (+ b_w)``.

    A drop-in ``out`` for :class:`refimpl.nn.LSTMLanguageModel` (``h -> logits``). The CNN is
    its own :class:`CharCNN`, not shared with the input side (the paper's CNN-Softmax uses a
    separate character CNN for the output embeddings). All ``V`` output vectors are composed once
    per call.

    With ``correction_dim = d_c``, Jozefowicz et al.'s correction term is added: each word has
    a small free vector ``corr_w`` (d_c numbers) that a shared matrix ``M`` (d_hidden, d_c)
    projects up, ``e_w = P CNN(chars_w) + M corr_w``. It lets words that are spelled alike but
    behave differently get different output vectors, at ``V·d_c + d_hidden·d_c`` extra numbers
    (no longer independent of V). ``corr`` starts at zero, so a fresh layer with the
    correction gives the same logits as one without.

    Parameters
    ----------
    encoder : CharCNN
    word_chars : int ndarray (V, L_c); word_char_lengths : int ndarray (V,)
    d_hidden : int
        Size of ``h``; ``P`` projects the CNN output (``encoder.dim``) to it.
    bias : bool
        A per-word bias ``b_w`` (V more numbers); default False keeps the count independent of V.
    correction_dim : int, optional
        ``d_c`` ≥ 1 enables the correction term; None (default) leaves it out.
    rng : Generator or int, optional

    Attributes
    ----------
    encoder : CharCNN
    projection : Linear (encoder.dim -> d_hidden, no bias)
    b : Parameter of shape (V,) or None
    correction : Parameter of shape (V, d_c) or None
        The per-word vectors ``corr_w`` (initialised to zero).
    correction_projection : Linear (d_c -> d_hidden, no bias) or None
        ``M`` (its ``W`` has shape (d_hidden, d_c)).

    Notes
    -----
    Parameter count: ``encoder + encoder.dim·d_hidden (+ V) (+ V·d_c + d_hidden·d_c)``.
    """

    def __init__(self, encoder, word_chars, word_char_lengths, d_hidden: int,
                 bias: bool = False, correction_dim: int | None = None, rng=None):
        if not isinstance(encoder, CharCNN):
            raise TypeError(f"encoder must be a CharCNN, got {type(encoder).__name__}")
        self.encoder = encoder
        c, n = _check_chars(word_chars, word_char_lengths, encoder.num_chars, "word_chars",
                            "word_char_lengths")
        self.word_chars, self.word_char_lengths = c.copy(), n.copy()
        self.d_hidden = check_int(d_hidden, "d_hidden", 1)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be a bool, got {bias!r}")
        if correction_dim is not None:
            correction_dim = check_int(correction_dim, "correction_dim", 1)
        rng = as_rng(rng)
        self.projection = Linear(encoder.dim, self.d_hidden, bias=False, rng=rng)
        self.b = Parameter(np.zeros(c.shape[0])) if bias else None
        self.correction = self.correction_projection = None
        if correction_dim is not None:
            self.correction = Parameter(np.zeros((c.shape[0], correction_dim)))
            self.correction_projection = Linear(correction_dim, self.d_hidden, bias=False,
                                                rng=rng)

    def output_embeddings(self) -> Tensor:
        """``e_w = P CNN(chars_w) (+ M corr_w)`` of every word: (V, d_hidden)."""
        e = self.projection(self.encoder(self.word_chars, self.word_char_lengths))
        if self.correction is not None:
            e = e + self.correction_projection(self.correction)
        return e

    def forward(self, h) -> Tensor:
        """``h`` (..., d_hidden) -> logits (..., V)."""
        h = check_features(h, "h", self.d_hidden)
        return F.linear(h, self.output_embeddings(), self.b)


# ------------------------------------------------------------------ Char-LSTM output (Jozefowicz)
class CharLSTMOutput(Module):
    r"""Char-LSTM predictions (Jozefowicz et al. 2016, §3.3; Survey §5.1): a small LSTM
    spells the next word one character at a time, conditioned on the word-level state ``h``.

    ``log p(w | h) = Σ_{k=1}^{n+1} log p(c_k | c_0 … c_{k−1}, h)`` over ``<bow> c_1 … c_n <eow>``
    (``c_0 = <bow>``, ``c_{n+1} = <eow>``); any spelling gets a probability, so the output
    vocabulary is open. Here ``h`` is concatenated to every step's character embedding (the
    paper feeds the word-level state into the character LSTM; the exact wiring is our choice).
    The probabilities of all strings sum to 1 up to the mass of never emitting ``<eow>``
    (verified in check ``char-lstm-output``).

    Parameters
    ----------
    num_chars, d_char, d_context, d_hidden : int (keyword-only)
        Characters ``C``, character-embedding size, size of ``h``, character-LSTM size.
    rng : Generator or int, optional

    Attributes
    ----------
    char_embedding : Embedding (C, d_char)
    lstm : LSTM (d_char + d_context -> d_hidden)
    out : Linear (d_hidden -> C)
    """

    def __init__(self, *, num_chars: int, d_char: int, d_context: int, d_hidden: int,
                 rng=None):
        self.num_chars = check_int(num_chars, "num_chars", _N_SPECIAL + 1)
        d_char = check_int(d_char, "d_char", 1)
        self.d_context = check_int(d_context, "d_context", 1)
        d_hidden = check_int(d_hidden, "d_hidden", 1)
        rng = as_rng(rng)
        self.char_embedding = Embedding(self.num_chars, d_char, padding_idx=PAD_CHAR, rng=rng)
        self.lstm = LSTM(d_char + self.d_context, d_hidden, rng=rng)
        self.out = Linear(d_hidden, self.num_chars, rng=rng)

    def forward(self, h, chars, lengths=None) -> Tensor:
        """Teacher-forced character logits: ``h`` (N, d_context), ``chars`` (N, L_c) ->
        (N, L_c − 1, C), position k predicting ``chars[:, k + 1]``."""
        h = check_features(h, "h", self.d_context, ndim=2)
        c, n = _check_chars(chars, lengths, self.num_chars)
        if c.shape[0] != h.shape[0] or c.shape[1] < 2 or n.min() < 2:
            raise ValueError(f"chars must have shape ({h.shape[0]}, L_c >= 2) and lengths >= 2, "
                             f"got {c.shape}")
        T = c.shape[1] - 1
        x = self.char_embedding(c[:, :-1])                              # (N, T, d_char)
        hh = F.reshape(h, (h.shape[0], 1, self.d_context)) * np.ones((1, T, 1))  # (N, T, d_ctx)
        out, _ = self.lstm(F.concat([x, hh], axis=-1), lengths=n - 1)
        return self.out(out)                                             # (N, T, C)

    def log_prob(self, h, chars, lengths=None) -> Tensor:
        """``log p(w | h)`` of each spelling: (N,)."""
        c, n = _check_chars(chars, lengths, self.num_chars)
        logp = F.log_softmax(self.forward(h, c, n), axis=-1)            # (N, T, C)
        picked = F.gather(logp, c[:, 1:, None], axis=-1)                 # (N, T, 1)
        valid = (np.arange(1, c.shape[1])[None, :] < n[:, None])[..., None]  # real targets
        return F.sum(F.mask(picked, valid.astype(float)), axis=(1, 2))


# ------------------------------------------------------------------ Kim et al.'s LM
def char_aware_lm(*, words: Sequence[str], d_char: int = 15, widths: Sequence[int] = (1, 2, 3),
                  num_filters: Sequence[int] = (25, 50, 75), highway_layers: int = 1,
                  d_hidden: int = 64, cnn_softmax: bool = False,
                  correction_dim: int | None = None, rng=None) -> LSTMLanguageModel:
    """Kim et al.'s character-aware LM: char CNN + highway -> word LSTM -> softmax (Survey §5.1).

    An :class:`refimpl.nn.LSTMLanguageModel` (train it with :func:`refimpl.nn.fit_lm`) whose
    ``embedding`` is a :class:`CharWordEmbedding` over a :class:`CharCNN`; with
    ``cnn_softmax=True`` its ``out`` is a :class:`CNNSoftmax` with a second, unshared
    :class:`CharCNN` (Jozefowicz et al.), with their correction term when ``correction_dim``
    is given.

    Parameters
    ----------
    words : sequence of str, length V
        The spelling of every vocabulary id (special tokens included; id 0 is padding).
    d_char, widths, num_filters, highway_layers : as :class:`CharCNN`
    d_hidden : int
    cnn_softmax : bool
    correction_dim : int, optional
        CNN-Softmax's per-word correction size ``d_c`` (see :class:`CNNSoftmax`); needs
        ``cnn_softmax=True``.
    rng : Generator or int, optional

    Returns
    -------
    LSTMLanguageModel
    """
    rng = as_rng(rng)
    cnn_softmax = check_bool(cnn_softmax, "cnn_softmax")
    d_hidden = check_int(d_hidden, "d_hidden", 1)
    if correction_dim is not None:
        correction_dim = check_int(correction_dim, "correction_dim", 1)
        if not cnn_softmax:
            raise ValueError("correction_dim needs cnn_softmax=True")
    chars, lengths, alphabet = char_table(words)
    if not isinstance(widths, (list, tuple)) or not widths:
        raise TypeError("widths must be a non-empty list or tuple of int")
    chars = _pad_cols(chars, max(check_int(w, "widths", 1) for w in widths))
    C = _N_SPECIAL + len(alphabet)

    def cnn():
        return CharCNN(num_chars=C, d_char=d_char, widths=widths, num_filters=num_filters,
                       highway_layers=highway_layers, rng=rng)

    enc = cnn()
    model = LSTMLanguageModel(vocab_size=len(words), d_emb=enc.dim, d_hidden=d_hidden, rng=rng)
    model.embedding = CharWordEmbedding(enc, chars, lengths)
    if cnn_softmax:
        model.out = CNNSoftmax(cnn(), chars, lengths, d_hidden, correction_dim=correction_dim,
                               rng=rng)
    return model
