"""AMDANet as a pure nn.Module (no Lightning): dual-stream MiT encoder with SCI and FDAM per stage, SegFormer
all-MLP segmentation decoder, MRFS-style CNN fusion head, and the feature masking of MFML.

Per stage i (as in the authors' code): overlapping patch embedding of each stream -> Semantic Consistency
Inference on the tokens (Eq. 1-5) -> the stream's transformer blocks -> LayerNorm -> Local alignment (Eq. 6-9;
its outputs feed the next stage and the fusion head) -> Global alignment (Eq. 10-11; one fused map per stage for
the segmentation decoder). Equations refer to Zhong et al., ICCV 2025; see README.md for the code map and the
differences to the authors' code. Own implementation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

from fusion_bench.evaluators.segformer import MIT_HEADS, MIT_VARIANTS

MIT_SR_RATIOS = (8, 4, 2, 1)  # spatial reduction of keys/values per stage (SegFormer, all variants)
MIT_PATCH = ((7, 4), (3, 2), (3, 2), (3, 2))  # (kernel, stride) of the overlapping patch embeddings
SCI_GATES = ("paper", "code")
LOCAL_MODES = ("paper", "code")
GLOBAL_MODES = ("paper", "code")
HEAD_STYLES = ("segformer", "code")
DROP_PATH_RULES = ("linear", "code")


# ------------------------------------------------------------------------------------------------
# Mix Transformer (SegFormer encoder), one per modality
# ------------------------------------------------------------------------------------------------


class OverlapPatchEmbed(nn.Module):
    """Strided convolution + LayerNorm; BxCxHxW -> (B x N x dim tokens, h, w)."""

    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel, stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class ReducedAttention(nn.Module):
    """Multi-head attention whose keys/values come from `context` spatially reduced by a strided convolution
    (`sr` > 1) + LayerNorm (eps 1e-5, as SegFormer's and the authors' `Attention.norm`): SegFormer's efficient
    self-attention when context is the query stream itself."""

    def __init__(self, dim: int, heads: int, sr: int, qkv_bias: bool = True, attn_drop: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads, self.sr, self.attn_drop = heads, sr, attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        if sr > 1:
            self.sr_conv = nn.Conv2d(dim, dim, sr, sr)
            self.sr_norm = nn.LayerNorm(dim)

    def attend(self, x: torch.Tensor, context: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """softmax(Q Kᵀ / sqrt(d_head)) V with Q from x and K, V from context (both B x N x C on an h x w grid)."""
        b, n, c = x.shape
        if self.sr > 1:
            grid = context.transpose(1, 2).reshape(b, c, h, w)
            context = self.sr_norm(self.sr_conv(grid).flatten(2).transpose(1, 2))
        q = self.q(x).view(b, n, self.heads, c // self.heads).transpose(1, 2)
        k, v = self.kv(context).view(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, n, c)


class SelfAttention(ReducedAttention):
    """MiT efficient self-attention with its output projection."""

    def __init__(self, dim: int, heads: int, sr: int, qkv_bias: bool = True):
        super().__init__(dim, heads, sr, qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.proj(self.attend(x, x, h, w))


class MixFFN(nn.Module):
    """fc1 -> 3x3 depth-wise conv -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        b, n, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(x))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN x), then x + MixFFN(LN x), each with stochastic depth."""

    def __init__(self, dim: int, heads: int, sr: int, mlp_ratio: int = 4, drop_path_rate: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, heads, sr)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, dim * mlp_ratio)
        self.drop_path_rate = drop_path_rate

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + stochastic_depth(self.attn(self.norm1(x), h, w), self.drop_path_rate, "row", self.training)
        return x + stochastic_depth(self.mlp(self.norm2(x), h, w), self.drop_path_rate, "row", self.training)


class MiTStage(nn.Module):
    """Patch embedding, `depth` blocks and the closing LayerNorm of one MiT stage (used piecewise so that SCI
    can act between the embedding and the blocks)."""

    def __init__(self, in_channels: int, dim: int, depth: int, heads: int, sr: int, kernel: int, stride: int,
                 drop_path_rates: Sequence[float]):
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(in_channels, dim, kernel, stride)
        self.blocks = nn.ModuleList(MiTBlock(dim, heads, sr, 4, p) for p in drop_path_rates)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def transform(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Blocks + norm on B x N x C tokens; returns the B x C x h x w map."""
        for block in self.blocks:
            tokens = block(tokens, h, w)
        return self.norm(tokens).transpose(1, 2).reshape(tokens.shape[0], -1, h, w)


@dataclass(frozen=True)
class MiTConfig:
    """Widths, depths and heads of a Mix Transformer (defaults: MiT-B4, the paper's encoder)."""

    hidden_sizes: tuple[int, ...] = tuple(MIT_VARIANTS["b4"]["hidden_sizes"])
    depths: tuple[int, ...] = tuple(MIT_VARIANTS["b4"]["depths"])
    heads: tuple[int, ...] = MIT_HEADS
    sr_ratios: tuple[int, ...] = MIT_SR_RATIOS
    drop_path_rate: float = 0.1

    @classmethod
    def build(cls, variant: str | None = "b4", hidden_sizes: Sequence[int] | None = None,
              depths: Sequence[int] | None = None, heads: Sequence[int] | None = None,
              sr_ratios: Sequence[int] | None = None, drop_path_rate: float = 0.1) -> MiTConfig:
        """From a SegFormer variant name (b0..b5, table in fusion_bench.evaluators.segmentation) with overrides."""
        if variant is not None and variant not in MIT_VARIANTS:
            raise ValueError(f"encoder variant {variant!r} unknown; valid: {', '.join(MIT_VARIANTS)} or None")
        base = MIT_VARIANTS[variant or "b4"]
        config = cls(tuple(hidden_sizes or base["hidden_sizes"]), tuple(depths or base["depths"]),
                     tuple(heads or MIT_HEADS), tuple(sr_ratios or MIT_SR_RATIOS), drop_path_rate)
        lengths = {len(config.hidden_sizes), len(config.depths), len(config.heads), len(config.sr_ratios)}
        if lengths != {4}:
            raise ValueError(f"encoder needs 4 stages: hidden_sizes {config.hidden_sizes}, depths {config.depths}, "
                             f"heads {config.heads}, sr_ratios {config.sr_ratios}")
        for dim, h in zip(config.hidden_sizes, config.heads):
            if dim % h:
                raise ValueError(f"encoder hidden size {dim} is not divisible by its heads {h}")
        return config


def build_mit_stages(config: MiTConfig, in_channels: int = 3, stage2_rate_offset: int | None = None
                     ) -> nn.ModuleList:
    """The four stages of one MiT stream; drop-path rates rise linearly over all blocks (SegFormer rule).

    stage2_rate_offset=k reproduces the authors' `RGBXTransformer`, whose second stage gives every block the rate
    of block `cur + k` (k = 0 for the RGB stream, 1 for the X stream) instead of `cur + i`."""
    total = sum(config.depths)
    rates = [config.drop_path_rate * i / max(1, total - 1) for i in range(total)]
    stages, start, channels = nn.ModuleList(), 0, in_channels
    for i, (dim, depth) in enumerate(zip(config.hidden_sizes, config.depths)):
        kernel, stride = MIT_PATCH[i]
        stage_rates = rates[start:start + depth]
        if i == 1 and stage2_rate_offset is not None:
            stage_rates = [rates[start + stage2_rate_offset]] * depth
        stages.append(MiTStage(channels, dim, depth, config.heads[i], config.sr_ratios[i], kernel, stride,
                               stage_rates))
        start, channels = start + depth, dim
    return stages


# ------------------------------------------------------------------------------------------------
# SCI, FDAM, MFML
# ------------------------------------------------------------------------------------------------


class SemanticConsistencyInference(nn.Module):
    """SCI (Sec. 3.1) on token features f_in, f_vi (B x N x C).

    Eq. 1  S_m = cos(F_in, F_vi) per token; tokens with S_m < tau are bias-affected.
    Eq. 3  M_sc = sigmoid(MLP(cat(F_in, F_vi)))               (B x N x 1, MLP 2C -> C -> ReLU -> 1)
    Eq. 2  P_in = F_in (1 - M_sc) + F_vi M_sc,  P_vi = F_vi (1 - M_sc) + F_in M_sc
    Eq. 4  dP = F - P;   Eq. 5  F^a = F - lambda * dP          (lambda learnable, init 0.5)

    gate="paper" corrects only the tokens with S_m < tau; gate="code" (authors' code) computes
    0.1 * mean_tokens(S_m) per sample and corrects every token of the batch when any sample is below tau (in
    practice always). swap_streams=True reproduces the authors' call site, which hands the corrected streams
    back in swapped order (the IR stream continues with the visible features and vice versa).
    """

    def __init__(self, dim: int, tau: float = 0.4, lambda_init: float = 0.5, gate: str = "paper",
                 swap_streams: bool = False, learn_lambda: bool = True):
        super().__init__()
        if gate not in SCI_GATES:
            raise ValueError(f"sci gate {gate!r} unknown; valid: {', '.join(SCI_GATES)}")
        self.tau, self.gate, self.swap_streams = tau, gate, swap_streams
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        self.lambda_ = nn.Parameter(torch.tensor(float(lambda_init)), requires_grad=learn_lambda)

    def forward(self, f_in: torch.Tensor, f_vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        similarity = F.cosine_similarity(f_in, f_vi, dim=-1)  # Eq. 1, B x N
        if self.gate == "paper":
            active = (similarity < self.tau).unsqueeze(-1).to(f_in.dtype)
        else:
            any_biased = bool((0.1 * similarity.mean(dim=-1) < self.tau).any())
            active = f_in.new_full((1, 1, 1), float(any_biased))
        mask = torch.sigmoid(self.mlp(torch.cat([f_in, f_vi], dim=-1)))  # Eq. 3
        p_in = f_in * (1 - mask) + f_vi * mask  # Eq. 2
        p_vi = f_vi * (1 - mask) + f_in * mask
        a_in = f_in - self.lambda_ * active * (f_in - p_in)  # Eq. 4-5
        a_vi = f_vi - self.lambda_ * active * (f_vi - p_vi)
        info = {"similarity": similarity, "mask": mask, "active": active}
        return (a_vi, a_in, info) if self.swap_streams else (a_in, a_vi, info)


class ChannelSpatialAlignment(nn.Module):
    """Local alignment of one modality (Sec. 3.2.1, Eq. 6-9) on a B x C x H x W map F:

    A_ch = sigmoid(MLP(avgpool F) + MLP(maxpool F));   F^ch = sigmoid(A_ch F - F) F + F
    A_sp = sigmoid(Conv_k([mean_c F, max_c F]));      F^sp = sigmoid(A_sp F - F) F + F
    F^lo = F^ch + F^sp
    """

    def __init__(self, dim: int, reduction: int = 4, kernel: int = 7):
        super().__init__()
        hidden = max(1, dim // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, dim, 1))
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        a_ch = torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(f, 1)) + self.mlp(F.adaptive_max_pool2d(f, 1)))
        f_ch = torch.sigmoid(a_ch * f - f) * f + f  # Eq. 6-7
        a_sp = torch.sigmoid(self.spatial(torch.cat([f.mean(1, keepdim=True), f.amax(1, keepdim=True)], 1)))
        f_sp = torch.sigmoid(a_sp * f - f) * f + f  # Eq. 8-9
        return f_ch + f_sp


class LocalAlignment(nn.Module):
    """Paper local alignment: one ChannelSpatialAlignment per modality; (f_in, f_vi) -> (f_in^lo, f_vi^lo)."""

    def __init__(self, dim: int, reduction: int = 4, kernel: int = 7):
        super().__init__()
        self.ir = ChannelSpatialAlignment(dim, reduction, kernel)
        self.vis = ChannelSpatialAlignment(dim, reduction, kernel)

    def forward(self, f_in: torch.Tensor, f_vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ir(f_in), self.vis(f_vi)


class LocalAlignmentCode(nn.Module):
    """The authors' `Local_Eliminating` (an MRFS IGM-AVC variant), kept as local_mode="code".

    g = sigmoid(MLP(cat tokens)) (2C -> 2C/r -> C); channel weights from a shared MLP on avg+max pooled cat
    (2C -> 2C/r -> 2C, sigmoid, split per modality); spatial weights from per-modality mean+max maps (4 -> 4r ->
    2, 1x1 convs, sigmoid); w_m = g * channel_m * spatial_m; cross-add x_vi' = x_vi + w_vi x_in,
    x_in' = x_in + w_in x_vi; out = sigmoid(x' w - x') x' + x' w.
    """

    def __init__(self, dim: int, reduction: int = 4):
        super().__init__()
        self.dim = dim
        self.gate = nn.Sequential(nn.Linear(2 * dim, 2 * dim // reduction), nn.ReLU(),
                                  nn.Linear(2 * dim // reduction, dim), nn.Sigmoid())
        self.channel = nn.Sequential(nn.Linear(2 * dim, 2 * dim // reduction), nn.ReLU(),
                                     nn.Linear(2 * dim // reduction, 2 * dim))
        self.spatial = nn.Sequential(nn.Conv2d(4, 4 * reduction, 1), nn.ReLU(), nn.Conv2d(4 * reduction, 2, 1),
                                     nn.Sigmoid())

    def forward(self, f_in: torch.Tensor, f_vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = f_vi.shape
        both = torch.cat([f_vi, f_in], 1)
        g = self.gate(both.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
        ch = torch.sigmoid(self.channel(both.mean((2, 3))) + self.channel(both.amax((2, 3)))).view(b, 2, c, 1, 1)
        stats = torch.cat([f_vi.mean(1, keepdim=True), f_vi.amax(1, keepdim=True), f_in.mean(1, keepdim=True),
                           f_in.amax(1, keepdim=True)], 1)
        sp = self.spatial(stats).view(b, 2, 1, h, w)
        w_vi, w_in = g * ch[:, 0] * sp[:, 0], g * ch[:, 1] * sp[:, 1]
        x_vi, x_in = f_vi + w_vi * f_in, f_in + w_in * f_vi
        out_vi = torch.sigmoid(x_vi * w_vi - x_vi) * x_vi + x_vi * w_vi
        out_in = torch.sigmoid(x_in * w_in - x_in) * x_in + x_in * w_in
        return out_in, out_vi


class SaliencyEnhancement(ReducedAttention):
    """Salient feature self-enhancement: proj(attn(x, x) + x), keys/values spatially reduced."""

    def __init__(self, dim: int, heads: int, sr: int, attn_drop: float = 0.0):
        super().__init__(dim, heads, sr, qkv_bias=False, attn_drop=attn_drop)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.proj(self.attend(x, x, h, w) + x)


class CrossModalAttention(ReducedAttention):
    """Eq. 10-11: out = Linear(Dropout(softmax(Q_x K_cᵀ / sqrt(d))) V_c + residual); Q from `x`, K and V from
    `context` (spatially reduced)."""

    def __init__(self, dim: int, heads: int, sr: int, attn_drop: float = 0.0):
        super().__init__(dim, heads, sr, qkv_bias=False, attn_drop=attn_drop)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, residual: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.proj(self.attend(x, context, h, w) + residual)


class GlobalAlignment(nn.Module):
    """Saliency cross-modal attention (Sec. 3.2.2): self-enhance both streams (E_in, E_vi), then
    F_mid = Linear(M(Q_vi, K_in, V_in) + R_vi)  (vis -> ir, Eq. 10-11), then
    F_m   = Linear(M(Q_in, K_mid, V_mid) + R_in) (ir -> mid). Returns the fused B x C x H x W map.

    mode="paper": residuals R = F^lo (Eq. 11). mode="code" (the authors' `Global_Eliminating`): residuals R = the
    self-enhanced queries E, and one more Linear on F_m."""

    def __init__(self, dim: int, heads: int, sr: int, attn_drop: float = 0.0, mode: str = "paper"):
        super().__init__()
        if mode not in GLOBAL_MODES:
            raise ValueError(f"global_mode {mode!r} unknown; valid: {', '.join(GLOBAL_MODES)}")
        self.mode = mode
        self.enhance_ir = SaliencyEnhancement(dim, heads, sr, attn_drop)
        self.enhance_vis = SaliencyEnhancement(dim, heads, sr, attn_drop)
        self.vis_to_ir = CrossModalAttention(dim, heads, sr, attn_drop)
        self.ir_to_mid = CrossModalAttention(dim, heads, sr, attn_drop)
        self.out = nn.Linear(dim, dim) if mode == "code" else nn.Identity()

    def forward(self, f_in: torch.Tensor, f_vi: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f_in.shape
        t_in, t_vi = f_in.flatten(2).transpose(1, 2), f_vi.flatten(2).transpose(1, 2)
        e_in, e_vi = self.enhance_ir(t_in, h, w), self.enhance_vis(t_vi, h, w)
        r_in, r_vi = (e_in, e_vi) if self.mode == "code" else (t_in, t_vi)
        mid = self.vis_to_ir(e_vi, e_in, r_vi, h, w)
        fused = self.out(self.ir_to_mid(e_in, mid, r_in, h, w))
        return fused.transpose(1, 2).reshape(b, c, h, w)


def mutual_feature_mask(f_in: torch.Tensor, f_vi: torch.Tensor, mask_ir: torch.Tensor,
                        ratio: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """MFML (Eq. 12): per sample, zero a random `ratio` of the elements of one modality's features (the IR
    features where `mask_ir[b]`, else the visible ones); the other modality is untouched. No rescaling (as the
    authors' code). f_*: B x ... tensors; mask_ir: bool B."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mfml ratio must be in [0, 1), got {ratio}")
    keep = (torch.rand_like(f_in) >= ratio).to(f_in.dtype)
    select = mask_ir.view(-1, *([1] * (f_in.ndim - 1)))
    return torch.where(select, f_in * keep, f_in), torch.where(select, f_vi, f_vi * keep)


# ------------------------------------------------------------------------------------------------
# heads
# ------------------------------------------------------------------------------------------------


class SegFormerHead(nn.Module):
    """SegFormer all-MLP decoder: per stage Linear C_i -> E, upsample to stage 1, concat 4E -> 1x1 conv E + BN +
    ReLU -> Dropout2d(0.1) -> 1x1 conv to classes (logits at 1/4 of the input). conv_bias: a bias on the conv
    before the BN (the authors' `seg_decoder`)."""

    def __init__(self, in_channels: Sequence[int], embed_dim: int, num_classes: int, dropout: float = 0.1,
                 conv_bias: bool = False):
        super().__init__()
        self.embed = nn.ModuleList(nn.Linear(c, embed_dim) for c in in_channels)
        self.fuse = nn.Sequential(nn.Conv2d(len(in_channels) * embed_dim, embed_dim, 1, bias=conv_bias),
                                  nn.BatchNorm2d(embed_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        maps = []
        for embed, f in zip(self.embed, features):
            b, _, h, w = f.shape
            m = embed(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)
            maps.append(m if (h, w) == tuple(size) else F.interpolate(m, size=size, mode="bilinear",
                                                                      align_corners=False))
        return self.classifier(self.dropout(self.fuse(torch.cat(maps[::-1], 1))))


class FusionHead(nn.Module):
    """MRFS CNN fusion head: per stage and modality a point conv C_i -> `width` + BN + ReLU, all upsampled to the
    input size and concatenated with the two 3-channel inputs -> conv3x3 `width` + BN + ReLU -> conv1x1 3 ->
    sigmoid = fused RGB. conv_bias: biases on the convs before the BNs (MRFS' / the authors' `fuse_decoder`)."""

    def __init__(self, in_channels: Sequence[int], width: int = 16, input_channels: int = 6,
                 conv_bias: bool = False):
        super().__init__()
        self.points = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, width, 1, bias=conv_bias), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
            for c in in_channels for _ in range(2))
        self.out = nn.Sequential(nn.Conv2d(2 * len(in_channels) * width + input_channels, width, 3, padding=1,
                                           bias=conv_bias), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                 nn.Conv2d(width, 3, 1), nn.Sigmoid())

    def forward(self, features: Sequence[tuple[torch.Tensor, torch.Tensor]], x_ir: torch.Tensor,
                x_vis: torch.Tensor) -> torch.Tensor:
        size = x_ir.shape[-2:]
        maps = [F.interpolate(point(f), size=size, mode="bilinear", align_corners=False)
                for point, f in zip(self.points, (f for pair in features for f in pair))]
        return self.out(torch.cat([*maps, x_vis, x_ir], 1))


# ------------------------------------------------------------------------------------------------
# the network
# ------------------------------------------------------------------------------------------------


@dataclass
class EncoderOutput:
    """Per stage: `vision` = (f_in^lo, f_vi^lo) for the fusion head, `semantic` = F_m for the segmentation
    decoder, `sci` = SCI diagnostics (similarity, mask, active)."""

    vision: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    semantic: list[torch.Tensor] = field(default_factory=list)
    sci: list[dict] = field(default_factory=list)


class AMDANetModel(nn.Module):
    """forward(x_ir, x_vis) -> (segmentation logits B x K x H x W, fused RGB B x 3 x H x W in [0, 1]).

    Both inputs are B x 3 x H x W in [0, 1] (replicate a 1-channel IR image first). `encode(..., mfml_mask_ir=...)`
    applies mutual feature masking to the SCI outputs of every stage (one modality per sample).

    Options of the authors' code (see README): sci_gate/sci_swap_streams/learn_lambda (SCI), local_mode="code"
    (`Local_Eliminating`), global_mode="code" (`Global_Eliminating`), head_style="code" (conv biases, Kaiming
    fan-in init, BatchNorm eps/momentum 0.01 in both heads), drop_path_rule="code" (the second stage's rates).
    """

    def __init__(self, num_classes: int, encoder: MiTConfig | None = None, decoder_dim: int = 512,
                 fusion_width: int = 16, tau: float = 0.4, lambda_init: float = 0.5, sci_gate: str = "paper",
                 sci_swap_streams: bool = False, learn_lambda: bool = True, local_mode: str = "paper",
                 local_reduction: int = 4, spatial_kernel: int = 7, attn_drop: float = 0.0,
                 global_mode: str = "paper", head_style: str = "segformer", drop_path_rule: str = "linear"):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        for name, value, valid in (("local_mode", local_mode, LOCAL_MODES), ("head_style", head_style, HEAD_STYLES),
                                   ("drop_path_rule", drop_path_rule, DROP_PATH_RULES)):
            if value not in valid:
                raise ValueError(f"{name} {value!r} unknown; valid: {', '.join(valid)}")
        self.config = encoder or MiTConfig()
        dims = self.config.hidden_sizes
        code_rates = drop_path_rule == "code"
        self.encoder_ir = build_mit_stages(self.config, stage2_rate_offset=1 if code_rates else None)  # X stream
        self.encoder_vis = build_mit_stages(self.config, stage2_rate_offset=0 if code_rates else None)  # RGB
        self.sci = nn.ModuleList(SemanticConsistencyInference(d, tau, lambda_init, sci_gate, sci_swap_streams,
                                                              learn_lambda) for d in dims)
        self.local = nn.ModuleList(
            LocalAlignment(d, local_reduction, spatial_kernel) if local_mode == "paper"
            else LocalAlignmentCode(d, local_reduction) for d in dims)
        self.globals = nn.ModuleList(GlobalAlignment(d, h, sr, attn_drop, global_mode)
                                     for d, h, sr in zip(dims, self.config.heads, self.config.sr_ratios))
        code_heads = head_style == "code"
        self.seg_head = SegFormerHead(dims, decoder_dim, num_classes, conv_bias=code_heads)
        self.fusion_head = FusionHead(dims, fusion_width, conv_bias=code_heads)
        self.apply(_init_weights)
        if code_heads:
            for head in (self.seg_head, self.fusion_head):
                _init_code_head(head)

    def encode(self, x_ir: torch.Tensor, x_vis: torch.Tensor, mfml_mask_ir: torch.Tensor | None = None,
               mfml_ratio: float = 0.15, with_semantic: bool = True, with_vision: bool = True) -> EncoderOutput:
        """Run both streams; `with_semantic=False` skips the global alignment (not needed to fuse),
        `with_vision=False` keeps no local-alignment outputs (not needed to segment)."""
        out = EncoderOutput()
        f_in, f_vi = x_ir, x_vis
        for stage_ir, stage_vis, sci, local, glob in zip(self.encoder_ir, self.encoder_vis, self.sci, self.local,
                                                         self.globals):
            t_in, h, w = stage_ir.patch_embed(f_in)
            t_vi, _, _ = stage_vis.patch_embed(f_vi)
            t_in, t_vi, info = sci(t_in, t_vi)
            if mfml_mask_ir is not None:
                t_in, t_vi = mutual_feature_mask(t_in, t_vi, mfml_mask_ir, mfml_ratio)
            f_in, f_vi = local(stage_ir.transform(t_in, h, w), stage_vis.transform(t_vi, h, w))
            if with_vision:
                out.vision.append((f_in, f_vi))
            if with_semantic:
                out.semantic.append(glob(f_in, f_vi))
            out.sci.append(info)
        return out

    def segment(self, semantic: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        logits = self.seg_head(semantic)
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)

    def fuse(self, vision: Sequence[tuple[torch.Tensor, torch.Tensor]], x_ir: torch.Tensor,
             x_vis: torch.Tensor) -> torch.Tensor:
        return self.fusion_head(vision, x_ir, x_vis)

    def forward(self, x_ir: torch.Tensor, x_vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encode(x_ir, x_vis)
        return self.segment(features.semantic, x_ir.shape[-2:]), self.fuse(features.vision, x_ir, x_vis)


def _init_weights(m: nn.Module) -> None:
    """SegFormer init: truncated normal (std 0.02) linears, fan-out normal convs, unit norms; Kaiming for the
    heads' BN-followed convs is the same fan-out rule here."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _init_code_head(head: nn.Module, bn_eps: float = 0.01, bn_momentum: float = 0.01) -> None:
    """The authors' `init_weight` on their two decoders: conv weights Kaiming-normal (fan_in, ReLU gain), BatchNorm
    weight 1 / bias 0 with eps and momentum 0.01; conv biases and the decoder's Linear layers keep PyTorch's default
    initialisation (their decoders are not covered by the encoder's truncated-normal init)."""
    for m in head.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.reset_parameters()
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = bn_eps, bn_momentum
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
