"""SeAFusion's losses: the content loss (intensity + 10 x texture) and the semantic loss (OHEM cross-entropy on the
segmentation network's main and auxiliary outputs), as in the authors' loss.py / train.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion_bench.base.losses import gradient_loss, intensity_loss
from fusion_bench.types import IGNORE_INDEX


class SeAFusionContentLoss(nn.Module):
    """L_content = w_int * L1(F, max(A, B)) + w_grad * L1(|grad F|, max(|grad A|, |grad B|)); authors: 1 and 10.

    Returns {"loss", "loss_int", "loss_grad"} (unweighted terms)."""

    def __init__(self, w_int: float = 1.0, w_grad: float = 10.0):
        super().__init__()
        self.w_int, self.w_grad = w_int, w_grad

    def forward(self, fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> dict[str, torch.Tensor]:
        l_int = intensity_loss(fused, y1, y2)
        l_grad = gradient_loss(fused, y1, y2, padding="zeros")  # the authors' Sobelxy pads with zeros
        return {"loss": self.w_int * l_int + self.w_grad * l_grad, "loss_int": l_int, "loss_grad": l_grad}


def check_ohem(thresh: float, min_kept_fraction: float) -> None:
    """ValueError unless 0 < thresh < 1 and 0 < min_kept_fraction <= 1."""
    if not 0 < thresh < 1:
        raise ValueError(f"OHEM thresh must be in (0, 1), got {thresh}")
    if not 0 < min_kept_fraction <= 1:
        raise ValueError(f"OHEM min_kept_fraction must be in (0, 1], got {min_kept_fraction}")


def ohem_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, thresh: float = 0.7,
                       min_kept_fraction: float = 1 / 16, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Online hard example mining cross-entropy, the authors' `OhemCELoss`.

    Per-pixel CE (ignored pixels count as 0 and stay in the ranking), sorted in descending order. With
    n_min = floor(min_kept_fraction * #pixels): when the (n_min + 1)-th largest loss exceeds -log(thresh), the mean
    of all losses above -log(thresh); otherwise the mean of the n_min largest. The authors fix n_min in pixels
    (train_seg: batch * 640 * 480 // 16; train_fusion: 8 * 640 * 480 // 8, also 1/16 of a batch of 16 480x640
    images); a fraction keeps that ratio at other batch and image sizes. Where n_min >= #pixels (the authors' code
    would index past the end) every pixel is kept.
    """
    check_ohem(thresh, min_kept_fraction)
    loss = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="none").flatten()
    loss, _ = torch.sort(loss, descending=True)
    n_min = int(loss.numel() * min_kept_fraction)
    if n_min >= loss.numel():
        return loss.mean()
    threshold = -torch.log(torch.tensor(thresh, dtype=torch.float32, device=loss.device))  # float32, as the authors'
    if loss[n_min] > threshold:
        return loss[loss > threshold].mean()
    return loss[:n_min].mean()


class SemanticLoss(nn.Module):
    """OHEM CE of the main output + `aux_weight` x OHEM CE of the auxiliary output.

    Authors: aux_weight 0.1 for the semantic loss of the fusion network, 0.75 when training the segmenter.
    Returns {"loss", "loss_main", "loss_aux"} (unweighted terms)."""

    def __init__(self, aux_weight: float, thresh: float = 0.7, min_kept_fraction: float = 1 / 16,
                 ignore_index: int = IGNORE_INDEX):
        super().__init__()
        if aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {aux_weight}")
        check_ohem(thresh, min_kept_fraction)
        self.aux_weight, self.thresh, self.min_kept_fraction = aux_weight, thresh, min_kept_fraction
        self.ignore_index = ignore_index

    def forward(self, main: torch.Tensor, aux: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        kwargs = {"thresh": self.thresh, "min_kept_fraction": self.min_kept_fraction,
                  "ignore_index": self.ignore_index}
        l_main = ohem_cross_entropy(main, labels, **kwargs)
        l_aux = ohem_cross_entropy(aux, labels, **kwargs)
        return {"loss": l_main + self.aux_weight * l_aux, "loss_main": l_main, "loss_aux": l_aux}
