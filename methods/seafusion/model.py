"""SeAFusion's networks (Tang et al., Information Fusion 2022) as pure nn.Modules (no Lightning here).

- `SeAFusionNet`: two encoders (infrared and visible) of a 3x3 conv followed by two gradient residual dense blocks
  (GRDB), the features concatenated (the cross-modal fusion) and a four-layer conv decoder. Layout read from the
  authors' FusionNet.py (github.com/Linfeng-Tang/SeAFusion); own implementation.
- `SemanticSegmenter`: the training-only segmentation network of the semantic loss. The authors use a BiSeNet
  (ResNet-18 context path, main head at stride 8, auxiliary head on the stride-16 features); this stand-in is the
  suite's SegFormer (built by `fusion_bench.evaluators.segmentation.build_segformer`, never downloaded) with a
  BiSeNet-style auxiliary head on the stride-16 encoder stage.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusion_bench.base.method import check_source_pair

_SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], device="cpu")  # authors' orientation


def conv_lrelu(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv (zero padding) + LeakyReLU(0.2)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.2))


class SobelConv(nn.Module):
    """|Sobel_x * x| + |Sobel_y * x| per channel, as depthwise 3x3 convolutions *initialised* to Sobel.

    The authors build these as ordinary (trainable) Conv2d layers, so they are parameters here too and count in
    the parameter total (2 * 9 per channel)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_x = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.conv_y = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        with torch.no_grad():
            self.conv_x.weight.copy_(_SOBEL_X.expand(channels, 1, 3, 3))
            self.conv_y.weight.copy_(_SOBEL_X.t().expand(channels, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_x(x).abs() + self.conv_y(x).abs()


class GRDB(nn.Module):
    """Gradient residual dense block: a two-layer dense block (C -> 3C channels) squeezed by a 1x1 conv, plus a
    Sobel-gradient branch (depthwise Sobel, 1x1 conv); LeakyReLU(0.1) of the sum."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.dense1 = conv_lrelu(c_in, c_in)
        self.dense2 = conv_lrelu(2 * c_in, c_in)
        self.squeeze = nn.Conv2d(3 * c_in, c_out, 1)
        self.sobel = SobelConv(c_in)
        self.gradient_proj = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense = torch.cat([x, self.dense1(x)], dim=1)
        dense = torch.cat([dense, self.dense2(dense)], dim=1)
        return F.leaky_relu(self.squeeze(dense) + self.gradient_proj(self.sobel(x)), 0.1)


class Encoder(nn.Module):
    """conv3x3 + LReLU(0.2) to channels[0], then one GRDB per further entry of `channels`."""

    def __init__(self, in_channels: int, channels: tuple[int, ...]):
        super().__init__()
        self.stem = conv_lrelu(in_channels, channels[0])
        self.blocks = nn.Sequential(*(GRDB(a, b) for a, b in zip(channels[:-1], channels[1:])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class SeAFusionNet(nn.Module):
    """SeAFusion's fusion network. x1 feeds the infrared encoder, x2 the visible one (datamodule order (ir, vis)).

    features(x1, x2) = concat(E_ir(x1), E_vis(x2))   (B x 2*channels[-1] x H x W; the authors' fusion point)
    decode(f)        = conv-LReLU 96->64->32->16, then conv 16->out and tanh/2 + 1/2 (in [0, 1])

    The default `channels=(16, 32, 48)` is the authors' network (0.167 M parameters with 1-channel input).
    Fully convolutional at stride 1, so any H x W works.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1,
                 channels: tuple[int, ...] | list[int] = (16, 32, 48)):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}")
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(f"channels must list >= 2 positive widths (stem, then one per GRDB), got {channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.encoder_ir = Encoder(in_channels, channels)
        self.encoder_vis = Encoder(in_channels, channels)
        self.feature_channels = 2 * channels[-1]
        c0, c1 = channels[0], channels[1]
        # the authors' decoder widths: 2*c2 -> 2*c1 -> 2*c0 -> c0 -> out
        self.decoder = nn.Sequential(conv_lrelu(self.feature_channels, 2 * c1), conv_lrelu(2 * c1, 2 * c0),
                                     conv_lrelu(2 * c0, c0), nn.Conv2d(c0, out_channels, 3, padding=1))

    def features(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Fused features B x feature_channels x H x W (the concatenated encoder outputs)."""
        check_source_pair(x1, x2, self.in_channels)
        return torch.cat([self.encoder_vis(x2), self.encoder_ir(x1)], dim=1)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Fused image B x out_channels x H x W in [0, 1]."""
        if features.dim() != 4 or features.shape[1] != self.feature_channels:
            raise ValueError(f"features must be B x {self.feature_channels} x H x W, got {tuple(features.shape)}")
        return torch.tanh(self.decoder(features)) / 2 + 0.5

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.decode(self.features(x1, x2))


class AuxiliaryHead(nn.Module):
    """The authors' `BiSeNetOutput` layout: conv3x3 (no bias) + BN + LeakyReLU(0.01), conv1x1 (no bias) to classes."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(mid_channels), nn.LeakyReLU(0.01),
                                    nn.Conv2d(mid_channels, num_classes, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SemanticSegmenter(nn.Module):
    """SegFormer (MiT encoder + all-MLP decoder) plus an auxiliary head on encoder stage `aux_stage` (0-based;
    2 = stride 16, where BiSeNet's auxiliary head sits). `forward(image) -> (main, aux)` logits, both bilinearly
    upsampled to the image size. The image (Bx1 or Bx3 x H x W in [0, 1]) goes in unnormalised, as the authors
    feed BiSeNet, unless `normalize` (ImageNet mean/std, for pretrained MiT weights).

    `segformer`: architecture keys of `fusion_bench.methods.ssvif.model.SEGFORMER_ARCH_KEYS` (variant b0..b5, widths,
    a local `pretrained` path); the model starts from the current torch RNG state unless `pretrained` is given.
    """

    def __init__(self, num_classes: int, segformer: dict[str, Any] | None = None, aux_stage: int = 2,
                 aux_channels: int = 64, normalize: bool = False):
        super().__init__()
        from fusion_bench.evaluators.segformer import IMAGENET_MEAN, IMAGENET_STD, build_segformer
        from fusion_bench.methods.ssvif.model import segformer_config

        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.model = build_segformer(segformer_config(segformer), num_classes)
        hidden = tuple(self.model.config.hidden_sizes)
        if not 0 <= aux_stage < len(hidden):
            raise ValueError(f"aux_stage must be in 0..{len(hidden) - 1} (an encoder stage), got {aux_stage}")
        if aux_channels < 1:
            raise ValueError(f"aux_channels must be >= 1, got {aux_channels}")
        self.aux_stage = aux_stage
        self.aux_head = AuxiliaryHead(hidden[aux_stage], aux_channels, num_classes)
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def head_modules(self) -> tuple[nn.Module, ...]:
        """The output heads (the authors' optimiser gives BiSeNet's output heads 10x the learning rate)."""
        return self.model.decode_head, self.aux_head

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from fusion_bench.methods.ssvif.model import to_three_channels

        image = to_three_channels(image, "fused image")
        pixels = (image - self.mean) / self.std if self.normalize else image
        out = self.model(pixel_values=pixels, output_hidden_states=True)
        size = image.shape[-2:]
        main = F.interpolate(out.logits, size=size, mode="bilinear", align_corners=False)
        aux = F.interpolate(self.aux_head(out.hidden_states[self.aux_stage]), size=size, mode="bilinear",
                            align_corners=False)
        return main, aux
