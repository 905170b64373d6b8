"""ISFuse network with Causal Feature Integrators (CFI), as a pure nn.Module (no Lightning here).

Two CNN encoders (infrared-like and visible luminance) give features at H, H/2, H/4 (3 levels by default);
one CFI module per level mixes the two modalities; a decoder walks back from the coarsest level to the fused
luminance. Layout read from the authors' code (see README.md); own implementation.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(c_in: int, c_out: int, kernel: int = 3) -> nn.Sequential:
    """conv (zero padding) + BatchNorm + LeakyReLU(0.01)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(0.01))


class Encoder(nn.Module):
    """`levels` stages of two conv blocks, 2x2 max-pooling between stages; returns features fine -> coarse."""

    def __init__(self, dim: int = 32, levels: int = 3, in_channels: int = 1):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(*conv_block(in_channels if i == 0 else dim, dim), *conv_block(dim, dim))
            for i in range(levels))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats


def pooled_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tokens: int) -> torch.Tensor:
    """Every query pixel attends to `tokens` x `tokens` average-pooled key/value tokens of the other modality:
    softmax(Q^T K / sqrt(C)) V. q, k, v: BxCxHxW; returns BxCxHxW. The scores are multiplied by 1/sqrt(C) (not
    divided by sqrt(C)), the authors' order of operations: with their weights the output is bit-identical to
    their network in float32."""
    b, c, h, w = q.shape
    kp = F.adaptive_avg_pool2d(k, tokens).flatten(2)  # B x C x T
    vp = F.adaptive_avg_pool2d(v, tokens).flatten(2)  # B x C x T
    attn = torch.softmax(torch.bmm(q.flatten(2).transpose(1, 2), kp) * (1.0 / math.sqrt(c)), dim=-1)  # B x HW x T
    return torch.bmm(vp, attn.transpose(1, 2)).view(b, c, h, w)


class CFI(nn.Module):
    """Causal Feature Integrator for one level.

    cross = attn(Q_vis, K_ir, V_ir) + attn(Q_ir, K_vis, V_vis)  (pooled cross-attention, both directions)
    local = f_vis + f_ir
    g     = sigmoid(conv1x1(LReLU(BN(conv3x3(cross)))))          (adaptive invariance gate, Bx1xHxW in [0, 1])
    out   = refine(g * cross + (1 - g) * local)
    """

    def __init__(self, dim: int, tokens: int = 8):
        super().__init__()
        self.tokens = tokens
        self.q_vis, self.k_vis, self.v_vis = (nn.Conv2d(dim, dim, 1) for _ in range(3))
        self.q_ir, self.k_ir, self.v_ir = (nn.Conv2d(dim, dim, 1) for _ in range(3))
        hidden = max(1, dim // 2)
        self.gate = nn.Sequential(nn.Conv2d(dim, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.LeakyReLU(0.01),
                                  nn.Conv2d(hidden, 1, 1), nn.Sigmoid())
        self.refine = conv_block(dim, dim)

    def forward(self, f_ir: torch.Tensor, f_vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vis_from_ir = pooled_cross_attention(self.q_vis(f_vis), self.k_ir(f_ir), self.v_ir(f_ir), self.tokens)
        ir_from_vis = pooled_cross_attention(self.q_ir(f_ir), self.k_vis(f_vis), self.v_vis(f_vis), self.tokens)
        cross = vis_from_ir + ir_from_vis
        local = f_vis + f_ir
        g = self.gate(cross)
        return self.refine(g * cross + (1.0 - g) * local), g


class CFINet(nn.Module):
    """forward(y_ir, y_vis) -> (fused Y Bx1xHxW in [0, 1], gates: one Bx1xhxw map per level, fine -> coarse).

    Decoder: x = CFI_coarsest; for each finer level: x = two conv blocks(upsample(x) + CFI_level); then
    conv3x3 -> 1 channel + sigmoid. Any input size works (upsampling goes to the skip's exact size).
    """

    def __init__(self, dim: int = 32, levels: int = 3, tokens: int = 8):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.encoder_ir = Encoder(dim, levels)
        self.encoder_vis = Encoder(dim, levels)
        self.cfi = nn.ModuleList(CFI(dim, tokens) for _ in range(levels))
        # decoder[i] merges level i (i < levels - 1) with the upsampled coarser result
        self.decoder = nn.ModuleList(nn.Sequential(*conv_block(dim, dim), *conv_block(dim, dim))
                                     for _ in range(levels - 1))
        self.head = nn.Sequential(nn.Conv2d(dim, 1, 3, padding=1), nn.Sigmoid())

    def forward(self, y_ir: torch.Tensor, y_vis: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        f_ir, f_vis = self.encoder_ir(y_ir), self.encoder_vis(y_vis)
        mixed, gates = [], []
        for cfi, a, b in zip(self.cfi, f_ir, f_vis):
            f, g = cfi(a, b)
            mixed.append(f)
            gates.append(g)
        x = mixed[-1]
        for level in range(len(mixed) - 2, -1, -1):
            up = F.interpolate(x, size=mixed[level].shape[-2:], mode="bilinear", align_corners=False)
            x = self.decoder[level](up + mixed[level])
        return self.head(x), gates


def mean_gate(gates: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """The average of the per-level gates, each bilinearly resized to `size` (Bx1xHxW, in [0, 1])."""
    return torch.stack([F.interpolate(g, size=size, mode="bilinear", align_corners=False) for g in gates]).mean(0)


_OFFICIAL_PROJECTIONS = {"q_v": "q_vis", "k_v": "k_vis", "v_v": "v_vis", "q_i": "q_ir", "k_i": "k_ir", "v_i": "v_ir"}
_OFFICIAL_UNUSED = ("adjust_channels3.", "module4.", "module5.")


def convert_official_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict of the authors' 3-level `Network` (e.g. their released `best.pth`) to `CFINet(dim=32)`.

    encoder_{ir,vis}.module{1,2,3} -> encoder_*.stages.{0,1,2}; cfi{5,4,3} -> cfi.{0,1,2} (fine -> coarse) with
    q_v/k_v/v_v/q_i/k_i/v_i -> q_vis/.../v_ir; adjust_channels{5,4} -> decoder.{0,1}; final_decoder -> head.
    Modules the authors build but never use (adjust_channels3, module4, module5) are dropped. A leading
    `module.` (DataParallel) is stripped.
    """
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(_OFFICIAL_UNUSED):
            continue
        head, _, rest = key.partition(".")
        if head in ("encoder_ir", "encoder_vis") and rest.startswith("module"):
            level, _, tail = rest[len("module"):].partition(".")
            new = f"{head}.stages.{int(level) - 1}.{tail}"
        elif head in ("cfi3", "cfi4", "cfi5"):
            name, _, tail = rest.partition(".")
            new = f"cfi.{5 - int(head[-1])}.{_OFFICIAL_PROJECTIONS.get(name, name)}.{tail}"
        elif head in ("adjust_channels4", "adjust_channels5"):
            new = f"decoder.{5 - int(head[-1])}.{rest}"
        elif head == "final_decoder":
            new = f"head.{rest}"
        else:
            raise KeyError(f"unexpected key {key!r} in the authors' state dict")
        out[new] = value
    return out


def load_official_weights(net: CFINet, path: str | Path) -> None:
    """Load the authors' released weights from an explicit local file into a `CFINet(dim=32, levels=3, tokens=8)`
    (never downloads). The authors' network takes (visible, infrared); `CFINet` takes (infrared, visible) and
    maps the weights accordingly."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    net.load_state_dict(convert_official_state_dict(state), strict=True)
