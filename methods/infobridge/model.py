"""InfoBridge's pieces besides the shared encoders/head: the critic h, the condition T, the memory buffer and the
negative sampler (pure nn.Modules / tensor code, no Lightning). The paper describes none of them; every choice here
is ours and listed in the README (spec ../shared/specs/infobridge.md, sections 1.3-1.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fusion_bench.base.precision import upcast

CRITICS = ("mlp", "bilinear")
NEGATIVES = ("same_class", "any", "other_class")


# -- critic ------------------------------------------------------------------------------------------------
class MLPCritic(nn.Module):
    """s(z_a, z_v, T) = MLP([LN(z_a); LN(z_v); E[T]]), MLP = Linear(D_a + D_v + E -> H) - ReLU - Linear(H -> 1).

    The first linear layer is stored as three blocks (one per input part), which is the same function as one layer
    on the concatenation but lets a pair's score reuse each vector's projection. Inputs broadcast over leading
    dimensions (e.g. anchors B x 1 x D against negatives B x N x D); returns the logits (h = sigmoid(s)).
    """

    def __init__(self, dim_a: int, dim_v: int, num_conditions: int, hidden: int = 512, cond_dim: int = 64):
        super().__init__()
        self.norm_a, self.norm_v = nn.LayerNorm(dim_a), nn.LayerNorm(dim_v)
        self.embed = nn.Embedding(num_conditions, cond_dim)
        self.proj_a = nn.Linear(dim_a, hidden)
        self.proj_v = nn.Linear(dim_v, hidden, bias=False)
        self.proj_t = nn.Linear(cond_dim, hidden, bias=False)
        self.out = nn.Linear(hidden, 1)

    def forward(self, za: torch.Tensor, zv: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        hidden = self.proj_a(self.norm_a(za)) + self.proj_v(self.norm_v(zv)) + self.proj_t(self.embed(cond))
        return self.out(F.relu(hidden)).squeeze(-1)


class BilinearCritic(nn.Module):
    """Separable critic s = (U_a LN(z_a))^T diag(1 + E_b[T]) (U_v LN(z_v)) + c_T (rank `rank`)."""

    def __init__(self, dim_a: int, dim_v: int, num_conditions: int, rank: int = 128):
        super().__init__()
        self.norm_a, self.norm_v = nn.LayerNorm(dim_a), nn.LayerNorm(dim_v)
        self.proj_a = nn.Linear(dim_a, rank, bias=False)
        self.proj_v = nn.Linear(dim_v, rank, bias=False)
        self.scale = nn.Embedding(num_conditions, rank)
        self.bias = nn.Embedding(num_conditions, 1)
        nn.init.zeros_(self.scale.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, za: torch.Tensor, zv: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        a, v = self.proj_a(self.norm_a(za)), self.proj_v(self.norm_v(zv))
        return (a * (1 + self.scale(cond)) * v).sum(-1) + self.bias(cond).squeeze(-1)


def build_critic(kind: str, dim_a: int, dim_v: int, num_conditions: int, hidden: int, cond_dim: int,
                 rank: int) -> nn.Module:
    if kind == "mlp":
        return MLPCritic(dim_a, dim_v, num_conditions, hidden, cond_dim)
    if kind == "bilinear":
        return BilinearCritic(dim_a, dim_v, num_conditions, rank)
    raise ValueError(f"unknown critic {kind!r}; valid critics: {', '.join(CRITICS)}")


# -- condition T -------------------------------------------------------------------------------------------
def spherical_kmeans(x: torch.Tensor, k: int, generator: torch.Generator, iters: int = 20) -> torch.Tensor:
    """k unit-norm centroids of the rows of `x` (normalised first): k distinct random rows as the start, then
    `iters` rounds of cosine assignment and re-normalised means (an empty cluster keeps its centroid)."""
    x = F.normalize(upcast(x), dim=1)
    if len(x) < k:
        raise ValueError(f"spherical k-means needs at least k={k} points, got {len(x)}")
    centroids = x[torch.randperm(len(x), generator=generator)[:k].to(x.device)].clone()
    for _ in range(iters):
        assign = (x @ centroids.t()).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        filled = torch.bincount(assign, minlength=k) > 0
        centroids[filled] = F.normalize(sums[filled], dim=1)
    return centroids


class ConditionAssigner(nn.Module):
    """T for each (z_a, z_v, y): `class` (the label), `constant` (0), `cluster:K` (nearest of K spherical k-means
    centroids of normalize([z_a; z_v]), refitted on the memory buffer every epoch) or `retrieval:L` (the L-quantile
    level of cos(LN(z_a), LN(z_v)), thresholds refitted on the buffer). Before the first refit every sample gets 0.
    """

    def __init__(self, condition: str, num_classes: int):
        super().__init__()
        kind, _, arg = condition.partition(":")
        if kind == "label":
            kind = "class"
        if kind not in ("class", "constant", "cluster", "retrieval") or (arg and not arg.isdigit()):
            raise ValueError(f"unknown condition {condition!r}; valid: class, constant, cluster[:K], retrieval[:L]")
        self.kind = kind
        self.levels = int(arg) if arg else {"cluster": 5, "retrieval": 3}.get(kind, 0)
        if kind in ("cluster", "retrieval") and self.levels < 2:
            raise ValueError(f"condition {condition!r} needs at least 2 clusters/levels")
        self.num_conditions = {"class": num_classes, "constant": 1}.get(kind, self.levels)
        self.register_buffer("centroids", torch.zeros(0), persistent=False)  # cluster: K x (D_a + D_v)
        self.register_buffer("thresholds", torch.zeros(0), persistent=False)  # retrieval: L - 1 cut points

    @staticmethod
    def _joint(za: torch.Tensor, zv: torch.Tensor) -> torch.Tensor:
        return F.normalize(upcast(torch.cat([za, zv], dim=1)), dim=1)

    @staticmethod
    def _similarity(za: torch.Tensor, zv: torch.Tensor) -> torch.Tensor:
        if za.shape[1] != zv.shape[1]:
            raise ValueError("condition retrieval needs audio and visual features of the same size")
        return F.cosine_similarity(F.layer_norm(upcast(za), za.shape[1:]), F.layer_norm(upcast(zv), zv.shape[1:]))

    @property
    def refits(self) -> bool:
        return self.kind in ("cluster", "retrieval")

    def refit(self, za: torch.Tensor, zv: torch.Tensor, generator: torch.Generator, iters: int = 20) -> bool:
        """Refit the clusters/thresholds on stored features; False when there are too few of them."""
        if not self.refits or len(za) < self.levels:
            return False
        if self.kind == "cluster":
            self.centroids = spherical_kmeans(self._joint(za, zv), self.levels, generator, iters)
        else:
            q = torch.arange(1, self.levels, dtype=torch.float32, device=za.device) / self.levels
            self.thresholds = torch.quantile(self._similarity(za, zv), q)
        return True

    @torch.no_grad()
    def forward(self, za: torch.Tensor, zv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.kind == "class":
            return labels.long()
        zero = torch.zeros(len(labels), dtype=torch.long, device=labels.device)
        if self.kind == "constant":
            return zero
        if self.kind == "cluster":
            return zero if self.centroids.numel() == 0 else (self._joint(za, zv) @ self.centroids.t()).argmax(1)
        if self.thresholds.numel() == 0:
            return zero
        return torch.bucketize(self._similarity(za, zv), self.thresholds)


# -- memory buffer and negatives ---------------------------------------------------------------------------
class MemoryBuffer:
    """FIFO of the last `capacity` samples' detached (z_a, z_v, label, sample id)."""

    def __init__(self, capacity: int):
        if capacity < 0:
            raise ValueError(f"buffer_size must be >= 0, got {capacity}")
        self.capacity = capacity
        self.za: torch.Tensor | None = None
        self.zv: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.ids is None else len(self.ids)

    def push(self, za: torch.Tensor, zv: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> None:
        if self.capacity == 0:
            return
        new = (za.detach(), zv.detach(), labels.detach().long(), ids.detach().long())
        if self.ids is None:
            stored = new
        else:
            stored = tuple(torch.cat([old, n]) for old, n in zip((self.za, self.zv, self.labels, self.ids), new))
        self.za, self.zv, self.labels, self.ids = (t[-self.capacity:] for t in stored)

    def contents(self, like_a: torch.Tensor, like_v: torch.Tensor,
                 like_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_a, z_v, labels, ids); empty tensors shaped like the given batch tensors when the buffer is empty."""
        if self.ids is None:
            return like_a[:0].detach(), like_v[:0].detach(), like_ids[:0], like_ids[:0]
        return self.za, self.zv, self.labels, self.ids


@dataclass
class Negatives:
    """Drawn negatives: `index` B x N into the pool (batch first, then buffer), `valid` B (the anchor has
    candidates; an invalid row's indices are 0 and carry no weight), `candidates` B (how many there were)."""

    index: torch.Tensor
    valid: torch.Tensor
    candidates: torch.Tensor


def candidate_mask(cond: torch.Tensor, pool_cond: torch.Tensor, ids: torch.Tensor, pool_ids: torch.Tensor,
                   rule: str) -> torch.Tensor:
    """B x P: pool entries that may serve as negatives of each anchor (never the anchor's own sample id)."""
    if rule not in NEGATIVES:
        raise ValueError(f"unknown negatives rule {rule!r}; valid: {', '.join(NEGATIVES)}")
    same = pool_cond[None, :] == cond[:, None]
    mask = same if rule == "same_class" else ~same if rule == "other_class" else torch.ones_like(same)
    return mask & (pool_ids[None, :] != ids[:, None])


def sample_negatives(mask: torch.Tensor, n_neg: int, generator: torch.Generator) -> Negatives:
    """`n_neg` candidates per row of `mask`: without replacement when there are enough, with replacement when
    there are fewer, none (row invalid) when there are none. Drawn on the CPU from `generator` (deterministic)."""
    mask = mask.cpu()
    counts = mask.sum(1)
    index = torch.zeros(mask.shape[0], n_neg, dtype=torch.long)
    for rows, replacement in ((counts >= n_neg, False), ((counts > 0) & (counts < n_neg), True)):
        if rows.any():
            index[rows] = torch.multinomial(mask[rows].float(), n_neg, replacement=replacement, generator=generator)
    return Negatives(index, counts > 0, counts)
