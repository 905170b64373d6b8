"""LightningModule for SeAFusion: fuses the luminance with the content loss, restores the visible CbCr."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from fusion_bench.base import LuminanceFusionMethod
from fusion_bench.types import Task
from methods.seafusion.loss import SeAFusionContentLoss
from methods.seafusion.model import SeAFusionNet


class SeAFusion(LuminanceFusionMethod):
    """SeAFusion (`seafusion`), content-loss-only training (see README: the semantic loss is not used).

    x1 (`ir`) feeds the infrared encoder and x2 (`vis`) the visible one; the network sees luminance only and the
    fused Y gets the visible CbCr back. Adam with the authors' per-epoch decay lr * lr_decay**epoch.
    """

    tasks: ClassVar[frozenset[Task]] = frozenset({Task.IVIF})

    def __init__(self, channels: tuple[int, ...] | list[int] = (16, 32, 48), w_int: float = 1.0, w_grad: float = 10.0,
                 lr_decay: float = 0.75, lr: float = 1e-3, **kwargs: Any):
        super().__init__(lr=lr, **kwargs)
        if not 0 < lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay}")
        self.save_hyperparameters()
        self.net = SeAFusionNet(in_channels=1, out_channels=1, channels=tuple(channels))
        self.criterion = SeAFusionContentLoss(w_int=w_int, w_grad=w_grad)
        self.lr_decay = lr_decay

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        decay = self.lr_decay
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: decay ** epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
