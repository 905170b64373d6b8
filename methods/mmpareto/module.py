"""MMPareto (Wei & Hu, ICML 2024): boosting multimodal learning with innocent unimodal assistance.

Port of GeWu-Lab/MMPareto_ICML2024 `code/MMPareto.py` (`train_epoch`) and `code/min_norm_solvers.py`:
- separate unimodal heads (`head_audio`, `head_video`) next to the fused head; loss L_mm + L_a + L_v;
- per encoder u, the gradients of L_mm and of L_u alone (the original zeroes the gradients between the backward
  passes; here `torch.autograd.grad`); if cos(g_mm, g_u) > 0 the weights are (1/2, 1/2), otherwise the 2-task
  min-norm weights (c, 1 - c) of `MinNormSolver._min_norm_element_from2` (with its 0.999 / 0.001 end points);
- for every encoder parameter tensor: new = 2 k_mm g_mm + 2 k_u g_u; if the summed gradient of L_mm + L_a + L_v is
  longer, new is rescaled to its norm; the final gradient is gamma x new (gamma = 1.5). Heads keep the plain summed
  gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from fusion_bench.methods.av_balance.module import AVClassifier
from fusion_bench.types import TARGET


def min_norm_weights(v11: float, v12: float, v22: float) -> tuple[float, float]:
    """(c, 1 - c) minimising |c x1 + (1 - c) x2|^2 from the inner products, MinNormSolver's 2-vector case."""
    if v12 >= v11:
        c = 0.999
    elif v12 >= v22:
        c = 0.001
    else:
        c = -1.0 * ((v12 - v22) / (v11 + v22 - 2 * v12))
    return c, 1.0 - c


def pareto_weights(g_mm: Sequence[torch.Tensor], g_uni: Sequence[torch.Tensor]) -> tuple[float, float, float]:
    """(k_mm, k_uni, cos) for one encoder: (1/2, 1/2) when cos(g_mm, g_uni) > 0, else the min-norm weights."""
    a = torch.cat([g.flatten() for g in g_mm])
    b = torch.cat([g.flatten() for g in g_uni])
    cos = float(F.cosine_similarity(a, b, dim=0))
    if cos > 0:
        return 0.5, 0.5, cos
    k_mm, k_uni = min_norm_weights(float(a @ a), float(a @ b), float(b @ b))
    return k_mm, k_uni, cos


def pareto_gradient(summed: torch.Tensor, g_mm: torch.Tensor, g_uni: torch.Tensor, k_mm: float, k_uni: float,
                    gamma: float) -> torch.Tensor:
    """MMPareto's new gradient of one parameter tensor (`summed` = its gradient of L_mm + L_a + L_v)."""
    new = 2 * k_mm * g_mm + 2 * k_uni * g_uni
    new_norm = torch.norm(new)
    if new_norm == 0:  # the original divides by zero here (NaN); a zero combination stays zero
        return new * gamma
    diff = torch.norm(summed) / new_norm
    return diff * new * gamma if diff > 1 else new * gamma


class MMParetoClassifier(AVClassifier):
    """Concat late fusion + unimodal heads, encoder gradients combined by MMPareto in `on_after_backward`."""

    def __init__(self, gamma: float = 1.5, **kwargs: Any):
        if kwargs.pop("unimodal_heads", True) is not True:
            raise ValueError("mmpareto needs its unimodal heads (unimodal_heads: true)")
        super().__init__(unimodal_heads=True, **kwargs)
        self.gamma = gamma
        self._pending: list[tuple[list[torch.nn.Parameter], list[torch.Tensor], list[torch.Tensor], float,
                                  float]] = []

    def training_losses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        za, zv = self.features(batch)
        outputs = self.heads(za, zv)
        target = batch[TARGET]
        audio_key, visual_key = self.modalities
        l_mm = F.cross_entropy(outputs["fused"], target)
        l_a = F.cross_entropy(outputs[f"{audio_key}_aux"], target)
        l_v = F.cross_entropy(outputs[f"{visual_key}_aux"], target)
        enc_a = [p for p in self.net.audio_encoder.parameters() if p.requires_grad]
        enc_v = [p for p in self.net.visual_encoder.parameters() if p.requires_grad]
        g_mm = _grads(l_mm, enc_a + enc_v)
        g_a, g_v = _grads(l_a, enc_a), _grads(l_v, enc_v)
        self._pending = []
        logs = {}
        for name, params, gm, gu in (("audio", enc_a, g_mm[:len(enc_a)], g_a),
                                     ("frames", enc_v, g_mm[len(enc_a):], g_v)):
            k_mm, k_uni, cos = pareto_weights(gm, gu)
            self._pending.append((params, gm, gu, k_mm, k_uni))
            logs[f"cos_{name}"] = torch.tensor(cos)
            logs[f"k_mm_{name}"] = torch.tensor(k_mm)
        loss = l_mm + l_a + l_v
        logs.update(loss_mm=l_mm.detach(), loss_audio=l_a.detach(), loss_frames=l_v.detach())
        return {"loss": loss, **logs}, outputs

    def on_after_backward(self) -> None:
        for params, g_mm, g_uni, k_mm, k_uni in self._pending:
            for param, gm, gu in zip(params, g_mm, g_uni):
                if param.grad is not None:
                    param.grad = pareto_gradient(param.grad, gm, gu, k_mm, k_uni, self.gamma)
        self._pending = []

    def evaluation_outputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The row's heads plus MMPareto's own unimodal heads (logged as `<stage>/acc_<modality>_aux`)."""
        return self.heads(*self.features(batch))


def _grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    """d loss / d params (zeros for a parameter the loss does not reach), keeping the graph."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
