"""CMD-CTA (cross-modal disentanglement with contrastive task alignment) as pure nn.Modules (no Lightning here).

Data flow for one luminance pair y1, y2 (B x 1 x H x W, H and W padded to a multiple of 4 x window):

    shared hybrid encoder (both modalities in one batch, same weights):
        PatchEmbed conv4x4/s4 + LayerNorm -> tokens B x h x w x C (h = H / 4)
        VSS branch (SS2D, four scan directions) and Swin branch in parallel on the tokens -> Linear(2C -> C) merge
    decomposition (shared): projector Linear-GELU-Linear (C -> D), optional graph reasoning, then the bases
        Q_c, Q_m, Q_t (Eq. 2, D x d each) -> content / modality / task features F_c, F_m, F_t (B x h x w x d)
    heads used by the losses only: task embedding f_t (attention pooling + MLP, unit norm), contrastive projector
        g (shared by the pixel / block / global levels), block attention vector w
    fusion path: F_c = mean of the two contents; alpha = softmax_m W_g[F_c; F_m^(m)] (per token or per block);
        s = sigmoid(Conv3x3([unshuffle4 |grad y1|, unshuffle4 |grad y2|, F_c])); decoder([F_c, s * sum alpha F_m])

Every width, depth and layout choice is ours (the paper gives none), sized to the paper's Table S3; see
methods/cmd_cta/README.md and ../shared/specs/cmd-cta.md. Token tensors are channels-last (B x h x w x C).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusion_bench.base.losses import sobel_magnitude
from fusion_bench.base.method import check_source_pair
from fusion_bench.base.precision import upcast
from fusion_bench.methods.swinfusion.model import pad_to_multiple, swin_stage
from fusion_bench.ops.selective_scan import BACKEND_NAMES, mamba_import_error, resolve_impl, selective_scan

PATCH = 4  # the encoder works at 1/4 resolution (4x4 patch embedding)
DECOMPOSITIONS = ("paper", "exact", "linear")
AGGREGATIONS = ("token", "block")


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


# ---------------------------------------------------------------- encoder


class PatchEmbed(nn.Module):
    """Conv 4x4 / stride 4 (1 -> C) + LayerNorm: B x 1 x H x W -> B x H/4 x W/4 x C."""

    def __init__(self, dim: int, in_channels: int = 1):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, PATCH, stride=PATCH)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class SS2D(nn.Module):
    """VMamba's 2-D selective scan: in_proj -> depthwise conv + SiLU -> four scans (row-major, column-major and
    both reversed) through the selective scan -> cross-merge (sum) -> LayerNorm -> gate SiLU(z) -> out_proj.

    Mamba-1 defaults: dt_rank = ceil(dim / 16), S4D-real A (A_log = log 1..N), D = 1, dt drawn log-uniformly in
    [dt_min, dt_max] and stored as its inverse softplus; in_proj/out_proj without bias."""

    directions = 4

    def __init__(self, dim: int, d_state: int = 16, expand: int = 2, d_conv: int = 3, dt_min: float = 1e-3,
                 dt_max: float = 0.1, dt_init_floor: float = 1e-4, scan_impl: str = "auto", scan_chunk: int = 16,
                 scan_chunks_per_group: int | None = None, scan_intra: str = "loop"):
        super().__init__()
        if d_conv < 1 or d_conv % 2 == 0:
            raise ValueError(f"d_conv must be an odd kernel size >= 1, got {d_conv}")
        k, d_inner = self.directions, expand * dim
        self.d_inner, self.d_state = d_inner, d_state
        self.dt_rank = math.ceil(dim / 16)
        self.scan = {"impl": scan_impl, "chunk": scan_chunk, "chunks_per_group": scan_chunks_per_group,
                     "intra": scan_intra}
        self.backends_used: set[str] = set()  # BACKEND_NAMES of the scans run so far (the row's scan_backend)
        mamba_import_error()  # a one-line warning when mamba-ssm is installed but broken
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=d_conv // 2, groups=d_inner, bias=True)
        bound = d_inner**-0.5  # nn.Linear's default range for the per-direction x projections
        self.x_proj_weight = nn.Parameter(torch.empty(k, self.dt_rank + 2 * d_state, d_inner).uniform_(-bound, bound))
        dt_bound = self.dt_rank**-0.5
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, self.dt_rank).uniform_(-dt_bound, dt_bound))
        dt = torch.exp(torch.rand(k, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(k * d_inner, 1))
        self.Ds = nn.Parameter(torch.ones(k * d_inner))
        self.A_logs._no_weight_decay = True  # Mamba's convention: no weight decay on A_log and D
        self.Ds._no_weight_decay = True
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)

    def cross_scan(self, x: torch.Tensor) -> torch.Tensor:
        """B x d x H x W -> B x 4 x d x L: row-major, column-major, and both reversed."""
        rows, cols = x.flatten(2), x.transpose(2, 3).flatten(2)
        return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)

    @staticmethod
    def cross_merge(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """B x 4 x d x L -> B x d x L in row-major order (undo the flips and the transpose, sum the four)."""
        b, _, d, length = y.shape
        rows = y[:, 0] + y[:, 2].flip(-1)
        cols = (y[:, 1] + y[:, 3].flip(-1)).view(b, d, w, h).transpose(2, 3).reshape(b, d, length)
        return rows + cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        xz = self.in_proj(x)
        x, z = xz.chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))  # B x d x H x W
        xs = self.cross_scan(x)  # B x K x d x L
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, b_s, c_s = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        length = h * w
        # the scan runs in float32 even under mixed precision (in float64 when the block is float64)
        dtype = torch.float64 if self.Ds.dtype == torch.float64 else torch.float32
        impl = resolve_impl(xs.reshape(b, -1, length), self.A_logs, self.scan["impl"])
        self.backends_used.add(BACKEND_NAMES[impl])
        with _no_autocast(x.device):
            y = selective_scan(xs.to(dtype).reshape(b, -1, length), dts.to(dtype).reshape(b, -1, length),
                               -torch.exp(self.A_logs.to(dtype)), b_s.to(dtype), c_s.to(dtype), self.Ds.to(dtype),
                               delta_bias=self.dt_projs_bias.to(dtype).reshape(-1), delta_softplus=True,
                               impl=impl, chunk=self.scan["chunk"],
                               chunks_per_group=self.scan["chunks_per_group"], intra=self.scan["intra"])
        y = self.cross_merge(y.view(b, self.directions, self.d_inner, length), h, w)
        y = self.out_norm(y.transpose(1, 2).reshape(b, h, w, self.d_inner))
        return self.out_proj(y * F.silu(z))


class VSSBlock(nn.Module):
    """x + SS2D(LayerNorm(x)) (VMamba v0 block, no MLP). x: B x H x W x C."""

    def __init__(self, dim: int, **ss2d: Any):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ss2d = SS2D(dim, **ss2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ss2d(self.norm(x))


class HybridEncoder(nn.Module):
    """Patch embedding, then the VSS branch and the Swin branch in parallel on the same tokens, merged by
    Linear(2C -> C). With one branch off the other is used alone; with both off the patch embedding is the encoder
    (Table 3's first rows)."""

    def __init__(self, dim: int, mamba_depth: int, swin_depth: int, heads: int, window: int, mlp_ratio: float,
                 use_mamba: bool, use_swin: bool, **ss2d: Any):
        super().__init__()
        self.embed = PatchEmbed(dim)
        self.mamba = nn.Sequential(*(VSSBlock(dim, **ss2d) for _ in range(mamba_depth))) if use_mamba else None
        self.swin = swin_stage(dim, swin_depth, heads, window, mlp_ratio, [0.0] * swin_depth) if use_swin else None
        self.merge = nn.Linear(2 * dim, dim) if use_mamba and use_swin else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x)
        branches = [branch(tokens) for branch in (self.mamba, self.swin) if branch is not None]
        if self.merge is not None:
            return self.merge(torch.cat(branches, dim=-1))
        return branches[0] if branches else tokens


# ---------------------------------------------------------------- decomposition


class GraphReasoning(nn.Module):
    """GloRe-style graph reasoning on tokens (ours; the paper only names a "GNN block"): soft-assign the tokens to
    `nodes` graph nodes (softmax over tokens), mix node features across nodes then channels (ReLU), project back
    to the tokens, residual. p: B x L x D."""

    def __init__(self, dim: int, nodes: int):
        super().__init__()
        self.assign = nn.Linear(dim, nodes)
        self.node = nn.Linear(nodes, nodes)
        self.channel = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        a = self.assign(p).softmax(dim=1)  # B x L x n
        v = a.transpose(1, 2) @ p  # B x n x D
        v = F.relu(self.channel(self.node(v.transpose(1, 2)).transpose(1, 2)))
        return p + self.out(a @ v)


class OrthogonalDecomposition(nn.Module):
    """Projector (+ graph reasoning) and the three bases of Eq. 2; F_i = P Q_i.

    `paper` (Eq. 2 literally): R_i = exp(A_i - A_i^T), Q_c = R_c W_c, Q_m = R_m (I - Q_c Q_c^T) W_m,
        Q_t = R_t (I - Q_c Q_c^T - Q_m Q_m^T) W_t. This does not make the subspaces orthogonal (W_i has no
        orthonormal columns): the orthogonality penalty does the work (see README).
    `exact`: one rotation R = exp(A - A^T); Q_c, Q_m, Q_t are its first, second and third d columns, orthonormal
        and mutually orthogonal by construction.
    `linear`: plain linear projections Q_i = W_i (the Table 3 rows without orthogonal decomposition).
    A_i start at 0 (R = I), W_i ~ N(0, 1/D). The matrix exponentials run in float32 even under mixed precision."""

    def __init__(self, dim: int, proj_dim: int, sub_dim: int, mode: str = "paper", use_gnn: bool = True,
                 gnn_nodes: int = 16):
        super().__init__()
        if mode not in DECOMPOSITIONS:
            raise ValueError(f"decomposition must be one of {DECOMPOSITIONS}, got {mode!r}")
        if mode == "exact" and 3 * sub_dim > proj_dim:
            raise ValueError(f"decomposition 'exact' needs 3 x sub_dim <= proj_dim, got {sub_dim} and {proj_dim}")
        self.mode, self.sub_dim = mode, sub_dim
        self.projector = nn.Sequential(nn.Linear(dim, proj_dim), nn.GELU(), nn.Linear(proj_dim, proj_dim))
        self.gnn = GraphReasoning(proj_dim, gnn_nodes) if use_gnn else None
        if mode == "exact":
            self.A = nn.Parameter(torch.zeros(proj_dim, proj_dim))
        else:
            if mode == "paper":
                self.A = nn.Parameter(torch.zeros(3, proj_dim, proj_dim))
            self.W = nn.Parameter(torch.randn(3, proj_dim, sub_dim) * proj_dim**-0.5)

    def bases(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Q_c, Q_m, Q_t), each D x d, float32 (float64 for float64 weights)."""
        d = self.sub_dim
        if self.mode == "linear":
            return upcast(self.W[0]), upcast(self.W[1]), upcast(self.W[2])
        with _no_autocast(self.A.device):
            if self.mode == "exact":
                a = upcast(self.A)
                r = torch.linalg.matrix_exp(a - a.T)
                return r[:, :d], r[:, d:2 * d], r[:, 2 * d:3 * d]
            a, w = upcast(self.A), upcast(self.W)
            rot = torch.linalg.matrix_exp(a - a.transpose(1, 2))
            eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
            q_c = rot[0] @ w[0]
            q_m = rot[1] @ (eye - q_c @ q_c.T) @ w[1]
            q_t = rot[2] @ (eye - q_c @ q_c.T - q_m @ q_m.T) @ w[2]
            return q_c, q_m, q_t

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """tokens B x h x w x C -> (P: B x L x D, (F_c, F_m, F_t): B x L x d each, (Q_c, Q_m, Q_t))."""
        p = self.projector(tokens.flatten(1, 2))
        if self.gnn is not None:
            p = self.gnn(p)
        q = self.bases()
        return p, tuple(p @ q_i.to(p.dtype) for q_i in q), q


# ---------------------------------------------------------------- heads


class TaskHead(nn.Module):
    """Task embedding f_t: attention pooling of each modality's F_t (Linear(d -> 1) scores, softmax over tokens),
    the mean of the two pooled vectors, MLP d -> hidden -> d_p, L2-normalised. One f_t per image pair."""

    def __init__(self, sub_dim: int, hidden: int, proto_dim: int):
        super().__init__()
        self.score = nn.Linear(sub_dim, 1)
        self.mlp = nn.Sequential(nn.Linear(sub_dim, hidden), nn.GELU(), nn.Linear(hidden, proto_dim))

    def pool(self, f: torch.Tensor) -> torch.Tensor:
        return (self.score(f).softmax(dim=1) * f).sum(dim=1)

    def forward(self, f_t1: torch.Tensor, f_t2: torch.Tensor) -> torch.Tensor:
        return F.normalize(upcast(self.mlp((self.pool(f_t1) + self.pool(f_t2)) / 2)), dim=-1)


class ContrastHeads(nn.Module):
    """The contrastive projector g (Linear-GELU-Linear, unit-norm output), shared by the pixel, block and global
    levels (the paper's weight tying across granularities), and the block attention vector w of Eq. 10."""

    def __init__(self, sub_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(sub_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.block_w = nn.Parameter(torch.zeros(sub_dim))  # zero: the block pooling starts as a mean

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """g(f), unit norm (float32)."""
        return F.normalize(upcast(self.proj(f)), dim=-1)

    def embed(self, f: torch.Tensor) -> torch.Tensor:
        return self(f)

    def pixel(self, f: torch.Tensor) -> torch.Tensor:
        """B x L x d -> B x L x e."""
        return self.embed(f)

    def block(self, f: torch.Tensor, h: int, w: int, block: int) -> torch.Tensor:
        """B x L x d on an h x w grid -> (B * blocks) x e: attention-weighted sum over each block x block window
        (alpha = softmax over the block of w^T f), then g."""
        b, _, d = f.shape
        grid = f.view(b, h // block, block, w // block, block, d).permute(0, 1, 3, 2, 4, 5)
        grid = grid.reshape(b * (h // block) * (w // block), block * block, d)
        alpha = (grid @ self.block_w.to(grid.dtype)).softmax(dim=1)
        return self.embed((alpha[..., None] * grid).sum(dim=1))

    def image(self, f: torch.Tensor) -> torch.Tensor:
        """B x L x d -> B x e (mean over tokens, then g)."""
        return self.embed(f.mean(dim=1))


# ---------------------------------------------------------------- fusion path


class SelectiveAggregation(nn.Module):
    """alpha_m = softmax_m W_g[F_c; F_m^(m)] (per token, or per block of `block` tokens: the paper's "at block
    level"), F_m^agg = sum_m alpha_m F_m^(m); s = sigmoid(Conv3x3([unshuffle4 |grad y1|, unshuffle4 |grad y2|,
    F_c])); returns s * F_m^agg. Maps are B x d x h x w; gradients B x 1 x H x W."""

    def __init__(self, sub_dim: int, level: str = "token", block: int = 8):
        super().__init__()
        if level not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {level!r}")
        self.level, self.block = level, block
        self.gate = nn.Conv2d(2 * sub_dim, 1, 1)
        self.select = nn.Conv2d(2 * PATCH * PATCH + sub_dim, sub_dim, 3, padding=1)

    def forward(self, f_c: torch.Tensor, f_m1: torch.Tensor, f_m2: torch.Tensor, grad1: torch.Tensor,
                grad2: torch.Tensor) -> torch.Tensor:
        logits = torch.cat([self.gate(torch.cat([f_c, f_m1], 1)), self.gate(torch.cat([f_c, f_m2], 1))], 1)
        if self.level == "block":  # W_g is linear: pooling its output = applying it to the pooled features
            logits = F.avg_pool2d(logits, self.block)
            logits = logits.repeat_interleave(self.block, dim=2).repeat_interleave(self.block, dim=3)
        alpha = logits.softmax(dim=1)
        f_m = alpha[:, :1] * f_m1 + alpha[:, 1:] * f_m2
        grads = [F.pixel_unshuffle(g, PATCH) for g in (grad1, grad2)]
        s = torch.sigmoid(self.select(torch.cat([*grads, f_c], 1)))
        return s * f_m


class DWSep(nn.Sequential):
    """Depthwise 3x3 (bias) -> pointwise 1x1 (bias) -> GELU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in), nn.Conv2d(c_in, c_out, 1), nn.GELU())


class Decoder(nn.Module):
    """Lightweight depthwise-separable decoder: at H/4 1x1 (2d -> c4) + 2 dwsep; 1x1 + PixelShuffle(2) to H/2
    (c2) + 2 dwsep; 1x1 + PixelShuffle(2) to H (c1); a full-resolution stem conv3x3 on [y1, y2] (2 -> c1) is
    concatenated; dwsep, conv3x3 -> 1, sigmoid."""

    def __init__(self, sub_dim: int, widths: tuple[int, int, int] = (128, 32, 16)):
        super().__init__()
        c4, c2, c1 = widths
        self.quarter = nn.Sequential(nn.Conv2d(2 * sub_dim, c4, 1), DWSep(c4, c4), DWSep(c4, c4))
        self.up2 = nn.Sequential(nn.Conv2d(c4, 4 * c2, 1), nn.PixelShuffle(2), DWSep(c2, c2), DWSep(c2, c2))
        self.up1 = nn.Sequential(nn.Conv2d(c2, 4 * c1, 1), nn.PixelShuffle(2))
        self.stem = nn.Conv2d(2, c1, 3, padding=1)
        self.head = nn.Sequential(DWSep(2 * c1, 2 * c1), nn.Conv2d(2 * c1, 1, 3, padding=1))

    def forward(self, features: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        x = self.up1(self.up2(self.quarter(features)))
        x = torch.cat([x, self.stem(torch.cat([y1, y2], 1))], 1)
        return torch.sigmoid(self.head(x))


# ---------------------------------------------------------------- network


class CMDCTANet(nn.Module):
    """The whole network. `forward(y1, y2)` -> fused Y (B x 1 x H x W, in (0, 1)); `forward_train(y1, y2)` ->
    a dict with everything the losses need (see its docstring). Any H x W works: inputs are reflect-padded
    (replicate when too small to reflect, e.g. smaller than one window) to a multiple of 4 x window and the output
    is cropped back."""

    def __init__(self, embed_dim: int = 48, mamba_depth: int = 8, swin_depth: int = 6, heads: int = 3,
                 window: int = 8, mlp_ratio: float = 4.0, d_state: int = 16, expand: int = 2, d_conv: int = 3,
                 proj_dim: int = 128, sub_dim: int = 32, proto_dim: int = 64, proto_hidden: int = 128,
                 contrast_dim: int = 64, decoder_widths: tuple[int, int, int] | list[int] = (128, 32, 16),
                 use_mamba: bool = True, use_swin: bool = True, use_gnn: bool = True, gnn_nodes: int = 16,
                 decomposition: str = "paper", aggregation: str = "block", block_tokens: int = 8,
                 scan_impl: str = "auto", scan_chunk: int = 16, scan_chunks_per_group: int | None = None,
                 scan_intra: str = "loop"):
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("heads", heads), ("window", window), ("proj_dim", proj_dim),
                            ("sub_dim", sub_dim), ("proto_dim", proto_dim), ("d_state", d_state),
                            ("expand", expand), ("block_tokens", block_tokens), ("gnn_nodes", gnn_nodes)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if mamba_depth < 0 or swin_depth < 0:
            raise ValueError(f"depths must be >= 0, got mamba_depth {mamba_depth}, swin_depth {swin_depth}")
        if use_swin and embed_dim % heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by heads ({heads})")
        if window % block_tokens:
            raise ValueError(f"block_tokens ({block_tokens}) must divide the window ({window}): blocks tile the "
                             "padded token grid")
        self.window, self.block_tokens = window, block_tokens
        self.multiple = PATCH * window
        self.encoder = HybridEncoder(embed_dim, mamba_depth, swin_depth, heads, window, mlp_ratio,
                                     use_mamba and mamba_depth > 0, use_swin and swin_depth > 0, d_state=d_state,
                                     expand=expand, d_conv=d_conv, scan_impl=scan_impl, scan_chunk=scan_chunk,
                                     scan_chunks_per_group=scan_chunks_per_group, scan_intra=scan_intra)
        self.decomposition = OrthogonalDecomposition(embed_dim, proj_dim, sub_dim, decomposition, use_gnn, gnn_nodes)
        self.task_head = TaskHead(sub_dim, proto_hidden, proto_dim)
        self.contrast = ContrastHeads(sub_dim, contrast_dim)
        self.aggregation = SelectiveAggregation(sub_dim, aggregation, block_tokens)
        self.decoder = Decoder(sub_dim, tuple(int(w) for w in decoder_widths))

    def _padded(self, y1: torch.Tensor, y2: torch.Tensor) -> dict[str, Any]:
        """Everything on inputs already padded to a multiple of 4 x window."""
        b = y1.shape[0]
        tokens = self.encoder(torch.cat([y1, y2], 0))  # both modalities through the shared encoder at once
        h, w = tokens.shape[1:3]
        _, feats, bases = self.decomposition(tokens)
        (c1, c2), (m1, m2), (t1, t2) = (f.split(b, dim=0) for f in feats)

        def grid(f: torch.Tensor) -> torch.Tensor:  # B x L x d -> B x d x h x w
            return f.transpose(1, 2).reshape(b, -1, h, w)

        f_c = grid((c1 + c2) / 2)
        mixed = self.aggregation(f_c, grid(m1), grid(m2), sobel_magnitude(y1), sobel_magnitude(y2))
        fused = self.decoder(torch.cat([f_c, mixed], 1), y1, y2)
        return {"fused": fused, "content": (c1, c2), "modality": (m1, m2), "task": (t1, t2), "bases": bases,
                "grid": (h, w)}

    def forward_train(self, y1: torch.Tensor, y2: torch.Tensor) -> dict[str, Any]:
        """fused (B x 1 x H x W, cropped back), content / modality / task: pairs of B x L x d token features (of
        the padded grid), bases (Q_c, Q_m, Q_t), grid (h, w) and task_embedding f_t (B x d_p, unit norm)."""
        check_source_pair(y1, y2, 1)
        h, w = y1.shape[-2:]
        out = self._padded(pad_to_multiple(y1, self.multiple), pad_to_multiple(y2, self.multiple))
        out["fused"] = out["fused"][..., :h, :w]
        out["task_embedding"] = self.task_head(*out["task"])
        return out

    def forward(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        check_source_pair(y1, y2, 1)
        h, w = y1.shape[-2:]
        fused = self._padded(pad_to_multiple(y1, self.multiple), pad_to_multiple(y2, self.multiple))["fused"]
        return fused[..., :h, :w]
