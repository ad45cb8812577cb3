"""§7 methods in ``refimpl tour``: Longformer, Linformer, linear attention and Reformer LSH.

Each method copies the trained Transformer baseline (or trains one when the tour's primary
baseline is another family), swaps the attention function of every layer for a §7 hook
(:mod:`refimpl.attention.hooks`), fine-tunes briefly with the tour's loop, and reports:

* quality: the tour measures accuracy and latency itself;
* storage: every parameter in float32 (Linformer adds its ``E``/``F`` projections; the others
  add nothing);
* causality: on the LM tour's causal Transformer LM, linear attention runs its causal
  prefix-sum form (``LinearAttentionHook(causal=True)``), Longformer its left-only window
  through the fused kernels (``LongformerHook(causal=True)``, no global tokens); Reformer's
  LSH honours the causal mask through masked dense attention;
* ``extra``: the attention memory one sequence of length ``n = 4096`` would need (floats of
  scores / state per layer, from each hook's ``attention_memory``) next to dense attention's,
  and their ratio — the quantity §7 is about.
"""

from __future__ import annotations

from refimpl.attention.hooks import LinearAttentionHook, LinformerHook, LongformerHook, LSHHook
from refimpl.registry import MethodResult, TourContext, dense_bits, register_method

__all__ = ["LONG_N", "FINETUNE_EPOCHS", "transformer_copy", "swap_attention"]

#: Sequence length at which the attention memory is reported.
LONG_N = 4096
#: Fine-tuning epochs after swapping the attention.
FINETUNE_EPOCHS = 1


def transformer_copy(ctx: TourContext):
    """A copy of the trained Transformer baseline (trained here if the tour has none)."""
    if ctx.baseline_kind == "transformer":
        return ctx.copy_baseline()
    baselines = getattr(ctx, "baselines", {}) or {}
    if "transformer" in baselines:
        return ctx.copy_baseline("transformer")
    model = ctx.make_model("transformer")
    ctx.fit(model)
    return model


def swap_attention(model, make_hook):
    """Set ``layer.self_attn.attention = make_hook()`` in every encoder layer; return hooks."""
    hooks = []
    for layer in model.layers:
        h = make_hook()
        layer.self_attn.attention = h
        hooks.append(h)
    return hooks


def _seq_len(model) -> int:
    return model.max_len + (getattr(model, "pooling", "mean") == "cls")


def _result(ctx, model, hooks, notes):
    ctx.fit(model, epochs=FINETUNE_EPOCHS)
    H = model.num_heads
    mem = sum(h.attention_memory(LONG_N, H) for h in hooks)
    dense = len(hooks) * H * LONG_N * LONG_N
    extra = {f"attn_floats_n{LONG_N}": mem, f"dense_attn_floats_n{LONG_N}": dense,
             "attn_memory_ratio": dense / max(mem, 1)}
    return MethodResult(model, bits=dense_bits(model), params=model.num_parameters(),
                        notes=f"{notes}; attention memory at n={LONG_N}: "
                              f"{dense / max(mem, 1):.0f}× less than dense", extra=extra)


@register_method("longformer-w4-cls", family="efficient attention", section="7.2",
                 description="Longformer sliding window w=4 + global attention on position 0, "
                             "fine-tuned")
def longformer(ctx: TourContext) -> MethodResult:
    """Longformer's sliding window (w = 4) in every layer, trained through the fused
    ``O(n w)`` kernels (forward and backward never form ``n × n``; same values as masked
    dense attention). On a classifier (an encoder) the symmetric window plus global attention
    on position 0. On a causal language model (:class:`refimpl.nn.TransformerLanguageModel`,
    the LM tour's Transformer baseline) ``LongformerHook(causal=True)``: the left half of the
    window (keys ``i - 2 … i``), and no global tokens — as in Longformer's own
    autoregressive character-level LM (Beltagy et al. 2020, §4: dilated sliding windows
    only); global attention serves task tokens of an encoder (the classifier's read-out),
    which a next-token LM does not have."""
    from refimpl.nn import TransformerLanguageModel

    model = transformer_copy(ctx)
    if isinstance(model, TransformerLanguageModel):
        hooks = swap_attention(model, lambda: LongformerHook(4, 1, (), fused=True,
                                                             causal=True))
        return _result(ctx, model, hooks, "causal window 4 (keys i-2..i), no global tokens, "
                                          "fused O(n w) training")
    hooks = swap_attention(model, lambda: LongformerHook(4, 1, (0,), fused=True))
    return _result(ctx, model, hooks, "window 4, global position 0, fused O(n w) training")


@register_method("linformer-k-n/4", family="efficient attention", section="7.2",
                 description="Linformer with learned E, F (k = n/4, head-wise sharing), "
                             "fine-tuned")
def linformer(ctx: TourContext) -> MethodResult:
    model = transformer_copy(ctx)
    n = _seq_len(model)
    k = max(2, n // 4)
    hooks = swap_attention(model, lambda: LinformerHook(n, k, model.num_heads,
                                                        sharing="headwise", rng=ctx.seed))
    # k stays fixed as n grows (the point of Linformer): H n k floats at long n
    return _result(ctx, model, hooks, f"k={k} of n={n}, head-wise E, F")


@register_method("linear-attention", family="efficient attention", section="7.2",
                 description="linear Transformer attention φ = elu + 1, fine-tuned")
def linear_attention(ctx: TourContext) -> MethodResult:
    """Katharopoulos et al.'s linear attention in every layer. On a classifier (an encoder)
    the non-causal form; on a causal language model (:class:`refimpl.nn.TransformerLanguageModel`,
    the LM tour's Transformer baseline) ``LinearAttentionHook(causal=True)``: prefix sums
    forward and backward, ``O(n d²)``, never an ``n × n`` matrix."""
    from refimpl.nn import TransformerLanguageModel

    model = transformer_copy(ctx)
    d_head = model.d_model // model.num_heads
    causal = isinstance(model, TransformerLanguageModel)
    hooks = swap_attention(model, lambda: LinearAttentionHook(causal=causal))
    return _result(ctx, model, [_LinearMem(h, d_head) for h in hooks],
                   "elu+1 feature map, " + ("causal prefix sums (O(n d²) training)" if causal
                                            else "non-causal"))


class _LinearMem:
    def __init__(self, hook, d_head):
        self.hook, self.d_head = hook, d_head

    def attention_memory(self, n, num_heads):
        return self.hook.attention_memory(n, num_heads, self.d_head)


@register_method("reformer-lsh", family="efficient attention", section="7.1",
                 description="Reformer shared-QK LSH attention (4 buckets, 2 rounds), "
                             "fine-tuned")
def reformer_lsh(ctx: TourContext) -> MethodResult:
    model = transformer_copy(ctx)
    hooks = swap_attention(model, lambda: LSHHook(4, 2, rng=ctx.seed))
    return _result(ctx, model, [_LSHMem() for _ in hooks],
                   "4 buckets, 2 hash rounds, shared QK")


class _LSHMem:
    # at long n Reformer keeps chunks of fixed size (64), not n / n_buckets
    def attention_memory(self, n, num_heads, n_hashes=2, chunk=64):
        return num_heads * n_hashes * n * 2 * chunk
