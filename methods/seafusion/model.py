"""SeAFusion fusion network (Tang et al., Information Fusion 2022) as a pure nn.Module (no Lightning here).

Two encoders (infrared and visible) of a 3x3 conv followed by two gradient residual dense blocks (GRDB), the
features concatenated (the cross-modal fusion) and a four-layer conv decoder. Layout read from the authors'
FusionNet.py (github.com/Linfeng-Tang/SeAFusion); own implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion_bench.base.method import check_source_pair

_SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])  # the authors' orientation


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
