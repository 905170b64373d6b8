"""LightningModule for AMDANet: joint RGB-infrared fusion and semantic segmentation (Zhong et al., ICCV 2025)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from fusion_bench.base import SegFusionMethod
from fusion_bench.types import IGNORE_INDEX, MASK, Task
from methods.amdanet.loss import AMDANetLoss, to_rgb
from methods.amdanet.model import AMDANetModel, MiTConfig, load_mit_weights

MFML_MODES = ("paper", "code", "off")
MIN_SIZE = 32  # the encoder downsamples by 32 (and reduces keys by 8 at stride 4)


def warmup_poly_factor(step: int, total: int, warmup: int, power: float = 0.9) -> float:
    """Learning-rate factor of the authors' WarmUpPolyLR: linear warm-up step/warmup for step < warmup, then
    (1 - step/total)^power (the poly term counts from step 0, as in TorchSeg)."""
    if warmup > 0 and step < warmup:
        return step / warmup
    return max(0.0, 1.0 - step / max(1, total)) ** power


def random_rescale(images: Sequence[torch.Tensor], mask: torch.Tensor, scale: float,
                   generator: torch.Generator) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Rescale a batch by `scale` (images bilinear, labels nearest), then crop (scale > 1, one random window) or
    pad (scale < 1; images with 0, labels with the ignore index) back to the original size."""
    h, w = mask.shape[-2:]
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    images = [F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False) for x in images]
    mask = F.interpolate(mask[:, None].float(), size=(sh, sw), mode="nearest")[:, 0].long()
    if sh < h or sw < w:
        pad = (0, max(0, w - sw), 0, max(0, h - sh))
        images = [F.pad(x, pad, value=0.0) for x in images]
        mask = F.pad(mask, pad, value=IGNORE_INDEX)
    top = int(torch.randint(0, mask.shape[-2] - h + 1, (1,), generator=generator))
    left = int(torch.randint(0, mask.shape[-1] - w + 1, (1,), generator=generator))
    images = [x[..., top:top + h, left:left + w] for x in images]
    return images, mask[..., top:top + h, left:left + w]


class AMDANet(SegFusionMethod):
    """AMDANet (`amdanet`): dual-stream MiT with SCI + FDAM per stage, SegFormer decoder, MRFS fusion head.

    x1 = infrared (1 channel, replicated to 3 for the IR stream), x2 = visible RGB (gray is replicated).
    `fuse` returns the fused RGB image (B x 3 x H x W in [0, 1]); `segment` the logits (B x K x H x W).
    Training uses the `mask` of each batch (ignore index 255) and, with MFML, a second, masked forward.
    """

    tasks: ClassVar[frozenset[Task]] = frozenset({Task.IVIF})

    def __init__(self, num_classes: int = 9, encoder: str | None = "b4", hidden_sizes: Sequence[int] | None = None,
                 depths: Sequence[int] | None = None, heads: Sequence[int] | None = None,
                 sr_ratios: Sequence[int] | None = None, drop_path_rate: float = 0.1, decoder_dim: int = 512,
                 fusion_width: int = 16, tau: float = 0.4, lambda_init: float = 0.5, sci_gate: str = "paper",
                 sci_swap_streams: bool = False, learn_lambda: bool = True, local_mode: str = "paper",
                 spatial_kernel: int = 7, mfml: str = "paper", mfml_ratio: float = 0.15, w_seg: float = 1.0,
                 w_fus: float = 0.5, w_cr: float = 0.5, fusion_loss: str = "paper", cr_mode: str = "paper",
                 gamma: float = 0.8, contrast: float = 1.0, w_dice: float = 0.0, w_dice_masked: float = 0.0,
                 scales: Sequence[float] | None = None, pretrained: str | None = None, lr: float = 6e-5,
                 weight_decay: float = 0.01, betas: Sequence[float] = (0.9, 0.999), warmup_ratio: float = 0.0,
                 poly_power: float = 0.9, augment_seed: int | None = None, **kwargs: Any):
        super().__init__(num_classes=num_classes, lr=lr, weight_decay=weight_decay, **kwargs)
        self.save_hyperparameters()
        if mfml not in MFML_MODES:
            raise ValueError(f"mfml {mfml!r} unknown; valid: {', '.join(MFML_MODES)}")
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        if scales is not None and (not scales or min(scales) <= 0):
            raise ValueError(f"scales must be a non-empty list of positive factors or null, got {scales}")
        config = MiTConfig.build(encoder, hidden_sizes, depths, heads, sr_ratios, drop_path_rate)
        self.net = AMDANetModel(num_classes, config, decoder_dim=decoder_dim, fusion_width=fusion_width, tau=tau,
                                lambda_init=lambda_init, sci_gate=sci_gate, sci_swap_streams=sci_swap_streams,
                                learn_lambda=learn_lambda, local_mode=local_mode, spatial_kernel=spatial_kernel)
        self.criterion = AMDANetLoss(w_seg=w_seg, w_fus=w_fus, w_cr=w_cr, fusion=fusion_loss, cr=cr_mode,
                                     gamma=gamma, contrast=contrast, w_dice=w_dice, w_dice_masked=w_dice_masked)
        if pretrained:
            load_mit_weights(self.net, pretrained)
        self.mfml, self.mfml_ratio = mfml, mfml_ratio
        self.scales = tuple(scales) if scales else None
        self.betas = tuple(betas)
        self.warmup_ratio, self.poly_power = warmup_ratio, poly_power
        self.augment_seed = augment_seed
        self._generator: torch.Generator | None = None

    @property
    def generator(self) -> torch.Generator:
        """CPU generator for the scale augmentation and the MFML branch choice; seeded from `augment_seed`, else
        from the global seed (Lightning's seed_everything), on first use."""
        if self._generator is None:
            seed = self.augment_seed if self.augment_seed is not None else torch.initial_seed()
            self._generator = torch.Generator().manual_seed(int(seed))
        return self._generator

    # -- inference ------------------------------------------------------------------------------------
    @staticmethod
    def prepare_inputs(x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x1 = IR, x2 = visible) -> two 3-channel tensors (gray replicated); checks the minimum size."""
        if x1.shape[-2:] != x2.shape[-2:]:
            raise ValueError(f"x1 and x2 must have the same size, got {tuple(x1.shape[-2:])} and "
                             f"{tuple(x2.shape[-2:])}")
        if min(x1.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"AMDANet needs inputs of at least {MIN_SIZE}x{MIN_SIZE} pixels, got "
                             f"{tuple(x1.shape[-2:])}")
        return to_rgb(x1), to_rgb(x2)

    def fuse(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        ir, vis = self.prepare_inputs(x1, x2)
        features = self.net.encode(ir, vis, with_semantic=False)
        return self.net.fuse(features.vision, ir, vis).float().clamp(0, 1)

    def segment(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        ir, vis = self.prepare_inputs(x1, x2)
        features = self.net.encode(ir, vis, with_vision=False)
        return self.net.segment(features.semantic, ir.shape[-2:]).float()

    # -- training -------------------------------------------------------------------------------------
    def _batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if MASK not in batch:
            raise KeyError(f"AMDANet trains on segmentation labels: the batch has no {MASK!r} key (keys: "
                           f"{sorted(batch)}); use a dataset with masks (e.g. fmb, mfnet, pst900, msrs)")
        x1, x2 = self.inputs(batch)
        ir, vis = self.prepare_inputs(x1, x2)
        return ir, vis, batch[MASK].long()

    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Clean forward, MFML masked forward, and the loss terms (`loss` is the total)."""
        ir, vis, target = self._batch(batch)
        if self.scales:
            scale = self.scales[int(torch.randint(len(self.scales), (1,), generator=self.generator))]
            if scale != 1.0:
                (ir, vis), target = random_rescale([ir, vis], target, scale, self.generator)
        size = target.shape[-2:]
        features = self.net.encode(ir, vis)
        logits = self.net.segment(features.semantic, size)
        fused = self.net.fuse(features.vision, ir, vis)
        masked_logits = masked_fused = None
        if self.mfml == "paper" and self.criterion.w_cr:
            mask_ir = torch.rand(ir.shape[0], generator=self.generator) < 0.5
            masked = self.net.encode(ir, vis, mfml_mask_ir=mask_ir.to(ir.device), mfml_ratio=self.mfml_ratio)
            masked_logits = self.net.segment(masked.semantic, size)
            if self.criterion.cr == "code":
                masked_fused = self.net.fuse(masked.vision, ir, vis)
        elif self.mfml == "code" and self.criterion.w_cr:
            keep = 1.0 - self.mfml_ratio
            if float(torch.rand(1, generator=self.generator)) < 0.5:  # the code's randint(1, 3) == 1
                semantic = [f * (torch.rand_like(f) < keep) for f in features.semantic]
                masked_logits, masked_fused = self.net.segment(semantic, size), fused
            else:
                vision = [(a * (torch.rand_like(a) < keep), b * (torch.rand_like(b) < keep))
                          for a, b in features.vision]
                masked_logits, masked_fused = logits, self.net.fuse(vision, ir, vis)
        losses = self.criterion(logits, fused, target, vis, ir, masked_logits, masked_fused)
        losses["lambda_mean"] = torch.stack([m.lambda_.detach() for m in self.net.sci]).mean()
        return losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.log_losses(self.compute_losses(batch), "train", batch)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Segmentation and fusion losses of the clean forward, and the batch's pixel accuracy."""
        ir, vis, target = self._batch(batch)
        logits, fused = self.net(ir, vis)
        losses = self.criterion(logits, fused, target, vis, ir)
        valid = target != IGNORE_INDEX
        losses["pixel_acc"] = (logits.argmax(1)[valid] == target[valid]).float().mean()
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=ir.shape[0])
        return losses["loss"]

    def configure_optimizers(self):
        """AdamW (no weight decay on biases, norms and the SCI lambdas) with warm-up + poly decay per step."""
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
        optimizer = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=self.lr,
                                      betas=self.betas, weight_decay=self.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        warmup = int(self.warmup_ratio * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_poly_factor(step, total, warmup, self.poly_power))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
