"""§4 methods in ``refimpl tour``: knowledge distillation into a smaller student.

``hinton-kd-lstm`` trains a narrower LSTM classifier (half the embedding width, a quarter of the
hidden width of the trained LSTM baseline) with Hinton et al.'s loss
(:func:`refimpl.distillation.kd_loss_t`, T = 4, α = 0.5) on the tour's training split, the
baseline's logits as soft targets. The stored size is the student's: every parameter at 32 bits.
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
