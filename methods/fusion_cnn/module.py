"""LightningModule for the FusionCNN baseline: fuses luminance, restores chroma from the colour source(s)."""

from __future__ import annotations

from typing import Any

from fusion_bench.base import LuminanceFusionMethod
from fusion_bench.methods.fusion_cnn.loss import IntensityGradientLoss
from fusion_bench.methods.fusion_cnn.model import FusionCNN


class FusionCNNModule(LuminanceFusionMethod):
    """Small learned fusion baseline (`fusion_cnn`)."""

    def __init__(self, width: int = 16, depth: int = 4, w_int: float = 1.0, w_grad: float = 10.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.net = FusionCNN(width=width, depth=depth)
        self.criterion = IntensityGradientLoss(w_int=w_int, w_grad=w_grad)

