"""CFI losses: fusion (intensity + Laplacian-gradient max), gate-weighted invariance, modality necessity."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NECESSITY_MODES = ("code", "hinge")

_LAPLACIAN_8 = torch.tensor([[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]], device="cpu")


def laplacian_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|8-neighbour Laplacian| per channel, zero padding (as in the authors' code)."""
    c = x.shape[1]
    kernel = _LAPLACIAN_8.to(x).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    return F.conv2d(x, kernel, padding=1, groups=c).abs()


def fusion_loss(fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> dict[str, torch.Tensor]:
    """L_fus = L1(F, A) + L1(F, B) + L1(|Lap F|, max(|Lap A|, |Lap B|))."""
    l_int = F.l1_loss(fused, y1) + F.l1_loss(fused, y2)
    l_grad = F.l1_loss(laplacian_magnitude(fused), torch.maximum(laplacian_magnitude(y1), laplacian_magnitude(y2)))
    return {"loss_fus": l_int + l_grad, "loss_int": l_int, "loss_grad": l_grad}


def binary_entropy(g: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Element-wise binary entropy (nats) of a gate in [0, 1]."""
    p = g.clamp(eps, 1 - eps)
    return -(p * p.log() + (1 - p) * (1 - p).log())


def invariance_loss(y_base: torch.Tensor, y_do: list[torch.Tensor], g_do: list[torch.Tensor], eta: float = 0.3,
                    w_entropy: float = 1.0) -> torch.Tensor:
    """Mean over interventions of  mean(|y_do - y_base| * g) + mean_b |mean_hw(g) - eta| - w_entropy * mean(H(g)).

    g is the (level-averaged) gate of the intervened pass: where the gate routes through the cross-modal
    path, the output must not move under the intervention; the area term keeps the gate's mean near `eta`
    (so it cannot simply close), and the entropy term (authors' sign: subtracted, i.e. soft gates favoured;
    `w_entropy < 0` favours crisp gates instead).
    """
    if len(y_do) != len(g_do) or not y_do:
        raise ValueError("invariance_loss needs one gate per intervened output (and at least one)")
    total = y_base.new_zeros(())
    for y, g in zip(y_do, g_do):
        consistency = ((y - y_base).abs() * g).mean()
        area = (g.mean(dim=(2, 3)) - eta).abs().mean()
        total = total + consistency + area - w_entropy * binary_entropy(g).mean()
    return total / len(y_do)


def necessity_loss(y: torch.Tensor, y_drop1: torch.Tensor, y_drop2: torch.Tensor, mode: str = "code",
                   margin: float = 0.1) -> torch.Tensor:
    """Modality necessity from the passes with modality 1 (resp. 2) zeroed.

    - "code" (default; the authors' Train.py, what produced the published numbers): L1(y, y_drop1) +
      L1(y, y_drop2), minimised, i.e. the output is pulled *towards* the single-modality outputs (robustness to a
      missing modality rather than necessity).
    - "hinge" (our ablation, a reading of the abstract's "irreplaceable contribution of each modality"; in neither
      the abstract nor the code): sum_m relu(margin - L1(y, y_drop_m)), zero once removing either modality changes
      the output by at least `margin` (mean absolute), pushing the outputs apart when the network ignores a
      modality.
    """
    d1, d2 = F.l1_loss(y, y_drop1), F.l1_loss(y, y_drop2)
    if mode == "code":
        return d1 + d2
    if mode == "hinge":
        return F.relu(margin - d1) + F.relu(margin - d2)
    raise ValueError(f"unknown necessity mode {mode!r}; valid: {', '.join(NECESSITY_MODES)}")


class CFILoss(nn.Module):
    """total = w_fus * L_fus(base) + w_inv * L_inv + w_nec * L_nec (authors' weights 1, 0.1, 0.05)."""

    def __init__(self, w_fus: float = 1.0, w_inv: float = 0.1, w_nec: float = 0.05, necessity: str = "code",
                 nec_margin: float = 0.1, eta: float = 0.3, w_entropy: float = 1.0):
        super().__init__()
        if necessity not in NECESSITY_MODES:
            raise ValueError(f"unknown necessity mode {necessity!r}; valid: {', '.join(NECESSITY_MODES)}")
        self.w_fus, self.w_inv, self.w_nec = w_fus, w_inv, w_nec
        self.necessity, self.nec_margin = necessity, nec_margin
        self.eta, self.w_entropy = eta, w_entropy

    def forward(self, fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor, y_do: list[torch.Tensor],
                g_do: list[torch.Tensor], y_drop1: torch.Tensor, y_drop2: torch.Tensor) -> dict[str, torch.Tensor]:
        out = fusion_loss(fused, y1, y2)
        out["loss_inv"] = invariance_loss(fused, y_do, g_do, self.eta, self.w_entropy)
        out["loss_nec"] = necessity_loss(fused, y_drop1, y_drop2, self.necessity, self.nec_margin)
        out["loss"] = self.w_fus * out["loss_fus"] + self.w_inv * out["loss_inv"] + self.w_nec * out["loss_nec"]
        return out
