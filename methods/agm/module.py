"""AGM (Li et al., ICCV 2023): adaptive gradient modulation with Shapley-style mono-modal responses.

Port of lihong2303/AGM_ICCV2023 (`model/CREMAD_net.py` `GradMod`, `run/CREMAD_main.py` `train`), the concat
late-fusion audio-visual setting:
- forward: total = f(a, v) in train mode, then (eval mode, with gradient) f(a, 0) and f(0, v); the mono-modal
  responses m_a = (total - f(0, v) + f(a, 0)) / 2, m_v = (total - f(a, 0) + f(0, v)) / 2 (m_a + m_v = total);
- score s_u = mean over the batch of -log softmax(m_u)[y] (probabilities below 1e-8 count as 1e-8);
  r_a = exp(s_v - s_a), r_v = exp(s_a - s_v); the running means of s_u over all steps so far give the reference
  ratios r^_a = exp(S_v - S_a), r^_v = exp(S_a - S_v); coefficients k_u = exp(alpha * min(r^_u - r_u, 10));
- the loss CE(m_a + m_v, y) is back-propagated with the gradient of m_u scaled by k_u (the code's backward hooks on
  `m_a_o` / `m_v_o`; here a gradient-scaling autograd function);
- when any gradient of the fusion head's weight leaves [-1, 1], all gradients are clipped to norm 1.
Outside the modulation window the last coefficients stay in force, as in the code (the hooks keep their scale).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusion_bench.methods.av_balance.module import AVClassifier
from fusion_bench.types import TARGET


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by `scale`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x in the forward pass; its gradient times `scale` in the backward pass."""
    return _ScaleGrad.apply(x, scale)


def shapley_responses(total: torch.Tensor, audio_only: torch.Tensor,
                      visual_only: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(m_audio, m_visual) from f(a, v), f(a, 0) and f(0, v), as AGM's `Modality_Audio` / `Modality_Visual`."""
    return 0.5 * (total - visual_only + audio_only), 0.5 * (total - audio_only + visual_only)


def response_score(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over the batch of -log softmax(logits)[y], each probability floored at 1e-8 (AGM's `score_audio`)."""
    p = logits.detach().softmax(1).gather(1, target[:, None]).squeeze(1)
    return float(-torch.log(p.clamp_min(1e-8)).mean())


def agm_coefficients(score_a: float, score_v: float, mean_a: float, mean_v: float,
                     alpha: float) -> tuple[float, float]:
    """(k_audio, k_visual) = exp(alpha * min(r^_u - r_u, 10)) with r_a = exp(s_v - s_a), r^_a = exp(S_v - S_a)."""
    ratio_a, ratio_v = math.exp(score_v - score_a), math.exp(score_a - score_v)
    optimal_a, optimal_v = math.exp(mean_v - mean_a), math.exp(mean_a - mean_v)
    return math.exp(alpha * min(optimal_a - ratio_a, 10.0)), math.exp(alpha * min(optimal_v - ratio_v, 10.0))


class AGMClassifier(AVClassifier):
    """Concat late fusion trained through AGM's gradient-scaled Shapley decomposition of the fused logits."""

    rewrites_gradients = True  # the clip in on_after_backward: no gradient accumulation (trainer_settings)
    needs_unscaled_gradients = True  # a clip to norm 1 of float16-loss-scaled gradients would stop training

    def __init__(self, alpha: float = 1.0, modulation_starts: int = 0, modulation_ends: int = 20,
                 clip_threshold: float = 1.0, clip_norm: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.alpha = alpha
        self.modulation_starts = modulation_starts
        self.modulation_ends = modulation_ends
        self.clip_threshold = clip_threshold
        self.clip_norm = clip_norm
        self.scale_a = 1.0
        self.scale_v = 1.0
        self.mean_score_a = 0.0  # AGM's train_score_a: running mean over every step so far
        self.mean_score_v = 0.0
        self.iteration = 0

    def responses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """(heads of the full pass, m_audio, m_visual); the padded passes run in eval mode and keep their graph."""
        audio, frames = self.inputs(batch)
        outputs = self.heads(self.net.encode_audio(audio), self.net.encode_visual(frames))
        was_training = self.net.training
        self.net.eval()
        audio_only = self.net(audio, torch.zeros_like(frames))["fused"]
        visual_only = self.net(torch.zeros_like(audio), frames)["fused"]
        self.net.train(was_training)
        m_a, m_v = shapley_responses(outputs["fused"], audio_only, visual_only)
        return outputs, m_a, m_v

    def training_losses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        outputs, m_a, m_v = self.responses(batch)
        target = batch[TARGET]
        s_a, s_v = response_score(m_a, target), response_score(m_v, target)
        k_a, k_v = agm_coefficients(s_a, s_v, self.mean_score_a, self.mean_score_v, self.alpha)
        self.iteration += 1
        it = self.iteration
        self.mean_score_a = self.mean_score_a * (it - 1) / it + s_a / it
        self.mean_score_v = self.mean_score_v * (it - 1) / it + s_v / it
        # AGM counts epochs from 1: the window [starts, ends] applies to current_epoch + 1
        if self.modulation_starts <= self.current_epoch + 1 <= self.modulation_ends:
            self.scale_a, self.scale_v = k_a, k_v
        fused = scale_grad(m_a, self.scale_a) + scale_grad(m_v, self.scale_v)
        audio_key, visual_key = self.modalities
        outputs = {**outputs, "fused": fused, f"{audio_key}_shapley": m_a.detach(),
                   f"{visual_key}_shapley": m_v.detach()}
        loss = F.cross_entropy(fused, target)
        return {"loss": loss, "score_audio": torch.tensor(s_a), "score_frames": torch.tensor(s_v),
                "coeff_audio": torch.tensor(self.scale_a), "coeff_frames": torch.tensor(self.scale_v)}, outputs

    # the running state (AGM's train_score_a/v, its step count and the coefficients in force) goes into checkpoints,
    # so that a resumed fit continues the running means and keeps the coefficients after the window
    STATE = ("scale_a", "scale_v", "mean_score_a", "mean_score_v", "iteration")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["agm_state"] = {name: getattr(self, name) for name in self.STATE}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        for name, value in (checkpoint.get("agm_state") or {}).items():
            if name in self.STATE:
                setattr(self, name, value)

    def on_after_backward(self) -> None:
        grad = self.net.classifier.weight.grad
        if grad is not None and (grad.max() > self.clip_threshold or grad.min() < -self.clip_threshold):
            nn.utils.clip_grad_norm_(self.parameters(), max_norm=self.clip_norm)

    def evaluation_outputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The row's heads plus AGM's Shapley responses (logged as `<stage>/acc_<modality>_shapley`)."""
        outputs, m_a, m_v = self.responses(batch)
        audio_key, visual_key = self.modalities
        return {**outputs, f"{audio_key}_shapley": m_a, f"{visual_key}_shapley": m_v}
