"""LightningModule for SSVIF: self-supervised segmentation-oriented training of any fusion backbone.

Stage I trains the fusion backbone with the fusion loss only; Stage II adds the segmentation head on the fused
features (p^A), SegFormer on the fused image (p^B) and the cross-segmentation consistency loss, weighted by GDWA
(or DWA / a fixed weight). Segmentation labels are never read. The segmentation branches exist only while
training (built in `setup("fit")`, dropped in `on_fit_end` unless `keep_seg_branches`), so saved weights,
parameter counts and inference are those of the fusion model alone, as in the paper. Early stopping (the
`early_stopping` option) is stage-aware: `configure_callbacks` returns a `StageTwoEarlyStopping` that acts on
Stage II validations only.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import lightning as L
import torch

from fusion_bench.base import FusionMethod
from fusion_bench.base.precision import upcast
from fusion_bench.methods.ssvif.backbones import build_backbone
from fusion_bench.methods.ssvif.callbacks import EARLY_STOPPING_KEYS, StageTwoEarlyStopping
from fusion_bench.methods.ssvif.loss import SSVIFFusionLoss, csc_loss
from fusion_bench.methods.ssvif.model import FusedImageSegmenter, SegmentationHead, segformer_config, to_three_channels
from fusion_bench.methods.ssvif.weighting import WEIGHTINGS, LossPeriods, dwa_csc_weight, gdwa_csc_weight_tensor
from fusion_bench.types import Task

log = logging.getLogger(__name__)


def _check_count(name: str, value: int | None, minimum: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ValueError(f"{name} must be an integer >= {minimum} or None, got {value!r}")


class SSVIF(FusionMethod):
    """SSVIF (`ssvif`): three-channel fusion of (IR replicated to RGB, visible RGB) by a registered backbone.

    Stage boundary: `stage1_steps` (optimizer steps) or `stage1_epochs`; with neither, the paper's rule: Stage II
    starts after the first period whose mean fusion loss exceeds the previous period's, or after
    `stage1_max_periods` periods at the latest (so that Stage II always happens). A period is an epoch, or
    `period_steps` steps when set (it also sets the window of the descent rates used by GDWA/DWA).

    `early_stopping: {monitor, patience, mode, min_delta}` adds a `StageTwoEarlyStopping` (needs validation data):
    Stage II validations only, best value and patience reset at the switch; `val/loss_total` (default) is the
    validation value of Eq. 2 (see `validation_step`).
    """

    tasks: ClassVar[frozenset[Task]] = frozenset({Task.IVIF})
    # Stage I trains the fusion network only (the segmentation branch gets no gradient): DDP must look for unused
    # parameters (read by fusion_bench.benchmark.distributed.trainer_settings)
    ddp_find_unused_parameters: ClassVar[bool] = True

    def __init__(self, backbone: str = "swinfusion", backbone_args: dict[str, Any] | None = None,
                 num_seg_classes: int = 15, head_channels: int | None = None,
                 segformer: dict[str, Any] | None = None, w_int: float = 20.0, w_grad: float = 20.0,
                 w_ssim: float = 10.0, w_color: float = 20.0, dice_eps: float = 1e-5, weighting: str = "gdwa",
                 temperature: float = 2.0, csc_weight: float = 0.1, gdwa_every: int = 1,
                 stage1_steps: int | None = None, stage1_epochs: int | None = None,
                 stage1_max_periods: int | None = None, period_steps: int | None = None,
                 early_stopping: dict[str, Any] | None = None, keep_seg_branches: bool = False, lr: float = 1e-4,
                 **kwargs: Any):
        super().__init__(lr=lr, **kwargs)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
        if stage1_steps is not None and stage1_epochs is not None:
            raise ValueError("give at most one of stage1_steps and stage1_epochs (neither = the paper's automatic "
                             "switch when the mean fusion loss of a period rises)")
        if stage1_max_periods is not None and (stage1_steps is not None or stage1_epochs is not None):
            raise ValueError("stage1_max_periods caps the automatic stage switch; it cannot be combined with "
                             "stage1_steps or stage1_epochs")
        _check_count("stage1_steps", stage1_steps, 0)
        _check_count("stage1_epochs", stage1_epochs, 0)
        _check_count("stage1_max_periods", stage1_max_periods, 1)
        unknown = sorted(set(early_stopping or {}) - set(EARLY_STOPPING_KEYS))
        if unknown:
            raise ValueError(f"early_stopping: unknown keys {unknown}; valid keys: {', '.join(EARLY_STOPPING_KEYS)}")
        _check_count("period_steps", period_steps, 1)
        _check_count("gdwa_every", gdwa_every, 1)
        _check_count("num_seg_classes", num_seg_classes, 2)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if csc_weight < 0:
            raise ValueError(f"csc_weight must be >= 0, got {csc_weight}")
        self.save_hyperparameters()
        self.fusion = build_backbone(backbone, in_channels=3, out_channels=3, **(backbone_args or {}))
        self.fusion_criterion = SSVIFFusionLoss(w_int=w_int, w_grad=w_grad, w_ssim=w_ssim, w_color=w_color)
        segformer_config(segformer)  # fail on a bad SegFormer config now, not when training starts
        self.segformer_arch = dict(segformer or {})
        self.num_seg_classes = num_seg_classes
        self.head_channels = head_channels
        self.dice_eps = dice_eps
        self.weighting = weighting
        self.temperature = temperature
        self.fixed_csc_weight = csc_weight
        self.gdwa_every = gdwa_every
        self.stage1_steps = stage1_steps
        self.stage1_epochs = stage1_epochs
        self.stage1_max_periods = stage1_max_periods
        self.period_steps = period_steps
        self.early_stopping = dict(early_stopping) if early_stopping else None
        self.keep_seg_branches = keep_seg_branches
        self.seg_head: SegmentationHead | None = None
        self.segmenter: FusedImageSegmenter | None = None
        self.stage = 1
        self.periods = LossPeriods()
        self.grad_norms: torch.Tensor | None = None  # last (g_fusion, g_csc) on the shared parameters, on device
        self.stage2_steps = 0
        self._w_sum: torch.Tensor | float = 0.0  # omega_csc of the Stage II steps since the last validation
        self._w_count = 0
        self._w_last: torch.Tensor | float = 1.0

    # ------------------------------------------------------------------ model
    @property
    def switch_rule(self) -> str:
        """How Stage I ends: "steps", "epochs" or "auto" (the paper's rising-loss rule)."""
        if self.stage1_steps is not None:
            return "steps"
        return "epochs" if self.stage1_epochs is not None else "auto"

    def prepare_inputs(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(IR, visible) as three-channel images (a gray image is replicated)."""
        return to_three_channels(x1, self.modalities[0]), to_three_channels(x2, self.modalities[1])

    def fuse(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Bx3xHxW fused image at the input size."""
        ir, vis = self.prepare_inputs(x1, x2)
        fused = self.fusion(ir, vis)
        if fused.shape[-2:] != ir.shape[-2:] or fused.shape[1] != 3:
            raise RuntimeError(f"backbone {self.hparams.backbone!r} returned {tuple(fused.shape)} for inputs "
                               f"{tuple(ir.shape)}; expected Bx3x{ir.shape[-2]}x{ir.shape[-1]}")
        return fused.clamp(0, 1)

    @property
    def has_seg_branches(self) -> bool:
        return self.seg_head is not None and self.segmenter is not None

    def build_seg_branches(self) -> None:
        """Create the segmentation head (on the fused features) and SegFormer (on the fused image), from scratch."""
        if self.has_seg_branches:
            return
        device = next(self.fusion.parameters()).device
        self.seg_head = SegmentationHead(self.fusion.feature_channels, self.num_seg_classes,
                                         self.head_channels).to(device)
        self.segmenter = FusedImageSegmenter(self.num_seg_classes, self.segformer_arch).to(device)

    def drop_seg_branches(self) -> None:
        """Remove the training-only branches (inference uses the fusion model alone)."""
        self.seg_head = None
        self.segmenter = None

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.build_seg_branches()

    def on_fit_end(self) -> None:
        if not self.keep_seg_branches:
            self.drop_seg_branches()

    def configure_callbacks(self) -> list[L.Callback]:
        """The stage-aware early stopping when `early_stopping` is set (Lightning merges it with the Trainer's)."""
        return [StageTwoEarlyStopping(**self.early_stopping)] if self.early_stopping else []

    # ------------------------------------------------------------------ stages and weights
    def update_stage(self) -> int:
        """Apply a step- or epoch-based stage boundary (the automatic rule acts in `close_period`)."""
        if self.stage == 1:
            if self.switch_rule == "steps" and self.global_step >= self.stage1_steps:
                self._enter_stage2(f"step {self.global_step}")
            elif self.switch_rule == "epochs" and self.current_epoch >= self.stage1_epochs:
                self._enter_stage2(f"epoch {self.current_epoch}")
        return self.stage

    def _enter_stage2(self, when: str) -> None:
        self.stage = 2
        log.info("SSVIF: Stage II (fusion + cross-segmentation consistency) starts at %s", when)

    def close_period(self) -> dict[str, float] | None:
        """End a bookkeeping period; under the automatic rule, enter Stage II when its mean fusion loss rose."""
        means = self.periods.close()
        if means is not None and self.stage == 1 and self.switch_rule == "auto":
            pair = self.periods.last_two("fusion")
            done = len(self.periods.history)
            if pair is not None and pair[1] > pair[0]:
                self._enter_stage2(f"the end of period {done} (mean fusion loss {pair[0]:.4g} -> {pair[1]:.4g})")
            elif self.stage1_max_periods is not None and done >= self.stage1_max_periods:
                self._enter_stage2(f"the end of period {done} (stage1_max_periods; the fusion loss had not risen)")
        return means

    def descent_rates(self) -> tuple[float, float]:
        """(r_fusion, r_csc) = L^j / L^{j-1} over the two most recent complete Stage II periods (1 before)."""
        stage2 = LossPeriods(history=[h for h in self.periods.history if "csc" in h])
        return stage2.rate("fusion"), stage2.rate("csc")

    def _amp_loss_scale(self) -> torch.Tensor | float:
        """The GradScaler's current scale under fp16 mixed precision (1 otherwise); the scaler's device tensor
        when it holds one, so reading it needs no host sync."""
        if self._trainer is None:
            return 1.0
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is None or not scaler.is_enabled():
            return 1.0
        scale = scaler._get_scale_async() if hasattr(scaler, "_get_scale_async") else None
        return scale if scale is not None else float(scaler.get_scale())

    def shared_grad_norm(self, loss: torch.Tensor) -> torch.Tensor:
        """g_k = sqrt(sum_i ||dL_k / d theta_i||^2) over the fusion model's parameters (no .grad is touched), a
        0-dim float32 tensor on the loss's device (no host sync)."""
        params = [p for p in self.fusion.parameters() if p.requires_grad]
        scale = self._amp_loss_scale()
        grads = torch.autograd.grad(loss * scale, params, retain_graph=True, allow_unused=True)
        squares = [upcast(g).pow(2).sum() for g in grads if g is not None]
        if not squares:
            return loss.new_zeros((), dtype=torch.float32)
        return torch.stack(squares).sum().sqrt() / scale

    def csc_weight(self, loss_fusion: torch.Tensor, loss_csc: torch.Tensor) -> torch.Tensor | float:
        """omega_csc of Eq. 2 under the configured weighting (GDWA: a 0-dim tensor computed on the device)."""
        if self.weighting == "fixed":
            return self.fixed_csc_weight
        rate_fusion, rate_csc = self.descent_rates()
        if self.weighting == "dwa":
            return dwa_csc_weight(rate_fusion, rate_csc, self.temperature)
        if self.grad_norms is None or self.stage2_steps % self.gdwa_every == 0:
            norms = torch.stack([self.shared_grad_norm(loss_fusion), self.shared_grad_norm(loss_csc)]).detach()
            # an overflowing fp16 step keeps the last finite norms (chosen on the device, no sync)
            self.grad_norms = norms if self.grad_norms is None else torch.where(
                torch.isfinite(norms).all(), norms, self.grad_norms.to(norms))
        return gdwa_csc_weight_tensor(self.grad_norms, rate_fusion, rate_csc, self.temperature)

    # ------------------------------------------------------------------ steps
    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Losses of one training step in the current stage (`loss` is the total of Eq. 2). Reads only the two
        modality images of `batch`."""
        ir, vis = self.prepare_inputs(*self.inputs(batch))
        features = self.fusion.features(ir, vis)
        fused = self.fusion.decode(features)
        losses = self.fusion_criterion(fused, ir, vis)
        if self.stage == 1:
            losses["loss"] = losses["loss_fusion"]
            return losses
        if not self.has_seg_branches:
            raise RuntimeError("SSVIF Stage II needs the segmentation branches: train with a Lightning Trainer "
                               "(they are built in setup('fit')) or call build_seg_branches() first")
        logits_a = self.seg_head(features, size=tuple(ir.shape[-2:]))
        logits_b = self.segmenter(fused)
        losses.update(csc_loss(logits_a, logits_b, self.dice_eps))
        weight = torch.as_tensor(self.csc_weight(losses["loss_fusion"], losses["loss_csc"]),
                                 dtype=torch.float32, device=losses["loss_csc"].device)
        losses["w_csc"] = weight
        losses["loss"] = losses["loss_fusion"] + weight * losses["loss_csc"]
        return losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.update_stage()
        losses = self.compute_losses(batch)
        batch_size = batch[self.modalities[0]].shape[0]
        logged = {f"train/{k}": v.detach() for k, v in losses.items() if k != "loss"}
        logged["train/stage"] = float(self.stage)
        if self.stage == 2 and self.weighting == "gdwa" and self.grad_norms is not None:
            logged["train/g_fusion"], logged["train/g_csc"] = self.grad_norms.unbind()
        self.log_dict(logged, batch_size=batch_size)
        self.log("train/loss", losses["loss"].detach(), prog_bar=True, batch_size=batch_size)
        if self.stage == 2:  # detached device tensors: summed on the device, read once per period
            self.periods.add(fusion=losses["loss_fusion"], csc=losses["loss_csc"])
            self.stage2_steps += 1
            self._w_sum = self._w_sum + losses["w_csc"].detach()
            self._w_count += 1
        else:
            self.periods.add(fusion=losses["loss_fusion"])
        if self.period_steps is not None and self.periods.steps >= self.period_steps:
            self.close_period()
        return losses["loss"]

    def on_train_epoch_end(self) -> None:
        if self.period_steps is None:
            self.close_period()

    def validation_weight(self) -> torch.Tensor | float:
        """omega_csc for `val/loss_total`: the mean weight of the Stage II training steps since the previous
        validation (the last such mean when no step ran since; 1 before any)."""
        if self._w_count:
            self._w_last = self._w_sum / self._w_count
        return self._w_last

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """`val/loss` = the fusion loss (Eq. 3) of the plain forward; no labels. In Stage II (with the
        segmentation branches) also `val/loss_csc` (Eq. 6 on the validation batch) and `val/loss_total` =
        val/loss + omega_csc * val/loss_csc (Eq. 2, omega_csc from `validation_weight`), the quantity the
        stage-aware early stopping monitors by default."""
        ir, vis = self.prepare_inputs(*self.inputs(batch))
        features = self.fusion.features(ir, vis)
        fused = self.fusion.decode(features)
        losses = self.fusion_criterion(fused, ir, vis)
        batch_size = ir.shape[0]
        self.log("val/loss", losses["loss_fusion"], prog_bar=True, batch_size=batch_size)
        self.log_dict({f"val/{k}": v for k, v in losses.items() if k != "loss_fusion"}, batch_size=batch_size)
        if self.stage == 2 and self.has_seg_branches:
            csc = csc_loss(self.seg_head(features, size=tuple(ir.shape[-2:])), self.segmenter(fused), self.dice_eps)
            total = losses["loss_fusion"] + self.validation_weight() * csc["loss_csc"]
            self.log_dict({"val/loss_csc": csc["loss_csc"], "val/loss_total": total}, batch_size=batch_size)
        return losses["loss_fusion"]

    def on_validation_epoch_end(self) -> None:
        self._w_sum, self._w_count = 0.0, 0

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ssvif"] = {"stage": self.stage, "periods": self.periods.state_dict(),
                               "grad_norms": self.grad_norms, "stage2_steps": self.stage2_steps}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("ssvif")
        if state is None:
            return
        self.stage, self.grad_norms, self.stage2_steps = state["stage"], state["grad_norms"], state["stage2_steps"]
        self.periods.load_state_dict(state["periods"])
        if any(k.startswith(("seg_head.", "segmenter.")) for k in checkpoint.get("state_dict", {})):
            self.build_seg_branches()
