"""LightningModule for SwinFusion: fuses the luminance with the authors' loss, restores the colour source's CbCr."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from fusion_bench.base import LuminanceFusionMethod
from fusion_bench.types import Task
from methods.swinfusion.loss import SwinFusionLoss
from methods.swinfusion.model import SwinFusionNet


class SwinFusion(LuminanceFusionMethod):
    """SwinFusion (`swinfusion`): x1 (`ir`, or the first medical modality) is the authors' stream A, x2 stream B.

    Training: the raw (unclamped) network output on the luminance pair against the authors' loss; Adam with
    MultiStepLR (x `lr_gamma` at `lr_milestones` steps). With `ema_decay` > 0 an exponential moving average of
    the weights is kept (no bias correction, started from the initial weights, as in KAIR's `update_E`) and copied
    into the network when training ends, since the authors' test script loads the EMA weights (`*_E.pth`).
    """

    tasks: ClassVar[frozenset[Task]] = frozenset({Task.IVIF, Task.MEDICAL})

    def __init__(self, embed_dim: int = 60, num_heads: int = 6, window_size: int = 8, mlp_ratio: float = 2.0,
                 extraction_depth: int = 4, fusion_depths: tuple[int, ...] | list[int] = (2, 2),
                 reconstruction_depth: int = 4, drop_path_rate: float = 0.1, w_int: float = 20.0, w_tv: float = 20.0,
                 w_grad: float = 20.0, w_ssim: float = 10.0, ssim_weighting: str = "gradient",
                 ema_decay: float = 0.999, lr_milestones: tuple[int, ...] | list[int] = (250000, 400000, 450000,
                                                                                       475000, 500000),
                 lr_gamma: float = 0.5, lr: float = 2e-5, **kwargs: Any):
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
        self._ema: dict[str, torch.Tensor] | None = None

    def training_output(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        return self.net(y1, y2, clamp=False)  # the authors' loss sees the raw output

    # ------------------------------------------------------------ EMA of the weights

    def on_train_start(self) -> None:
        if self.ema_decay > 0:
            self._ema = {k: p.detach().clone() for k, p in self.net.named_parameters()}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._ema is None:
            return
        with torch.no_grad():
            for k, p in self.net.named_parameters():
                self._ema[k].mul_(self.ema_decay).add_(p.detach(), alpha=1 - self.ema_decay)

    def on_train_end(self) -> None:
        """Replace the trained weights by their moving average (what the authors test with)."""
        if self._ema is None:
            return
        with torch.no_grad():
            for k, p in self.net.named_parameters():
                p.copy_(self._ema[k])
        self._ema = None

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, self.lr_milestones, self.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
