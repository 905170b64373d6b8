"""Encoders and the concatenation head shared by every audio-visual method (pure nn.Modules, no Lightning).

`ConcatFusionNet` is the OGM-GE "concat" model: one encoder per modality, `logits = W [z_a; z_v] + b`, unimodal
logits from the matching half of W plus b/2 (OGM-GE's convention). Encoders:
- `conv`: `blocks` x (3x3 conv, BN, ReLU, 2x max-pool) + global average pooling (the suite's small CPU encoder);
- `resnet18`: torchvision's ResNet-18 built without weights (nothing is downloaded), `fc` removed -> 512-d; the
  audio encoder's `conv1` takes one channel (OGM-GE's `resnet18(modality='audio')`).
Frames given as BxTxCxHxW are folded into the batch and the features averaged over T (= OGM-GE's adaptive
average pooling over T x H x W, the per-frame feature maps having equal sizes).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

ENCODERS = ("conv", "resnet18")
INITS = ("torch", "ogm_ge")


def conv_encoder(in_channels: int, width: int, blocks: int) -> nn.Sequential:
    """`blocks` x (3x3 conv, BatchNorm, ReLU, 2x max-pool), then global average pooling -> B x width*2^(blocks-1)."""
    layers: list[nn.Module] = []
    ch = in_channels
    for i in range(blocks):
        out = width * 2**i
        layers += [nn.Conv2d(ch, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        if i < blocks - 1:
            layers.append(nn.MaxPool2d(2))
        ch = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def resnet18_encoder(in_channels: int, pretrained: str | Path | None = None) -> nn.Module:
    """torchvision ResNet-18 without weights, `fc` = Identity (B x 512); `conv1` rebuilt for `in_channels` != 3.

    `pretrained`: a local torchvision `resnet18` state dict (never downloaded); `fc` is skipped, and `conv1` too when
    the channel count differs (the 1-channel audio encoder).
    """
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's conv init
    net.fc = nn.Identity()
    if pretrained is not None:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained ResNet-18 weights {path} not found (weights are never downloaded)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        if in_channels != 3:
            state = {k: v for k, v in state.items() if not k.startswith("conv1.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (k.startswith("conv1.") and in_channels != 3)]
        if missing or unexpected:
            raise ValueError(f"{path} is not a torchvision resnet18 state dict (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
    return net


def build_encoder(kind: str, in_channels: int, width: int, blocks: int,
                  pretrained: str | Path | None = None) -> tuple[nn.Module, int]:
    """(encoder, feature dimension) for `kind` in ENCODERS."""
    if kind == "conv":
        if pretrained is not None:
            raise ValueError("pretrained weights apply to encoder: resnet18 only")
        return conv_encoder(in_channels, width, blocks), width * 2 ** (blocks - 1)
    if kind == "resnet18":
        return resnet18_encoder(in_channels, pretrained), 512
    raise ValueError(f"unknown encoder {kind!r}; valid encoders: {', '.join(ENCODERS)}")


def ogm_ge_init(module: nn.Module) -> None:
    """OGM-GE's `weight_init` (utils/utils.py): Linear xavier-normal / bias 0, Conv2d kaiming-normal (fan_out, relu),
    BatchNorm2d weight 1 / bias 0. Apply with `net.apply(ogm_ge_init)`."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        nn.init.constant_(module.bias, 0)
    elif isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.constant_(module.weight, 1)
        nn.init.constant_(module.bias, 0)


class ConcatFusionNet(nn.Module):
    """logits = W [f_audio; f_visual] + b; unimodal logits use the matching half of W plus b/2 (as OGM-GE).

    `unimodal_heads=True` adds separate linear heads `audio_head` / `visual_head` (MMPareto's `head_audio` /
    `head_video`), returned as "audio_aux" / "frames_aux"; the OGM-GE half-head logits stay "audio" / "frames".
    Parameters are created in the order audio encoder, visual encoder, classifier, extra heads, so a method that adds
    heads starts from the same encoder/classifier weights as plain late fusion under the same seed.
    """

    def __init__(self, num_classes: int, audio_channels: int = 1, visual_channels: int = 3, width: int = 16,
                 blocks: int = 3, encoder: str = "conv", pretrained: str | Path | None = None,
                 unimodal_heads: bool = False, init: str = "torch"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")
        self.audio_encoder, d = build_encoder(encoder, audio_channels, width, blocks, pretrained)
        self.visual_encoder, _ = build_encoder(encoder, visual_channels, width, blocks, pretrained)
        self.feature_dim = d
        self.classifier = nn.Linear(2 * d, num_classes)
        self.audio_head = nn.Linear(d, num_classes) if unimodal_heads else None
        self.visual_head = nn.Linear(d, num_classes) if unimodal_heads else None
        if init == "ogm_ge":
            if pretrained is not None:  # keep the loaded encoder weights; initialise the heads only
                for head in (self.classifier, self.audio_head, self.visual_head):
                    if head is not None:
                        head.apply(ogm_ge_init)
            else:
                self.apply(ogm_ge_init)

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        return self.audio_encoder(audio)

    def encode_visual(self, frames: torch.Tensor) -> torch.Tensor:
        """frames BxCxHxW, or BxTxCxHxW (frames folded into the batch, features averaged over T)."""
        if frames.ndim == 5:
            b, t = frames.shape[:2]
            return self.visual_encoder(frames.flatten(0, 1)).view(b, t, -1).mean(1)
        return self.visual_encoder(frames)

    def head(self, fa: torch.Tensor, fv: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fused and unimodal logits from the two feature vectors."""
        w, b = self.classifier.weight, self.classifier.bias
        d = self.feature_dim
        out = {
            "fused": self.classifier(torch.cat([fa, fv], dim=1)),
            "audio": fa @ w[:, :d].t() + b / 2,
            "frames": fv @ w[:, d:].t() + b / 2,
        }
        if self.audio_head is not None and self.visual_head is not None:
            out["audio_aux"] = self.audio_head(fa)
            out["frames_aux"] = self.visual_head(fv)
        return out

    def forward(self, audio: torch.Tensor, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.encode_audio(audio), self.encode_visual(frames))


class UnimodalNet(nn.Module):
    """One encoder and a linear head (the "Unimodal" row): logits = W f + b."""

    def __init__(self, num_classes: int, in_channels: int, width: int = 16, blocks: int = 3, encoder: str = "conv",
                 pretrained: str | Path | None = None, init: str = "torch"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")
        self.encoder, d = build_encoder(encoder, in_channels, width, blocks, pretrained)
        self.feature_dim = d
        self.classifier = nn.Linear(d, num_classes)
        if init == "ogm_ge":
            (self.classifier if pretrained is not None else self).apply(ogm_ge_init)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            b, t = x.shape[:2]
            return self.encoder(x.flatten(0, 1)).view(b, t, -1).mean(1)
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encode(x))
