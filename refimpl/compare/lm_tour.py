"""``refimpl tour --task lm``: every method of the classification tour's registry on the HMM
language-modelling task, perplexity measured against its exact Bayes-optimal floor (Survey
§8.1: "the most popular task is language modelling").

The baseline is a word-level LSTM language model (:class:`refimpl.nn.LSTMLanguageModel`)
trained with :func:`refimpl.nn.fit_lm` on :func:`refimpl.data.make_hmm_lm`, whose generator is
known, so the best achievable test perplexity is known exactly (``task.bayes_perplexity``).

Every method registered for ``refimpl tour`` (§2–§7, the §8.1 combinations and the float16
sanity row) gets a row, in the registry's order, decided by :func:`lm_plan`:

* **registered**: the method's own function runs on the LM's
  :class:`~refimpl.registry.TourContext` — its ``copy_baseline("lstm")`` is the trained LM,
  ``ctx.fit`` fine-tunes with :func:`refimpl.nn.fit_lm` — so the LM row is the same code as
  the classification row (magnitude, gradual and bank-balanced pruning; the five quantisers;
  SVD, TT and BT layers, TT-embedding; HashedNets recurrent weights and the LightRNN table;
  the float16 round trip);
* **pipeline**: distillation's classifier loss needs the LM form, which lives in the
  pipeline steps (:class:`~refimpl.compare.pipelines.Distil`,
  :class:`~refimpl.compare.pipelines.MutualLearning`: per-token soft targets, a classifier
  over the vocabulary at every position): ``hinton-kd-lstm`` and ``dml-lstm`` run as
  one-step pipelines, and every LSTM combination of §8.1 runs its registered pipeline's steps
  on the LM;
* **on the Transformer LM**: a method written for a Transformer (:data:`ON_TRANSFORMER`:
  heads, LayerDrop, ALBERT sharing, quaternion attention/FFN, TinyBERT, Theseus, Reformer's
  LSH attention, linear attention in its causal prefix-sum form, Longformer's causal
  left-only window, the Fastformers pipeline) runs the same way on the second baseline, a causal
  :class:`refimpl.nn.TransformerLanguageModel` (the library's encoder layers under a causal
  mask) trained with :func:`refimpl.nn.fit_lm`; its rows are sized against that baseline;
* **n/a**: a §7 variant that cannot be causal here, with the precise reason (Linformer's
  projection over positions). Such a row is listed, never omitted.

A method whose code still assumes a classifier fails loudly (the LM context's ``fit``
refuses keywords it does not implement) and becomes an error row. No registered method does
today: the Transformer methods that did have LM forms in their own packages — heads-50 and
Fastformers' head pruning score Eq. (18) on each training sentence's mean next-token NLL
(:func:`refimpl.pruning.heads_layers.structure_importance` with ``y=None``, rows from
:func:`refimpl.pruning.tour.importance_rows`), TinyBERT distils a smaller
:class:`~refimpl.nn.TransformerLanguageModel` per token
(:func:`refimpl.distillation.tinybert_losses_t` with ``causal=True``: layer losses at every
position, prediction loss the per-token soft cross-entropy over the vocabulary), and
BERT-of-Theseus takes the LM as its predecessor
(:class:`refimpl.distillation.TheseusClassifier`, causal mask, next-token loss).

Columns: exact bytes (the method's or the pipeline's ledger), test perplexity, the gap to the
Bayes floor in nats per token (``log ppl − H_Bayes``), the fraction of the unigram-to-Bayes gap
the model closes, stored-kernel latency at batch 1 and 64 (:mod:`refimpl.compare.latency`:
the embedding lookup, the recurrent and output products through the stored formats), training
seconds and the §8.1 score ÷ size ratio (here ``(1 / ppl) ÷ MB``: higher is better).
Beside ``lm.csv`` / ``lm.md`` the CLI writes ``lm.png`` and ``lm_comparison.png`` (the
classification tour's plots, :func:`refimpl.compare.tour.write_lm_plots`: bytes vs perplexity
with the Pareto frontier, the combinations as ★ and the Bayes floor as a dashed line; latency
vs bytes; per-family ranges); ``--budget BYTES`` names the lowest-perplexity row within the
budget (the §8.3 planner, :func:`refimpl.compare.planner.plan_from_rows` with
``quality="perplexity"``; per component: ``measure_sensitivity(..., quality="perplexity")``).

Cost: ``refimpl tour --task lm --quick`` (both baselines, 35 methods, none an error row) took
108 s user + 3 s system CPU (``/usr/bin/time -v``; 1:59 wall on 2 cores shared with other jobs,
load 3–4, Dec 2026), just under the 2 CPU minutes of issue #16 (93 + 3 s before heads-50,
Fastformers, TinyBERT and Theseus ran on the LM; together they now take ~13 s); the
Transformer LM baseline (d_model 32, 4 heads, d_ff 64, 2 layers,
4 epochs) trains in ~5 s. Re-measured after linear attention ran causally and the plots were
added: 130.7 s user + 4.5 s system (2:38 wall, 85 % CPU, load 2–5, AMD EPYC, OpenBLAS 0.3.31
SkylakeX kernels), *over* the 2 CPU minutes by ~15 s; the rows' own times add up to 122 s, no
single method above 8 s (plots: ~1.3 CPU s). On a quiet machine (load 0.1–1.0, 04:17 UTC Dec 7,
with the causal Longformer row too: 36 ok rows and Linformer's n/a): 97.4 s user + 4.0 s system,
1:34 wall — under the 2 CPU minutes; CPU time on the shared machine grows with its load.

The full preset is not the task's full size: at 16 states, V = 2000, 50k training tokens and
8 epochs the baselines and the first 13 of 35 methods had already taken 341 s user + 36 s
system (10:26 wall, load 5–10) when the run was stopped (Hinton KD alone 148 s; DML, the KD
combinations, TinyBERT and Fastformers still to come), so far over the 10 CPU minutes. The
full preset is therefore 16 states, V = 1000, 30k training tokens (3k valid, 6k test), 4
epochs, sentences up to 30 words: ``refimpl tour --task lm`` took 307.9 s user + 19.5 s
system = 5.5 CPU minutes (13:57 wall at 39 % CPU, load 4–10 on 2 shared cores, Dec 2026),
37 rows, all ok (LSTM LM 121.9 against the Bayes floor 89.0; Transformer LM 142.3).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LMConfig", "lm_config", "lm_plan", "lm_context", "run_lm_tour", "format_lm_table"]


@dataclass
class LMConfig:
    """Sizes of the LM comparison (``quick``: the task's quick size)."""

    quick: bool = True
    seed: int = 0
    d_emb: int = 32
    d_hidden: int = 64
    epochs: int = 4
    lr: float = 5e-3
    finetune_lr: float = 2e-3
    batch_size: int = 32
    d_model: int = 32
    num_heads: int = 4
    d_ff: int = 64
    num_layers: int = 2
    t_epochs: int = 4
    t_lr: float = 3e-3
    task_kwargs: dict = field(default_factory=dict)
    methods: tuple | None = None


def lm_config(quick: bool = True, tiny: bool = False, **overrides) -> LMConfig:
    """Presets: full (16 HMM states, V = 1000, 30k training tokens, 4 epochs: see the
    module docstring for why not the task's full size), quick, tiny (tests)."""
    if tiny:
        cfg = LMConfig(quick=True, d_emb=16, d_hidden=16, epochs=1, d_model=8, num_heads=2,
                       d_ff=16, t_epochs=1,
                       task_kwargs=dict(n_train_tokens=3000, n_valid_tokens=500,
                                        n_test_tokens=1000))
    elif quick:
        cfg = LMConfig(quick=True)
    else:  # the task's full size (V = 2000, 50k tokens) at 8 epochs: over 10 CPU minutes
        cfg = LMConfig(quick=False, epochs=4, t_epochs=4, task_kwargs=dict(
            n_states=16, vocab_size=1000, n_train_tokens=30_000, n_valid_tokens=3_000,
            n_test_tokens=6_000))
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"lm_config got an unknown setting {k!r}")
        setattr(cfg, k, v)
    return cfg


#: Registered methods that need a Transformer: they run on the causal Transformer LM
#: (:class:`refimpl.nn.TransformerLanguageModel`, the second baseline) through their own
#: registered function, or (``fastformers``) their registered pipeline's steps.
ON_TRANSFORMER = ("heads-50", "layerdrop-every-other", "tinybert-transformer",
                  "theseus-transformer", "albert-share-all", "quaternion-ffn",
                  "quaternion-transformer", "reformer-lsh", "linear-attention",
                  "longformer-w4-cls", "fastformers")

#: Transformer methods that cannot run on a *causal* LM, with the precise reason.
_NOT_CAUSAL = {
    "linformer-k-n/4": "Linformer's E, F project keys and values over all n positions "
                       "(k × n), so every output mixes future tokens: not causal",
}


def _lm_steps() -> dict:
    """Methods whose registered function is written for classifier logits: the LM form lives
    in the pipeline steps (per-token soft targets)."""
    from refimpl.compare.pipelines import Distil, MutualLearning

    return {"hinton-kd-lstm": [Distil()], "dml-lstm": [MutualLearning()]}


def _section_key(section: str):
    try:
        return tuple(int(x) for x in str(section).split("."))
    except ValueError:
        return (0,)


def lm_plan() -> dict:
    """How each registered tour method runs on the LSTM LM or the Transformer LM.

    Returns
    -------
    dict
        ``name -> (family, section, how, what, baseline)`` in section order (combinations
        last): ``how`` is ``"registered"`` (``what``: the method's function, run on the LM
        context), ``"pipeline"`` (``what``: the list of steps) or ``"n/a"`` (``what``: the
        reason); ``baseline`` is ``"lstm-lm"``, ``"transformer-lm"`` or None (n/a).
    """
    from refimpl.compare.pipelines import PIPELINES
    from refimpl.registry import methods

    steps = _lm_steps()
    plan = {}
    for m in methods():
        if m.name in _NOT_CAUSAL:
            entry = ("n/a", _NOT_CAUSAL[m.name])
        elif m.family == "efficient attention" and m.name not in ON_TRANSFORMER:
            entry = ("n/a", "a §7 attention variant not yet checked for a causal mask")
        elif m.name in steps:
            entry = ("pipeline", steps[m.name])
        elif m.name in PIPELINES:
            p = PIPELINES[m.name]
            entry = (("pipeline", p.steps) if p.base in ("lstm", "gru", "transformer") else
                     ("n/a", f"a pipeline on the {p.base} baseline ("
                             f"{' → '.join(s.name for s in p.steps)})"))
        else:
            entry = ("registered", m.func)
        where = None if entry[0] == "n/a" else \
            "transformer-lm" if m.name in ON_TRANSFORMER else "lstm-lm"
        plan[m.name] = (m.family, m.section) + entry + (where,)
    order = sorted(plan, key=lambda n: (plan[n][0] == "combination", plan[n][2] == "n/a",
                                        _section_key(plan[n][1])))
    return {n: plan[n] for n in order}


def __getattr__(name):
    if name == "LM_METHODS":  # computed on use: it reads the registry of every chapter
        return tuple(n for n, e in lm_plan().items() if e[2] != "n/a")
    raise AttributeError(name)


def _lm_parts() -> dict:
    """The single methods each LSTM combination is compared with."""
    from refimpl.compare.pipelines import PIPELINES

    return {n: p.parts for n, p in PIPELINES.items() if p.base in ("lstm", "gru")}


class _LMTaskView:
    """The LM task as a registered method sees it: the task's attributes, plus ``y_train``
    (one dummy label per training sentence) so a method that counts optimiser steps per epoch
    as ``len(task.y_train) / batch_size`` counts the LM's steps."""

    def __init__(self, task):
        self._task = task
        self.y_train = np.zeros(len(task.len_train), dtype=np.int64)

    def __getattr__(self, name):
        return getattr(self._task, name)


def _max_len(task) -> int:
    """The longest row of the task (the Transformer LM's learned positions)."""
    return max(np.asarray(a).shape[1] for a in (task.train, task.valid, task.test))


def _next_token_loss(logits, X, lengths):
    """Mean NLL of ``X[:, t+1]`` from ``logits[:, t]`` over the real targets (``t + 1 <
    lengths``): the LM loss of a model's per-position logits of whole ``<bos> … <eos>`` rows
    (exact for a causal model: position ``t`` has read ``x_0..x_t`` only)."""
    from refimpl.nn import cross_entropy

    X, L = np.asarray(X), np.asarray(lengths)
    T = X.shape[1]
    valid = np.arange(1, T)[None, :] < L[:, None]
    rows = np.flatnonzero(valid)
    V = logits.shape[-1]
    z = logits[:, :-1].reshape(-1, V)[rows]
    return cross_entropy(z, X[:, 1:].reshape(-1)[rows])


def make_transformer_lm(cfg: LMConfig, task, rng=None):
    """An untrained causal Transformer LM of the comparison's size
    (:class:`refimpl.nn.TransformerLanguageModel`, post-norm, GELU, untied)."""
    from refimpl import nn
    from refimpl.utils import as_rng

    return nn.TransformerLanguageModel(
        vocab_size=len(task.vocab), d_model=cfg.d_model, num_heads=cfg.num_heads,
        d_ff=cfg.d_ff, num_layers=cfg.num_layers, max_len=_max_len(task),
        rng=as_rng(cfg.seed + 3 if rng is None else rng))


def lm_context(cfg: LMConfig, task, base, kind: str = "lstm"):
    """The :class:`~refimpl.registry.TourContext` of the LM comparison.

    ``kind="lstm"``: ``baselines`` maps both
    ``"lstm-lm"`` and ``"lstm"`` to the trained LM (a registered method's
    ``copy_baseline("lstm")`` copies it); ``kind="transformer"``: ``base`` is the trained
    :class:`~refimpl.nn.TransformerLanguageModel`, mapped from ``"transformer-lm"`` and
    ``"transformer"``, and ``make_model`` builds Transformer LMs. ``fit`` trains with
    :func:`refimpl.nn.fit_lm` at
    ``cfg.finetune_lr`` for ``cfg.epochs`` unless told otherwise (as the classification tour's
    ``ctx.fit`` defaults to the baseline's epochs; the chapters' fine-tuning steps pass
    ``epochs=1``) or, with ``forward`` and
    ``loss_fn`` (distillation's LM form), :func:`refimpl.nn.fit` on the training sentences;
    with ``forward`` alone (e.g. LayerDrop's gated forward), ``forward``'s per-position logits
    of the whole rows scored by :func:`_next_token_loss`;
    any other keyword raises (classifier-only options must not be silently ignored)."""
    from refimpl import nn
    from refimpl.registry import TourContext
    from refimpl.utils import as_rng

    V = len(task.vocab)

    if kind not in ("lstm", "transformer"):
        raise ValueError(f"kind must be 'lstm' or 'transformer', got {kind!r}")

    def make(kind_=None, **kw):
        if (kind_ or kind) == "transformer":
            return make_transformer_lm(cfg, task, rng=kw.pop("rng", None)) if not kw else \
                nn.TransformerLanguageModel(**{
                    "vocab_size": V, "d_model": cfg.d_model, "num_heads": cfg.num_heads,
                    "d_ff": cfg.d_ff, "num_layers": cfg.num_layers,
                    "max_len": _max_len(task), "rng": cfg.seed + 3, **kw})
        kw = {"d_emb": cfg.d_emb, "d_hidden": cfg.d_hidden, **kw}
        rng = as_rng(kw.pop("rng", cfg.seed + 2))
        return nn.LSTMLanguageModel(vocab_size=V, rng=rng, **kw)

    def fit(model, epochs=None, lr=None, after_step=None, forward=None, loss_fn=None, **kw):
        epochs = cfg.epochs if epochs is None else epochs
        if kw:
            raise TypeError(f"the LM tour's fit takes epochs, lr, after_step, forward and "
                            f"loss_fn; got {sorted(kw)} (a classifier-only option)")
        lr = cfg.finetune_lr if lr is None else lr
        if forward is None and loss_fn is None:
            return nn.fit_lm(model, task, epochs=epochs, batch_size=cfg.batch_size, lr=lr,
                             after_step=after_step, rng=cfg.seed, progress=False)
        if loss_fn is None:  # forward gives per-position logits of the whole rows
            gated = forward

            def forward(m, xb, lb):
                return _next_token_loss(gated(m, xb, lb), xb, lb)

            def loss_fn(out, _y):
                return out
        elif forward is None:
            raise TypeError("an LM's fit needs forward and loss_fn together (per-token "
                            "outputs and their loss)")
        rows = (task.train, task.len_train, np.zeros(len(task.len_train), dtype=np.int64))
        return nn.fit(model, rows, forward=forward, loss_fn=loss_fn, epochs=epochs,
                      batch_size=cfg.batch_size, lr=lr, clip_norm=1.0, after_step=after_step,
                      rng=cfg.seed, progress=False)

    def ppl(model):
        return float(nn.perplexity(model, task.test, task.len_test))

    if kind == "transformer":
        return TourContext(task=_LMTaskView(task), baseline=base, baseline_kind="transformer",
                           quick=cfg.quick, seed=cfg.seed, fit=fit, evaluate=ppl,
                           make_model=make, baselines={"transformer-lm": base,
                                                       "transformer": base}, config=cfg)
    return TourContext(task=_LMTaskView(task), baseline=base, baseline_kind="lstm-lm",
                       quick=cfg.quick, seed=cfg.seed, fit=fit, evaluate=ppl, make_model=make,
                       baselines={"lstm-lm": base, "lstm": base}, config=cfg)


def run_lm_tour(cfg: LMConfig, log=print) -> dict:
    """Train the LSTM LM, run every method of :func:`lm_plan`, return ``{"rows",
    "bayes_perplexity", "unigram_perplexity", "seconds"}``.

    Each row: method, family, section, bits, bytes, compression, perplexity, ``gap_nats``
    (log ppl − Bayes NLL), ``gap_closed`` (of the unigram-to-Bayes gap), kernel latencies
    (µs), seconds, status (``ok``, ``error``, ``n/a``), notes. A method that raises becomes an
    error row; a method that cannot apply to an LSTM LM an ``n/a`` row with the reason.
    """
    from refimpl import nn
    from refimpl.compare.latency import stored_latency
    from refimpl.compare.pipelines import Compressed, Pipeline
    from refimpl.data import load_task, unigram_nll
    from refimpl.registry import MethodResult
    from refimpl.utils import as_rng

    plan = lm_plan()
    todo = plan
    if cfg.methods is not None:
        unknown = [m for m in cfg.methods if m not in plan]
        if unknown:
            raise ValueError(f"LM methods {unknown} are not registered; registered: "
                             f"{list(plan)}")
        todo = {k: plan[k] for k in plan if k in cfg.methods}
    t_start = time.perf_counter()
    task = load_task("hmm_lm", quick=cfg.quick, rng=cfg.seed, **cfg.task_kwargs)
    V = len(task.vocab)
    t0 = time.perf_counter()
    base = nn.LSTMLanguageModel(vocab_size=V, d_emb=cfg.d_emb, d_hidden=cfg.d_hidden,
                                rng=as_rng(cfg.seed + 1))
    nn.fit_lm(base, task, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
              rng=cfg.seed, progress=False)
    base_s = time.perf_counter() - t0
    nll_bayes, nll_uni = task.bayes_nll, unigram_nll(task, "test")
    ctx = lm_context(cfg, task, base)
    ppl = ctx.evaluate

    def row(name, family, section, model, records, bits, p, seconds, status="ok", notes="",
            ref=None):
        ref = base if ref is None else ref
        r = {"method": name, "family": family, "section": section, "bits": None,
             "bytes": None, "compression": None, "perplexity": p, "gap_nats": None,
             "gap_closed": None, "kernel_us_b1": None, "kernel_us_b64": None,
             "emb_us_b1": None, "emb_us_b64": None, "formats": None,
             "score_per_mb": None, "seconds": seconds, "status": status, "notes": notes}
        if model is not None:
            lat = stored_latency(model, records, batches=(1, 64), repeat=5, rng=cfg.seed)
            r.update(bits=int(bits), bytes=math.ceil(bits / 8),
                     compression=32 * ref.num_parameters() / bits,
                     kernel_us_b1=lat["ms_b1"] * 1e3, kernel_us_b64=lat["ms_b64"] * 1e3,
                     emb_us_b1=lat["embedding_ms_b1"] * 1e3,
                     emb_us_b64=lat["embedding_ms_b64"] * 1e3, formats=lat["formats"])
        if p is not None and math.isfinite(p):
            r.update(gap_nats=math.log(p) - nll_bayes,
                     gap_closed=(nll_uni - math.log(p)) / (nll_uni - nll_bayes))
            if r["bits"]:
                r["score_per_mb"] = (1.0 / p) / (r["bits"] / 8e6)
        return r

    dense = Compressed(base, "lstm-lm")
    rows = [row("baseline-lstm-lm", "baseline", "—", base, None, dense.bits, ppl(base), base_s,
                notes="float32")]
    log(f"baseline lstm-lm: perplexity {rows[0]['perplexity']:.2f} (Bayes floor "
        f"{task.bayes_perplexity:.2f}, unigram {math.exp(nll_uni):.2f}; {base_s:.1f} s)")
    tbase = tctx = None
    if any(e[4] == "transformer-lm" for e in todo.values()):
        t0 = time.perf_counter()
        tbase = make_transformer_lm(cfg, task)
        nn.fit_lm(tbase, task, epochs=cfg.t_epochs, batch_size=cfg.batch_size, lr=cfg.t_lr,
                  rng=cfg.seed, progress=False)
        tbase_s = time.perf_counter() - t0
        tctx = lm_context(cfg, task, tbase, kind="transformer")
        rows.append(row("baseline-transformer-lm", "baseline", "—", tbase, None,
                        Compressed(tbase, "transformer-lm").bits, ppl(tbase), tbase_s,
                        notes="float32, causal Transformer LM", ref=tbase))
        log(f"baseline transformer-lm: perplexity {rows[-1]['perplexity']:.2f} "
            f"({tbase_s:.1f} s)")
    for name, (family, section, how, what, where) in todo.items():
        if how == "n/a":
            rows.append(row(name, family, section, None, None, None, None, 0.0, "n/a",
                            f"n/a for the LSTM and the causal Transformer LM: {what}"))
            continue
        on_t = where == "transformer-lm"
        c, ref = (tctx, tbase) if on_t else (ctx, base)
        t0 = time.perf_counter()
        try:
            if how == "pipeline":
                cm = Pipeline(name, what, base=where).run(c)
                model, records, bits, notes = cm.model, cm.records, cm.bits, \
                    " → ".join(cm.steps)
            else:
                res = what(c)
                if not isinstance(res, MethodResult):
                    raise TypeError(f"returned {type(res).__name__}, expected MethodResult")
                model, records, bits, notes = res.model, (res.extra or {}).get("records"), \
                    res.bits, res.notes
            p = ppl(model)
            notes = f"on the Transformer LM; {notes}" if on_t else notes
            rows.append(row(name, family, section, model, records, bits, p,
                            time.perf_counter() - t0, notes=notes, ref=ref))
            log(f"{name}: perplexity {p:.2f}, {rows[-1]['bytes']} bytes "
                f"({rows[-1]['seconds']:.1f} s)")
        except Exception as err:  # a broken method is a row, not a crash
            rows.append(row(name, family, section, None, None, None, None,
                            time.perf_counter() - t0, "error", f"{type(err).__name__}: {err}"))
            log(f"{name}: ERROR {type(err).__name__}: {err}")
    _lm_verdicts(rows)
    return {"rows": rows, "bayes_perplexity": task.bayes_perplexity,
            "unigram_perplexity": math.exp(nll_uni), "seconds": time.perf_counter() - t_start}


def _lm_verdicts(rows) -> None:
    """``row["frontier"]`` for each combination: :func:`~refimpl.compare.pipelines.
    frontier_verdict` on quality = −NLL (nats per token, higher is better), tolerance 0.01
    nats."""
    from refimpl.compare.pipelines import frontier_verdict, parts_label

    def q(r):
        p = r.get("perplexity")
        return None if p is None or not math.isfinite(p) else {
            "method": r["method"], "bytes": r["bytes"], "accuracy": -math.log(p)}

    by = {r["method"]: r for r in rows}
    for name, parts in _lm_parts().items():
        if name not in by or q(by[name]) is None:
            continue
        ran = {p: by[p] for p in parts if p in by and q(by[p]) is not None}
        v = frontier_verdict(q(by[name]), [q(r) for r in ran.values()], tol=0.01)
        by[name]["frontier"] = v.replace("accuracy", "−NLL (nats)") + parts_label(parts, ran)


#: Columns of the printed LM table (fits in 100 columns).
_LM_COLUMNS = [("method", "method"), ("section", "§"), ("bytes", "bytes"),
               ("compression", "size ×"), ("perplexity", "ppl"), ("gap_nats", "Δ floor"),
               ("kernel_us_b1", "µs@1"), ("kernel_us_b64", "µs@64"),
               ("score_per_mb", "÷ MB"), ("seconds", "s"), ("status", "status")]

#: Columns of the Markdown table (and, with bits, the CSV).
_LM_MD_COLUMNS = _LM_COLUMNS[:6] + [("gap_closed", "closed")] + _LM_COLUMNS[6:8] + [
    ("emb_us_b1", "embedding µs@1"), ("emb_us_b64", "embedding µs@64"),
    ("formats", "stored formats")] + _LM_COLUMNS[8:] + [("notes", "notes")]


def format_lm_table(result: dict, markdown: bool = False) -> str:
    """The LM comparison as aligned text (or Markdown), with a legend, the ``n/a`` and error
    rows' reasons and the combinations' verdicts."""
    import textwrap

    from refimpl.sizes import format_bytes

    def cell(k, v):
        if v is None:
            return "—"
        if k == "bytes":
            return format_bytes(v)
        if k == "compression":
            return f"{v:.1f}×"
        if k == "perplexity":
            return f"{v:.2f}"
        if k == "gap_nats":
            return f"{v:+.3f}"
        if k == "gap_closed":
            return f"{v:.2f}"
        if k in ("kernel_us_b1", "kernel_us_b64", "emb_us_b1", "emb_us_b64"):
            return f"{v:.0f}" if v >= 10 else f"{v:.1f}"
        if k == "score_per_mb":
            return f"{v:.3g}"
        if k == "seconds":
            return f"{v:.1f}"
        return str(v)

    if markdown:
        head = [h for _, h in _LM_MD_COLUMNS]
        body = [[cell(k, r.get(k)).replace("|", "\\|") for k, _ in _LM_MD_COLUMNS]
                for r in result["rows"]]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
    else:
        from refimpl.compare.tour import TABLE_WIDTH, _fit_cells

        head = [h for _, h in _LM_COLUMNS]
        body = [[cell(k, r.get(k)) for k, _ in _LM_COLUMNS] for r in result["rows"]]
        lines = _fit_cells(head, body, TABLE_WIDTH)
    lines += [""] + textwrap.wrap(
        f"ppl: test perplexity (Bayes-optimal floor {result['bayes_perplexity']:.2f}, "
        f"unigram {result['unigram_perplexity']:.2f}); Δ floor: log ppl minus the Bayes NLL "
        f"(nats/token); µs@1/µs@64: stored-kernel latency of one token step (embedding "
        f"lookup, recurrent or attention/FFN and output products) at batch 1/64; ÷ MB: the §8.1 score ÷ size "
        f"ratio, (1/ppl) ÷ MB of exact bytes; s: training seconds (fine-tuning, students).",
        100)
    other = [r for r in result["rows"] if r.get("status") != "ok"]
    if other:
        lines.append("")
        for r in other:
            lines += textwrap.wrap(f"{r['method']} ({r['status']}): {r.get('notes') or ''}",
                                   100, subsequent_indent="    ")
    verdicts = [f"{r['method']}: {r['frontier']}" for r in result["rows"] if r.get("frontier")]
    if verdicts:
        lines += ["", "Combinations vs their parts (tolerance 0.01 nats):"]
        for v in verdicts:
            lines += textwrap.wrap(v, 100, subsequent_indent="    ")
    return "\n".join(lines)
