"""ISFuse network with Causal Feature Integrators (CFI), as a pure nn.Module (no Lightning here).

Two CNN encoders (infrared-like and visible luminance) give features at H, H/2, H/4 (3 levels by default);
one CFI module per level mixes the two modalities; a decoder walks back from the coarsest level to the fused
luminance. Layout read from the authors' code (see README.md); own implementation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(c_in: int, c_out: int, kernel: int = 3) -> nn.Sequential:
    """conv (zero padding) + BatchNorm + LeakyReLU(0.01). The activation works in place on the BatchNorm output
    (which nothing else keeps): autograd then keeps one tensor for it and the next layer instead of two, with the
    same values and gradients."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(0.01, inplace=True))


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


def _pool(x: torch.Tensor, tokens: int) -> torch.Tensor:
    return F.adaptive_avg_pool2d(x, tokens).flatten(2)  # B x C x T


def _pooled_attention(q_t: torch.Tensor, kp: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.softmax(torch.bmm(q_t, kp) * scale, dim=-1)  # B x HW x T


class _PooledAttention(torch.autograd.Function):
    """out = pool(v) softmax(q^T pool(k) * scale)^T for q^T: B x HW x C, k, v: B x C x H x W; returns B x C x HW.

    The same operations as autograd would run, forward and backward, so values and gradients are bit-identical to
    the plain formulation, but it keeps less for the backward pass: the B x HW x T attention matrix is recomputed
    (at 256 x 256 with 64 tokens it is twice the size of a feature map, and a training step makes ten of them), and
    the full-resolution k and v, which average pooling keeps only for their shape, are not kept at all."""

    @staticmethod
    def forward(ctx, q_t: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tokens: int,  # noqa: ANN001
                scale: float) -> torch.Tensor:
        kp, vp = _pool(k, tokens), _pool(v, tokens)
        ctx.save_for_backward(q_t, kp, vp)
        ctx.scale, ctx.tokens = scale, tokens
        ctx.like = {name: (t.shape, t.dtype, t.device, torch.channels_last if t.is_contiguous(
            memory_format=torch.channels_last) and not t.is_contiguous() else torch.contiguous_format)
            for name, t in (("k", k), ("v", v))}
        return torch.bmm(vp, _pooled_attention(q_t, kp, scale).transpose(1, 2))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: ANN001, ANN205
        q_t, kp, vp = ctx.saved_tensors
        attn = _pooled_attention(q_t, kp, ctx.scale)
        grad_q_t = grad_k = grad_v = None
        tokens = ctx.tokens
        if ctx.needs_input_grad[2]:
            grad_vp = grad_out.bmm(attn)
            grad_v = _unpool_like(grad_vp, tokens, ctx.like["v"])
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            grad_attn = vp.transpose(1, 2).bmm(grad_out).transpose(1, 2)
            grad_scores = torch._softmax_backward_data(grad_attn, attn, -1, attn.dtype) * ctx.scale
            if ctx.needs_input_grad[0]:
                grad_q_t = grad_scores.bmm(kp.transpose(1, 2))
            if ctx.needs_input_grad[1]:
                grad_k = _unpool_like(q_t.transpose(1, 2).bmm(grad_scores), tokens, ctx.like["k"])
        return grad_q_t, grad_k, grad_v, None, None


def _unpool_like(grad_pooled: torch.Tensor, tokens: int, like: tuple) -> torch.Tensor:
    """The gradient of `_pool` (B x C x T -> B x C x H x W), by the kernel autograd uses, given the input's shape,
    dtype, device and memory format (only those are read from the template)."""
    shape, dtype, device, memory_format = like
    template = torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format)
    return torch.ops.aten._adaptive_avg_pool2d_backward(grad_pooled.reshape(*shape[:2], tokens, tokens), template)


def pooled_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tokens: int) -> torch.Tensor:
    """Every query pixel attends to `tokens` x `tokens` average-pooled key/value tokens of the other modality:
    softmax(Q^T K / sqrt(C)) V. q, k, v: BxCxHxW; returns BxCxHxW. The scores are multiplied by 1/sqrt(C) (not
    divided by sqrt(C)), the authors' order of operations: with their weights the output is bit-identical to
    their network in float32. Under autograd `_PooledAttention` computes it (same numbers, less memory kept)."""
    b, c, h, w = q.shape
    q_t = q.flatten(2).transpose(1, 2)  # B x HW x C
    scale = 1.0 / math.sqrt(c)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _PooledAttention.apply(q_t, k, v, tokens, scale).view(b, c, h, w)
    kp, vp = _pool(k, tokens), _pool(v, tokens)
    return torch.bmm(vp, _pooled_attention(q_t, kp, scale).transpose(1, 2)).view(b, c, h, w)


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
        self.gate = nn.Sequential(nn.Conv2d(dim, hidden, 3, padding=1), nn.BatchNorm2d(hidden),
                                  nn.LeakyReLU(0.01, inplace=True), nn.Conv2d(hidden, 1, 1), nn.Sigmoid())
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

