"""The shared audio-visual recipe: one LightningModule base for late fusion and every balancing method.

`AVClassifier` owns the encoders and the concatenation head (`fusion_bench.methods.av_balance.model.ConcatFusionNet`),
the input handling (optional spectrogram resize, optional ImageNet normalisation of the frames), the optimiser (Adam
or SGD with momentum, optional cosine annealing per step) and the logging. A method subclasses it and overrides
`training_losses` (what is minimised) and, where it acts on gradients, Lightning's `on_after_backward`.

Constructor keys (config.yaml `model` + `optim`):
  encoder conv|resnet18, width, blocks (conv only), pretrained (local torchvision resnet18 state dict), init
  torch|ogm_ge, frame_norm none|imagenet, audio_size [H, W] | null, unimodal_heads;
  optimizer adam|sgd, lr, momentum (sgd), weight_decay, schedule none|cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from fusion_bench.base import MultimodalClassifier
from fusion_bench.methods.av_balance.model import ConcatFusionNet
from fusion_bench.types import TARGET

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("none", "cosine")
FRAME_NORMS = ("none", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # OGM-GE's frame transform (transforms.Normalize)
IMAGENET_STD = (0.229, 0.224, 0.225)


class AVClassifier(MultimodalClassifier):
    """Concatenation-fusion audio-visual classifier with the shared recipe; trains on CE of the fused logits.

    `forward(batch) -> {"fused", <audio key>, <visual key>}` (unimodal logits by OGM-GE's half-head convention).
    """

    def __init__(self, width: int = 16, blocks: int = 3, encoder: str = "conv", pretrained: str | None = None,
                 audio_channels: int = 1, visual_channels: int = 3, init: str = "torch", frame_norm: str = "none",
                 audio_size: Sequence[int] | None = None, unimodal_heads: bool = False, optimizer: str = "adam",
                 momentum: float = 0.9, schedule: str = "none", **kwargs: Any):
        super().__init__(**kwargs)
        self.save_hyperparameters()
        for name, value, valid in (("optimizer", optimizer, OPTIMIZERS), ("schedule", schedule, SCHEDULES),
                                   ("frame_norm", frame_norm, FRAME_NORMS)):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if audio_size is not None and len(audio_size) != 2:
            raise ValueError(f"audio_size must be [height, width], got {audio_size!r}")
        self.optimizer_name = optimizer
        self.momentum = momentum
        self.schedule = schedule
        self.frame_norm = frame_norm
        self.audio_size = tuple(int(s) for s in audio_size) if audio_size is not None else None
        if frame_norm == "imagenet":
            self.register_buffer("frame_mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
            self.register_buffer("frame_std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)
        self.net = self.build_net(num_classes=self.num_classes, audio_channels=audio_channels,
                                  visual_channels=visual_channels, width=width, blocks=blocks, encoder=encoder,
                                  pretrained=pretrained, unimodal_heads=unimodal_heads, init=init)

    # -- model -------------------------------------------------------------------------------------------
    def build_net(self, **kwargs: Any) -> torch.nn.Module:
        return ConcatFusionNet(**kwargs)

    @property
    def encoders(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(audio encoder, visual encoder): the modules a balancing method modulates."""
        return self.net.audio_encoder, self.net.visual_encoder

    def inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio, frames) as the encoders take them: spectrogram resized to `audio_size`, frames normalised."""
        audio_key, visual_key = self.modalities
        audio, frames = batch[audio_key], batch[visual_key]
        if self.audio_size is not None and tuple(audio.shape[-2:]) != self.audio_size:
            audio = F.interpolate(audio, size=self.audio_size, mode="bilinear", align_corners=False)
        if self.frame_norm == "imagenet":
            frames = (frames - self.frame_mean) / self.frame_std
        return audio, frames

    def features(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_audio, z_visual), B x D each."""
        audio, frames = self.inputs(batch)
        return self.net.encode_audio(audio), self.net.encode_visual(frames)

    def probe_features(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """{modality key: frozen encoder features} for the linear probes (fusion_bench.benchmark.probes): both
        encoders' outputs, or the one encoder a unimodal model has."""
        return {key: z for key, z in zip(self.modalities, self.features(batch)) if z is not None}

    def heads(self, za: torch.Tensor, zv: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every head's logits under the dataset's modality keys: "fused", <audio key>, <visual key>, and, with
        `unimodal_heads`, "<audio key>_aux", "<visual key>_aux"."""
        audio_key, visual_key = self.modalities
        out = self.net.head(za, zv)
        names = {"fused": "fused", "audio": audio_key, "frames": visual_key, "audio_aux": f"{audio_key}_aux",
                 "frames_aux": f"{visual_key}_aux"}
        return {names[k]: v for k, v in out.items()}

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self.heads(*self.features(batch))
        return {k: out[k] for k in ("fused", *self.modalities)}

    # -- training ----------------------------------------------------------------------------------------
    def training_losses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """({"loss": minimised total, <term>: logged value, ...}, {head: logits}); default: CE on the fused logits."""
        outputs = self.heads(*self.features(batch))
        return {"loss": F.cross_entropy(outputs["fused"], batch[TARGET])}, outputs

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses, outputs = self.training_losses(batch)
        target = batch[TARGET]
        n = target.shape[0]
        acc = (outputs["fused"].argmax(1) == target).float().mean()
        self.log_dict({"train/loss": losses["loss"], "train/acc": acc}, prog_bar=True, batch_size=n)
        extra = {f"train/{k}": v for k, v in losses.items() if k != "loss"}
        if extra:
            self.log_dict(extra, batch_size=n)
        self.log_accuracies({k: v for k, v in outputs.items() if k != "fused"}, target, "train")
        return losses["loss"]

    # -- optimisation ------------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups (one by default; InfoBridge adds the critic's learning-rate multiplier)."""
        return [{"params": list(self.parameters())}]

    def configure_optimizers(self):
        groups = self.parameter_groups()
        if self.optimizer_name == "adam":
            optimizer = torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)
        else:
            optimizer = torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.schedule == "none":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def modulation_active(self, starts: int, ends: int) -> bool:
        """starts <= current epoch (0-based) <= ends, the window convention of OGM-GE/PMR (`epoch` from 0)."""
        return starts <= self.current_epoch <= ends
