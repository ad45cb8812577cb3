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
