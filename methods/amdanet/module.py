"""LightningModule for AMDANet: joint RGB-infrared fusion and semantic segmentation (Zhong et al., ICCV 2025)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from fusion_bench.base import SegFusionMethod
from fusion_bench.base.precision import upcast
from fusion_bench.methods.amdanet.loss import AMDANetLoss, to_rgb
from fusion_bench.methods.amdanet.model import AMDANetModel, MiTConfig
from fusion_bench.methods.amdanet.pretrained import load_mit_weights
from fusion_bench.types import IGNORE_INDEX, MASK, VALID, Task
from fusion_bench.weights.pretrained import resolve_pretrained
from fusion_bench.weights.zoo import WeightsError

MFML_MODES = ("paper", "code", "off")
FUSED_OUTPUTS = ("clamp", "minmax")
MIN_SIZE = 32  # the encoder downsamples by 32 (and reduces keys by 8 at stride 4)


def warmup_poly_factor(step: int, total: int, warmup: int, power: float = 0.9) -> float:
    """Learning-rate factor of the authors' WarmUpPolyLR: linear warm-up step/warmup for step < warmup, then
    (1 - step/total)^power (the poly term counts from step 0, as in TorchSeg)."""
    if warmup > 0 and step < warmup:
        return step / warmup
    return max(0.0, 1.0 - step / max(1, total)) ** power


def lr_factor(step: int, total: int, warmup: int, power: float = 0.9, lag: bool = False) -> float:
    """`warmup_poly_factor` of optimiser step `step`; lag=True: the authors set the rate after
    `optimizer.step()`, so step 0 runs at the base rate and step k at the schedule's value for step k - 1."""
    if lag:
        if step == 0:
            return 1.0
        step -= 1
    return warmup_poly_factor(step, total, warmup, power)


def center_pad(tensors: Sequence[torch.Tensor], height: int, width: int) -> tuple[list[torch.Tensor], int, int]:
    """Zero-pad B x C x H x W tensors symmetrically (extra pixel at the bottom/right) to at least height x width,
    as TorchSeg's ``pad_image_to_shape``; returns (padded, top, left)."""
    h, w = tensors[0].shape[-2:]
    ph, pw = max(0, height - h), max(0, width - w)
    top, left = ph // 2, pw // 2
    if not (ph or pw):
        return list(tensors), 0, 0
    return [F.pad(t, (left, pw - left, top, ph - top)) for t in tensors], top, left


def sliding_window(predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ir: torch.Tensor,
                   vis: torch.Tensor, window: Sequence[int], stride_rate: float = 2 / 3) -> torch.Tensor:
    """Sliding-window logits as the authors' `scale_process_rgbX` (one scale, no flip), window = (h, w).

    An image no larger than the window on at least one axis is run once, zero-padded (centred) to at least the
    window, and the prediction cropped back. Otherwise windows of the window size with strides
    ceil(stride_rate * size), the last one flush with the border; overlapping windows are combined as the code's
    sum of exp(logits) (here log-sum-exp, same arg-max, no overflow)."""
    h, w = ir.shape[-2:]
    wh, ww = int(window[0]), int(window[1])
    if h <= wh or w <= ww:
        (ir_p, vis_p), top, left = center_pad([ir, vis], wh, ww)
        return predict(ir_p, vis_p)[..., top:top + h, left:left + w]
    sh, sw = math.ceil(wh * stride_rate), math.ceil(ww * stride_rate)
    acc: torch.Tensor | None = None
    for r in range(math.ceil((h - wh) / sh) + 1):
        for c in range(math.ceil((w - ww) / sw) + 1):
            y, x = min(r * sh + wh, h) - wh, min(c * sw + ww, w) - ww
            logits = predict(ir[..., y:y + wh, x:x + ww], vis[..., y:y + wh, x:x + ww])
            if acc is None:
                acc = logits.new_full((*logits.shape[:2], h, w), -math.inf)
            acc[..., y:y + wh, x:x + ww] = torch.logaddexp(acc[..., y:y + wh, x:x + ww], logits)
    assert acc is not None
    return acc


class AMDANet(SegFusionMethod):
    """AMDANet (`amdanet`): dual-stream MiT with SCI + FDAM per stage, SegFormer decoder, MRFS fusion head.

    x1 = infrared (1 channel, replicated to 3 for the IR stream), x2 = visible RGB (gray is replicated).
    `fuse` returns the fused RGB image (B x 3 x H x W in [0, 1]); `segment` the logits (B x K x H x W).
    Training uses the `mask` of each batch (ignore index 255), the optional `valid` crop mask and, with MFML, a
    masked branch. The `paper` preset is the authors' code; `paper_text` the paper's text (see README.md).
    """

    tasks: ClassVar[frozenset[Task]] = frozenset({Task.IVIF})

    def __init__(self, num_classes: int = 9, encoder: str | None = "b4", hidden_sizes: Sequence[int] | None = None,
                 depths: Sequence[int] | None = None, heads: Sequence[int] | None = None,
                 sr_ratios: Sequence[int] | None = None, drop_path_rate: float = 0.1, decoder_dim: int = 512,
                 fusion_width: int = 16, tau: float = 0.4, lambda_init: float = 0.5, sci_gate: str = "paper",
                 sci_swap_streams: bool = False, learn_lambda: bool = True, local_mode: str = "paper",
                 global_mode: str = "paper", head_style: str = "segformer", drop_path_rule: str = "linear",
                 spatial_kernel: int = 7, mfml: str = "paper", mfml_ratio: float = 0.15, w_seg: float = 1.0,
                 w_fus: float = 0.5, w_cr: float = 0.5, fusion_loss: str = "paper", cr_mode: str = "paper",
                 gamma: float = 0.8, contrast: float = 1.0, w_dice: float = 0.0, w_dice_masked: float = 0.0,
                 dice_ignore: str = "skip", eval_window: Sequence[int] | None = None, eval_stride_rate: float = 2 / 3,
                 fuse_window: Sequence[int] | None = None, fused_output: str = "clamp", pretrained: str | None = None,
                 lr: float = 6e-5, weight_decay: float = 0.01, betas: Sequence[float] = (0.9, 0.999),
                 warmup_ratio: float = 0.0, poly_power: float = 0.9, lr_lag: bool = False,
                 augment_seed: int | None = None, **kwargs: Any):
        super().__init__(num_classes=num_classes, lr=lr, weight_decay=weight_decay, **kwargs)
        self.save_hyperparameters()
        if mfml not in MFML_MODES:
            raise ValueError(f"mfml {mfml!r} unknown; valid: {', '.join(MFML_MODES)}")
        if fused_output not in FUSED_OUTPUTS:
            raise ValueError(f"fused_output {fused_output!r} unknown; valid: {', '.join(FUSED_OUTPUTS)}")
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        for name, window in (("eval_window", eval_window), ("fuse_window", fuse_window)):
            if window is not None and (len(window) != 2 or min(window) < MIN_SIZE):
                raise ValueError(f"{name} must be [height, width] of at least {MIN_SIZE} pixels or null, got {window}")
        if not 0.0 < eval_stride_rate <= 1.0:
            raise ValueError(f"eval_stride_rate must be in (0, 1], got {eval_stride_rate}")
        config = MiTConfig.build(encoder, hidden_sizes, depths, heads, sr_ratios, drop_path_rate)
        # ImageNet MiT weights for both streams: `zoo:mit_b4` (the paper presets) or a local path, resolved before the
        # network is built (a reference that cannot be served fails fast with a WeightsError naming the file and the
        # `pretrained: null` ablation: never silently from scratch); null trains from scratch
        try:
            self.pretrained_weights = resolve_pretrained(pretrained) if pretrained else None
        except WeightsError as err:
            raise WeightsError(f"pretrained {pretrained}: {str(err).removeprefix(f'{pretrained}: ')}; put the file "
                               "there, pass --set model.pretrained=PATH, or run the from-scratch ablation with --set "
                               "model.pretrained=null") from err
        self.net = AMDANetModel(num_classes, config, decoder_dim=decoder_dim, fusion_width=fusion_width, tau=tau,
                                lambda_init=lambda_init, sci_gate=sci_gate, sci_swap_streams=sci_swap_streams,
                                learn_lambda=learn_lambda, local_mode=local_mode, spatial_kernel=spatial_kernel,
                                global_mode=global_mode, head_style=head_style, drop_path_rule=drop_path_rule)
        self.criterion = AMDANetLoss(w_seg=w_seg, w_fus=w_fus, w_cr=w_cr, fusion=fusion_loss, cr=cr_mode,
                                     gamma=gamma, contrast=contrast, w_dice=w_dice, w_dice_masked=w_dice_masked,
                                     dice_ignore=dice_ignore)
        if self.pretrained_weights is not None and not next(self.net.parameters()).is_meta:  # meta: a config check
            load_mit_weights(self.net, self.pretrained_weights.path)
        self.mfml, self.mfml_ratio = mfml, mfml_ratio
        self.eval_window = tuple(eval_window) if eval_window else None
        self.fuse_window = tuple(fuse_window) if fuse_window else None
        self.eval_stride_rate, self.fused_output = eval_stride_rate, fused_output
        self.betas = tuple(betas)
        self.warmup_ratio, self.poly_power, self.lr_lag = warmup_ratio, poly_power, lr_lag
        self.augment_seed = augment_seed
        self._generator: torch.Generator | None = None

    @property
    def generator(self) -> torch.Generator:
        """CPU generator for the MFML branch/modality choice; seeded from `augment_seed`, else from the global seed
        (Lightning's seed_everything), on first use."""
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
        return to_rgb(x1, "x1"), to_rgb(x2, "x2")

    def _fuse(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return self.net.fuse(self.net.encode(ir, vis, with_semantic=False).vision, ir, vis)

    def _segment(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return self.net.segment(self.net.encode(ir, vis, with_vision=False).semantic, ir.shape[-2:])

    def fuse(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Fused RGB in [0, 1]. `fuse_window`: run once zero-padded (centred) to at least this size, as the
        authors' predict_fusion scripts; `fused_output="minmax"`: per-image min-max to 0-255, truncated to 8-bit
        levels (their saved PNGs)."""
        ir, vis = self.prepare_inputs(x1, x2)
        if self.fuse_window is not None:
            h, w = ir.shape[-2:]
            (ir_p, vis_p), top, left = center_pad([ir, vis], *self.fuse_window)
            fused = upcast(self._fuse(ir_p, vis_p)[..., top:top + h, left:left + w])
        else:
            fused = upcast(self._fuse(ir, vis))
        if self.fused_output == "minmax":
            low = fused.amin(dim=(1, 2, 3), keepdim=True)
            span = (fused.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-12)
            return torch.floor((fused - low) / span * 255.0) / 255.0
        return fused.clamp(0, 1)

    def segment(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Logits at the input size; with `eval_window`, the authors' sliding-window evaluation."""
        ir, vis = self.prepare_inputs(x1, x2)
        if self.eval_window is not None:
            return upcast(sliding_window(self._segment, ir, vis, self.eval_window, self.eval_stride_rate))
        return upcast(self._segment(ir, vis))

    # -- training -------------------------------------------------------------------------------------
    def _batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if MASK not in batch:
            raise KeyError(f"AMDANet trains on segmentation labels: the batch has no {MASK!r} key (keys: "
                           f"{sorted(batch)}); use a dataset with masks (e.g. fmb, mfnet, pst900, msrs)")
        x1, x2 = self.inputs(batch)
        ir, vis = self.prepare_inputs(x1, x2)
        valid = batch.get(VALID)
        return ir, vis, batch[MASK].long(), None if valid is None else valid.unsqueeze(1).to(ir.dtype)

    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Clean forward, the MFML masked branch, and the loss terms (`loss` is the total)."""
        ir, vis, target, valid = self._batch(batch)
        size = target.shape[-2:]
        features = self.net.encode(ir, vis)
        masked_logits = masked_fused = None
        if self.mfml == "code" and self.criterion.w_cr:
            # the authors' encode_decode: one coin per batch (randint(1, 3) == 1) masks 15 % of the elements of
            # either the four semantic maps or the eight vision maps; both heads run again on the (partly masked)
            # set, so the unmasked head differs from the clean pass only by its dropout draw. Head calls in the
            # code's order (masked seg, seg, fuse, masked fuse: the BatchNorm running statistics follow it).
            keep = 1.0 - self.mfml_ratio
            semantic, vision = features.semantic, features.vision
            if float(torch.rand(1, generator=self.generator)) < 0.5:
                semantic = [f * (torch.rand_like(f) < keep) for f in semantic]
            else:
                vision = [(a * (torch.rand_like(a) < keep), b * (torch.rand_like(b) < keep)) for a, b in vision]
            masked_logits = self.net.segment(semantic, size)
            logits = self.net.segment(features.semantic, size)
            fused = self.net.fuse(features.vision, ir, vis)
            masked_fused = self.net.fuse(vision, ir, vis)
        else:
            logits = self.net.segment(features.semantic, size)
            fused = self.net.fuse(features.vision, ir, vis)
        if self.mfml == "paper" and self.criterion.w_cr:
            mask_ir = torch.rand(ir.shape[0], generator=self.generator) < 0.5
            masked = self.net.encode(ir, vis, mfml_mask_ir=mask_ir.to(ir.device), mfml_ratio=self.mfml_ratio)
            masked_logits = self.net.segment(masked.semantic, size)
            if self.criterion.cr == "code":
                masked_fused = self.net.fuse(masked.vision, ir, vis)
        losses = self.criterion(logits, fused, target, vis, ir, masked_logits, masked_fused, valid)
        with torch.no_grad():
            losses["lambda_mean"] = torch.stack([m.lambda_.detach() for m in self.net.sci]).mean()
            losses["sci_active"] = torch.stack([info["active"].float().mean() for info in features.sci]).mean()
        return losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.log_losses(self.compute_losses(batch), "train", batch)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Segmentation and fusion losses of the clean forward, and the batch's pixel accuracy."""
        ir, vis, target, valid = self._batch(batch)
        logits, fused = self.net(ir, vis)
        losses = self.criterion(logits, fused, target, vis, ir, valid=valid)
        labelled = target != IGNORE_INDEX
        losses["pixel_acc"] = (logits.argmax(1)[labelled] == target[labelled]).float().mean()
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=ir.shape[0])
        return losses["loss"]

    def configure_optimizers(self):
        """AdamW (no weight decay on biases, norms and the SCI lambdas) with warm-up + poly decay per step
        (`lr_factor`; warm-up = round(warmup_ratio * total steps))."""
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
        optimizer = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=self.lr,
                                      betas=self.betas, weight_decay=self.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        warmup = round(self.warmup_ratio * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total, warmup, self.poly_power, self.lr_lag))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
