"""``refimpl tour --task lm``: the compression methods on the HMM language-modelling task,
perplexity measured against its exact Bayes-optimal floor (Survey §8.1: "the most popular
task is language modelling").

The baseline is a word-level LSTM language model (:class:`refimpl.nn.LSTMLanguageModel`)
trained with :func:`refimpl.nn.fit_lm` on :func:`refimpl.data.make_hmm_lm`, whose generator is
known, so the best achievable test perplexity is known exactly (``task.bayes_perplexity``).
Each method is a :class:`refimpl.compare.pipelines.Pipeline` of the chapters' steps (the same
implementation the classification tour uses), fine-tuned with ``fit_lm``; distillation is not
among them (its step is written for classifiers' logits).

Columns: exact bytes (the pipelines' ledger), test perplexity, the gap to the Bayes floor in
nats per token (``log ppl − H_Bayes``), the fraction of the unigram-to-Bayes gap the model
closes, stored-kernel latency at batch 1 and 64 (:mod:`refimpl.compare.latency`), training
seconds and the §8.1 score ÷ size ratio (here ``(1 / ppl) ÷ MB``: higher is better).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

__all__ = ["LM_METHODS", "LMConfig", "lm_config", "run_lm_tour", "format_lm_table"]


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
    task_kwargs: dict = field(default_factory=dict)
    methods: tuple | None = None


def lm_config(quick: bool = True, tiny: bool = False, **overrides) -> LMConfig:
    """Presets: full (8 epochs, the task's full size), quick, tiny (tests)."""
    if tiny:
        cfg = LMConfig(quick=True, d_emb=16, d_hidden=16, epochs=1,
                       task_kwargs=dict(n_train_tokens=3000, n_valid_tokens=500,
                                        n_test_tokens=1000))
    elif quick:
        cfg = LMConfig(quick=True)
    else:
        cfg = LMConfig(quick=False, epochs=8)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def _methods():
    from refimpl.compare.pipelines import HashRecurrent, Huffman, LowRank, Prune, Quantize

    return {
        "magnitude-90": ("pruning", "2.1.2", [Prune(0.9)]),
        "kmeans-4bit": ("quantization", "3.3.3", [Quantize(4)]),
        "uniform-8bit": ("quantization", "3.3.1", [Quantize(8, "uniform")]),
        "svd-low-rank": ("decomposition", "6.1", [LowRank(1 / 3)]),
        "hashednets": ("sharing", "5.2", [HashRecurrent(1 / 8)]),
        "deep-compression": ("combination", "8.1", [Prune(0.9), Quantize(4), Huffman()]),
        "lowrank-quantize": ("combination", "8.1", [LowRank(1 / 3), Quantize(4)]),
    }


#: The single LM methods each combination is compared with.
LM_PARTS = {"deep-compression": ("magnitude-90", "kmeans-4bit"),
            "lowrank-quantize": ("svd-low-rank", "kmeans-4bit")}


#: The LM methods: name → (family, section, steps).
LM_METHODS = tuple(_methods())


def run_lm_tour(cfg: LMConfig, log=print) -> dict:
    """Train the LSTM LM, run every LM method, return ``{"rows", "task", "seconds"}``.

    Each row: method, family, section, bits, bytes, compression, perplexity, ``gap_nats``
    (log ppl − Bayes NLL), ``gap_closed`` (of the unigram-to-Bayes gap), kernel latencies
    (µs), seconds, status, notes. A method that raises becomes an error row.
    """
    from refimpl import nn
    from refimpl.compare.latency import stored_latency
    from refimpl.compare.pipelines import Compressed, Pipeline
    from refimpl.data import load_task, unigram_nll
    from refimpl.registry import TourContext
    from refimpl.utils import as_rng

    t_start = time.perf_counter()
    task = load_task("hmm_lm", quick=cfg.quick, rng=cfg.seed, **cfg.task_kwargs)
    V = len(task.vocab)

    def make(kind=None, **kw):
        return nn.LSTMLanguageModel(vocab_size=V, **{"d_emb": cfg.d_emb,
                                                     "d_hidden": cfg.d_hidden, **kw},
                                    rng=as_rng(cfg.seed + 2))

    def fit(model, epochs=1, after_step=None, lr=None, **_):
        return nn.fit_lm(model, task, epochs=epochs, lr=cfg.finetune_lr if lr is None else lr,
                         after_step=after_step, rng=cfg.seed, progress=False)

    def ppl(model):
        return float(nn.perplexity(model, task.test, task.len_test))

    t0 = time.perf_counter()
    base = nn.LSTMLanguageModel(vocab_size=V, d_emb=cfg.d_emb, d_hidden=cfg.d_hidden,
                                rng=as_rng(cfg.seed + 1))
    nn.fit_lm(base, task, epochs=cfg.epochs, lr=cfg.lr, rng=cfg.seed, progress=False)
    base_s = time.perf_counter() - t0
    nll_bayes, nll_uni = task.bayes_nll, unigram_nll(task, "test")
    ctx = TourContext(task=task, baseline=base, baseline_kind="lstm-lm", quick=cfg.quick,
                      seed=cfg.seed, fit=fit, evaluate=ppl, make_model=make,
                      baselines={"lstm-lm": base}, config=cfg)

    def row(name, family, section, cm, p, seconds, status="ok", notes=""):
        r = {"method": name, "family": family, "section": section, "bits": None,
             "bytes": None, "compression": None, "perplexity": p, "gap_nats": None,
             "gap_closed": None, "kernel_us_b1": None, "kernel_us_b64": None,
             "score_per_mb": None, "seconds": seconds, "status": status, "notes": notes}
        if cm is not None:
            bits = cm.bits
            lat = stored_latency(cm.model, cm.records, batches=(1, 64), repeat=5,
                                 rng=cfg.seed)
            r.update(bits=bits, bytes=math.ceil(bits / 8),
                     compression=32 * base.num_parameters() / bits,
                     kernel_us_b1=lat["ms_b1"] * 1e3, kernel_us_b64=lat["ms_b64"] * 1e3,
                     formats=lat["formats"])
        if p is not None and math.isfinite(p):
            r.update(gap_nats=math.log(p) - nll_bayes,
                     gap_closed=(nll_uni - math.log(p)) / (nll_uni - nll_bayes))
            if r["bits"]:
                r["score_per_mb"] = (1.0 / p) / (r["bits"] / 8e6)
        return r

    rows = [row("baseline-lstm-lm", "baseline", "—", Compressed(base, "lstm-lm"), ppl(base),
                base_s, notes="float32")]
    log(f"baseline lstm-lm: perplexity {rows[0]['perplexity']:.2f} (Bayes floor "
        f"{task.bayes_perplexity:.2f}, unigram {math.exp(nll_uni):.2f}; {base_s:.1f} s)")
    todo = _methods()
    if cfg.methods is not None:
        unknown = [m for m in cfg.methods if m not in todo]
        if unknown:
            raise ValueError(f"LM methods {unknown} are not defined; defined: {list(todo)}")
        todo = {k: todo[k] for k in cfg.methods}
    for name, (family, section, steps) in todo.items():
        t0 = time.perf_counter()
        try:
            cm = Pipeline(name, steps, base="lstm-lm").run(ctx)
            p = ppl(cm.model)
            rows.append(row(name, family, section, cm, p, time.perf_counter() - t0,
                            notes=" → ".join(cm.steps)))
            log(f"{name}: perplexity {p:.2f}, {rows[-1]['bytes']} bytes")
        except Exception as err:  # a broken method is a row, not a crash
            rows.append(row(name, family, section, None, None, time.perf_counter() - t0,
                            "error", f"{type(err).__name__}: {err}"))
            log(f"{name}: ERROR {type(err).__name__}: {err}")
    _lm_verdicts(rows)
    return {"rows": rows, "bayes_perplexity": task.bayes_perplexity,
            "unigram_perplexity": math.exp(nll_uni), "seconds": time.perf_counter() - t_start}


def _lm_verdicts(rows) -> None:
    """``row["frontier"]`` for each combination: :func:`~refimpl.compare.pipelines.
    frontier_verdict` on quality = −NLL (nats per token, higher is better), tolerance 0.01
    nats."""
    from refimpl.compare.pipelines import frontier_verdict

    def q(r):
        p = r.get("perplexity")
        return None if p is None or not math.isfinite(p) else {
            "method": r["method"], "bytes": r["bytes"], "accuracy": -math.log(p)}

    by = {r["method"]: r for r in rows}
    for name, parts in LM_PARTS.items():
        if name not in by or q(by[name]) is None:
            continue
        ps = [q(by[p]) for p in parts if p in by and q(by[p]) is not None]
        v = frontier_verdict(q(by[name]), ps, tol=0.01)
        by[name]["frontier"] = v.replace("accuracy", "−NLL (nats)") + f" ({', '.join(parts)})"


_LM_COLUMNS = [("method", "method"), ("section", "§"), ("bytes", "bytes"),
               ("compression", "size ×"), ("perplexity", "ppl"), ("gap_nats", "Δ floor"),
               ("gap_closed", "closed"), ("kernel_us_b1", "µs@1"), ("kernel_us_b64", "µs@64"),
               ("seconds", "s"), ("status", "status")]


def format_lm_table(result: dict, markdown: bool = False) -> str:
    """The LM comparison as aligned text (or Markdown), with a legend."""
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
        if k in ("kernel_us_b1", "kernel_us_b64"):
            return f"{v:.0f}" if v >= 10 else f"{v:.1f}"
        if k == "seconds":
            return f"{v:.1f}"
        return str(v)

    head = [h for _, h in _LM_COLUMNS]
    body = [[cell(k, r.get(k)) for k, _ in _LM_COLUMNS] for r in result["rows"]]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
    else:
        w = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
        lines = ["  ".join(c.ljust(x) for c, x in zip(head, w)).rstrip(),
                 "  ".join("-" * x for x in w)]
        lines += ["  ".join(c.ljust(x) for c, x in zip(b, w)).rstrip() for b in body]
    import textwrap

    lines += [""] + textwrap.wrap(f"ppl: test perplexity (Bayes-optimal floor {result['bayes_perplexity']:.2f}, "
                  f"unigram {result['unigram_perplexity']:.2f}); Δ floor: log ppl minus the "
                  f"Bayes NLL (nats/token); closed: fraction of the unigram-to-Bayes gap "
                  f"closed; µs@1/µs@64: stored-kernel latency at batch 1/64.", 100)
    verdicts = [f"{r['method']}: {r['frontier']}" for r in result["rows"] if r.get("frontier")]
    if verdicts:
        lines += ["", "Combinations vs their parts (tolerance 0.01 nats):"] + verdicts
    return "\n".join(lines)
