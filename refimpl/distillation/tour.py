"""§4 methods in ``refimpl tour``: knowledge distillation into a smaller student.

``hinton-kd-lstm`` trains a narrower LSTM classifier (half the embedding width, a quarter of the
hidden width of the trained LSTM baseline) with Hinton et al.'s loss
(:func:`refimpl.distillation.kd_loss_t`, T = 4, α = 0.5) on the tour's training split, the
baseline's logits as soft targets. The stored size is the student's: every parameter at 32 bits.

``tinybert-transformer`` (§4.4) distils the Transformer baseline into a Transformer with half
its layers (a divisor) and half its width with TinyBERT's intermediate losses, then its
prediction loss; ``dml-lstm`` (§4.2) trains two small LSTM peers by deep mutual learning and
keeps peer 0; ``theseus-transformer`` (§4.4) replaces modules of two baseline layers by one
successor layer each (BERT-of-Theseus with its linear schedule), then fine-tunes the
successor alone.

``tinybert-transformer`` and ``theseus-transformer`` run unchanged on the causal Transformer
LM of ``refimpl tour --task lm``: the student is a smaller
:class:`refimpl.nn.TransformerLanguageModel`, TinyBERT's layer losses compare every real
position (future keys' attention scores are 0) and its prediction loss is the per-token soft
cross-entropy over the vocabulary (:func:`~refimpl.distillation.tinybert_losses_t` with
``causal=True``); Theseus' modules run under the causal mask and train on the next-token loss.
"""

from __future__ import annotations

from refimpl.distillation.architectures import kd_loss_t
from refimpl.nn import no_grad
from refimpl.registry import MethodResult, TourContext, dense_bits, register_method

__all__: list = []

_T, _ALPHA = 4.0, 0.5


@register_method("hinton-kd-lstm", family="distillation", section="4.1",
                 description="LSTM student (1/2 embedding, 1/4 hidden width) distilled from the "
                             "LSTM baseline with soft targets at T = 4, α = 0.5")
def _hinton_kd_lstm(ctx: TourContext) -> MethodResult:
    teacher = ctx.copy_baseline("lstm")
    teacher.eval()
    widths = dict(getattr(ctx.config, "model_kwargs", {}).get("lstm", {}))
    d_emb = max(4, int(widths.get("d_emb", 32)) // 2)
    d_hidden = max(4, int(widths.get("d_hidden", 32)) // 4)
    student = ctx.make_model("lstm", d_emb=d_emb, d_hidden=d_hidden)
    soft = {}

    def forward(model, X, lengths):  # the teacher's logits of this batch become the targets
        with no_grad():
            soft["t"] = teacher(X, lengths).data
        return model(X, lengths)

    ctx.fit(student, forward=forward,
            loss_fn=lambda out, y: kd_loss_t(out, soft["t"], _T, y, _ALPHA))
    return MethodResult(student, bits=dense_bits(student), params=student.num_parameters(),
                        notes=f"student LSTM emb {d_emb}, hidden {d_hidden}; KD T={_T:g}, "
                              f"α={_ALPHA:g}",
                        extra={"baseline": "lstm"})


def _transformer_teacher(ctx: TourContext):
    try:
        teacher = ctx.copy_baseline("transformer")
    except (TypeError, KeyError) as e:
        raise ValueError("this method needs a trained Transformer baseline") from e
    teacher.eval()
    return teacher


def _epochs(ctx: TourContext) -> int:
    """The tour's epochs, halved in quick mode (at least 2): these methods run a teacher or a
    second network on every batch, and the quick tour gives each method 30 s."""
    E = int(getattr(ctx.config, "epochs", 2) or 2)
    return max(2, E // 2) if ctx.quick else E


@register_method("tinybert-transformer", family="distillation", section="4.4",
                 description="Transformer student (half the layers and width) distilled from "
                             "the Transformer baseline with TinyBERT's intermediate losses, "
                             "then its prediction loss")
def _tinybert_transformer(ctx: TourContext) -> MethodResult:
    from refimpl.distillation.bert_recipes import (TinyBertProjections, _forward_pair,
                                                   tinybert_layer_map, tinybert_losses_t)
    from refimpl.nn import ModuleList, TransformerLanguageModel

    teacher = _transformer_teacher(ctx)
    causal = isinstance(teacher, TransformerLanguageModel)  # the LM tour: per-token losses
    L, d, H = teacher.num_layers, teacher.d_model, teacher.num_heads
    d_ff = teacher.layers[0].d_ff
    L_s = max([k for k in range(1, max(1, L // 2) + 1) if L % k == 0])  # divides L, <= L/2
    d_s = max(H, (d // 2) // H * H)  # half the width, a multiple of the heads
    student = ctx.make_model("transformer", d_model=d_s, d_ff=max(1, d_ff // 2),
                             num_layers=L_s, num_heads=H)
    proj = TinyBertProjections(d_s, d, rng=ctx.seed)
    gm = tinybert_layer_map(L, L_s)
    st = {}

    def forward(model, X, lengths):  # an LM pair reads X[:, :-1] (next-token positions)
        s, st["t"], st["valid"] = _forward_pair(student, teacher, X, lengths)
        return s

    def losses(out):
        (zs, so), (zt, to) = out, st["t"]
        return tinybert_losses_t(so, to, zs, zt.data, proj, gm, st["valid"], causal=causal)

    def inter(out, y):
        d_ = losses(out)
        return d_["embedding"] + d_["hidden"] + d_["attention"]

    E = _epochs(ctx)
    E1, E2 = (max(1, E // 2), max(1, E - E // 2))  # quick: 2 + 2 of the tour's 8 epochs
    ctx.fit(ModuleList([student, proj]), forward=forward, loss_fn=inter, epochs=E1)
    ctx.fit(student, forward=forward, loss_fn=lambda out, y: losses(out)["prediction"],
            epochs=E2)
    return MethodResult(student, bits=dense_bits(student), params=student.num_parameters(),
                        notes=f"student {L_s} layer(s), d_model {d_s}; g(m) = {gm}; TinyBERT "
                              f"intermediate then prediction",
                        extra={"baseline": "transformer"})


@register_method("dml-lstm", family="distillation", section="4.2",
                 description="two small LSTM peers (1/2 embedding, 1/4 hidden width) trained "
                             "together by deep mutual learning; peer 0 is kept")
def _dml_lstm(ctx: TourContext) -> MethodResult:
    from refimpl.distillation.collaborative import mutual_learning_losses
    from refimpl.nn import ModuleList
    from refimpl.nn import functional as F

    widths = dict(getattr(ctx.config, "model_kwargs", {}).get("lstm", {}))
    d_emb = max(4, int(widths.get("d_emb", 32)) // 2)
    d_hidden = max(4, int(widths.get("d_hidden", 32)) // 4)
    # peers from different seeds (DML's peers differ at the start; identical peers would make
    # the KL terms exactly 0 and DML plain training)
    pair = ModuleList([ctx.make_model("lstm", rng=ctx.seed + 1000 + i, d_emb=d_emb,
                                      d_hidden=d_hidden)
                       for i in range(2)])
    K = None

    def forward(model, X, lengths):  # (B, 2C): peer 0's logits, then peer 1's
        nonlocal K
        outs = [p(X, lengths) for p in model]
        K = outs[0].shape[1]
        return F.concat(outs, axis=1)

    def loss_fn(out, y):
        l0, l1 = mutual_learning_losses([out[:, :K], out[:, K:]], y)
        return l0 + l1

    ctx.fit(pair, forward=forward, loss_fn=loss_fn)  # the tour's epochs, as hinton-kd-lstm
    student = pair[0]
    return MethodResult(student, bits=dense_bits(student), params=student.num_parameters(),
                        notes=f"2 peers LSTM emb {d_emb}, hidden {d_hidden}; deep mutual "
                              f"learning (CE + KL to the other, T = 1)",
                        extra={"baseline": "lstm"})


@register_method("theseus-transformer", family="distillation", section="4.4",
                 description="BERT-of-Theseus: modules of 2 Transformer-baseline layers "
                             "replaced progressively by 1-layer successors, then the successor "
                             "fine-tuned alone")
def _theseus_transformer(ctx: TourContext) -> MethodResult:
    from refimpl.distillation.bert_recipes import TheseusClassifier, TheseusScheduler

    teacher = _transformer_teacher(ctx)
    L = teacher.num_layers
    if L < 2 or L % 2:
        raise ValueError(f"BERT-of-Theseus here halves the layers: the Transformer baseline "
                         f"needs an even number of layers >= 2, has {L}")
    th = TheseusClassifier(teacher, n_modules=L // 2, replace_rate=0.3, rng=ctx.seed)
    E = _epochs(ctx)
    n = len(getattr(ctx.task, "y_train", ())) or 1
    bs = int(getattr(ctx.config, "batch_size", 64) or 64)
    steps = max(1, E - 1) * -(-n // bs)
    sched = TheseusScheduler(th, k=0.7 / max(1, steps // 2), b=0.3)  # rate 1 half-way
    # forward: the per-position logits (a classifier's logits, or an LM's next-token logits of
    # whole rows, scored by the LM tour's next-token loss); the schedule runs after each step
    ctx.fit(th, epochs=max(1, E - 1), forward=lambda m, X, lengths: m(X, lengths),
            after_step=sched)
    student = th.successor_model()
    ctx.fit(student, epochs=1)
    return MethodResult(student, bits=dense_bits(student), params=student.num_parameters(),
                        notes=f"{L} -> {L // 2} layers; replacement rate min(1, kt + 0.3)",
                        extra={"baseline": "transformer"})
