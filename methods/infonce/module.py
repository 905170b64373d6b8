"""InfoNCE baseline (van den Oord et al., CPC 2018, as InfoBridge's Table 1 row): concat late fusion + the softmax
contrastive (InfoNCE) loss between the two modalities' in-batch pairs, no condition.

loss = CE + alpha * L_InfoNCE,  L_InfoNCE = 1/2 [CE(S, I) + CE(S^T, I)],  S_ij = <g_a(z_a_i), g_v(z_v_j)> / tau,
g_u = normalize(Linear(LN(z_u))) (a separable critic; positives on the diagonal, the other B - 1 samples of the
batch as negatives).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusion_bench.methods.av_balance.module import AVClassifier
from fusion_bench.types import TARGET


class ProjectionCritic(nn.Module):
    """g_u(z) = normalize(W_u LN(z)) for each modality; scores are cosine similarities."""

    def __init__(self, dim_a: int, dim_v: int, proj_dim: int = 128):
        super().__init__()
        self.audio = nn.Sequential(nn.LayerNorm(dim_a), nn.Linear(dim_a, proj_dim))
        self.visual = nn.Sequential(nn.LayerNorm(dim_v), nn.Linear(dim_v, proj_dim))

    def forward(self, za: torch.Tensor, zv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(self.audio(za), dim=-1), F.normalize(self.visual(zv), dim=-1)


def info_nce(ga: torch.Tensor, gv: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE over in-batch pairs of unit vectors (B x P each); row i's positive is column i."""
    logits = ga @ gv.t() / temperature
    labels = torch.arange(len(ga), device=ga.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


class InfoNCEClassifier(AVClassifier):
    """The shared AV recipe trained with CE + alpha * InfoNCE (alpha 0.1, tau 0.1, as InfoBridge's alpha)."""

    def __init__(self, alpha: float = 0.1, temperature: float = 0.1, proj_dim: int = 128, **kwargs: Any):
        super().__init__(**kwargs)
        self.alpha = alpha
        self.temperature = temperature
        d = self.net.feature_dim
        self.critic = ProjectionCritic(d, d, proj_dim)

    def training_losses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        za, zv = self.features(batch)
        outputs = self.heads(za, zv)
        ce = F.cross_entropy(outputs["fused"], batch[TARGET])
        nce = info_nce(*self.critic(za, zv), self.temperature)
        return {"loss": ce + self.alpha * nce, "ce": ce.detach(), "infonce": nce.detach()}, outputs
