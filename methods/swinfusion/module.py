"""LightningModule for SwinFusion: fuses the luminance with the authors' loss, restores the colour source's CbCr."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging

from fusion_bench.base import LuminanceFusionMethod
from fusion_bench.base.colour import split_luminance
from fusion_bench.data.transforms import batch_dihedral
from fusion_bench.methods.swinfusion.loss import SwinFusionLoss
from fusion_bench.methods.swinfusion.model import SwinFusionNet
from fusion_bench.types import Task


def kair_ema_update(average: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor, *,
                    decay: float) -> torch.Tensor:
    """KAIR's `update_E`: E <- decay * E + (1 - decay) * W (the same two operations, so the same numbers)."""
    return average.mul(decay).add_(current, alpha=1 - decay)


class KAIREMA(WeightAveraging):
    """Lightning's weight averaging with KAIR's EMA: the average starts from the weights at the start of the fit
    (AveragedModel would start from the weights after the first step) and is updated after every optimizer step;
    parameters only (the network's buffers are constants)."""

    def __init__(self, decay: float):
        super().__init__(use_buffers=False, avg_fn=functools.partial(kair_ema_update, decay=decay))
        self.decay = decay

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and self._average_model is not None:
            self._average_model.n_averaged.fill_(1)  # the copy made now is E_0 = W_0 (a checkpoint may replace it)


class SwinFusion(LuminanceFusionMethod):
    """SwinFusion (`swinfusion`): x1 (`ir`, or the first medical modality) is the authors' stream A, x2 stream B.

    Training: the raw (unclamped) network output on the luminance pair against the authors' loss; Adam with
    MultiStepLR (x `lr_gamma` at `lr_milestones` steps). With `augment`, each training pair is put in one of the 8
    flip/rotation modes of the square at random, the same for both sources (the authors' `augment_img` with
    `mode = randint(0, 7)`: `batch_dihedral` after the datamodule's horizontal flip; draws from the module's own
    CPU generator, seeded from the global seed, so the crops are the same with and without it). With `ema_decay` >
    0 an exponential moving average of the weights is kept by Lightning's WeightAveraging callback (`KAIREMA`: no
    bias correction, started from the initial weights, updated after every optimizer step, as in KAIR's `update_E`)
    and copied into the network when training ends, since the authors' test script loads the EMA weights
    (`*_E.pth`); Lightning checkpoints carry both the average and the current weights, so a resumed run continues
    it. Validation during training sees the averaged weights (the callback swaps them in).
    """

    tasks: ClassVar[frozenset[Task]] = frozenset({Task.IVIF, Task.MEDICAL})

    def __init__(self, embed_dim: int = 60, num_heads: int = 6, window_size: int = 8, mlp_ratio: float = 2.0,
                 extraction_depth: int = 4, fusion_depths: tuple[int, ...] | list[int] = (2, 2),
                 reconstruction_depth: int = 4, drop_path_rate: float = 0.1, w_int: float = 20.0, w_tv: float = 20.0,
                 w_grad: float = 20.0, w_ssim: float = 10.0, ssim_weighting: str = "gradient",
                 ema_decay: float = 0.999, lr_milestones: tuple[int, ...] | list[int] = (250000, 400000, 450000,
                                                                                       475000, 500000),
                 lr_gamma: float = 0.5, augment: bool = False, lr: float = 2e-5, **kwargs: Any):
        super().__init__(lr=lr, **kwargs)
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.save_hyperparameters()
        self.net = SwinFusionNet(in_channels=1, out_channels=1, embed_dim=embed_dim, num_heads=num_heads,
                                 window_size=window_size, mlp_ratio=mlp_ratio, extraction_depth=extraction_depth,
                                 fusion_depths=fusion_depths, reconstruction_depth=reconstruction_depth,
                                 drop_path_rate=drop_path_rate)
        self.criterion = SwinFusionLoss(w_int=w_int, w_tv=w_tv, w_grad=w_grad, w_ssim=w_ssim,
                                        ssim_weighting=ssim_weighting)
        self.ema_decay = ema_decay
        self.lr_milestones = [int(m) for m in lr_milestones]
        self.lr_gamma = lr_gamma
        self.augment = augment
        self._generator: torch.Generator | None = None

    def training_output(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        return self.net(y1, y2, clamp=False)  # the authors' loss sees the raw output

    @property
    def generator(self) -> torch.Generator:
        """CPU generator of the flip/rotation modes, seeded from the global seed (`seed_everything`) on first use."""
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(int(torch.initial_seed()))
        return self._generator

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if not self.augment:
            return super().training_step(batch, batch_idx)
        x1, x2 = self.inputs(batch)
        y1, y2 = split_luminance(x1)[0], split_luminance(x2)[0]
        y1, y2 = batch_dihedral(y1, y2, self.generator)  # training only: validation sees the images as they are
        return self.log_losses(self.criterion(self.training_output(y1, y2), y1, y2), "train", batch)

    # ------------------------------------------------------------ EMA of the weights

    def configure_callbacks(self) -> list[L.Callback]:
        """The EMA of the weights (when `ema_decay` > 0), merged with the Trainer's callbacks by Lightning."""
        return [KAIREMA(self.ema_decay)] if self.ema_decay > 0 else []

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, self.lr_milestones, self.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
