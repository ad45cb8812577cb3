"""A budget planner (Survey §8.3: "efficient methods to recommend the most promising method").

Two levels:

* :func:`plan_from_rows` — the whole-model choice: among measured tour rows (single methods and
  §8.1 combinations), the most accurate one whose exact bytes fit a byte budget (and, if
  given, whose stored-kernel latency fits a latency budget). ``refimpl plan --bytes N`` runs it
  on a tour's ``tour.csv``.
* :func:`plan_components` — a method and setting *per component* (embedding, attention, FFN /
  recurrent weights, output layer). Each option is applied to one component alone, its bytes
  come from the exact ledger (:class:`refimpl.compare.pipelines.Compressed`) and its
  *sensitivity* is the measured accuracy drop; a plan's predicted accuracy is the baseline's
  minus the sum of its components' drops (an additive model), and the planner picks the
  assignment with the highest predicted accuracy within the budget, exactly, by merging the
  components' Pareto frontiers (a multiple-choice knapsack). The chosen plan is then applied
  to the whole model and measured, so the prediction is reported beside the truth.
  :func:`brute_force_plan` enumerates every assignment — the check that the frontier merge is
  exact (registered check ``budget-planner``).

Both levels serve the classification tour (quality = test accuracy, maximised) and the LM
comparison (``refimpl tour --task lm``, quality = test perplexity, minimised). For the
per-component planner a language model's sensitivity is the increase of its test NLL in nats
per token, ``log ppl − log ppl_base`` (its gap to the Bayes floor grows by exactly that much),
and the additive model predicts ``ppl = ppl_base · exp(Σ drops)``: internally every quality is
a *score*, higher is better (:func:`quality_score`: the accuracy, or ``−log ppl``).

Impossible requests (a budget below the smallest achievable size, a latency no row meets, a
non-positive budget) raise ValueError saying what the smallest achievable value is.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

__all__ = ["plan_from_rows", "Option", "ComponentPlan", "component_options",
           "measure_sensitivity", "plan_components", "brute_force_plan", "apply_plan",
           "quality_score", "QUALITIES"]

#: The qualities the planner knows: accuracy (higher is better) and perplexity (lower).
QUALITIES = ("accuracy", "perplexity")


def quality_score(value, quality: str = "accuracy") -> float:
    """The planner's score of a measured quality, higher is better: the accuracy itself, or
    ``−log ppl`` (minus the test NLL in nats per token) for ``quality="perplexity"``.

    Raises ValueError for an unknown quality, a non-finite value or a non-positive
    perplexity."""
    from refimpl.utils import check_choice

    check_choice(quality, "quality", QUALITIES)
    value = float(value)
    if not math.isfinite(value) or (quality == "perplexity" and value <= 0):
        raise ValueError(f"{quality} must be a finite number"
                         f"{' > 0' if quality == 'perplexity' else ''}, got {value!r}")
    return -math.log(value) if quality == "perplexity" else value


def _from_score(score: float, quality: str) -> float:
    return math.exp(-score) if quality == "perplexity" else score


def _check_budget(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def plan_from_rows(rows, max_bytes, max_latency_us=None, batch: int = 1,
                   quality: str = "accuracy"):
    """The best measured row within a byte (and optional latency) budget.

    Parameters
    ----------
    rows : list of dict
        Tour rows (``run_tour(...).rows`` or the rows of ``tour.csv``) with ``bytes``,
        ``quality`` and ``kernel_us_b1`` / ``kernel_us_b64``; rows that are not ``ok`` or
        lack a number are ignored.
    max_bytes : int or float
        Byte budget.
    max_latency_us : float, optional
        Latency budget in microseconds at ``batch`` (1 or 64) through the stored kernels.
    quality : str
        The column maximised (``"accuracy"``; ``"perplexity"`` is minimised: the LM
        comparison's rows).

    Returns
    -------
    dict
        The chosen row; ties on quality go to the smaller model.

    Raises
    ------
    ValueError
        No row fits: the message gives the smallest size (and latency) measured.
    """
    from refimpl.utils import check_choice

    check_choice(quality, "quality", QUALITIES)
    max_bytes = _check_budget(max_bytes, "max_bytes")
    if max_latency_us is not None:
        max_latency_us = _check_budget(max_latency_us, "max_latency_us")
    if batch not in (1, 64):
        raise ValueError(f"batch must be 1 or 64 (the measured batch sizes), got {batch!r}")
    lat_key = f"kernel_us_b{batch}"

    def num(r, k):
        v = r.get(k)
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        return v if math.isfinite(v) else None

    ok = [r for r in rows if str(r.get("status", "ok")) == "ok" and num(r, "bytes")
          and num(r, quality) is not None]
    if not ok:
        raise ValueError(f"no measured row has bytes and {quality}: run the tour first")
    smallest = min(ok, key=lambda r: num(r, "bytes"))
    fits = [r for r in ok if num(r, "bytes") <= max_bytes]
    if not fits:
        raise ValueError(f"no method fits {max_bytes:g} bytes: the smallest measured model is "
                         f"{smallest['method']} at {num(smallest, 'bytes'):.0f} bytes")
    if max_latency_us is not None:
        timed = [r for r in fits if num(r, lat_key) is not None]
        fast = [r for r in timed if num(r, lat_key) <= max_latency_us]
        if not fast:
            best = min(timed, key=lambda r: num(r, lat_key)) if timed else None
            raise ValueError(
                f"no method within {max_bytes:g} bytes runs in {max_latency_us:g} µs at batch "
                f"{batch}" + (f": the fastest that fits is {best['method']} at "
                              f"{num(best, lat_key):.1f} µs" if best else
                              ": no latency was measured"))
        fits = fast
    sign = -1.0 if quality == "perplexity" else 1.0
    return max(fits, key=lambda r: (sign * num(r, quality), -num(r, "bytes")))


# ------------------------------------------------------------------- per component
@dataclass(frozen=True)
class Option:
    """A method and setting for one component: ``"float32"``, ``"uniform-8"``, ``"kmeans-4"``,
    ``"kmeans-2"``, ``"prune-0.5"``, ``"prune-0.9"``, ``"prune-0.9+kmeans-4"``."""

    name: str

    def steps(self, component: str):
        from refimpl.compare.pipelines import Prune, Quantize

        out = []
        for part in self.name.split("+"):
            kind, _, arg = part.partition("-")
            if kind == "float32":
                continue
            if kind == "prune":
                out.append(Prune(float(arg), epochs=0, components=(component,)))
            elif kind in ("uniform", "kmeans"):
                out.append(Quantize(int(arg), kind, epochs=0, components=(component,)))
            else:
                raise ValueError(f"unknown option {self.name!r}")
        return out


DEFAULT_OPTIONS = ("float32", "uniform-8", "kmeans-4", "kmeans-2", "prune-0.5", "prune-0.9",
                   "prune-0.9+kmeans-4")


def component_options(options=DEFAULT_OPTIONS) -> list:
    """The :class:`Option` objects of ``options`` (names)."""
    opts = [Option(o) for o in options]
    for o in opts:
        o.steps("embedding")  # validates the name
    return opts


@dataclass
class ComponentPlan:
    """Measured options per component and the chosen assignment.

    Attributes
    ----------
    table : dict
        ``{component: {option: (bytes, drop[, latency_us])}}``; bytes are the component's
        exact storage under the option, the drop (of the score, :func:`quality_score`: the
        accuracy drop, or the NLL increase in nats per token) is measured with only that
        component compressed, the optional latency is its stored-kernel time (µs, batch 1).
    base_accuracy, fixed_bytes, fixed_latency_us : float, int, float
        The baseline's score (its accuracy; ``−log ppl`` when ``quality="perplexity"``);
        bytes (and latency) of what lies outside every component.
    choice : dict
        ``{component: option}``.
    predicted_bytes, predicted_accuracy : int, float
        ``predicted_accuracy`` is a score like ``base_accuracy``;
        :attr:`predicted_quality` reads it as the quality (a perplexity for an LM).
    measured_bytes, measured_accuracy : int or None, float or None
        After :func:`apply_plan` (a score; :attr:`measured_quality`).
    quality : str
        ``"accuracy"`` or ``"perplexity"`` (:data:`QUALITIES`).
    """

    table: dict
    base_accuracy: float
    fixed_bytes: int
    fixed_latency_us: float = 0.0
    choice: dict = field(default_factory=dict)
    predicted_bytes: int = 0
    predicted_latency_us: float = 0.0
    predicted_accuracy: float = math.nan
    measured_bytes: int | None = None
    measured_accuracy: float | None = None
    quality: str = "accuracy"

    @property
    def base_quality(self) -> float:
        """The baseline's accuracy or perplexity."""
        return _from_score(self.base_accuracy, self.quality)

    @property
    def predicted_quality(self) -> float:
        """The plan's predicted accuracy, or perplexity ``ppl_base · exp(Σ drops)``."""
        return _from_score(self.predicted_accuracy, self.quality)

    @property
    def measured_quality(self) -> float | None:
        """The applied plan's measured accuracy or perplexity (None before
        :func:`apply_plan`)."""
        return None if self.measured_accuracy is None else _from_score(
            self.measured_accuracy, self.quality)


def _component_bytes(cm, component):
    from refimpl.compare.pipelines import component_of

    bits = sum(sum(parts.values()) for n, parts in cm.storage().items()
               if n != "(model)" and component_of(n) == component)
    return bits / 8


def measure_sensitivity(ctx, base: str = "lstm", components=None,
                        options=DEFAULT_OPTIONS, latency: bool = False,
                        quality: str = "accuracy") -> ComponentPlan:
    """Apply each option to each component alone (no fine-tuning) and measure its bytes and
    quality drop on ``ctx``'s test split.

    Parameters
    ----------
    ctx : TourContext
    base : str
        The baseline compressed.
    components : sequence of str, optional
        Default: every component with a 2-D weight in the baseline.
    options : sequence of str
        See :class:`Option`.
    latency : bool
        Also time each component's stored operators through their kernels (batch 1,
        :func:`refimpl.compare.latency.stored_latency`), for a latency budget.
    quality : {"accuracy", "perplexity"}
        What ``ctx.evaluate`` returns: the classification tour's accuracy, or the LM
        comparison's test perplexity (:func:`refimpl.compare.lm_tour.lm_context`; the drop is
        then the NLL increase in nats per token).
    """
    from refimpl.compare.pipelines import Compressed, Pipeline, component_of

    from refimpl.utils import check_choice

    check_choice(quality, "quality", QUALITIES)
    model = ctx.copy_baseline(base)
    present = list(dict.fromkeys(component_of(n) for n, p in model.named_parameters()
                                 if p.ndim == 2))
    components = present if components is None else list(components)
    missing = [c for c in components if c not in present]
    if missing:
        raise ValueError(f"components {missing} have no weight matrix in the {base} baseline; "
                         f"it has {present}")
    opts = component_options(options)
    base_acc = quality_score(ctx.evaluate(model), quality)
    dense = Compressed(model, base)
    fixed = sum(sum(parts.values()) for n, parts in dense.storage().items()
                if component_of(n) not in components) / 8
    table = {}
    for c in components:
        table[c] = {}
        for o in opts:
            steps = o.steps(c)
            if steps:
                cm = Pipeline(f"{c}:{o.name}", steps, base=base).run(ctx)
                acc = quality_score(ctx.evaluate(cm.model), quality)
            else:
                cm, acc = dense, base_acc
            entry = (_component_bytes(cm, c), base_acc - acc)
            if latency:
                entry += (_component_latency(cm, c),)
            table[c][o.name] = entry
    return ComponentPlan(table, base_acc, int(math.ceil(fixed)), quality=quality)


def _component_latency(cm, component) -> float:
    """µs (batch 1) of the component's stored operators (weight products, embedding lookups,
    attention) through their kernels."""
    from refimpl.compare.latency import stored_latency
    from refimpl.compare.pipelines import component_of

    out = stored_latency(cm.model, cm.records, batches=(1,), repeat=5,
                         select=lambda name: component_of(name) == component)
    return out["ms_b1"] * 1e3


def _entry(v):
    """``(bytes, drop, latency)`` of a table entry (latency 0 when not measured)."""
    return (float(v[0]), float(v[1]), float(v[2]) if len(v) > 2 else 0.0)


def _frontier(points):
    """Points ``(bytes, latency, drop, assignment)`` not dominated in all three (another
    point at most as large, as slow and as lossy), sorted by bytes."""
    pts = sorted(points, key=lambda t: (t[0], t[1], t[2]))
    out = []
    for p in pts:
        if not any(q[0] <= p[0] and q[1] <= p[1] and q[2] <= p[2] for q in out):
            out.append(p)
    return out


def plan_components(plan: ComponentPlan, max_bytes, max_latency_us=None) -> ComponentPlan:
    """Choose one option per component maximising the predicted accuracy (minimum summed
    drop) within ``max_bytes`` (and, if given, ``max_latency_us`` of summed stored-kernel
    latency), exactly, by merging the components' Pareto frontiers in (bytes, latency, drop).

    Raises ValueError when no assignment fits, saying the smallest achievable size (and
    latency).
    """
    max_bytes = _check_budget(max_bytes, "max_bytes")
    max_lat = math.inf if max_latency_us is None else _check_budget(max_latency_us,
                                                                      "max_latency_us")
    front = [(plan.fixed_bytes, plan.fixed_latency_us, 0.0, {})]
    for c, opts in plan.table.items():
        merged = []
        for b, lt, d, a in front:
            for o, v in opts.items():
                ob, od, ol = _entry(v)
                if b + ob <= max_bytes and lt + ol <= max_lat:
                    merged.append((b + ob, lt + ol, d + od, {**a, c: o}))
        front = _frontier(merged)
        if not front:
            entries = [[_entry(v) for v in o.values()] for o in plan.table.values()]
            smallest = plan.fixed_bytes + sum(min(e[0] for e in es) for es in entries)
            fastest = plan.fixed_latency_us + sum(min(e[2] for e in es) for es in entries)
            msg = f"no plan fits {max_bytes:g} bytes"
            if max_latency_us is not None:
                msg += f" and {max_latency_us:g} µs"
            msg += f": the smallest achievable is {smallest:.0f} bytes"
            if max_latency_us is not None:
                msg += f", the fastest {fastest:.1f} µs"
            raise ValueError(msg + " (every component at its smallest / fastest option)")
    b, lt, d, a = min(front, key=lambda t: (t[2], t[0], t[1]))
    plan.choice, plan.predicted_bytes = a, int(math.ceil(b))
    plan.predicted_latency_us = lt
    plan.predicted_accuracy = plan.base_accuracy - d
    return plan


def brute_force_plan(plan: ComponentPlan, max_bytes, max_latency_us=None) -> tuple:
    """Every assignment enumerated: ``(min summed drop, bytes, assignment)`` within the
    budgets (``None`` if nothing fits). Exponential: for checking :func:`plan_components`."""
    comps = list(plan.table)
    max_lat = math.inf if max_latency_us is None else max_latency_us
    best = None
    for combo in itertools.product(*(list(plan.table[c].items()) for c in comps)):
        es = [_entry(v) for _, v in combo]
        b = plan.fixed_bytes + sum(e[0] for e in es)
        lt = plan.fixed_latency_us + sum(e[2] for e in es)
        if b > max_bytes or lt > max_lat:
            continue
        d = sum(e[1] for e in es)
        if best is None or (d, b) < best[:2]:
            best = (d, b, {c: o for c, (o, _) in zip(comps, combo)})
    return best


def apply_plan(ctx, plan: ComponentPlan, base: str = "lstm", finetune: bool = False):
    """Apply the chosen options together to the baseline and measure the result; fills
    ``plan.measured_bytes`` / ``plan.measured_accuracy`` and returns the
    :class:`~refimpl.compare.pipelines.Compressed` model. Prunes come before quantisation
    (the pipelines' order rule)."""
    from refimpl.compare.pipelines import Pipeline

    if not plan.choice:
        raise ValueError("plan has no choice yet: call plan_components first")
    steps = [s for c, o in plan.choice.items() for s in Option(o).steps(c)]
    steps.sort(key=lambda s: 0 if s.stage == "prune" else 1)
    if finetune:
        for s in steps:
            s.epochs = 1
    if not steps:
        from refimpl.compare.pipelines import Compressed

        cm = Compressed(ctx.copy_baseline(base), base)
    else:
        cm = Pipeline("plan", steps, base=base).run(ctx)
    plan.measured_bytes = int(math.ceil(cm.bits / 8))
    plan.measured_accuracy = quality_score(ctx.evaluate(cm.model), plan.quality)
    return cm


def main(args) -> int:
    """``refimpl plan --bytes N [--latency-us US] [--batch 1|64] [--from tour.csv]``: the best
    measured method within the budget, read from a tour's ``tour.csv`` (default: the quick
    tour's, else the full one's) or the LM comparison's ``lm.csv`` (a ``perplexity``
    column: the lowest perplexity wins). Errors go to stderr with exit status 2."""
    import csv
    import sys
    from pathlib import Path

    def fail(msg):
        print(f"refimpl plan: {msg}", file=sys.stderr)
        return 2

    src = getattr(args, "source", None)
    candidates = [Path(src)] if src else [Path("refimpl_out/quick/tour.csv"),
                                          Path("refimpl_out/full/tour.csv")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return fail(f"no tour results at {', '.join(map(str, candidates))}: run "
                    f"`refimpl tour --quick` first (or pass --from PATH to a tour.csv)")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        return fail(f"could not read {str(path)!r}: {err}")
    quality = "perplexity" if rows and "perplexity" in rows[0] else "accuracy"
    try:
        best = plan_from_rows(rows, args.bytes, getattr(args, "latency_us", None),
                              batch=getattr(args, "batch", 1), quality=quality)
    except ValueError as err:
        return fail(str(err))
    lat = best.get(f"kernel_us_b{getattr(args, 'batch', 1)}")
    try:
        lat = f"{float(lat):.1f}"
    except (TypeError, ValueError):
        lat = "—"
    print(f"budget {args.bytes:g} bytes"
          + (f", {args.latency_us:g} µs at batch {args.batch}" if args.latency_us else "")
          + f" (measured rows from {path}):\n"
          f"  {best['method']} ({best.get('family', '')}, §{best.get('section', '')}): "
          f"{float(best['bytes']):.0f} bytes, "
          + (f"perplexity {float(best['perplexity']):.2f}, " if quality == "perplexity" else
             f"accuracy {float(best['accuracy']):.3f}, ") +
          f"{lat} µs at batch {getattr(args, 'batch', 1)}"
          + (f"\n  {best['notes']}" if best.get("notes") else ""))
    return 0
