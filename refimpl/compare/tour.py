"""``refimpl tour``: every registered compression method on one task, measured the same way
(Survey §8, "comparison of methods").

The tour

1. builds the embedded task (default: the order-dependent sentiment task of
   :func:`refimpl.data.make_sentiment`);
2. trains the baselines — a bag-of-words MLP, an LSTM classifier and a small Transformer
   encoder — with the shared training loop :func:`refimpl.nn.fit`;
3. hands a :class:`~refimpl.compare.registry.TourContext` (the task, the primary baseline, the
   training loop, a model factory) to every method registered with
   :func:`~refimpl.compare.registry.register_method` in ``refimpl/<chapter>/tour.py``;
4. measures each returned model itself — test accuracy, latency (median forward time on a
   batch), and the exact storage the method reports in bits — and prints one table: method,
   family, §, parameters, bytes, compression ×, accuracy, Δ vs the baseline, latency;
5. writes the table as CSV and Markdown to ``--out`` and plots size vs accuracy (log bytes on
   x, one marker per family).

Each method runs under a time budget (with ``--quick`` the whole tour stays under two minutes:
the time left after the baselines is shared among the methods); a method that raises or runs
out of time becomes an error row, never a crash. Baselines appear as rows too. Until the
chapters register their methods, one sanity row is registered here: ``baseline-float16``
(weights cast to float16 and back, 16 bits per parameter).
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from refimpl.compare.registry import MethodResult, TourContext, methods, register_method
from refimpl.compare.sizes import compression_ratio, dense_bits, format_bytes

__all__ = ["TourConfig", "TourRun", "config_for", "run_tour", "format_table", "main"]

BASELINE_KINDS = ("bow", "lstm", "transformer")


@dataclass
class TourConfig:
    """Sizes and budgets of one tour run (see :func:`config_for` for the three presets).

    Attributes
    ----------
    task : str
        Embedded task name (``"sentiment"``).
    quick, tiny : bool
        ``quick``: small sizes, the whole tour under two minutes on 2 cores. ``tiny``: a
        seconds-long configuration for the test suite.
    seed : int
    baseline : str
        The primary baseline handed to methods as ``ctx.baseline`` (``"lstm"`` by default).
    baselines : tuple of str
        Baselines trained and shown as rows (the primary one is always trained).
    task_kwargs : dict
        Passed to the task generator (split sizes, vocabulary size, sentence length).
    model_kwargs : dict
        Per-kind constructor overrides, e.g. ``{"lstm": {"hidden_size": 32}}``.
    epochs, lr, batch_size : training settings of the baselines (``ctx.fit`` defaults).
    total_budget : float or None
        Seconds for the whole tour (``None``: no cap); methods share what the baselines leave.
    method_budget : float
        Upper bound on the seconds of any one method.
    latency_batch, latency_repeat : int
        Batch size and repeats of the latency measurement.
    """

    task: str = "sentiment"
    quick: bool = False
    tiny: bool = False
    seed: int = 0
    baseline: str = "lstm"
    baselines: tuple = BASELINE_KINDS
    task_kwargs: dict = field(default_factory=dict)
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 6
    lr: float = 3e-3
    batch_size: int = 64
    total_budget: float | None = None
    method_budget: float = 900.0
    latency_batch: int = 64
    latency_repeat: int = 7


def config_for(quick: bool = False, tiny: bool = False, **overrides) -> TourConfig:
    """The preset configuration: full, ``quick`` (< 2 min on 2 cores) or ``tiny`` (tests)."""
    if tiny:
        cfg = TourConfig(
            quick=True, tiny=True, baselines=("bow", "lstm"),
            task_kwargs=dict(n_train=300, n_val=100, n_test=200, vocab_size=400, max_len=12),
            model_kwargs={"bow": dict(d_emb=16, d_hidden=16),
                          "lstm": dict(d_emb=16, d_hidden=16),
                          "transformer": dict(d_model=16, num_heads=2, num_layers=1, d_ff=32)},
            epochs=1, batch_size=64, total_budget=40.0, method_budget=10.0,
            latency_batch=16, latency_repeat=3)
    elif quick:
        cfg = TourConfig(
            quick=True,  # the task's own quick size (refimpl.data.TASKS)
            model_kwargs={"bow": dict(d_emb=32, d_hidden=32),
                          "lstm": dict(d_emb=32, d_hidden=32),
                          "transformer": dict(d_model=32, num_heads=2, num_layers=2, d_ff=64)},
            # 8 epochs bring the quick baselines close to convergence (LSTM ~0.94 validation
            # accuracy), so a method's one fine-tuning epoch is not what beats its baseline
            epochs=8, total_budget=95.0, method_budget=30.0)
    else:
        cfg = TourConfig(
            model_kwargs={"bow": dict(d_emb=64, d_hidden=64),
                          "lstm": dict(d_emb=64, d_hidden=64),
                          "transformer": dict(d_model=64, num_heads=4, num_layers=2,
                                              d_ff=128)})
    return replace(cfg, **overrides)


# ------------------------------------------------------------------------------------ task
def load_task(cfg: TourConfig, rng):
    """The embedded task :func:`refimpl.data.load_task` names (a classification task: the tour
    measures accuracy), at the quick or full size, with ``cfg.task_kwargs`` overriding sizes."""
    from refimpl.data import load_task as _load

    task = _load(cfg.task, quick=cfg.quick, rng=rng, **cfg.task_kwargs)
    needed = ("X_train", "len_train", "y_train", "X_test", "len_test", "y_test", "n_classes",
              "vocab")
    if not all(hasattr(task, a) for a in needed):
        raise ValueError(f"task must be a classification task (the tour measures accuracy); "
                         f"{cfg.task!r} is a {type(task).__name__}")
    return task


# ---------------------------------------------------------------------------------- models
def make_model(kind: str, task, cfg: TourConfig, rng, **overrides):
    """A fresh, untrained classifier of ``kind`` sized for ``task``.

    ``"bow"`` → :class:`refimpl.nn.BowClassifier`, ``"lstm"`` / ``"gru"`` →
    :class:`refimpl.nn.RNNClassifier`, ``"transformer"`` → :class:`refimpl.nn.TransformerClassifier`;
    widths come from ``cfg.model_kwargs[kind]``, ``overrides`` win.
    """
    from refimpl import nn

    common = dict(vocab_size=len(task.vocab), n_classes=task.n_classes, rng=rng)
    if kind == "bow":
        return nn.BowClassifier(**{**common, **cfg.model_kwargs.get("bow", {}), **overrides})
    if kind in ("lstm", "gru"):
        kw = {**common, "cell": kind, **cfg.model_kwargs.get("lstm", {}), **overrides}
        return nn.RNNClassifier(**kw)
    if kind == "transformer":
        kw = {**common, "max_len": task.X_train.shape[1],
              **cfg.model_kwargs.get("transformer", {}), **overrides}
        return nn.TransformerClassifier(**kw)
    raise ValueError(f"kind must be one of ('bow', 'lstm', 'gru', 'transformer'), got {kind!r}")


def _logits(model, X, lengths) -> np.ndarray:
    from refimpl import nn

    with nn.no_grad():
        out = model(X, lengths)
    return np.asarray(getattr(out, "data", out))


def evaluate_accuracy(model, X, lengths, y, batch_size: int = 256) -> float:
    """Test accuracy of ``model(X, lengths) -> logits (B, C)``, in eval mode, batched."""
    was_training = getattr(model, "training", None)
    if hasattr(model, "eval"):
        model.eval()
    try:
        correct = 0
        for i in range(0, len(y), batch_size):
            logits = _logits(model, X[i:i + batch_size], lengths[i:i + batch_size])  # (B, C)
            correct += int((logits.argmax(axis=-1) == y[i:i + batch_size]).sum())
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return correct / len(y)


def measure_latency(model, X, lengths, repeat: int = 7) -> float:
    """Median seconds of one forward pass on the batch ``X`` (after one warm-up call)."""
    if hasattr(model, "eval"):
        model.eval()
    _logits(model, X, lengths)
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        _logits(model, X, lengths)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _fit(model, task, cfg: TourConfig, *, epochs=None, lr=None, after_step=None, loss_fn=None,
         rng=None, **kwargs):
    """``ctx.fit``: :func:`refimpl.nn.fit` on the task's training split with the tour's settings
    (``epochs``, ``lr``, ``batch_size``; a progress bar on a terminal unless
    ``REFIMPL_PROGRESS=0``); other keywords go to ``nn.fit``."""
    from refimpl import nn

    kw = dict(epochs=cfg.epochs if epochs is None else epochs,
              lr=cfg.lr if lr is None else lr, batch_size=cfg.batch_size,
              rng=cfg.seed if rng is None else rng, progress=None)  # bar on a terminal
    if after_step is not None:
        kw["after_step"] = after_step
    if loss_fn is not None:
        kw["loss_fn"] = loss_fn
    kw.update(kwargs)
    return nn.fit(model, (task.X_train, task.len_train, task.y_train), **kw)


# ------------------------------------------------------------------------------ the context


# --------------------------------------------------------------------------- time budgets
class MethodTimeout(Exception):
    """A method ran past its time budget."""


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise :class:`MethodTimeout` in the block after ``seconds`` (POSIX main thread only;
    elsewhere the block runs unlimited and the caller reports the overrun)."""
    usable = (seconds is not None and math.isfinite(seconds) and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def _raise(signum, frame):
        raise MethodTimeout(f"exceeded its time budget of {seconds:.1f} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------------------- the tour
@dataclass
class TourRun:
    """The result of :func:`run_tour`: one dict per table row, plus context."""

    rows: list
    config: TourConfig
    seconds: float
    files: dict = field(default_factory=dict)


def _row(name, family, section, params, bits, acc, ref_bits, ref_acc, latency, seconds,
         status="ok", notes="", vs=""):
    return {"method": name, "family": family, "section": section, "vs": vs,
            "params": None if params is None else int(params),
            "bits": None if bits is None else int(bits),
            "bytes": None if bits is None else int(math.ceil(bits / 8)),
            "compression": (compression_ratio(ref_bits, bits) if bits else None),
            "accuracy": acc,
            "delta": (acc - ref_acc) if acc is not None else None,
            "latency_ms": None if latency is None else latency * 1e3,
            "seconds": seconds, "status": status, "notes": notes}


def run_tour(cfg: TourConfig, only=None, log=print) -> TourRun:
    """Train the baselines, run every registered method, return the table rows."""
    from refimpl.utils import as_rng

    if only is not None:  # fail before spending minutes on the baselines
        unknown = sorted(set(only) - {m.name for m in methods()})
        if unknown:
            raise ValueError(f"methods {unknown} are not registered; registered: "
                             f"{[m.name for m in methods()]}")
    t_start = time.perf_counter()
    deadline = None if cfg.total_budget is None else t_start + cfg.total_budget
    rng = as_rng(cfg.seed)
    task = load_task(cfg, rng)
    log(f"task {getattr(task, 'name', cfg.task)}: {len(task.y_train)} train / "
        f"{len(task.y_test)} test sentences, vocabulary {len(task.vocab)}, "
        f"{task.n_classes} classes")
    X_lat, len_lat = task.X_test[:cfg.latency_batch], task.len_test[:cfg.latency_batch]

    def evaluate(model) -> float:
        return evaluate_accuracy(model, task.X_test, task.len_test, task.y_test)

    kinds = list(dict.fromkeys([cfg.baseline, *cfg.baselines]))
    trained: dict = {}
    base_rows = []
    for kind in kinds:
        t0 = time.perf_counter()
        model = make_model(kind, task, cfg, as_rng(cfg.seed + 1))
        _fit(model, task, cfg)
        trained[kind] = model
        acc = evaluate(model)
        lat = measure_latency(model, X_lat, len_lat, cfg.latency_repeat)
        dt = time.perf_counter() - t0
        base_rows.append((kind, model, acc, lat, dt))
        log(f"baseline {kind}: accuracy {acc:.3f}, {model.num_parameters()} parameters, "
            f"trained in {dt:.1f} s")

    primary = trained[cfg.baseline]
    # every row is compared with a baseline: its bits (compression ×) and accuracy (Δ);
    # baseline rows and methods that copy the primary baseline with the primary one
    refs = {k: (dense_bits(m), a) for k, m, a, _, _ in base_rows}  # kind -> (bits, accuracy)
    ref_bits, ref_acc = refs[cfg.baseline]
    rows = [_row(f"baseline-{k}", "baseline", "—", m.num_parameters(), dense_bits(m), a,
                 ref_bits, ref_acc, lat, dt, notes="float32, trained by the tour",
                 vs=cfg.baseline)
            for k, m, a, lat, dt in base_rows]

    ctx = TourContext(
        task=task, baseline=primary, baseline_kind=cfg.baseline, quick=cfg.quick, seed=cfg.seed,
        fit=lambda model, **kw: _fit(model, task, cfg, **kw), evaluate=evaluate,
        make_model=lambda kind=None, **kw: make_model(kind or cfg.baseline, task, cfg,
                                                      as_rng(cfg.seed + 2), **kw),
        baselines=trained, config=cfg)

    todo = [m for m in methods(quick=cfg.quick) if only is None or m.name in only]
    for i, m in enumerate(todo):
        budget = cfg.method_budget
        if deadline is not None:
            budget = min(budget, (deadline - time.perf_counter()) / (len(todo) - i))
        ctx.copied_kind = None
        t0 = time.perf_counter()
        if budget <= 0.05:
            rows.append(_row(m.name, m.family, m.section, None, None, None, ref_bits, ref_acc,
                             None, 0.0, "skipped", "no time left in the tour's budget"))
            log(f"method {m.name}: skipped (no time left)")
            continue
        try:
            with time_limit(budget):
                res = m.func(ctx)
                if not isinstance(res, MethodResult):
                    raise TypeError(f"returned {type(res).__name__}, expected MethodResult")
                if isinstance(res.bits, bool) or not isinstance(res.bits, (int, np.integer)) \
                        or res.bits <= 0:
                    raise ValueError(f"MethodResult.bits must be a positive int, got "
                                     f"{res.bits!r}")
                acc = evaluate(res.model)
                lat = measure_latency(res.model, X_lat, len_lat, cfg.latency_repeat)
            dt = time.perf_counter() - t0
            status = "ok" if dt <= budget * 1.05 else f"over budget ({budget:.0f} s)"
            vs = (res.extra or {}).get("baseline") or ctx.copied_kind or cfg.baseline
            if vs not in refs:
                raise ValueError(f"MethodResult.extra['baseline'] must be one of "
                                 f"{sorted(refs)}, got {vs!r}")
            rows.append(_row(m.name, m.family, m.section, res.params, res.bits, acc,
                             *refs[vs], lat, dt, status, res.notes, vs=vs))
            log(f"method {m.name}: accuracy {acc:.3f}, {format_bytes(res.bits / 8)}, "
                f"{dt:.1f} s")
        except MethodTimeout as err:
            dt = time.perf_counter() - t0
            rows.append(_row(m.name, m.family, m.section, None, None, None, ref_bits, ref_acc,
                             None, dt, "timeout", str(err)))
            log(f"method {m.name}: TIMEOUT ({err})")
        except Exception as err:  # a broken method is a row, not a crash
            dt = time.perf_counter() - t0
            rows.append(_row(m.name, m.family, m.section, None, None, None, ref_bits, ref_acc,
                             None, dt, "error", f"{type(err).__name__}: {err}"))
            log(f"method {m.name}: ERROR {type(err).__name__}: {err}")
    return TourRun(rows, cfg, time.perf_counter() - t_start)


# ------------------------------------------------------------------------------ reporting
COLUMNS = [("method", "method"), ("family", "family"), ("section", "§"),
           ("vs", "vs baseline"), ("params", "parameters"), ("bytes", "bytes"), ("compression", "compression ×"),
           ("accuracy", "accuracy"), ("delta", "Δ accuracy"), ("latency_ms", "latency ms"),
           ("seconds", "time s"), ("status", "status"), ("notes", "notes")]


def _cell(key, v) -> str:
    if v is None:
        return "—"
    if key == "bytes":
        return format_bytes(v)
    if key == "compression":
        return f"{v:.1f}×"
    if key == "accuracy":
        return f"{v:.3f}"
    if key == "delta":
        return f"{v:+.3f}"
    if key in ("latency_ms", "seconds"):
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"
    return str(v)


def format_table(rows, markdown: bool = False) -> str:
    """The comparison table as aligned text or as a Markdown table."""
    head = [h for _, h in COLUMNS]
    body = [[_cell(k, r.get(k)) for k, _ in COLUMNS] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body)])


def write_outputs(run: TourRun, out: str | os.PathLike) -> dict:
    """Write ``tour.csv``, ``tour.md`` and ``tour.png`` into ``out``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "tour.csv", "md": out / "tour.md", "png": out / "tour.png"}
    keys = [k for k, _ in COLUMNS]
    keys.insert(keys.index("bytes"), "bits")
    with open(files["csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in run.rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    files["md"].write_text(
        f"# refimpl tour ({'tiny' if run.config.tiny else 'quick' if run.config.quick else 'full'}"
        f", task {run.config.task}, seed {run.config.seed}, {run.seconds:.0f} s)\n\n"
        + format_table(run.rows, markdown=True) + "\n", encoding="utf-8")
    plot_size_vs_quality(run.rows, files["png"])
    return {k: str(v) for k, v in files.items()}


def plot_size_vs_quality(rows, path) -> None:
    """Scatter of bytes (log x) vs accuracy, one marker per family, labelled by method."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["bits"] and r["accuracy"] is not None]
    fig, ax = plt.subplots(figsize=(8, 5))
    markers = "o^sDvP*Xh<>p"
    for i, fam in enumerate(dict.fromkeys(r["family"] for r in ok)):
        sel = [r for r in ok if r["family"] == fam]
        ax.scatter([r["bytes"] for r in sel], [r["accuracy"] for r in sel],
                   marker=markers[i % len(markers)], s=50, label=fam)
        for r in sel:
            ax.annotate(r["method"], (r["bytes"], r["accuracy"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("model size (bytes, log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title("refimpl tour: size vs quality")
    ax.grid(True, which="both", alpha=0.3)
    if ok:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args) -> int:
    """Entry point of ``refimpl tour`` (argparse namespace from :mod:`refimpl.cli`)."""
    tiny = bool(getattr(args, "tiny", False)) or os.environ.get("REFIMPL_TOUR_TINY") == "1"
    cfg = config_for(quick=bool(getattr(args, "quick", False)), tiny=tiny,
                     task=getattr(args, "task", "sentiment"), seed=int(getattr(args, "seed", 0)))
    if getattr(args, "baseline", None):
        cfg = replace(cfg, baseline=args.baseline)
    if getattr(args, "budget", None) is not None:
        cfg = replace(cfg, total_budget=args.budget)
    if getattr(args, "progress", None) is not None:  # --progress / --no-progress
        os.environ["REFIMPL_PROGRESS"] = "1" if args.progress else "0"
    only = getattr(args, "methods", None) or None
    print(f"refimpl tour ({'tiny' if cfg.tiny else 'quick' if cfg.quick else 'full'}): "
          f"baselines {', '.join(dict.fromkeys([cfg.baseline, *cfg.baselines]))}; "
          f"{len(methods(quick=cfg.quick))} registered methods", flush=True)
    try:
        run = run_tour(cfg, only=only, log=lambda s: print(s, flush=True))
    except ValueError as err:
        print(f"refimpl tour: {err}")
        return 2
    print()
    print(format_table(run.rows))
    run.files = write_outputs(run, getattr(args, "out", "refimpl_out"))
    n_bad = sum(r["status"] not in ("ok",) for r in run.rows)
    print(f"\n{len(run.rows)} rows ({n_bad} not ok) in {run.seconds:.1f} s; wrote "
          f"{', '.join(run.files.values())}")
    return 0


# ------------------------------------------------------------------ built-in sanity method
@register_method("baseline-float16", family="sanity", section="—",
                 description="the baseline with every weight cast to float16 and back")
def _float16(ctx: TourContext) -> MethodResult:
    """Sanity row: round every parameter to float16 (16 bits/param); accuracy barely moves."""
    model = ctx.copy_baseline()
    n = 0
    for _, p in model.named_parameters():
        p.data = p.data.astype(np.float16).astype(p.data.dtype)
        n += p.data.size
    return MethodResult(model, bits=16 * n, params=n, notes="float16 round trip")
