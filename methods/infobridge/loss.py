"""InfoBridge's conditional NCE objective (paper Eq. 1 = Eq. 7) and its diagnostics (spec section 2)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

NEG_WEIGHTS = ("ratio", "one")


def conditional_nce(pos: torch.Tensor, negs: Sequence[torch.Tensor], valid: torch.Tensor, neg_weight: str = "ratio",
                    n_pos: int = 1) -> torch.Tensor:
    """L_NCE = mean_i [log h(pos_i) + w * mean_j log(1 - h(neg_ij))], h = sigmoid, to be *maximised*.

    pos: B critic logits of the positive pairs; negs: one B x N tensor of negative-pair logits per side (z_v
    replaced, z_a replaced), averaged over the sides; valid: B, False where an anchor has no negatives (it keeps its
    positive term only). w = N0 / N1 (`ratio`: the negatives' sum when N1 = 1, Eq. 1's weight) or 1 (`one`: positive
    and negative terms weigh the same). Stable form: log h = logsigmoid(s), log(1 - h) = logsigmoid(-s).
    """
    if neg_weight not in NEG_WEIGHTS:
        raise ValueError(f"unknown neg_weight {neg_weight!r}; valid: {', '.join(NEG_WEIGHTS)}")
    neg_term = torch.zeros_like(pos)
    for neg in negs:
        weight = neg.shape[1] / n_pos if neg_weight == "ratio" else 1.0
        neg_term = neg_term + weight * F.logsigmoid(-neg).mean(1) / len(negs)
    return (F.logsigmoid(pos) + torch.where(valid, neg_term, torch.zeros_like(neg_term))).mean()


def mi_bounds(pos: torch.Tensor, nce: torch.Tensor, n_neg: int, n_pos: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(mi_bound, mi_bound_paper): log(N0/N1) + mean log h(pos) (Eq. 4's tight form) and log(N1/N0) + L_NCE
    (Eq. 8 as printed, always < 0). Diagnostics only: the "protective margin" log(N1/N0) is a constant."""
    margin = math.log(n_neg / n_pos)
    return margin + F.logsigmoid(pos).mean(), -margin + nce
