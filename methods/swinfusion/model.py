"""SwinFusion (Ma, Tang et al., IEEE/CAA JAS 2022) as a pure nn.Module (no Lightning here).

Shallow convs -> per-modality Swin extraction -> cross-domain fusion (intra-domain self-attention + inter-domain
cross-attention, shifted windows) -> concat + conv -> Swin reconstruction -> conv head. Layout and defaults read
from the authors' `models/network_swinfusion1.py` and `options/swinir/train_swinfusion_vif.json`
(github.com/Linfeng-Tang/SwinFusion, itself built on SwinIR / Swin Transformer); compact own implementation.
Tensors inside the transformer parts are channels-last (B x H x W x C).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

from fusion_bench.base.method import check_source_pair

_RGB_MEAN = (0.4488, 0.4371, 0.4040)  # subtracted from 3-channel inputs and added back, as the authors do


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """B x H x W x C (H, W multiples of `window`) -> (B * nW) x window^2 x C."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """(B * nW) x window^2 x C -> B x H x W x C (inverse of window_partition)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(window: int) -> torch.Tensor:
    """window^2 x window^2 index into the (2 * window - 1)^2 relative-position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shifted_window_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """nW x window^2 x window^2 additive mask (0 / -100) that keeps cyclically shifted windows from mixing
    regions that are not neighbours in the image (Swin's SW-MSA mask)."""
    region = torch.zeros(1, h, w, 1, device=device)
    label = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            region[:, hs, ws, :] = label
            label += 1
    ids = window_partition(region, window).squeeze(-1)  # nW x window^2
    diff = ids[:, None, :] - ids[:, :, None]
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


@dataclass(frozen=True)
class WindowMask:
    """An additive window mask as the windows it is not zero for: `groups` = ((window indices, N x N mask), ...),
    one entry per distinct non-zero mask, `windows` = windows per image; `spans` = each group's windows as a
    [start, stop) range when they are consecutive (the layout of `shifted_windows`), else None."""

    windows: int
    groups: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    spans: tuple[tuple[int, int], ...] | None = None

    @classmethod
    def from_dense(cls, mask: torch.Tensor) -> WindowMask:
        """From an nW x N x N additive mask (e.g. `shifted_window_mask`)."""
        patterns, inverse = torch.unique(mask, dim=0, return_inverse=True)
        return cls(mask.shape[0], tuple(((inverse == g).nonzero().flatten(), p)
                                        for g, p in enumerate(patterns) if p.any()))

    def rows(self, n_rows: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(rows, N x N mask), ...] for a batch of `n_rows` windows (images of `windows` windows one after the
        other)."""
        if n_rows % self.windows:
            raise ValueError(f"{n_rows} windows do not split into images of {self.windows} windows")
        return [((torch.arange(0, n_rows, self.windows, device=index.device)[:, None] + index[None, :]).flatten(),
                 pattern) for index, pattern in self.groups]

    def segments(self) -> list[tuple[int, int, torch.Tensor | None]]:
        """[(start, stop, mask or None), ...] covering one image's windows in order (needs `spans`)."""
        if self.spans is None:
            raise ValueError("segments() needs a mask whose groups are consecutive windows (shifted_windows)")
        out, at = [], 0
        for (start, stop), (_, pattern) in zip(self.spans, self.groups):
            if start > at:
                out.append((at, start, None))
            out.append((start, stop, pattern))
            at = stop
        if at < self.windows:
            out.append((at, self.windows, None))
        return out


@dataclass(frozen=True)
class ShiftedWindows:
    """The shifted-window (SW-MSA) layout of an h x w token grid: `order` = the h*w token indices, window after
    window (window^2 tokens each, raster order inside a window) of the grid cyclically shifted by -shift, with the
    windows whose SW-MSA mask is zero first and the others grouped by mask after them; `inverse` = the inverse
    permutation; `mask` = the non-zero masks with their window spans (`WindowMask`). The window order differs from
    `window_partition`'s; every window holds the same tokens, so attention per window is unchanged."""

    order: torch.Tensor
    inverse: torch.Tensor
    mask: WindowMask


@functools.lru_cache(maxsize=16)
def _shifted_windows_cpu(h: int, w: int, window: int, shift: int) -> ShiftedWindows:
    pixels = torch.arange(h * w).view(1, h, w, 1)
    windows = window_partition(torch.roll(pixels, shifts=(-shift, -shift), dims=(1, 2)), window).squeeze(-1)
    dense = shifted_window_mask(h, w, window, shift, torch.device("cpu"))
    patterns, kind = torch.unique(dense, dim=0, return_inverse=True)
    nonzero = patterns.flatten(1).any(1)
    key = torch.where(nonzero[kind], kind, -1)  # the zero-mask windows first, then one group per mask
    perm = torch.sort(key, stable=True).indices
    order = windows[perm].flatten()
    groups, spans, at = [], [], int((key == -1).sum())
    for g in range(len(patterns)):
        if nonzero[g]:
            count = int((key == g).sum())
            groups.append((torch.arange(at, at + count), patterns[g]))
            spans.append((at, at + count))
            at += count
    return ShiftedWindows(order, torch.argsort(order), WindowMask(len(perm), tuple(groups), tuple(spans)))


@functools.lru_cache(maxsize=64)
def _shifted_windows(h: int, w: int, window: int, shift: int, device: str) -> ShiftedWindows:
    cpu = _shifted_windows_cpu(h, w, window, shift)
    mask = WindowMask(cpu.mask.windows, tuple((i.to(device), p.to(device)) for i, p in cpu.mask.groups),
                      cpu.mask.spans)
    return ShiftedWindows(cpu.order.to(device), cpu.inverse.to(device), mask)


def shifted_windows(h: int, w: int, window: int, shift: int, device: torch.device | str) -> ShiftedWindows:
    """The shifted-window layout (`ShiftedWindows`) of an h x w grid, built once per size and device (cached).

    Its mask is Swin's SW-MSA mask (`shifted_window_mask`) without the all-zero windows: only the windows along the
    bottom and right border of the shifted grid have one (at most 3 distinct masks; 3 % of the windows at
    480 x 640)."""
    return _shifted_windows(h, w, window, shift, str(torch.device(device)))


class _WindowAttentionFunction(torch.autograd.Function):
    """softmax((q * scale) k^T + bias) v with the attention matrix rebuilt in the backward pass instead of kept
    (saves q, k, v and the bias; the materialised formulation keeps the B nW x heads x N x N softmax of every block).
    Under autocast the products run in q's dtype and the softmax in float32, as autocast runs the formulation."""

    @staticmethod
    def _probabilities(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
        scores = (q * scale) @ k.transpose(-2, -1)
        dtype = torch.promote_types(scores.dtype, torch.float32)
        return (scores.to(dtype) + bias.to(dtype)).softmax(dim=-1)

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,  # noqa: ANN001
                scale: float) -> torch.Tensor:
        with torch.autocast(q.device.type, enabled=False):
            dtype = torch.promote_types(q.dtype, torch.promote_types(k.dtype, v.dtype))
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
            probs = _WindowAttentionFunction._probabilities(q, k, bias, scale)
            out = probs.to(dtype) @ v
        ctx.save_for_backward(q, k, v, bias)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: ANN001, ANN205
        q, k, v, bias = ctx.saved_tensors
        scale = ctx.scale
        with torch.autocast(q.device.type, enabled=False):
            probs = _WindowAttentionFunction._probabilities(q, k, bias, scale)
            grad_out = grad_out.to(v.dtype)
            grad_v = probs.to(v.dtype).transpose(-2, -1) @ grad_out
            grad_probs = (grad_out @ v.transpose(-2, -1)).to(probs.dtype)
            grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
            grad_bias = None
            if ctx.needs_input_grad[3]:
                dims = tuple(i for i, n in enumerate(bias.shape) if n == 1 and grad_scores.shape[i] != 1)
                grad_bias = (grad_scores.sum(dims, keepdim=True) if dims else grad_scores).to(bias.dtype)
            grad_scores = grad_scores.to(q.dtype)
            grad_q = (grad_scores @ k) * scale
            grad_k = grad_scores.transpose(-2, -1) @ (q * scale)
        return grad_q, grad_k, grad_v, grad_bias, None


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float,
          align: int = 1) -> torch.Tensor:
    """F.scaled_dot_product_attention with an additive bias; the head dimension zero-padded to a multiple of
    `align` (CUDA's fused kernels need 8; zeros change neither the scores nor the kept output columns)."""
    d = q.shape[-1]
    pad = (-d) % align
    if pad:
        q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)
    return out[..., :d] if pad else out


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax((q * scale) k^T + bias) v, q/k/v: batch x heads x N x d, bias broadcastable to batch x heads x N x N.

    When the bias needs a gradient (training): `_WindowAttentionFunction`, which keeps q, k, v and rebuilds the
    softmax in the backward pass (PyTorch's attention falls back to the materialised formulation on CPU whenever
    the mask needs a gradient). Otherwise (inference): `F.scaled_dot_product_attention` (fused; on CUDA the head
    dimension is zero-padded to a multiple of 8 so that a fused kernel applies)."""
    if bias.requires_grad and torch.is_grad_enabled():
        return _WindowAttentionFunction.apply(q, k, v, bias, scale)
    return _sdpa(q, k, v, bias, scale, align=8 if q.device.type == "cuda" else 1)


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float,
                     groups: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()) -> torch.Tensor:
    """Window attention with a relative-position `bias` (heads x N x N) and, for shifted windows, the SW-MSA mask
    as `groups` of rows sharing one N x N mask (`WindowMask.rows`). q, k, v: windows x heads x N x d. Every window
    is attended with the bias alone, then the rows of each group again with bias + mask, replacing theirs: the
    result of adding the full nW x N x N mask to every window's scores, without building it or adding zeros to the
    97 % of the windows (at 480 x 640) whose mask is zero."""
    out = attend(q, k, v, bias.unsqueeze(0), scale)
    for rows, pattern in groups:
        rows = rows.to(q.device)
        part = attend(q.index_select(0, rows), k.index_select(0, rows), v.index_select(0, rows),
                      (bias + pattern.to(bias.dtype)).unsqueeze(0), scale)
        # in place when nothing is recorded for autograd (keeps the attention's own output layout, no copy)
        out = out.index_copy_(0, rows, part) if not out.requires_grad else out.index_copy(0, rows, part)
    return out


INFERENCE_CHUNK = 64  # windows per chunk of the inference path (64 windows of 8 x 8: 4096 tokens)


class Mlp(nn.Sequential):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class WindowAttention(nn.Module):
    """Multi-head attention inside windows with a learned relative-position bias.

    Self-attention (`cross=False`): one qkv projection. Cross-attention (`cross=True`): queries from x, keys and
    values from the other modality's `context` (the authors' Cross_WindowAttention)."""

    def __init__(self, dim: int, window: int, num_heads: int, cross: bool = False, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads, self.cross = num_heads, cross
        self.scale = (dim // num_heads) ** -0.5
        if cross:
            self.q = nn.Linear(dim, dim, bias=qkv_bias)
            self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """heads x N x N bias of the window's token pairs, from the learned table."""
        n = self.relative_position_index.shape[0]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1).contiguous()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: WindowMask | torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (and context): (B * nW) x N x C; mask: a `WindowMask`, an nW x N x N additive mask, or None; `bias`:
        the heads x N x N relative-position bias (plus any mask every window of the call shares) when the caller
        already has it, else `relative_position_bias()`.

        softmax(Q K^T / sqrt(d) + bias + mask) V per window and head, computed by `window_attention`
        (`F.scaled_dot_product_attention`, or an attention that rebuilds the softmax in the backward pass)."""
        bw, n, c = x.shape
        heads = self.num_heads
        if self.cross:
            if context is None:
                raise ValueError("cross-attention needs a context (the other modality's windows)")
            q = self.q(x).view(bw, n, heads, c // heads).transpose(1, 2)
            k, v = self.kv(context).view(bw, n, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        else:
            q, k, v = self.qkv(x).view(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        if isinstance(mask, torch.Tensor):
            mask = WindowMask.from_dense(mask)
        groups = mask.rows(bw) if mask is not None else ()
        bias = self.relative_position_bias() if bias is None else bias
        out = window_attention(q, k, v, bias, self.scale, groups)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class _WindowBlockBase(nn.Module):
    """Shared windowing (cyclic shift, partition, mask) of the self- and cross-attention Swin blocks."""

    def __init__(self, window: int, shift: int):
        super().__init__()
        if not 0 <= shift < window:
            raise ValueError(f"shift must be in [0, window), got shift {shift} with window {window}")
        self.window, self.shift = window, shift

    def layout(self, h: int, w: int, device: torch.device) -> ShiftedWindows | None:
        return shifted_windows(h, w, self.window, self.shift, device) if self.shift else None

    def to_windows(self, x: torch.Tensor) -> torch.Tensor:
        """B x H x W x C -> (B * nW) x window^2 x C; shifted blocks: the grid cyclically shifted by -shift, windows
        in the `ShiftedWindows` order (one gather)."""
        b, h, w, c = x.shape
        layout = self.layout(h, w, x.device)
        if layout is None:
            return window_partition(x, self.window)
        return x.reshape(b, h * w, c).index_select(1, layout.order).view(-1, self.window * self.window, c)

    def from_windows(self, windows: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Inverse of `to_windows`."""
        layout = self.layout(h, w, windows.device)
        if layout is None:
            return window_reverse(windows, self.window, h, w)
        c = windows.shape[-1]
        return windows.reshape(-1, h * w, c).index_select(1, layout.inverse).view(-1, h, w, c)

    def mask(self, h: int, w: int, device: torch.device) -> WindowMask | None:
        """The SW-MSA mask of the windows `to_windows` gives (None without shift)."""
        layout = self.layout(h, w, device)
        return None if layout is None else layout.mask

    def chunked(self) -> bool:
        """Whether to run the inference path: nothing recorded for autograd and no stochastic depth, so the block
        can run window chunk by window chunk (see `chunks`)."""
        return not torch.is_grad_enabled() and not (self.training and self.drop_path > 0)

    @staticmethod
    def chunks(n: int, mask: WindowMask | None) -> Iterator[tuple[int, int, torch.Tensor | None]]:
        """(start, stop, SW-MSA mask of those windows or None) over `n` windows, at most INFERENCE_CHUNK at a time.

        At inference a block runs chunk by chunk on the windows of its un-normalised input (LayerNorm, the MLP and
        the residual sums act per token, so they commute with the window partition): every intermediate of a chunk
        stays in the CPU caches instead of a full-resolution tensor being written and read back per operation, and
        each window is attended once, with its own mask (the windows of a mask group are consecutive)."""
        segments = [(0, n, None)] if mask is None else [
            (image + start, image + stop, pattern) for image in range(0, n, mask.windows)
            for start, stop, pattern in mask.segments()]
        for start, stop, pattern in segments:
            for at in range(start, stop, INFERENCE_CHUNK):
                yield at, min(stop, at + INFERENCE_CHUNK), pattern


class SwinBlock(_WindowBlockBase):
    """Pre-norm Swin block: x + W-MSA/SW-MSA(LN(x)), then x + MLP(LN(x)). x: B x H x W x C."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float = 0.0):
        super().__init__(window, shift)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        if self.chunked():
            windows = self.to_windows(x)
            out = torch.empty_like(windows)
            bias = self.attn.relative_position_bias()
            for start, stop, mask in self.chunks(windows.shape[0], self.mask(h, w, x.device)):
                part = windows[start:stop]
                part = part + self.attn(self.norm1(part), bias=bias if mask is None else bias + mask.to(bias))
                torch.add(part, self.mlp(self.norm2(part)), out=out[start:stop])
            return self.from_windows(out, h, w)
        attn = self.attn(self.to_windows(self.norm1(x)), mask=self.mask(h, w, x.device))
        x = x + stochastic_depth(self.from_windows(attn, h, w), self.drop_path, "row", self.training)
        return x + stochastic_depth(self.mlp(self.norm2(x)), self.drop_path, "row", self.training)


class CrossSwinBlock(_WindowBlockBase):
    """Inter-domain Swin block: each modality's windows query the other's (two cross-attentions, two MLPs)."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float = 0.0):
        super().__init__(window, shift)
        self.norm1_a, self.norm1_b = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn_a = WindowAttention(dim, window, num_heads, cross=True)
        self.attn_b = WindowAttention(dim, window, num_heads, cross=True)
        self.norm2_a, self.norm2_b = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp_a, self.mlp_b = Mlp(dim, int(dim * mlp_ratio)), Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, h, w, _ = a.shape
        mask = self.mask(h, w, a.device)
        if self.chunked():
            wa, wb = self.to_windows(a), self.to_windows(b)
            out_a, out_b = torch.empty_like(wa), torch.empty_like(wb)
            bias_a, bias_b = self.attn_a.relative_position_bias(), self.attn_b.relative_position_bias()
            for start, stop, pattern in self.chunks(wa.shape[0], mask):
                xa, xb = wa[start:stop], wb[start:stop]
                na, nb = self.norm1_a(xa), self.norm1_b(xb)
                masked = (bias_a, bias_b) if pattern is None else (bias_a + pattern.to(bias_a),
                                                                   bias_b + pattern.to(bias_b))
                xa = xa + self.attn_a(na, nb, bias=masked[0])
                xb = xb + self.attn_b(nb, na, bias=masked[1])
                torch.add(xa, self.mlp_a(self.norm2_a(xa)), out=out_a[start:stop])
                torch.add(xb, self.mlp_b(self.norm2_b(xb)), out=out_b[start:stop])
            return self.from_windows(out_a, h, w), self.from_windows(out_b, h, w)
        wa, wb = self.to_windows(self.norm1_a(a)), self.to_windows(self.norm1_b(b))
        a = a + stochastic_depth(self.from_windows(self.attn_a(wa, wb, mask), h, w), self.drop_path, "row",
                                 self.training)
        b = b + stochastic_depth(self.from_windows(self.attn_b(wb, wa, mask), h, w), self.drop_path, "row",
                                 self.training)
        a = a + stochastic_depth(self.mlp_a(self.norm2_a(a)), self.drop_path, "row", self.training)
        b = b + stochastic_depth(self.mlp_b(self.norm2_b(b)), self.drop_path, "row", self.training)
        return a, b


def swin_stage(dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float,
               drop_paths: list[float]) -> nn.Sequential:
    """`depth` Swin blocks alternating regular (shift 0) and shifted (shift window // 2) windows."""
    return nn.Sequential(*(SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio,
                                     drop_paths[i]) for i in range(depth)))


class CrossFusionLayer(nn.Module):
    """The authors' CRSTB: intra-domain fusion (a Swin stage per modality), then inter-domain fusion (`depth`
    cross blocks). As in the authors' code there is no residual connection around the two parts."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, drop_paths: list[float]):
        super().__init__()
        self.intra_a = swin_stage(dim, depth, num_heads, window, mlp_ratio, drop_paths)
        self.intra_b = swin_stage(dim, depth, num_heads, window, mlp_ratio, drop_paths)
        self.inter = nn.ModuleList(CrossSwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2,
                                                  mlp_ratio, drop_paths[i]) for i in range(depth))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.intra_a(a), self.intra_b(b)
        for block in self.inter:
            a, b = block(a, b)
        return a, b


def _stochastic_depth(rate: float, depths: list[int]) -> list[list[float]]:
    """Per-layer drop-path rates, linear from 0 to `rate` over all blocks of a group (Swin's decay rule)."""
    total = sum(depths)
    rates = [rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
    starts = [sum(depths[:i]) for i in range(len(depths))]
    return [rates[s:s + d] for s, d in zip(starts, depths)]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right to a multiple of `multiple`: reflect (the authors' choice), replicate where the image is
    too small to reflect."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if not pad_h and not pad_w:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class SwinFusionNet(nn.Module):
    """SwinFusion network. x1 feeds stream A (infrared, the authors' `A`), x2 stream B (visible, `B`).

    features(x1, x2): shallow convs (shared by both streams, as in the authors' code) -> token LayerNorm ->
        per-modality Swin extraction (`extraction_depth` blocks) -> `len(fusion_depths)` cross-domain fusion
        layers -> LayerNorm per stream -> concat -> conv3x3 2C->C + LReLU: B x embed_dim x H x W.
    decode(features): token LayerNorm -> Swin reconstruction (`reconstruction_depth` blocks) -> LayerNorm ->
        conv3x3 C->C/2->C/4->out with LReLU between -> fused image B x out_channels x H x W.

    Inputs are reflect-padded to a multiple of `window_size` and the outputs cropped back, so any H x W works.
    The head is linear (no activation), as in the authors' network; `clamp=True` (default) returns values in
    [0, 1] through a straight-through clamp (forward clamps, backward passes the gradient unchanged), and
    `clamp=False` the raw output the authors train on. Defaults = the authors' VIF network (0.965 M parameters).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, embed_dim: int = 60, num_heads: int = 6,
                 window_size: int = 8, mlp_ratio: float = 2.0, extraction_depth: int = 4,
                 fusion_depths: tuple[int, ...] | list[int] = (2, 2), reconstruction_depth: int = 4,
                 drop_path_rate: float = 0.1):
        super().__init__()
        fusion_depths = [int(d) for d in fusion_depths]
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}")
        if embed_dim < 4 or embed_dim % 4:
            raise ValueError(f"embed_dim must be a positive multiple of 4 (the head halves it twice), got {embed_dim}")
        if window_size < 2:
            raise ValueError(f"window_size must be >= 2, got {window_size}")
        if extraction_depth < 1 or reconstruction_depth < 1 or not fusion_depths or min(fusion_depths) < 1:
            raise ValueError("extraction_depth, reconstruction_depth and every fusion depth must be >= 1, got "
                             f"{extraction_depth}, {reconstruction_depth}, {fusion_depths}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.window_size = window_size
        self.feature_channels = embed_dim
        c, half = embed_dim, embed_dim // 2
        self.register_buffer("input_mean", torch.tensor(_RGB_MEAN if in_channels == 3 else (0.0,) * in_channels)
                             .view(1, -1, 1, 1), persistent=False)
        self.register_buffer("output_mean", torch.tensor(_RGB_MEAN if out_channels == 3 else (0.0,) * out_channels)
                             .view(1, -1, 1, 1), persistent=False)
        self.shallow = nn.Sequential(nn.Conv2d(in_channels, half, 3, padding=1), nn.LeakyReLU(0.2),
                                     nn.Conv2d(half, c, 3, padding=1), nn.LeakyReLU(0.2))
        self.token_norm = nn.LayerNorm(c)  # the authors' PatchEmbed norm, shared by every stage
        (dp_ex,) = _stochastic_depth(drop_path_rate, [extraction_depth])
        self.extraction_a = swin_stage(c, extraction_depth, num_heads, window_size, mlp_ratio, dp_ex)
        self.extraction_b = swin_stage(c, extraction_depth, num_heads, window_size, mlp_ratio, dp_ex)
        self.norm_extraction_a, self.norm_extraction_b = nn.LayerNorm(c), nn.LayerNorm(c)
        self.fusion = nn.ModuleList(CrossFusionLayer(c, d, num_heads, window_size, mlp_ratio, dp)
                                    for d, dp in zip(fusion_depths, _stochastic_depth(drop_path_rate, fusion_depths)))
        self.norm_fusion_a, self.norm_fusion_b = nn.LayerNorm(c), nn.LayerNorm(c)
        self.fusion_conv = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), nn.LeakyReLU(0.2))
        (dp_re,) = _stochastic_depth(drop_path_rate, [reconstruction_depth])
        self.reconstruction = swin_stage(c, reconstruction_depth, num_heads, window_size, mlp_ratio, dp_re)
        self.norm_reconstruction = nn.LayerNorm(c)
        self.head = nn.Sequential(nn.Conv2d(c, half, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(half, half // 2, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(half // 2, out_channels, 3, padding=1))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """The authors' init: truncated-normal (std 0.02) linear weights, zero biases, unit LayerNorms."""
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _extract(self, x: torch.Tensor, stage: nn.Module, norm: nn.Module) -> torch.Tensor:
        tokens = self.token_norm(self.shallow(x - self.input_mean).permute(0, 2, 3, 1))  # B x H x W x C
        return norm(stage(tokens))

    def _features_padded(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        a = self.token_norm(self._extract(x1, self.extraction_a, self.norm_extraction_a))
        b = self.token_norm(self._extract(x2, self.extraction_b, self.norm_extraction_b))
        for layer in self.fusion:
            a, b = layer(a, b)
        fused = torch.cat([self.norm_fusion_a(a), self.norm_fusion_b(b)], dim=-1).permute(0, 3, 1, 2)
        return self.fusion_conv(fused)

    def _decode_padded(self, features: torch.Tensor, clamp: bool) -> torch.Tensor:
        tokens = self.token_norm(features.permute(0, 2, 3, 1))
        x = self.norm_reconstruction(self.reconstruction(tokens)).permute(0, 3, 1, 2)
        out = self.head(x) + self.output_mean
        return out + (out.clamp(0, 1) - out).detach() if clamp else out

    def features(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Fused features B x feature_channels x H x W (after the cross-domain fusion and the merging conv)."""
        check_source_pair(x1, x2, self.in_channels)
        h, w = x1.shape[-2:]
        padded = self._features_padded(pad_to_multiple(x1, self.window_size), pad_to_multiple(x2, self.window_size))
        return padded[..., :h, :w]

    def decode(self, features: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Fused image B x out_channels x H x W (in [0, 1] when `clamp`)."""
        if features.dim() != 4 or features.shape[1] != self.feature_channels:
            raise ValueError(f"features must be B x {self.feature_channels} x H x W, got {tuple(features.shape)}")
        h, w = features.shape[-2:]
        return self._decode_padded(pad_to_multiple(features, self.window_size), clamp)[..., :h, :w]

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """decode(features(x1, x2)). For sizes that are multiples of `window_size` this is exactly the authors'
        forward; otherwise the features are cropped and re-padded in between (differs near the padded border)."""
        return self.decode(self.features(x1, x2), clamp=clamp)
