"""PMR (Fan et al., CVPR 2023): prototypical modal rebalance.

Port of fanyunfeng-bit/Modal-Imbalance-PMR `main_Prototype_grad.py`: per-class prototypes of each modality's encoder
features (class means over a part of the training set, computed in eval mode at the start of every epoch and mixed
with the previous ones by `momentum_coef` from the third computation on); each step, the prototype scores
softmax(-||z - c_k||)[y] summed over the batch give rho = score_audio / score_visual; the prototypical cross-entropy
CE(-||z - c||, y) of the *slower* modality is added to the task loss with weight alpha (the code's binary rule) or
alpha * min(rho_dominant - 1, 1) (`coefficient: clipped`, the paper's text).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fusion_bench.base.precision import cast_floating, model_dtype
from fusion_bench.data.transforms import collate_samples
from fusion_bench.methods.av_balance.module import AVClassifier
from fusion_bench.types import TARGET

COEFFICIENTS = ("binary", "clipped")
PROTO_SPLITS = ("train", "val")


def prototype_logits(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """-Euclidean distance of every feature to every class prototype (B x K), PMR's `-EU_dist`."""
    return -torch.cdist(features, prototypes, compute_mode="donot_use_mm_for_euclid_dist")


def class_means(features: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(K x D sums, K counts) of features per class (accumulate, then divide)."""
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, target, features)
    counts = torch.bincount(target, minlength=num_classes)
    return sums, counts


def pmr_coefficients(ratio_audio: float, alpha: float, rule: str = "binary") -> tuple[float, float]:
    """(weight of the audio prototype CE, weight of the visual prototype CE) from rho = score_a / score_v.

    binary (PMR's code): rho > 1 -> (0, alpha); rho < 1 -> (alpha, 0); rho = 1 -> (0, 0).
    clipped (the paper's text): the slower modality gets alpha * min(rho_dominant - 1, 1), rho_dominant = max(rho,
    1 / rho).
    """
    if rule not in COEFFICIENTS:
        raise ValueError(f"unknown coefficient rule {rule!r}; valid: {', '.join(COEFFICIENTS)}")
    if ratio_audio > 1:
        return 0.0, alpha if rule == "binary" else alpha * min(ratio_audio - 1.0, 1.0)
    if ratio_audio < 1:
        return (alpha if rule == "binary" else alpha * min(1.0 / ratio_audio - 1.0, 1.0)), 0.0
    return 0.0, 0.0


class PMRClassifier(AVClassifier):
    """Concat late fusion + PMR's prototypical CE on the slower modality."""

    def __init__(self, alpha: float = 2.0, momentum_coef: float = 0.0, coefficient: str = "binary",
                 proto_split: str = "train", proto_fraction: float = 0.1, modulation_starts: int = 0,
                 modulation_ends: int = 70, **kwargs: Any):
        super().__init__(**kwargs)
        if coefficient not in COEFFICIENTS:
            raise ValueError(f"unknown coefficient {coefficient!r}; valid: {', '.join(COEFFICIENTS)}")
        if proto_split not in PROTO_SPLITS:
            raise ValueError(f"unknown proto_split {proto_split!r}; valid: {', '.join(PROTO_SPLITS)}")
        if not 0 < proto_fraction <= 1:
            raise ValueError(f"proto_fraction must be in (0, 1], got {proto_fraction}")
        self.alpha = alpha
        self.momentum_coef = momentum_coef
        self.coefficient = coefficient
        self.proto_split = proto_split
        self.proto_fraction = proto_fraction
        self.modulation_starts = modulation_starts
        self.modulation_ends = modulation_ends
        d = self.net.feature_dim
        self.register_buffer("audio_proto", torch.zeros(self.num_classes, d), persistent=False)
        self.register_buffer("visual_proto", torch.zeros(self.num_classes, d), persistent=False)
        self._proto_seed = torch.initial_seed()
        self._proto_updates = 0

    # -- prototypes --------------------------------------------------------------------------------------
    def _proto_loader(self) -> DataLoader:
        datamodule = self.trainer.datamodule
        dataset = datamodule.train_set if self.proto_split == "train" else datamodule.val_set
        if dataset is None:
            raise ValueError("pmr: proto_split 'val' needs a validation split (or train.val_fraction)")
        generator = torch.Generator().manual_seed(self._proto_seed + self.current_epoch)
        return DataLoader(dataset, batch_size=datamodule.batch_size, shuffle=True, generator=generator,
                          collate_fn=collate_samples, num_workers=0)

    @torch.no_grad()
    def compute_prototypes(self, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
        """Class means of both encoders' features in eval mode over the first max(1, fraction x len) batches
        (PMR: 1/10 of the shuffled training batches; AVE: the whole validation set)."""
        n_batches = max(1, int(len(loader) * self.proto_fraction)) if self.proto_fraction < 1 else len(loader)
        was_training = self.net.training
        self.net.eval()
        sums_a = torch.zeros_like(self.audio_proto)
        sums_v = torch.zeros_like(self.visual_proto)
        counts = torch.zeros(self.num_classes, dtype=torch.long, device=self.device)
        for i, batch in enumerate(loader):
            if i >= n_batches:
                break
            batch = cast_floating({k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                                   for k, v in batch.items()}, model_dtype(self))  # e.g. float64 training
            za, zv = self.features(batch)
            sa, c = class_means(za, batch[TARGET], self.num_classes)
            sv, _ = class_means(zv, batch[TARGET], self.num_classes)
            sums_a += sa
            sums_v += sv
            counts += c
        self.net.train(was_training)
        seen = counts > 0  # PMR divides by zero for an unseen class; here it keeps its previous prototype
        audio, visual = self.audio_proto.clone(), self.visual_proto.clone()
        audio[seen] = sums_a[seen] / counts[seen, None]
        visual[seen] = sums_v[seen] / counts[seen, None]
        return audio, visual

    def update_prototypes(self) -> None:
        audio, visual = self.compute_prototypes(self._proto_loader())
        if self._proto_updates >= 2:  # PMR: the initial and the first end-of-epoch prototypes are not mixed
            audio = (1 - self.momentum_coef) * audio + self.momentum_coef * self.audio_proto
            visual = (1 - self.momentum_coef) * visual + self.momentum_coef * self.visual_proto
        self.audio_proto.copy_(audio)
        self.visual_proto.copy_(visual)
        self._proto_updates += 1

    def on_train_epoch_start(self) -> None:
        self.update_prototypes()

    # -- training ----------------------------------------------------------------------------------------
    def training_losses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        za, zv = self.features(batch)
        outputs = self.heads(za, zv)
        target = batch[TARGET]
        ce = F.cross_entropy(outputs["fused"], target)
        sim_a, sim_v = prototype_logits(za, self.audio_proto), prototype_logits(zv, self.visual_proto)
        with torch.no_grad():
            score_a = sim_a.softmax(1).gather(1, target[:, None]).sum()
            score_v = sim_v.softmax(1).gather(1, target[:, None]).sum()
            ratio = float(score_a / score_v)
        proto_a, proto_v = F.cross_entropy(sim_a, target), F.cross_entropy(sim_v, target)
        beta, lam = 0.0, 0.0
        if self.modulation_active(self.modulation_starts, self.modulation_ends) and math.isfinite(ratio):
            beta, lam = pmr_coefficients(ratio, self.alpha, self.coefficient)
        loss = ce + beta * proto_a + lam * proto_v
        return {"loss": loss, "ce": ce.detach(), "proto_ce_audio": proto_a.detach(),
                "proto_ce_frames": proto_v.detach(), "ratio_audio_proto": torch.tensor(ratio),
                "coef_audio": torch.tensor(beta), "coef_frames": torch.tensor(lam)}, outputs

    def evaluation_outputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The row's heads plus the prototype classifiers (logged as `<stage>/acc_<modality>_proto`)."""
        za, zv = self.features(batch)
        outputs = self.heads(za, zv)
        audio_key, visual_key = self.modalities
        return {"fused": outputs["fused"], audio_key: outputs[audio_key], visual_key: outputs[visual_key],
                f"{audio_key}_proto": prototype_logits(za, self.audio_proto),
                f"{visual_key}_proto": prototype_logits(zv, self.visual_proto)}
