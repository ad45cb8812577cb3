"""Claims in miniature for Survey §5 (parameter sharing), registered with
:func:`refimpl.check.register_claim` and imported by :mod:`refimpl.sharing.checks`.

Each claim fixes its protocol (task, sizes, seeds, threshold) before running and reports the
numbers and an honest verdict; ``quick`` shrinks the sizes, not the logic.
"""

from __future__ import annotations

import numpy as np

from refimpl.check import Outcome, register_claim

_CHR = "refimpl.sharing.characters"

_CONS, _VOWELS = "bdfgklmnprstvz", "aeiou"
_SUFFIXES = (("ek", "ol"), ("ur", "is"))          # class 0, class 1 markers


def _roots(n: int, rng) -> list[str]:
    """``n`` distinct CVCV pseudo-roots."""
    out, seen = [], set()
    while len(out) < n:
        r = "".join(rng.choice(list(s)) for s in (_CONS, _VOWELS, _CONS, _VOWELS))
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def _morph_sentences(roots, n: int, rng):
    """Sentences of 3–5 neutral words (a root, or a root + "n") and one marker word (a root +
    a class suffix) at a random position; the label is the marker's class."""
    sents, labels = [], []
    for _ in range(n):
        y = int(rng.integers(2))
        words = [roots[rng.integers(len(roots))] + ("n" if rng.random() < 0.5 else "")
                 for _ in range(int(rng.integers(3, 6)))]
        marker = roots[rng.integers(len(roots))] + _SUFFIXES[y][rng.integers(2)]
        words.insert(int(rng.integers(len(words) + 1)), marker)
        sents.append(words)
        labels.append(y)
    return sents, np.array(labels)


def _encode(sents, ids, unk: int):
    T = max(len(s) for s in sents)
    X = np.zeros((len(sents), T), dtype=np.int64)
    for r, s in enumerate(sents):
        X[r, :len(s)] = [ids.get(w, unk) for w in s]
    return X, np.array([len(s) for s in sents])


@register_claim("unseen-words-characters", "character-aware word vectors (C2W, char CNN) "
                "handle words never seen in training far better than a word embedding with "
                "<unk>, at a fraction of its parameters (Ling et al. 2015, Kim et al. 2016)",
                section="5.1", implements=[f"{_CHR}.C2W", f"{_CHR}.CharCNN",
                                           f"{_CHR}.CharWordEmbedding"])
def _claim_unseen_words(rng, quick):
    from threadpoolctl import threadpool_limits

    from refimpl.nn import BowClassifier, evaluate_accuracy, fit
    from refimpl.sharing.characters import C2W, CharCNN, CharWordEmbedding, char_table

    # protocol (fixed before running): a task whose label is carried by morphology; training
    # and test sentences use disjoint roots, so every test word is unseen; d = 16 everywhere;
    # reproduced = both character models beat the word table by >= 20 points on the unseen
    # test set with <= 1/2 of its embedding parameters
    g = np.random.default_rng(0)
    n_roots = 150 if quick else 400
    roots = _roots(n_roots + 100, g)
    train_roots, test_roots = roots[:n_roots], roots[n_roots:]
    n_train = 800 if quick else 3000
    tr_s, y_tr = _morph_sentences(train_roots, n_train, g)
    va_s, y_va = _morph_sentences(train_roots, 300, g)           # seen words
    te_s, y_te = _morph_sentences(test_roots, 500, g)             # unseen words only
    train_vocab = sorted({w for s in tr_s for w in s})
    all_vocab = sorted(train_vocab + sorted({w for s in va_s + te_s for w in s}
                                            - set(train_vocab)))
    d, epochs = 16, (6 if quick else 10)
    seed = int(rng.integers(2**31))
    results = {}
    with threadpool_limits(limits=1, user_api="blas"):
        # word table: <pad>, <unk>, the training words; other words -> <unk>
        ids = {w: i + 2 for i, w in enumerate(train_vocab)}
        data = {k: _encode(s, ids, 1) for k, s in (("tr", tr_s), ("va", va_s), ("te", te_s))}
        word = BowClassifier(vocab_size=len(train_vocab) + 2, d_emb=d, n_classes=2,
                             d_hidden=None, rng=seed)
        fit(word, (*data["tr"], y_tr), epochs=epochs, lr=1e-2, rng=seed, progress=False)
        results["word_table"] = (word.embedding.num_parameters(),
                                 evaluate_accuracy(word, *data["va"], y_va),
                                 evaluate_accuracy(word, *data["te"], y_te))
        # character models: every spelling has a row in the character table (test words too:
        # they are spelled, never trained on)
        words = ["<pad>", "<unk>"] + all_vocab
        chars, lengths, alphabet = char_table(words)
        ids = {w: i for i, w in enumerate(words)}
        data = {k: _encode(s, ids, 1) for k, s in (("tr", tr_s), ("va", va_s), ("te", te_s))}
        C = 4 + len(alphabet)
        encoders = {"c2w": lambda: C2W(num_chars=C, d_char=8, d_hidden=12, d_word=d, rng=seed),
                    "char_cnn": lambda: CharCNN(num_chars=C, d_char=8, widths=(1, 2, 3),
                                                num_filters=(4, 6, 6), highway_layers=1,
                                                rng=seed)}
        for name, make in encoders.items():
            enc = make()
            model = BowClassifier(vocab_size=len(words), d_emb=enc.dim, n_classes=2,
                                  d_hidden=None, rng=seed)
            model.embedding = CharWordEmbedding(enc, chars, lengths)
            fit(model, (*data["tr"], y_tr), epochs=epochs, lr=1e-2, rng=seed, progress=False)
            results[name] = (enc.num_parameters(), evaluate_accuracy(model, *data["va"], y_va),
                             evaluate_accuracy(model, *data["te"], y_te))
    base_params, _, base_unseen = results["word_table"]
    reproduced = all(results[k][2] >= base_unseen + 0.20 and results[k][0] <= base_params / 2
                     for k in ("c2w", "char_cnn"))
    nums = {}
    for k, (p, seen, unseen) in results.items():
        nums.update({f"{k}_params": p, f"{k}_acc_seen": seen, f"{k}_acc_unseen": unseen})
    sane = all(np.isfinite(v[1]) and v[1] > 0.6 for v in results.values())
    return Outcome(bool(sane), nums,
                   f"label carried by a suffix; {len(train_vocab)} training words, test "
                   f"sentences only unseen words; BoW classifier, d={d}, {epochs} epochs; "
                   "reproduced = +20 points on unseen words at <= 1/2 the embedding parameters",
                   reproduced=bool(reproduced))


# ------------------------------------------------------------------ LSTM claims (§5.2, §5.3)
def _sentiment(quick: bool):
    from refimpl.data import make_sentiment

    return make_sentiment(n_train=1000 if quick else 4000, vocab_size=500 if quick else 2000,
                          rng=0)


def _trained_accuracy(model, task, quick: bool, lr: float = 1e-2) -> float:
    from threadpoolctl import threadpool_limits

    from refimpl.nn import evaluate_accuracy, fit

    with threadpool_limits(limits=1, user_api="blas"):
        fit(model, task, epochs=3 if quick else 8, lr=lr, rng=0, progress=False)
        return evaluate_accuracy(model, task.X_test, task.len_test, task.y_test)


def _recurrent_weights(model) -> int:
    return sum(p.size for n, p in model.rnn.named_parameters() if n.startswith("W_")) + sum(
        p.size for n, p in model.rnn.named_parameters() if n.startswith("factors_"))


@register_claim("hashednets-equal-budget", "at an equal budget of real recurrent weights, an LSTM "
                "whose recurrent matrices are HashedNets layers beats a smaller dense LSTM and "
                "a low-rank LSTM (Chen et al. 2015)", section="5.2",
                implements=["refimpl.sharing.hashing.HashedLinear",
                            "refimpl.sharing.tour.hash_recurrent_weights_"])
def _claim_hashednets_equal_budget(rng, quick):
    from refimpl.nn import LowRankLinear, RNNClassifier
    from refimpl.nn.surgery import factorize_recurrent_weights_
    from refimpl.sharing.tour import hash_recurrent_weights_

    # protocol (fixed before running): make_sentiment, LSTM classifier, d_emb = 32, trained from
    # scratch with the same loop and seeds; three arms with exactly 3072 stored recurrent
    # numbers each: hashed: hidden 64 with K = 1/8 of each recurrent matrix
    # (4·64·(32 + 64)/8 = 3072 real weights); dense: hidden 16 (4·16·(32 + 16) = 3072);
    # low-rank: hidden 64 with W_ih (256×32) = A B of rank 4 and W_hh (256×64) of rank 6
    # (4·(256 + 32) + 6·(256 + 64) = 1152 + 1920 = 3072), random factors scaled so that
    # std(A B) equals the std of the dense LSTM's initial matrix; reproduced = hashed accuracy
    # > accuracy of each baseline + 0.5 points
    task = _sentiment(quick)
    V, C = len(task.vocab), task.n_classes
    seed = int(rng.integers(2**31))
    hashed = RNNClassifier(vocab_size=V, d_emb=32, d_hidden=64, n_classes=C, rng=seed)
    hash_recurrent_weights_(hashed, 1 / 8, seed=seed % 2**31)
    small = RNNClassifier(vocab_size=V, d_emb=32, d_hidden=16, n_classes=C, rng=seed)
    low_rank = RNNClassifier(vocab_size=V, d_emb=32, d_hidden=64, n_classes=C, rng=seed)
    child_rng = np.random.default_rng(seed)

    def make_low_rank(W):
        out_f, in_f = W.shape
        layer = LowRankLinear(in_f, out_f, {32: 4, 64: 6}[in_f], bias=False, rng=child_rng)
        scale = np.sqrt(W.std() / layer.weight().std())
        layer.A.data *= scale
        layer.B.data *= scale
        return layer

    factorize_recurrent_weights_(low_rank, make_low_rank)
    full = RNNClassifier(vocab_size=V, d_emb=32, d_hidden=64, n_classes=C, rng=seed)
    budget_h = sum(layer.K for layer in (hashed.rnn.factors_W_ih_l0, hashed.rnn.factors_W_hh_l0))
    budget_s = small.rnn.W_ih_l0.size + small.rnn.W_hh_l0.size
    budget_r = sum(p.size for n, p in low_rank.rnn.named_parameters()
                   if n.startswith("factors_"))
    acc = {k: _trained_accuracy(m, task, quick) for k, m in
           (("hashed_h64_k1/8", hashed), ("dense_h16", small), ("low_rank_h64_r4/6", low_rank),
            ("dense_h64", full))}
    h = acc["hashed_h64_k1/8"]
    reproduced = h > acc["dense_h16"] + 0.005 and h > acc["low_rank_h64_r4/6"] + 0.005
    return Outcome(bool(budget_h == budget_s == budget_r == 3072
                        and all(np.isfinite(list(acc.values())))),
                   {**{f"acc_{k}": v for k, v in acc.items()}, "recurrent_budget": budget_h,
                    "low_rank_recurrent_numbers": budget_r,
                    "dense_h64_recurrent_weights": full.rnn.W_ih_l0.size
                    + full.rnn.W_hh_l0.size},
                   "LSTM on make_sentiment from scratch; equal budget of 3072 stored recurrent "
                   "numbers; reproduced = hashed beats both the small dense LSTM and the "
                   "low-rank LSTM (ranks 4 and 6) by > 0.5 points (dense hidden 64 shown as "
                   "the ceiling)", reproduced=bool(reproduced))


@register_claim("quaternion-quarter-parameters", "quaternion layers reach the accuracy of real "
                "layers with 25% of their weights (Tay et al. 2019)", section="5.3",
                implements=["refimpl.sharing.quaternion.QuaternionLinear"])
def _claim_quaternion(rng, quick):
    from refimpl.nn import RNNClassifier
    from refimpl.nn.surgery import factorize_recurrent_weights_
    from refimpl.sharing.quaternion import QuaternionLinear

    # protocol: make_sentiment, LSTM classifier d_emb = 32, hidden 32, trained from scratch;
    # quaternion: both recurrent matrices as QuaternionLinear (¼ of the weights); real: dense;
    # ablation: a dense LSTM with hidden 12, about the quaternion model's recurrent budget;
    # reproduced = quaternion accuracy >= real accuracy − 1 point
    task = _sentiment(quick)
    V, C = len(task.vocab), task.n_classes
    seed = int(rng.integers(2**31))
    quat = RNNClassifier(vocab_size=V, d_emb=32, d_hidden=32, n_classes=C, rng=seed)
    child_rng = np.random.default_rng(seed)
    factorize_recurrent_weights_(quat, lambda W: QuaternionLinear(
        W.shape[1], W.shape[0], bias=False, rng=child_rng))
    real = RNNClassifier(vocab_size=V, d_emb=32, d_hidden=32, n_classes=C, rng=seed)
    small = RNNClassifier(vocab_size=V, d_emb=32, d_hidden=12, n_classes=C, rng=seed)
    w_quat = sum(p.size for n, p in quat.rnn.named_parameters() if n.startswith("factors_"))
    w_real = real.rnn.W_ih_l0.size + real.rnn.W_hh_l0.size
    w_small = small.rnn.W_ih_l0.size + small.rnn.W_hh_l0.size
    acc = {k: _trained_accuracy(m, task, quick) for k, m in
           (("quaternion_h32", quat), ("real_h32", real), ("real_h12", small))}
    reproduced = acc["quaternion_h32"] >= acc["real_h32"] - 0.01
    return Outcome(bool(4 * w_quat == w_real and all(np.isfinite(list(acc.values())))),
                   {**{f"acc_{k}": v for k, v in acc.items()}, "recurrent_weights_quaternion":
                    w_quat, "recurrent_weights_real": w_real, "recurrent_weights_real_h12":
                    w_small},
                   "LSTM on make_sentiment from scratch; recurrent matrices as quaternion "
                   "layers (inputs as four contiguous blocks); reproduced = within 1 point of "
                   "the real LSTM with 1/4 of its recurrent weights", reproduced=bool(reproduced))


@register_claim("albert-sharing-keeps-accuracy", "ALBERT-style cross-layer sharing keeps most "
                "of the accuracy with 1/L of the encoder-layer parameters (Lan et al. 2020)",
                section="5.3", implements=["refimpl.sharing.transformers.AlbertEncoder",
                                           "refimpl.sharing.tour.share_all_layers_"])
def _claim_albert(rng, quick):
    from refimpl.nn import TransformerClassifier
    from refimpl.sharing.tour import share_all_layers_

    # protocol: make_sentiment (quick: 800 sentences), a 3-layer post-norm Transformer
    # classifier (d = 16, 2 heads, d_ff = 32) trained from scratch: unshared, all layers shared
    # (tied before training), and a 1-layer model (the shared model's parameter count);
    # reproduced = shared keeps >= 90% of the unshared model's gain over chance, and that gain
    # is at least 15 points (else the miniature is inconclusive and counts as not reproduced)
    from refimpl.data import make_sentiment

    task = make_sentiment(n_train=800 if quick else 4000, vocab_size=300 if quick else 2000,
                          rng=0)
    seed = int(rng.integers(2**31))

    def make(L):
        return TransformerClassifier(vocab_size=len(task.vocab), d_model=16, num_heads=2,
                                     d_ff=32, num_layers=L, max_len=task.X_train.shape[1],
                                     n_classes=task.n_classes, rng=seed)

    unshared, shared, one = make(3), make(3), make(1)
    share_all_layers_(shared)
    acc = {k: _trained_accuracy(m, task, quick, lr=3e-3) for k, m in
           (("unshared_L3", unshared), ("shared_L3", shared), ("single_L1", one))}
    chance = 1.0 / task.n_classes
    kept = (acc["shared_L3"] - chance) / max(acc["unshared_L3"] - chance, 1e-12)
    layer = unshared.layers[0].num_parameters()
    return Outcome(bool(all(np.isfinite(list(acc.values())))
                        and shared.num_parameters() == unshared.num_parameters() - 2 * layer),
                   {**{f"acc_{k}": v for k, v in acc.items()}, "gain_kept": kept,
                    "layer_params_unshared": 3 * layer, "layer_params_shared": layer},
                   "Transformer classifier on make_sentiment from scratch; reproduced = the "
                   "all-shared model keeps >= 90% of the unshared gain over chance and that "
                   "gain is >= 15 points (a smaller gain is inconclusive: not reproduced)",
                   reproduced=bool(kept >= 0.9 and acc["unshared_L3"] - chance >= 0.15))


# ------------------------------------------------------------------ Universal Transformer (§5.3)
def _pointer_task(n: int, T: int, rng):
    """Tagging: a digit token (ids 2..11) is tagged with its parity; a "copy" token (id 1, 40%
    of the positions after the first) with the tag of the nearest digit to its left, which it
    must find through attention (the ambiguous positions). Returns X (n, T), Y (n, T)."""
    X = np.zeros((n, T), dtype=np.int64)
    Y = np.zeros((n, T), dtype=np.int64)
    for r in range(n):
        last = 0
        for t in range(T):
            if t > 0 and rng.random() < 0.4:
                X[r, t], Y[r, t] = 1, last
            else:
                d = int(rng.integers(10))
                X[r, t], last = 2 + d, d % 2
                Y[r, t] = last
    return X, Y


@register_claim("universal-transformer-ponders-ambiguous", "with ACT, the Universal Transformer "
                "spends more steps on ambiguous positions than on unambiguous ones (Dehghani et "
                "al. 2019)", section="5.3",
                implements=["refimpl.sharing.universal.UniversalTransformerEncoder",
                            "refimpl.sharing.universal.UniversalTransformerTagger"])
def _claim_ut_ponder(rng, quick):
    from threadpoolctl import threadpool_limits

    from refimpl.nn import cross_entropy, fit
    from refimpl.sharing.universal import UniversalTransformerTagger

    # protocol (fixed before running): the pointer-tagging task above (length 10); d = 16,
    # 2 heads, d_ff = 32, max 8 steps, ε = 0.01, ponder weight τ = 0.001, halting bias 1;
    # reproduced = the copy positions take >= 0.5 more steps on average than the digits, on
    # held-out sequences, with the copy positions tagged >= 90% correctly
    g = np.random.default_rng(0)
    X, Y = _pointer_task(1000 if quick else 2000, 10, g)
    Xt, Yt = _pointer_task(300, 10, g)
    tau, epochs = 1e-3, (15 if quick else 20)
    model = UniversalTransformerTagger(vocab_size=12, n_tags=2, d_model=16, num_heads=2,
                                       d_ff=32, max_steps=8, halting_bias=1.0,
                                       rng=int(rng.integers(2**31)))

    def loss(out, y):
        logits, act = out
        return cross_entropy(logits.reshape(-1, 2), y.reshape(-1)) + tau * act.ponder_cost

    with threadpool_limits(limits=1, user_api="blas"):
        fit(model, (X, np.full(len(X), 10), Y), forward=lambda m, x, _len: m(x), loss_fn=loss,
            epochs=epochs, lr=3e-3, rng=0, progress=False, trim_batches=False)
        logits, act = model(Xt)
    pred = logits.data.argmax(-1)
    copy = Xt == 1
    n_copy, n_digit = float(act.n_updates[copy].mean()), float(act.n_updates[~copy].mean())
    acc_copy, acc_digit = float((pred[copy] == Yt[copy]).mean()), float(
        (pred[~copy] == Yt[~copy]).mean())
    reproduced = n_copy >= n_digit + 0.5 and acc_copy >= 0.9
    return Outcome(bool(np.isfinite(n_copy) and acc_digit > 0.6),
                   {"steps_copy_positions": n_copy, "steps_digit_positions": n_digit,
                    "acc_copy_positions": acc_copy, "acc_digit_positions": acc_digit,
                    "ponder_cost": act.ponder_cost.item(), "epochs": epochs},
                   "copy tokens must find the nearest digit to their left; reproduced = >= 0.5 "
                   "more ACT steps there than on digits, copy tags >= 90% right",
                   reproduced=bool(reproduced))


# ------------------------------------------------------------------ LightRNN (§5.2)
@register_claim("lightrnn-reallocation", "LightRNN's bootstrap reallocation of words to table "
                "cells (a minimum-weight matching) lowers perplexity against a random table, "
                "with 2√V row/column vectors (Li et al. 2016)", section="5.2",
                implements=["refimpl.sharing.lightrnn.LightRNNLanguageModel",
                            "refimpl.sharing.lightrnn.lightrnn_allocate"])
def _claim_lightrnn(rng, quick):
    import copy

    from threadpoolctl import threadpool_limits

    from refimpl.data import make_hmm_lm
    from refimpl.nn import LSTMLanguageModel, fit_lm, perplexity
    from refimpl.sharing.lightrnn import LightRNNLanguageModel

    # protocol (fixed before running): the embedded HMM language, V = 400 (a 20×20 table);
    # LightRNN d_emb = 16 (quick) / 32, d_hidden = 32 / 64, random initial table, E epochs; then
    # two copies train E more epochs, one after an exact reallocation (lightrnn_allocate on the
    # training set's ℓ_r + ℓ_c), one on the random table; reproduced = reallocated test
    # perplexity >= 2% below the random table's. A word-level LSTM LM of the same sizes and the
    # HMM's Bayes-optimal perplexity are shown for scale.
    task = make_hmm_lm(vocab_size=400, n_train_tokens=6000 if quick else 30000,
                       n_valid_tokens=1000, n_test_tokens=3000, rng=0)
    d_emb, d_hidden, E = (16, 32, 2) if quick else (32, 64, 4)
    seed = int(rng.integers(2**31))
    train = (task.train, task.len_train)
    with threadpool_limits(limits=1, user_api="blas"):
        m = LightRNNLanguageModel(vocab_size=len(task.vocab), num_rows=20, num_cols=20,
                                  d_emb=d_emb, d_hidden=d_hidden, rng=seed)
        fit_lm(m, train, epochs=E, lr=5e-3, rng=0, progress=False)
        fixed, moved = copy.deepcopy(m), copy.deepcopy(m)
        fit_lm(fixed, train, epochs=E, lr=5e-3, rng=1, progress=False)
        cost = moved.reallocate_(*train)
        fit_lm(moved, train, epochs=E, lr=5e-3, rng=1, progress=False)
        ppl_fixed = perplexity(fixed, task.test, task.len_test)
        ppl_moved = perplexity(moved, task.test, task.len_test)
        lstm = LSTMLanguageModel(vocab_size=len(task.vocab), d_emb=d_emb, d_hidden=d_hidden,
                                 rng=seed)
        fit_lm(lstm, train, epochs=2 * E, lr=5e-3, rng=0, progress=False)
        ppl_lstm = perplexity(lstm, task.test, task.len_test)
    reproduced = ppl_moved <= 0.98 * ppl_fixed
    return Outcome(bool(np.isfinite(ppl_fixed) and np.isfinite(ppl_moved) and np.isfinite(cost)),
                   {"ppl_random_table": ppl_fixed, "ppl_reallocated": ppl_moved,
                    "ppl_word_lstm": ppl_lstm, "ppl_bayes_floor": task.bayes_perplexity,
                    "params_lightrnn": m.num_parameters(), "params_word_lstm":
                    lstm.num_parameters(), "matching_cost": cost},
                   f"HMM language, V = {len(task.vocab)} in a 20×20 table, {2 * E} epochs; "
                   "reproduced = reallocation lowers test perplexity by >= 2%",
                   reproduced=bool(reproduced))
