"""OGM-GE (Peng et al., CVPR 2022): on-the-fly gradient modulation with generalisation enhancement.

Port of GeWu-Lab/OGM-GE_CVPR2022 `main.py` (`train_epoch`): after `loss.backward()`, the discrepancy ratio of the
summed true-class softmax scores of the two unimodal logits (concat fusion: half of the classifier weight plus half
the bias) gives the dominant modality u a coefficient k_u = 1 - tanh(alpha * rho_u) (the other modality keeps 1);
every 4-D (convolution) gradient of each encoder is multiplied by its coefficient and, for OGM-GE, Gaussian noise
N(0, std(grad) + 1e-8) is added to it (both encoders).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from fusion_bench.methods.av_balance.module import AVClassifier
from fusion_bench.types import TARGET

MODULATIONS = ("ogm_ge", "ogm", "none")


def true_class_score(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of softmax(logits)[i, target_i] (OGM-GE's `score_a` / `score_v`)."""
    return logits.softmax(1).gather(1, target[:, None]).sum()


def ogm_ge_coefficients(logits_audio: torch.Tensor, logits_visual: torch.Tensor, target: torch.Tensor,
                        alpha: float) -> tuple[float, float, float]:
    """(coeff_audio, coeff_visual, ratio_visual) of OGM-GE's Eq. 10 as its code computes them.

    ratio_v = score_v / score_a; if ratio_v > 1: coeff_v = 1 - tanh(alpha * relu(ratio_v)), coeff_a = 1; otherwise
    coeff_a = 1 - tanh(alpha * relu(1 / ratio_v)), coeff_v = 1 (so equal scores modulate the audio encoder).
    """
    with torch.no_grad():
        ratio_v = float(true_class_score(logits_visual, target) / true_class_score(logits_audio, target))
    if ratio_v > 1:
        return 1.0, 1.0 - math.tanh(alpha * max(ratio_v, 0.0)), ratio_v
    return 1.0 - math.tanh(alpha * max(1.0 / ratio_v, 0.0)), 1.0, ratio_v


def modulate_conv_gradients(module: nn.Module, coeff: float, noise: bool) -> None:
    """Scale every 4-D parameter gradient of `module` by `coeff`; with `noise`, add N(0, std(grad) + 1e-8) drawn from
    the global generator (std of the unscaled gradient, as OGM-GE's `parms.grad.std()`)."""
    for param in module.parameters():
        if param.grad is None or param.grad.ndim != 4:
            continue
        if noise:
            std = param.grad.std().item() + 1e-8
            param.grad = param.grad * coeff + torch.zeros_like(param.grad).normal_(0, std)
        else:
            param.grad.mul_(coeff)


class OGMGEClassifier(AVClassifier):
    """Concat late fusion trained with CE, encoder gradients modulated by OGM-GE in `on_after_backward`."""

    rewrites_gradients = True  # the modulation in on_after_backward: no gradient accumulation (trainer_settings)

    def __init__(self, alpha: float = 0.8, modulation: str = "ogm_ge", modulation_starts: int = 0,
                 modulation_ends: int = 50, **kwargs: Any):
        super().__init__(**kwargs)
        if modulation not in MODULATIONS:
            raise ValueError(f"unknown modulation {modulation!r}; valid: {', '.join(MODULATIONS)}")
        self.alpha = alpha
        self.modulation = modulation
        self.modulation_starts = modulation_starts
        self.modulation_ends = modulation_ends
        self._coefficients: tuple[float, float] | None = None

    def training_losses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        losses, outputs = super().training_losses(batch)
        audio_key, visual_key = self.modalities
        coeff_a, coeff_v, ratio_v = ogm_ge_coefficients(outputs[audio_key], outputs[visual_key], batch[TARGET],
                                                        self.alpha)
        active = self.modulation != "none" and self.modulation_active(self.modulation_starts, self.modulation_ends)
        self._coefficients = (coeff_a, coeff_v) if active else None
        losses.update(ratio_v=torch.tensor(ratio_v), coeff_a=torch.tensor(coeff_a), coeff_v=torch.tensor(coeff_v))
        return losses, outputs

    def on_after_backward(self) -> None:
        if self._coefficients is None:
            return
        for encoder, coeff in zip(self.encoders, self._coefficients):
            modulate_conv_gradients(encoder, coeff, noise=self.modulation == "ogm_ge")
        self._coefficients = None
