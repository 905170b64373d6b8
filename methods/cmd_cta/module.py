"""LightningModule for CMD-CTA: fuses the luminance, restores the colour source's CbCr, trains with Eq. 15."""

from __future__ import annotations

from typing import Any

import torch

from fusion_bench.base import LuminanceFusionMethod
from fusion_bench.base.colour import split_luminance
from fusion_bench.base.mixture import TASK_ID
from fusion_bench.base.precision import upcast
from fusion_bench.methods.cmd_cta.loss import (
    LEVELS,
    FusionLoss,
    GranularityWeights,
    TaskPrototypes,
    alignment_loss,
    block_loss,
    cross_correlations,
    gather_positions,
    global_terms,
    orthogonality_loss,
    pixel_loss,
    sample_positions,
)
from fusion_bench.methods.cmd_cta.model import CMDCTANet

SCHEDULES = ("cosine", "constant")


def parse_tasks(tasks: str, num_tasks: int) -> tuple[int, bool]:
    """`dataset` -> (num_tasks, False): one prototype per training dataset (a mixture's datasets; K = 1 for a
    single-dataset run). `kmeans:<K>` -> (K, True): K pseudo-tasks from spherical k-means on f_t after warm-up."""
    if tasks == "dataset":
        return int(num_tasks), False
    if tasks.startswith("kmeans:"):
        try:
            k = int(tasks.split(":", 1)[1])
        except ValueError:
            k = 0
        if k >= 1:
            return k, True
    raise ValueError(f"tasks must be 'dataset' or 'kmeans:<K>' with K >= 1, got {tasks!r}")


class CMDCTAFusion(LuminanceFusionMethod):
    """CMD-CTA (`cmd_cta`): one network for every fusion task; x1/x2 are the datamodule's ordered pair (IVIF:
    ir, vis; multi-focus/exposure: a, b), both reduced to luminance.

    Training step (Algorithm 1): forward -> L_fusion, L_orth -> prototype warm-up or update (before L_align, as
    lines 7-8) -> L_align -> multi-granularity contrastive losses with the data-driven weights -> Eq. 15:
    L = L_fusion + w_align L_align + w_ortho L_orth + w_contrast sum_g w_g L_g. AdamW with a per-step cosine
    schedule and gradient-norm clipping. Table 3's switches: use_mamba, use_swin, use_gnn, use_orthogonality
    (off: plain linear projections, no L_orth), contrast_levels (empty: no contrastive loss), use_prototypes
    (off: no prototypes, no L_align). A batch's task ids come from `task_id` (mixture training), else task 0.
    """

    def __init__(self, embed_dim: int = 48, mamba_depth: int = 8, swin_depth: int = 6, heads: int = 3,
                 window: int = 8, mlp_ratio: float = 4.0, d_state: int = 16, expand: int = 2, d_conv: int = 3,
                 proj_dim: int = 128, sub_dim: int = 32, proto_dim: int = 64, proto_hidden: int = 128,
                 contrast_dim: int = 64, decoder_widths: tuple[int, int, int] | list[int] = (128, 32, 16),
                 use_mamba: bool = True, use_swin: bool = True, use_gnn: bool = True, gnn_nodes: int = 16,
                 use_orthogonality: bool = True, decomposition: str = "paper", ortho_normalize: bool = False,
                 use_prototypes: bool = True, contrast_levels: tuple[str, ...] | list[str] = LEVELS,
                 aggregation: str = "block", block_tokens: int = 8, w_int: float = 1.0, w_grad: float = 10.0,
                 w_align: float = 0.5, w_ortho: float = 0.1, w_contrast: float = 1.0, lambda_reg: float = 0.01,
                 kappa: float = 16.0, tau: float = 0.07, tau_w: float = 0.07, mi_ema: float = 0.95,
                 granularity_weights: str | list[float] = "paper", granularity_ema: str = "weights",
                 lambda_spectral: float = 0.1, global_symmetric: bool = False, pixel_samples: int | None = 1024,
                 proto_momentum: float = 0.97, proto_eta: float = 0.05, proto_beta: float = 10.0,
                 proto_repulsion: float = 0.01, cos_hard: float = 0.8, proto_noise: str = "paper",
                 proto_warmup_steps: int | None = None, tasks: str = "dataset", num_tasks: int = 1,
                 scan_impl: str = "auto", scan_chunk: int = 16, scan_chunks_per_group: int | None = None,
                 scan_intra: str = "loop", seed: int | None = None, lr: float = 2e-4, weight_decay: float = 0.05,
                 schedule: str = "cosine", grad_clip: float | None = 1.0, **kwargs: Any):
        super().__init__(lr=lr, weight_decay=weight_decay, **kwargs)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if proto_warmup_steps is not None and proto_warmup_steps < 1:
            raise ValueError(f"proto_warmup_steps must be >= 1 or null (one epoch), got {proto_warmup_steps}")
        if pixel_samples is not None and pixel_samples < 2:
            raise ValueError(f"pixel_samples must be >= 2 or null (all positions), got {pixel_samples}")
        num_prototypes, pseudo = parse_tasks(tasks, num_tasks)
        self.save_hyperparameters()
        self.net = CMDCTANet(embed_dim=embed_dim, mamba_depth=mamba_depth, swin_depth=swin_depth, heads=heads,
                             window=window, mlp_ratio=mlp_ratio, d_state=d_state, expand=expand, d_conv=d_conv,
                             proj_dim=proj_dim, sub_dim=sub_dim, proto_dim=proto_dim, proto_hidden=proto_hidden,
                             contrast_dim=contrast_dim, decoder_widths=decoder_widths, use_mamba=use_mamba,
                             use_swin=use_swin, use_gnn=use_gnn, gnn_nodes=gnn_nodes,
                             decomposition=decomposition if use_orthogonality else "linear",
                             aggregation=aggregation, block_tokens=block_tokens, scan_impl=scan_impl,
                             scan_chunk=scan_chunk, scan_chunks_per_group=scan_chunks_per_group,
                             scan_intra=scan_intra)
        self.criterion = FusionLoss(w_int=w_int, w_grad=w_grad)
        self.granularity = GranularityWeights(tuple(contrast_levels), tau_w=tau_w, decay=mi_ema,
                                              mode=granularity_weights, ema=granularity_ema)
        self.prototypes = TaskPrototypes(num_prototypes, proto_dim, momentum=proto_momentum, eta=proto_eta,
                                         beta=proto_beta, repulsion=proto_repulsion, cos_hard=cos_hard,
                                         noise=proto_noise, kmeans=pseudo)
        self.pseudo_tasks = pseudo
        self.use_orthogonality, self.ortho_normalize = use_orthogonality, ortho_normalize
        self.use_prototypes = use_prototypes
        self.w_align, self.w_ortho, self.w_contrast = w_align, w_ortho, w_contrast
        self.lambda_reg, self.kappa, self.tau = lambda_reg, kappa, tau
        self.lambda_spectral, self.global_symmetric = lambda_spectral, global_symmetric
        self.pixel_samples, self.block_tokens = pixel_samples, block_tokens
        self.proto_warmup_steps = proto_warmup_steps
        self.schedule, self.grad_clip = schedule, grad_clip
        self.seed = seed
        self._generator: torch.Generator | None = None

    @property
    def generator(self) -> torch.Generator:
        """CPU generator for pixel sampling, prototype noise and k-means; seeded from `seed`, else from the global
        seed (Lightning's seed_everything) on first use."""
        if self._generator is None:
            seed = self.seed if self.seed is not None else torch.initial_seed()
            self._generator = torch.Generator().manual_seed(int(seed))
        return self._generator

    # ------------------------------------------------------------ losses

    def _task_ids(self, batch: dict[str, Any], size: int) -> torch.Tensor:
        tasks = batch.get(TASK_ID)
        if tasks is None:
            return torch.zeros(size, dtype=torch.long, device=self.device)
        tasks = torch.as_tensor(tasks, device=self.device).long().view(-1)
        if len(tasks) != size or int(tasks.min()) < 0 or int(tasks.max()) >= self.prototypes.num_tasks:
            raise ValueError(f"batch task ids {tasks.tolist()} do not fit {self.prototypes.num_tasks} task(s) "
                             f"(set num_tasks, or tasks: kmeans:<K>)")
        return tasks

    def _prototype_terms(self, f_t: torch.Tensor, tasks: torch.Tensor, training: bool) -> dict[str, torch.Tensor]:
        """Warm-up bookkeeping or the Eq. 6 update (training only), then L_align with the updated prototypes."""
        zero = f_t.new_zeros(())
        protos = self.prototypes
        warming = not protos.initialised
        if training and warming:
            protos.observe(f_t, tasks)
            if self.proto_warmup_steps is not None and self.global_step + 1 >= self.proto_warmup_steps:
                protos.initialise(self.generator)
            return {"loss_align": zero}
        if warming:
            return {"loss_align": zero}
        if self.pseudo_tasks:
            tasks = protos.assign(f_t)
        if training:
            protos.update(f_t, tasks, self.generator)
        if not bool(protos.ready[tasks].all()):
            return {"loss_align": zero}
        return {"loss_align": alignment_loss(f_t, tasks, protos.prototypes, self.kappa)}

    def _contrastive_terms(self, out: dict[str, Any], training: bool) -> dict[str, torch.Tensor]:
        """Each level's loss and bound estimate Mhat_g = log N_g - L_g, the weights w_g, and sum_g w_g L_g."""
        heads = self.net.contrast
        (c1, c2), (h, w) = out["content"], out["grid"]
        b = c1.shape[0]
        terms: dict[str, torch.Tensor] = {}
        mhat: dict[str, torch.Tensor] = {}
        levels = self.granularity.levels
        if "pixel" in levels:
            positions = sample_positions(c1.shape[1], self.pixel_samples, b, self.generator, c1.device)
            z1, z2 = (heads.pixel(gather_positions(c, positions)) for c in (c1, c2))  # g is per token: sample first
            terms["loss_pixel"] = pixel_loss(z1, z2, self.tau)
            mhat["pixel"] = torch.log(torch.tensor(float(c1.shape[1] if positions is None else positions.shape[1])))
        if "block" in levels:
            zb1, zb2 = (heads.block(c, h, w, self.block_tokens) for c in (c1, c2))
            terms["loss_block"] = block_loss(zb1, zb2, self.tau)
            mhat["block"] = torch.log(torch.tensor(float(len(zb1))))
        bound_terms = dict(terms)  # the InfoNCE whose bound Mhat_g = log N_g - L_g estimates
        if "global" in levels:
            nce, spectral = global_terms(heads.image(c1), heads.image(c2), self.tau, self.global_symmetric)
            terms["loss_global"] = nce + self.lambda_spectral * spectral
            bound_terms["loss_global"] = nce  # the spectral term is not part of the bound (ours)
            mhat["global"] = torch.log(torch.tensor(float(b)))
        for level in mhat:
            mhat[level] = mhat[level].to(c1.device) - bound_terms[f"loss_{level}"].detach()
        weights = self.granularity.update(mhat) if training else self.granularity.current()
        total = c1.new_zeros((), dtype=upcast(c1).dtype)
        for i, level in enumerate(LEVELS):
            if level in levels:
                total = total + weights[i] * terms[f"loss_{level}"]
                terms[f"w_{level}"] = weights[i]
                terms[f"mi_{level}"] = mhat[level]
        terms["loss_contrast"] = total
        return terms

    def compute_losses(self, batch: dict[str, Any], training: bool) -> dict[str, torch.Tensor]:
        """Every term of Eq. 15 (`loss` is the total), the granularity weights and bounds, and the feature
        cross-correlations (logged whether or not L_orth is on)."""
        x1, x2 = self.inputs(batch)
        y1, _ = split_luminance(x1)
        y2, _ = split_luminance(x2)
        out = self.net.forward_train(y1, y2)
        losses = self.criterion(out["fused"], y1, y2)
        total = losses["loss_fusion"]
        triples = [(out["content"][m], out["modality"][m], out["task"][m]) for m in range(2)]
        losses.update(cross_correlations(tuple(torch.cat(fs) for fs in zip(*triples))))
        if self.use_orthogonality and self.w_ortho > 0:
            losses["loss_orth"] = orthogonality_loss(triples, out["bases"], self.lambda_reg, self.ortho_normalize)
            total = total + self.w_ortho * losses["loss_orth"]
        if self.use_prototypes and self.w_align > 0:
            # pseudo-tasks come from the prototypes themselves; a batch's dataset ids are not used then
            tasks = (torch.zeros(y1.shape[0], dtype=torch.long, device=self.device) if self.pseudo_tasks
                     else self._task_ids(batch, y1.shape[0]))
            losses.update(self._prototype_terms(out["task_embedding"], tasks, training))
            total = total + self.w_align * losses["loss_align"]
        if self.granularity.levels and self.w_contrast > 0:
            losses.update(self._contrastive_terms(out, training))
            total = total + self.w_contrast * losses["loss_contrast"]
        losses["loss"] = total
        return losses

    def _log(self, losses: dict[str, torch.Tensor], stage: str, batch: dict[str, Any]) -> torch.Tensor:
        main = {k: v for k, v in losses.items() if k in ("loss", "loss_fusion", "loss_align", "loss_orth",
                                                         "loss_contrast")}
        rest = {f"{stage}/{k}": v for k, v in losses.items() if k not in main}
        self.log_dict(rest, batch_size=batch[self.modalities[0]].shape[0])
        return self.log_losses(main, stage, batch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._log(self.compute_losses(batch, training=True), "train", batch)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._log(self.compute_losses(batch, training=False), "val", batch)

    def on_train_epoch_end(self) -> None:
        """`proto_warmup_steps: null`: the warm-up is the first epoch (the paper's "one warm-up epoch per task")."""
        if self.use_prototypes and self.w_align > 0 and not self.prototypes.initialised:
            if self.proto_warmup_steps is None:
                self.prototypes.initialise(self.generator)

    # ------------------------------------------------------------ optimisation

    def configure_optimizers(self) -> Any:
        decay, no_decay = [], []
        for p in self.parameters():
            (no_decay if getattr(p, "_no_weight_decay", False) else decay).append(p)
        optimizer = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=self.lr,
                                      weight_decay=self.weight_decay)
        if self.schedule == "constant":
            return optimizer
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """The paper's gradient clipping (global norm `grad_clip`), whatever the Trainer sets."""
        clip = gradient_clip_val if gradient_clip_val is not None else self.grad_clip
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def row_columns(self) -> dict[str, str]:
        """Extra result-row columns: `scan_backend`, the selective-scan back ends that ran in this process
        (mamba-ssm, chunked, loop; '+'-joined when several did; empty without the Mamba branch or before a scan)."""
        from fusion_bench.methods.cmd_cta.model import SS2D

        used = set().union(*(m.backends_used for m in self.modules() if isinstance(m, SS2D)))
        return {"scan_backend": "+".join(sorted(used))}
