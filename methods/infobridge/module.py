"""InfoBridge (Li et al., ICCV 2025): concat late fusion + a conditional NCE regulariser with a learned critic.

Objective (paper Eq. 10 and Algorithm 1, as one simultaneous update; spec section 2.2):
    encoders and head minimise CE - alpha * L_NCE(h),   the critic h maximises L_NCE(h),
written as one loss  CE - alpha * L_NCE(frozen critic; live features) - L_NCE(critic; detached features),  so the
critic's gradient comes only from the second term and the encoders' only from the first two. Negatives: N0 per
anchor from the batch and a FIFO memory buffer, sharing the anchor's condition T (the label by default).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call

from fusion_bench.methods.av_balance.module import AVClassifier
from fusion_bench.methods.infobridge.loss import NEG_WEIGHTS, conditional_nce, mi_bounds
from fusion_bench.methods.infobridge.model import (
    NEGATIVES,
    ConditionAssigner,
    MemoryBuffer,
    Negatives,
    build_critic,
    candidate_mask,
    sample_negatives,
)
from fusion_bench.types import NAME, TARGET

NEG_SIDES = ("both", "visual")


class InfoBridgeClassifier(AVClassifier):
    """The shared AV recipe trained with CE - alpha * conditional NCE (see module doc)."""

    def __init__(self, alpha: float = 0.1, n_neg: int = 5, n_pos: int = 1, neg_weight: str = "ratio",
                 condition: str = "class", negatives: str = "same_class", neg_side: str = "both",
                 buffer_size: int = 1024, critic: str = "mlp", critic_hidden: int = 512, cond_dim: int = 64,
                 critic_rank: int = 128, critic_lr_mult: float = 1.0, sampler_seed: int | None = None,
                 kmeans_iters: int = 20, **kwargs: Any):
        super().__init__(**kwargs)  # encoders and head first: same initial weights as late fusion for one seed
        for name, value, valid in (("neg_weight", neg_weight, NEG_WEIGHTS), ("negatives", negatives, NEGATIVES),
                                   ("neg_side", neg_side, NEG_SIDES)):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if n_neg < 1 or n_pos != 1:
            raise ValueError(f"need n_neg >= 1 and n_pos = 1 (one positive per anchor), got {n_neg}, {n_pos}")
        self.alpha = alpha
        self.n_neg = n_neg
        self.n_pos = n_pos
        self.neg_weight = neg_weight
        self.negatives = negatives
        self.neg_side = neg_side
        self.critic_lr_mult = critic_lr_mult
        self.kmeans_iters = kmeans_iters
        self.conditions = ConditionAssigner(condition, self.num_classes)
        d = self.net.feature_dim
        self.critic = build_critic(critic, d, d, self.conditions.num_conditions, critic_hidden, cond_dim, critic_rank)
        self.buffer = MemoryBuffer(buffer_size)
        self.generator = torch.Generator().manual_seed(torch.initial_seed() if sampler_seed is None else sampler_seed)
        self._sample_ids: dict[str, int] = {}

    # -- pieces ------------------------------------------------------------------------------------------
    def sample_ids(self, names: list[str]) -> torch.Tensor:
        """A stable integer per sample name (the buffer never offers an anchor's own stale copy)."""
        return torch.tensor([self._sample_ids.setdefault(n, len(self._sample_ids)) for n in names],
                            dtype=torch.long, device=self.device)

    def draw_negatives(self, za: torch.Tensor, zv: torch.Tensor, target: torch.Tensor, ids: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Negatives]:
        """(condition of each anchor, audio pool, visual pool, negatives): pools = batch (live) then buffer."""
        buf_a, buf_v, buf_y, buf_ids = self.buffer.contents(za, zv, ids)
        cond = self.conditions(za.detach(), zv.detach(), target)
        pool_cond = torch.cat([cond, self.conditions(buf_a, buf_v, buf_y)])
        mask = candidate_mask(cond, pool_cond, ids, torch.cat([ids, buf_ids]), self.negatives)
        negatives = sample_negatives(mask, self.n_neg, self.generator)
        return cond, torch.cat([za, buf_a]), torch.cat([zv, buf_v]), negatives

    def nce(self, critic: Any, za: torch.Tensor, zv: torch.Tensor, pool_a: torch.Tensor, pool_v: torch.Tensor,
            cond: torch.Tensor, negatives: Negatives) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_NCE of `critic` (a callable (z_a, z_v, T) -> logits) and its statistics."""
        index = negatives.index.to(za.device)
        valid = negatives.valid.to(za.device)
        pos = critic(za, zv, cond)
        neg_cond = cond[:, None].expand_as(index)
        negs = [critic(za[:, None], pool_v[index], neg_cond)]  # (z_a_i, z_v_j): the visual side replaced
        if self.neg_side == "both":
            negs.append(critic(pool_a[index], zv[:, None], neg_cond))  # (z_a_j, z_v_i)
        value = conditional_nce(pos, negs, valid, self.neg_weight, self.n_pos)
        with torch.no_grad():
            neg_logits = torch.cat(negs, 1)[valid]
            stats = {"critic_acc_pos": (pos > 0).float().mean(),
                     "critic_acc_neg": (neg_logits < 0).float().mean() if neg_logits.numel() else torch.tensor(0.0)}
            stats["mi_bound"], stats["mi_bound_paper"] = mi_bounds(pos, value, self.n_neg, self.n_pos)
        return value, stats

    def frozen_critic(self, za: torch.Tensor, zv: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The critic with detached parameters: its gradient reaches the features only."""
        params = {k: v.detach() for k, v in self.critic.named_parameters()}
        return functional_call(self.critic, params, (za, zv, cond))

    # -- training ----------------------------------------------------------------------------------------
    def objective_terms(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Live terms {ce, nce_enc (frozen critic, live features), nce_critic (live critic, detached features),
        anchors_without_neg, critic statistics} and the heads' logits; pushes the batch into the buffer after the
        negatives were drawn (a step never sees itself). With alpha = 0, nce_enc is not built (a detached copy of
        nce_critic): the encoders and head then train on CE alone, exactly late fusion."""
        za, zv = self.features(batch)
        outputs = self.heads(za, zv)
        target = batch[TARGET]
        ids = self.sample_ids(list(batch[NAME]))
        ce = F.cross_entropy(outputs["fused"], target)
        cond, pool_a, pool_v, negatives = self.draw_negatives(za, zv, target, ids)
        nce_critic, stats = self.nce(self.critic, za.detach(), zv.detach(), pool_a.detach(), pool_v.detach(), cond,
                                     negatives)
        if self.alpha != 0:
            nce_enc, _ = self.nce(self.frozen_critic, za, zv, pool_a, pool_v, cond, negatives)
        else:
            nce_enc = nce_critic.detach()
        self.buffer.push(za, zv, target, ids)
        terms = {"ce": ce, "nce_enc": nce_enc, "nce_critic": nce_critic,
                 "anchors_without_neg": (~negatives.valid).sum().float(), **stats}
        return terms, outputs

    def training_losses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        terms, outputs = self.objective_terms(batch)
        loss = terms["ce"] - self.alpha * terms["nce_enc"] - terms["nce_critic"]
        logs = {("nce" if k == "nce_enc" else k): v.detach() for k, v in terms.items()}
        return {"loss": loss, **logs}, outputs

    def on_train_epoch_start(self) -> None:
        """Refit the cluster/retrieval conditions on the memory buffer (seeded; a no-op for class/constant)."""
        if self.conditions.refits and len(self.buffer):
            self.conditions.refit(self.buffer.za, self.buffer.zv, self.generator, self.kmeans_iters)

    def parameter_groups(self) -> list[dict[str, Any]]:
        critic = list(self.critic.parameters())
        ids = {id(p) for p in critic}
        return [{"params": [p for p in self.parameters() if id(p) not in ids]},
                {"params": critic, "lr": self.lr * self.critic_lr_mult}]
