"""CMD-CTA losses (paper Eq. 4, 7, 9-15) and the two stateful pieces: the task prototypes (Eq. 5-6, Algorithm 1)
and the data-driven granularity weights (after Eq. 15).

All "means" are over the elements named; every choice the paper leaves open is marked "ours" here and listed in
methods/cmd_cta/README.md.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusion_bench.base.losses import gradient_loss, intensity_loss
from fusion_bench.base.precision import upcast

LEVELS = ("pixel", "block", "global")
PROTO_NOISES = ("paper", "per_dim", "none")
GRANULARITY_EMAS = ("weights", "mi")


# ---------------------------------------------------------------- fusion (Eq. 12-14)


class FusionLoss(nn.Module):
    """w_int * mean|Y - max(y1, y2)| + w_grad * mean| |grad Y| - max(|grad y1|, |grad y2|) | (Sobel magnitude,
    replicate padding). Eq. 13-14 are L1 norms (sums); means are ours (the unknown lambdas absorb the scale)."""

    def __init__(self, w_int: float = 1.0, w_grad: float = 10.0):
        super().__init__()
        self.w_int, self.w_grad = w_int, w_grad

    def forward(self, fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> dict[str, torch.Tensor]:
        l_int = intensity_loss(fused, y1, y2)
        l_grad = gradient_loss(fused, y1, y2, padding="replicate")
        return {"loss_fusion": self.w_int * l_int + self.w_grad * l_grad, "loss_int": l_int, "loss_grad": l_grad}


# ---------------------------------------------------------------- orthogonality (Eq. 4)


def _channel_normalise(f: torch.Tensor) -> torch.Tensor:
    """B x L x d: each channel scaled to unit L2 norm over the tokens (F^T F then holds cosines in [-1, 1])."""
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-6)


def cross_correlations(features: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean squared cosine between the channels of F_c/F_m, F_c/F_t, F_m/F_t (channels normalised over tokens):
    ||Fhat_i^T Fhat_j||_F^2 / d^2 averaged over the batch, detached (for logging)."""
    with torch.no_grad():
        c, m, t = (_channel_normalise(upcast(f)) for f in features)
        d = c.shape[-1]
        return {name: ((a.transpose(1, 2) @ b) ** 2).sum((1, 2)).mean() / d**2
                for name, (a, b) in (("xcorr_cm", (c, m)), ("xcorr_ct", (c, t)), ("xcorr_mt", (m, t)))}


def orthogonality_loss(features: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                       bases: tuple[torch.Tensor, torch.Tensor, torch.Tensor], lambda_reg: float = 0.01,
                       normalize: bool = True) -> torch.Tensor:
    """Eq. 4 per modality: sum over ordered pairs i != j of ||F_i^T F_j||_F^2 (mean over images), summed over the
    modalities, + lambda_reg * sum_i ||Q_i^T Q_i - I||_F^2.

    normalize (ours, default): channels normalised over the tokens first and the d x d squared cosines averaged
    instead of summed, so each pair term lies in [0, 1] (at most 12 in all); the literal raw form
    (`normalize=False`) grows like d^2 L and swamps the fusion loss (see README)."""
    total = features[0][0].new_zeros((), dtype=upcast(features[0][0]).dtype)
    for triple in features:
        feats = [upcast(f) for f in triple]
        if normalize:
            feats = [_channel_normalise(f) for f in feats]
        scale = 1.0 / feats[0].shape[-1] ** 2 if normalize else 1.0
        for i in range(3):
            for j in range(i + 1, 3):  # each unordered pair counts twice (ordered pairs, as Eq. 4)
                total = total + 2 * scale * ((feats[i].transpose(1, 2) @ feats[j]) ** 2).sum((1, 2)).mean()
    reg = sum(((q.T @ q - torch.eye(q.shape[1], device=q.device, dtype=q.dtype)) ** 2).sum() for q in bases)
    return total + lambda_reg * reg


# ---------------------------------------------------------------- task alignment (Eq. 7)


def alignment_loss(task_embedding: torch.Tensor, tasks: torch.Tensor, prototypes: torch.Tensor,
                   kappa: float = 16.0) -> torch.Tensor:
    """vMF contrastive alignment: -mean_i log softmax_j(kappa f_t,i . p_j)[k_i] (mean over the batch instead of
    Eq. 7's sum, ours). Prototypes are detached; with K = 1 the loss is exactly 0."""
    logits = kappa * upcast(task_embedding) @ upcast(prototypes.detach()).T
    return F.cross_entropy(logits, tasks.long())


# ---------------------------------------------------------------- contrastive levels (Eq. 8-11)


def symmetric_infonce(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE of Eq. 9 over the last-but-one axis: positives on the diagonal. z1, z2: (... x N x e),
    unit norm; the logits z1 z2^T / tau are float32. Returns the mean over the leading axes and positives."""
    logits = (upcast(z1) @ upcast(z2).transpose(-1, -2)) / tau
    target = torch.arange(logits.shape[-1], device=logits.device).expand(logits.shape[:-1])
    forward = F.cross_entropy(logits.flatten(0, -2), target.flatten())
    backward = F.cross_entropy(logits.transpose(-1, -2).flatten(0, -2), target.flatten())
    return (forward + backward) / 2


def sample_positions(length: int, samples: int | None, batch: int, generator: torch.Generator,
                     device: torch.device) -> torch.Tensor | None:
    """B x P token indices (the same positions in both modalities), P = samples; None = all positions."""
    if samples is None or samples >= length:
        return None
    idx = torch.stack([torch.randperm(length, generator=generator)[:samples] for _ in range(batch)])
    return idx.to(device)


def gather_positions(f: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """B x L x c -> B x P x c at the given token positions (None: unchanged)."""
    if positions is None:
        return f
    return f.gather(1, positions[..., None].expand(-1, -1, f.shape[-1]))


def pixel_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float, positions: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 9 per image (candidates: the positions of the same image), symmetric. z: B x L x e."""
    return symmetric_infonce(gather_positions(z1, positions), gather_positions(z2, positions), tau)


def block_loss(zb1: torch.Tensor, zb2: torch.Tensor, tau: float) -> torch.Tensor:
    """Block level: symmetric InfoNCE with every block of every image of the batch as a candidate (ours; the paper
    writes only the pooling, Eq. 10). zb: (B * blocks) x e."""
    return symmetric_infonce(zb1, zb2, tau)


def global_terms(g1: torch.Tensor, g2: torch.Tensor, tau: float,
                 symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The two parts of Eq. 11: the InfoNCE -mean_i log softmax_k(g1_i . g2_k / tau)[i] (one direction, as the
    paper; `symmetric` averages both directions) and the spectral term mean_i ||g1_i - g2_i||^2. g: B x e."""
    logits = (upcast(g1) @ upcast(g2).T) / tau
    target = torch.arange(len(logits), device=logits.device)
    nce = F.cross_entropy(logits, target)
    if symmetric:
        nce = (nce + F.cross_entropy(logits.T, target)) / 2
    return nce, ((upcast(g1) - upcast(g2)) ** 2).sum(-1).mean()


def global_loss(g1: torch.Tensor, g2: torch.Tensor, tau: float, lambda_spectral: float = 0.1,
                symmetric: bool = False) -> torch.Tensor:
    """Eq. 11: InfoNCE over the batch + lambda_spectral * mean_i ||g1_i - g2_i||^2 (see `global_terms`)."""
    nce, spectral = global_terms(g1, g2, tau, symmetric)
    return nce + lambda_spectral * spectral


class GranularityWeights(nn.Module):
    """w_g = softmax_g(Mhat_g / tau_w) with Mhat_g = log N_g - L_g (the InfoNCE bound of Eq. 8), smoothed by an
    EMA (decay 0.95, started from the first estimate). `ema="weights"` smooths the softmax output (Algorithm 1,
    line 9; default), `ema="mi"` smooths Mhat before the softmax (the paper's S1 note). `mode`: "paper" (the
    above), "uniform" (1/G each) or a list of fixed weights in LEVELS order. No gradient flows through w."""

    def __init__(self, levels: tuple[str, ...] | list[str] = LEVELS, tau_w: float = 0.07, decay: float = 0.95,
                 mode: str | list[float] = "paper", ema: str = "weights"):
        super().__init__()
        unknown = set(levels) - set(LEVELS)
        if unknown:
            raise ValueError(f"unknown contrastive levels {sorted(unknown)}; valid: {', '.join(LEVELS)}")
        if ema not in GRANULARITY_EMAS:
            raise ValueError(f"granularity_ema must be one of {GRANULARITY_EMAS}, got {ema!r}")
        if isinstance(mode, str) and mode not in ("paper", "uniform"):
            raise ValueError(f"granularity_weights must be 'paper', 'uniform' or a list of {len(LEVELS)} weights "
                             f"(pixel, block, global), got {mode!r}")
        if not isinstance(mode, str) and len(mode) != len(LEVELS):
            raise ValueError(f"fixed granularity_weights need {len(LEVELS)} values (pixel, block, global), "
                             f"got {mode!r}")
        self.levels = tuple(level for level in LEVELS if level in levels)
        self.tau_w, self.decay, self.mode, self.ema = tau_w, decay, mode, ema
        self.register_buffer("mi", torch.zeros(len(LEVELS)))
        self.register_buffer("weights", torch.zeros(len(LEVELS)))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    def _mask(self) -> torch.Tensor:
        return torch.tensor([level in self.levels for level in LEVELS], device=self.weights.device)

    def current(self) -> torch.Tensor:
        """The weights in LEVELS order (0 for levels that are off)."""
        mask = self._mask()
        if self.mode == "uniform":
            return mask.float() / max(int(mask.sum()), 1)
        if not isinstance(self.mode, str):
            return torch.tensor([float(v) for v in self.mode], device=mask.device) * mask
        if not bool(self.started):
            return mask.float() / max(int(mask.sum()), 1)
        return self.weights.clone()

    @torch.no_grad()
    def update(self, mhat: dict[str, torch.Tensor]) -> torch.Tensor:
        """Fold in one batch's bound estimates {level: Mhat_g}; returns the weights to use (LEVELS order)."""
        if self.mode != "paper" or not self.levels:
            return self.current()
        mask = self._mask()
        estimate = torch.stack([upcast(mhat[level].detach()) if level in mhat else self.mi.new_zeros(())
                                for level in LEVELS])

        def softmax(values: torch.Tensor) -> torch.Tensor:
            return torch.where(mask, values / self.tau_w, -math.inf).softmax(0)

        first = not bool(self.started)
        if self.ema == "mi":
            self.mi.copy_(torch.where(mask, estimate if first else self.decay * self.mi + (1 - self.decay) * estimate,
                                      0.0))
            self.weights.copy_(softmax(self.mi))
        else:
            self.mi.copy_(torch.where(mask, estimate, 0.0))
            new = softmax(estimate)
            self.weights.copy_(new if first else self.decay * self.weights + (1 - self.decay) * new)
        self.started.fill_(True)
        return self.weights.clone()


# ---------------------------------------------------------------- prototypes (Eq. 5-6, Algorithm 1)


def spherical_kmeans(x: torch.Tensor, k: int, iterations: int = 20,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means (cosine assignments, normalised means) with k-means++ seeding; returns (centroids k x d
    unit norm, labels). A cluster that empties keeps its previous centroid."""
    x = F.normalize(upcast(x), dim=-1)
    if len(x) < k:
        raise ValueError(f"k-means needs at least k = {k} points, got {len(x)}")
    first = int(torch.randint(len(x), (1,), generator=generator))
    centroids = [x[first]]
    for _ in range(1, k):
        dist = (1 - x @ torch.stack(centroids).T).clamp_min(0).min(dim=1).values
        probs = dist / dist.sum() if float(dist.sum()) > 0 else torch.full_like(dist, 1 / len(dist))
        centroids.append(x[int(torch.multinomial(probs.cpu(), 1, generator=generator))])
    c = torch.stack(centroids)
    labels = (x @ c.T).argmax(1)
    for _ in range(iterations):
        labels = (x @ c.T).argmax(1)
        for j in range(k):
            members = x[labels == j]
            if len(members):
                c[j] = F.normalize(members.mean(0), dim=0)
    return c, (x @ c.T).argmax(1)


class TaskPrototypes(nn.Module):
    """K unit prototypes p_k (buffers in the state dict; updated, not gradient-trained) and their evolution.

    Warm-up (`observe`): f_t is collected per task without alignment; `initialise` then sets p_k = normalised
    mean of task k (one-means per task, the paper's "k-means centroids after one warm-up epoch per task"), or, for
    pseudo-tasks (`kmeans=True`), spherical k-means with K clusters on all collected f_t.
    Update (`update`, Eq. 6 + Algorithm 1 line 7, after the warm-up): for each task k in the batch, hard positives
    H_k = {i in P_k : cos(f_i, p_k) < cos_hard} (all of P_k when empty; ours), fbar = mean f over H_k,
    p_k <- normalize(momentum p_k + (1 - momentum) fbar + sigma xi), sigma = sqrt(2 eta / beta), xi ~ N(0, I)
    from the caller's generator (noise "paper"; "per_dim" scales xi by 1/sqrt(d_p); "none" drops it). Then one
    gradient step of the repulsion lambda_p sum_{j != k} (p_k . p_j)^2 of Eq. 5 that Eq. 6 leaves out (ours):
    p_k <- normalize(p_k - eta lambda_p 2 sum_{j != k} (p_k . p_j) p_j)."""

    def __init__(self, num_tasks: int, dim: int, momentum: float = 0.97, eta: float = 0.05, beta: float = 10.0,
                 repulsion: float = 0.01, cos_hard: float = 0.8, noise: str = "paper", kmeans: bool = False,
                 max_warmup_points: int = 8192):
        super().__init__()
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        if noise not in PROTO_NOISES:
            raise ValueError(f"proto_noise must be one of {PROTO_NOISES}, got {noise!r}")
        self.momentum, self.eta, self.beta, self.repulsion = momentum, eta, beta, repulsion
        self.cos_hard, self.noise, self.kmeans = cos_hard, noise, kmeans
        self.max_warmup_points = max_warmup_points
        self.register_buffer("prototypes", torch.zeros(num_tasks, dim))
        self.register_buffer("ready", torch.zeros(num_tasks, dtype=torch.bool))
        self._sums = torch.zeros(num_tasks, dim)
        self._counts = torch.zeros(num_tasks)
        self._points: list[torch.Tensor] = []
        self._register_load_state_dict_pre_hook(self._resize_on_load)

    def _resize_on_load(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Weights trained with another number of tasks (e.g. a mixture) load into this module as they are."""
        for name in ("prototypes", "ready"):
            key = prefix + name
            if key in state_dict and state_dict[key].shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(state_dict[key], device=getattr(self, name).device))

    @property
    def num_tasks(self) -> int:
        return self.prototypes.shape[0]

    @property
    def sigma(self) -> float:
        return math.sqrt(2 * self.eta / self.beta)

    @property
    def initialised(self) -> bool:
        return bool(self.ready.any())

    @torch.no_grad()
    def observe(self, f: torch.Tensor, tasks: torch.Tensor) -> None:
        """Warm-up: accumulate f_t per task (and the points themselves for pseudo-task k-means)."""
        f, tasks = f.detach().to(self.prototypes.dtype).cpu(), tasks.detach().long().cpu()
        if self._sums.dtype != f.dtype:  # the accumulators follow the module's dtype (e.g. float64 training)
            self._sums, self._counts = self._sums.to(f.dtype), self._counts.to(f.dtype)
        self._sums.index_add_(0, tasks, f)
        self._counts.index_add_(0, tasks, torch.ones(len(tasks), dtype=self._counts.dtype))
        if self.kmeans and sum(len(p) for p in self._points) < self.max_warmup_points:
            self._points.append(f)

    @torch.no_grad()
    def initialise(self, generator: torch.Generator | None = None) -> None:
        """End of warm-up: p_k from the collected f_t (tasks never seen stay uninitialised until they appear)."""
        if self.kmeans:
            points = torch.cat(self._points) if self._points else torch.zeros(0, self.prototypes.shape[1])
            if len(points) < self.num_tasks:
                raise RuntimeError(f"pseudo-task k-means needs at least {self.num_tasks} warm-up samples, "
                                   f"got {len(points)}: raise proto_warmup_steps")
            centroids, _ = spherical_kmeans(points, self.num_tasks, generator=generator)
            self.prototypes.copy_(centroids.to(self.prototypes))
            self.ready.fill_(True)
        else:
            seen = self._counts > 0
            means = F.normalize(self._sums / self._counts.clamp_min(1)[:, None], dim=-1)
            self.prototypes[seen.to(self.ready.device)] = means[seen].to(self.prototypes)
            self.ready |= seen.to(self.ready.device)
        self._sums.zero_()
        self._counts.zero_()
        self._points = []

    @torch.no_grad()
    def assign(self, f: torch.Tensor) -> torch.Tensor:
        """Pseudo-task labels: the nearest prototype by cosine."""
        return (upcast(f.detach()) @ self.prototypes.to(upcast(f).dtype).T).argmax(1)

    @torch.no_grad()
    def update(self, f: torch.Tensor, tasks: torch.Tensor, generator: torch.Generator) -> None:
        """One step of Eq. 6 for every task present in the batch, then the repulsion step."""
        f = upcast(f.detach())
        for k in torch.unique(tasks).tolist():
            members = f[tasks == k]
            if not bool(self.ready[k]):  # first sight after the warm-up: start from this batch's mean
                self.prototypes[k] = F.normalize(members.mean(0), dim=0)
                self.ready[k] = True
                continue
            p = self.prototypes[k]
            hard = members[members @ p < self.cos_hard]
            fbar = (hard if len(hard) else members).mean(0)
            xi = torch.randn(p.shape[0], generator=generator).to(p)
            scale = {"paper": self.sigma, "per_dim": self.sigma / math.sqrt(p.shape[0]), "none": 0.0}[self.noise]
            self.prototypes[k] = F.normalize(self.momentum * p + (1 - self.momentum) * fbar + scale * xi, dim=0)
        if self.num_tasks > 1 and self.repulsion > 0:
            p = self.prototypes * self.ready[:, None]
            gram = p @ p.T
            gram.fill_diagonal_(0)
            stepped = F.normalize(p - self.eta * self.repulsion * 2 * gram @ p, dim=-1)
            self.prototypes.copy_(torch.where(self.ready[:, None], stepped, self.prototypes))
