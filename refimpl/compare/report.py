"""Reading a tour's rows the way Survey §8.1 reads its Table 4: families ranked by score ÷ size,
and three plots (size–quality frontier with the combinations highlighted, latency vs bytes,
per-family ranges).

§8.1 computes, per model, the average GLUE score ÷ model size (millions of parameters) and
finds distillation-based methods best (Distilled-BiLSTM 79.3, then mixed-vocabulary training
7.8 and ALBERT 7.2; among methods reporting ≥ 5 tasks TinyBERT 5.31, BERT-EMD 5.15,
MobileBERT + quantisation 3.49), concluding that "distillation-based methods (combined with
quantisation) beat the other types" on GLUE. :data:`SURVEY_RANKING` records that order of the
families; :func:`rank_families` computes the miniature's (best accuracy ÷ MB of exact bytes per
family) and :func:`compare_with_survey` says where they agree.
"""

from __future__ import annotations

import math

__all__ = ["SURVEY_RANKING", "rank_families", "compare_with_survey", "pareto_front",
           "plot_comparison", "draw_frontier"]

#: Families in the order §8.1 ranks them on GLUE by score ÷ size (distillation first, then
#: sharing: ALBERT; quantisation only in combination with distillation; pruning, decomposition
#: and sub-quadratic attention are not among the top ratios). Ties in the survey's text are
#: kept in the survey's order of sections.
SURVEY_RANKING = ("distillation", "sharing", "quantization", "pruning", "decomposition",
                  "efficient attention")


def _num(r, k):
    v = r.get(k)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _ok(rows, quality="accuracy"):
    return [r for r in rows if str(r.get("status", "ok")) == "ok" and _num(r, "bytes")
            and _num(r, quality) is not None]


def rank_families(rows, quality: str = "accuracy") -> list:
    """Families ranked by their best ``quality ÷ MB`` (the §8.1 ratio on exact bytes).

    Returns
    -------
    list of dict
        ``{"family", "best_method", "ratio", "n", "quality_range", "bytes_range"}`` sorted by
        ``ratio`` (highest first); baselines and the sanity row are left out.
    """
    fams: dict = {}
    for r in _ok(rows, quality):
        if r.get("family") in ("baseline", "sanity"):
            continue
        fams.setdefault(r["family"], []).append(r)
    out = []
    for fam, rs in fams.items():
        def ratio(r):
            q = _num(r, quality)
            return (1.0 / q if quality == "perplexity" else q) / (_num(r, "bytes") / 1e6)

        best = max(rs, key=ratio)
        qs = [_num(r, quality) for r in rs]
        bs = [_num(r, "bytes") for r in rs]
        out.append({"family": fam, "best_method": best["method"], "ratio": ratio(best),
                    "n": len(rs), "quality_range": (min(qs), max(qs)),
                    "bytes_range": (min(bs), max(bs))})
    return sorted(out, key=lambda d: -d["ratio"])


def compare_with_survey(ranking: list) -> list:
    """One line per family: its rank here and in :data:`SURVEY_RANKING`, and whether the
    miniature puts it on the same side (top half / bottom half) as the survey."""
    here = [d["family"] for d in ranking if d["family"] in SURVEY_RANKING]
    surv = [f for f in SURVEY_RANKING if f in here]
    lines = []
    half = len(surv) / 2
    for i, fam in enumerate(here):
        j = surv.index(fam)
        same = (i < half) == (j < half)
        lines.append(f"{fam}: rank {i + 1} here, {j + 1} in §8.1 "
                     f"({'agrees' if same else 'disagrees'} on top/bottom half)")
    extra = [d["family"] for d in ranking if d["family"] not in SURVEY_RANKING]
    if extra:
        lines.append(f"not ranked by §8.1: {', '.join(extra)} (combinations: §8.1 only lists "
                     f"them as working)")
    return lines


def pareto_front(rows, quality: str = "accuracy") -> list:
    """Rows on the size–quality Pareto frontier (no other row is at least as small and at
    least as good), sorted by bytes."""
    ok = sorted(_ok(rows, quality), key=lambda r: (_num(r, "bytes"), -_num(r, quality)))
    sign = -1.0 if quality == "perplexity" else 1.0
    front, best = [], -math.inf
    for r in ok:
        q = sign * _num(r, quality)
        if q > best:
            front.append(r)
            best = q
    return front


def draw_frontier(ax, rows, quality: str = "accuracy", floor=None) -> None:
    """Draw the size–quality Pareto frontier of ``rows`` (:func:`pareto_front`) as a step line
    on ``ax`` (bytes on x), and, if given, the best achievable quality ``floor`` (the LM
    task's Bayes-optimal perplexity) as a horizontal dashed line; perplexity gets a log y
    axis."""
    front = pareto_front(rows, quality)
    if front:
        ax.step([_num(r, "bytes") for r in front], [_num(r, quality) for r in front],
                where="post", color="C0", lw=1.2, label="Pareto frontier", zorder=2)
    if floor is not None:
        ax.axhline(float(floor), color="k", ls="--", lw=1.0, zorder=1,
                   label=f"Bayes floor ({float(floor):.2f})")
    if quality == "perplexity":
        ax.set_yscale("log")


def _plain_log_ticks(ax) -> None:
    """Log axes labelled at 1, 2, 5 × 10^k in plain numbers, minor ticks unlabelled (over a
    short range matplotlib labels every minor tick and the labels overlap)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())


def plot_comparison(rows, path=None, quality: str = "accuracy", floor=None):
    """Three panels: the size–quality Pareto frontier with combinations highlighted (and the
    ``floor`` line: the LM task's Bayes-optimal perplexity), stored-kernel latency (batch 1
    and 64) vs bytes, and per-family ranges of quality. ``quality``: ``"accuracy"`` (the
    classification tour) or ``"perplexity"`` (``refimpl tour --task lm``, lower is better).
    Saves to ``path`` if given; returns the figure."""
    import matplotlib

    backend = matplotlib.get_backend().lower()
    # a GUI backend on a headless machine cannot save: switch to Agg; Jupyter's inline backend
    # (Agg underneath) saves and keeps showing the figures of the notebook
    if path is not None and "inline" not in backend and backend not in ("agg", "pdf", "svg"):
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ok = _ok(rows, quality)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ax = axes[0]
    for r in ok:
        combo = r.get("family") == "combination"
        ax.scatter(_num(r, "bytes"), _num(r, quality), s=60 if combo else 25,
                   marker="*" if combo else "o", color="C3" if combo else "0.45", zorder=3)
        if combo:
            ax.annotate(r["method"], (_num(r, "bytes"), _num(r, quality)), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    draw_frontier(ax, rows, quality, floor)
    ax.set_xscale("log")
    _plain_log_ticks(ax)
    ax.set_xlabel("exact bytes (log)")
    ax.set_ylabel(quality)
    ax.set_title("size vs quality (★ combinations)")
    ax.legend(fontsize=8)
    ax = axes[1]
    for key, mk, lab in (("kernel_us_b1", "o", "batch 1"), ("kernel_us_b64", "^", "batch 64")):
        pts = [(_num(r, "bytes"), _num(r, key)) for r in ok if _num(r, key)]
        if pts:
            ax.scatter(*zip(*pts), marker=mk, s=22, label=lab)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("exact bytes (log)")
    ax.set_ylabel("µs through the stored kernels (log)")
    ax.set_title("latency vs bytes")
    _plain_log_ticks(ax)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax = axes[2]
    ranking = rank_families(rows, quality)
    for i, d in enumerate(ranking):
        lo, hi = d["quality_range"]
        ax.plot([i, i], [lo, hi], color="C2", lw=6, solid_capstyle="butt")
        ax.plot([i, i], [lo, hi], "_", color="k", ms=14)  # a one-row family: one tick
    ax.set_xticks(range(len(ranking)))
    ax.set_xticklabels([d["family"] for d in ranking], rotation=35, ha="right", fontsize=8)
    if floor is not None:
        ax.axhline(float(floor), color="k", ls="--", lw=1.0)
    if quality == "perplexity":
        ax.set_yscale("log")
        _plain_log_ticks(ax)
    ax.set_ylabel(f"{quality} range")
    ax.set_title("per family (ordered by best score ÷ MB)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
