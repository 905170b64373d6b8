"""The Mamba selective scan (S6) in three interchangeable back ends with one signature.

    selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, impl="auto", chunk=16, chunks_per_group=None)

Shapes (mamba-ssm's `selective_scan_fn` with variable B and C):
    u, delta, z : batch x dim x L            A : dim x N (real; negative for a stable recurrence)
    B, C        : batch x N x L, or grouped batch x G x N x L (dim % G == 0; channel c uses group c // (dim / G))
    D, delta_bias : dim                      last state : batch x dim x N
Semantics (mamba-ssm's `selective_scan_ref`):
    delta <- softplus(delta + delta_bias) if delta_softplus, else delta + delta_bias
    h_t = exp(delta_t A) * h_{t-1} + delta_t B_t u_t   (h_0 = 0, per channel and state)
    y_t = sum_n C_t[n] h_t[n] + D u_t ;  y <- y * silu(z) when z is given

Back ends:
    `selective_scan_ref`      the plain loop over t (the oracle of the tests; L Python steps over b x dim x N
                              tensors that stay in cache: the fastest back end on a CPU).
    `selective_scan_chunked`  pure PyTorch, chunked: each chunk of `chunk` (T) steps is solved from a zero state,
                              all chunks of a group at once, either by T steps vectorised over the chunks
                              (`intra="loop"`, O(L N) work) or SSD-style from the T x T matrix of log-space decay
                              differences, masked to -inf before the exponential (`intra="parallel"`, O(L T N) work,
                              no step loop); the chunk-boundary states are carried by a short sequential pass and
                              added back. Chunks are processed in groups sized from a memory budget (the largest
                              intermediate is b x dim x g x T x N, x T for `parallel`); under autograd each group is
                              checkpointed, so memory stays bounded at any L. T + L/T Python steps instead of L:
                              the pure back end for a GPU, where the loop is launch-bound.
    mamba-ssm's CUDA kernel   `impl="cuda"` (the optional `mamba` extra: pip install -e '.[mamba]').
`impl="auto"` takes the kernel for CUDA tensors when mamba-ssm imports, the chunked scan for other CUDA tensors;
on the CPU the chunked scan while one step's state (batch x dim x N) has at most CPU_LOOP_MIN_STATE elements, the
reference loop above (measured on this project's CPU, L = 1024, one thread: the chunked scan is 2x faster at state
512-2048, where the loop's per-step overhead dominates, and 1.3-2x slower at 12288-49152, where its extra memory
traffic costs more than the Python steps it saves).

Computation is in float32 (float64 stays float64) and the output is cast back to u's dtype, as the reference does.
The pure back ends use only element-wise products and sums, so torch.utils.flop_counter does not count the scan
(neither do THOP/fvcore count mamba-ssm's kernel); `selective_scan_flops` gives the analytic count.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IMPLS = ("auto", "chunked", "ref", "cuda")
INTRA_MODES = ("loop", "parallel")
CPU_LOOP_MIN_STATE = 4096  # `auto` on the CPU: the reference loop when batch x dim x N exceeds this (see above)
# elements in the largest intermediate of one chunk group: on a GPU large groups (fewer sequential steps and kernel
# launches: at the paper preset, 32 x 384 x 16 states, T = 32, 2^27 = 512 MB in fp32 gives 7 groups of <= 21 chunks,
# ~350 steps per scan instead of 4096), on a CPU small ones that stay in cache (measured ~2x faster than 2^25 at
# 2 x 384 x 16 x 4096)
DEFAULT_GROUP_ELEMENTS = {"cuda": 2**27, "cpu": 2**19}
MAMBA_HINT = "the CUDA selective scan needs mamba-ssm: pip install -e '.[mamba]' (CUDA only)"

log = logging.getLogger("fusion_bench.ops.selective_scan")

__all__ = ["BACKEND_NAMES", "IMPLS", "mamba_available", "mamba_import_error", "resolve_impl", "selective_scan",
           "selective_scan_chunked", "selective_scan_flops",
           "selective_scan_ref"]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _prepare(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             D: torch.Tensor | None, z: torch.Tensor | None, delta_bias: torch.Tensor | None,
             delta_softplus: bool) -> tuple[torch.Tensor, ...]:
    """Check shapes; return (u, delta after bias/softplus, A, B, C) in the compute dtype, grouped as
    u/delta: b x G x H x L, A: G x H x N, B/C: b x G x 1 x N x L (H = dim / G)."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be batch x dim x L, got {tuple(u.shape)}")
    b, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta {tuple(delta.shape)} must match u {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be dim x N = {dim} x N, got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.dim() == 3:
            t_shape = (b, n, length)
        elif t.dim() == 4:
            t_shape = (b, t.shape[1], n, length)
        else:
            t_shape = None
        if t_shape is None or tuple(t.shape) != t_shape:
            raise ValueError(f"selective_scan: {name} must be batch x N x L or batch x G x N x L with batch {b}, "
                             f"N {n}, L {length}; got {tuple(t.shape)}")
    groups = B.shape[1] if B.dim() == 4 else 1
    if (C.shape[1] if C.dim() == 4 else 1) != groups:
        raise ValueError(f"selective_scan: B and C must have the same groups, got {tuple(B.shape)} and "
                         f"{tuple(C.shape)}")
    if dim % groups:
        raise ValueError(f"selective_scan: dim {dim} must be a multiple of the B/C groups {groups}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (dim,):
            raise ValueError(f"selective_scan: {name} must have shape ({dim},), got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z {tuple(z.shape)} must match u {tuple(u.shape)}")
    dtype = _compute_dtype(u.dtype)
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = dim // groups
    u_g = u.to(dtype).reshape(b, groups, h, length)
    delta_g = delta.reshape(b, groups, h, length)
    a_g = A.to(dtype).reshape(groups, h, n)
    b_g = B.to(dtype).reshape(b, groups, 1, n, length)
    c_g = C.to(dtype).reshape(b, groups, 1, n, length)
    return u_g, delta_g, a_g, b_g, c_g


def _finish(y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """y: b x dim x L in the compute dtype -> + D u, * silu(z), cast to u's dtype."""
    if D is not None:
        y = y + u.to(y.dtype) * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(u.dtype)


def selective_scan_ref(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                       D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                       delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                       return_last_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The recurrence as a plain loop over t (vectorised over batch, channel and state): the oracle."""
    u_g, delta_g, a_g, b_g, c_g = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    b, groups, h, length = u_g.shape
    n = a_g.shape[-1]
    state = u_g.new_zeros(b, groups, h, n)
    ys = []
    for t in range(length):
        d_t = delta_g[..., t, None]  # b G H 1
        state = torch.exp(d_t * a_g) * state + (d_t * u_g[..., t, None]) * b_g[..., t]
        ys.append((state * c_g[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u_g.new_zeros(b, groups, h, 0)
    out = _finish(y.reshape(b, groups * h, length), u, D, z)
    return (out, state.reshape(b, groups * h, n)) if return_last_state else out


def _chunk_group(state: torch.Tensor, delta: torch.Tensor, u: torch.Tensor, a: torch.Tensor, bmat: torch.Tensor,
                 cmat: torch.Tensor, parallel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One group of g chunks of length T, given the state entering it.

    state: b G H N; delta, u: b G H g T; a: G H N; bmat, cmat: b G 1 g T N. Returns (y: b G H g T, state out).
    Within each chunk the states from a zero start are found either by T sequential steps vectorised over the
    group's chunks (`parallel=False`: O(T N) work per token) or all at once from the T x T matrix of log-decay
    differences (`parallel=True`, SSD-style: O(T^2 N) work per token, no sequential steps)."""
    la = delta[..., None] * a[None, :, :, None, None, :]  # b G H g T N, log decay (<= 0)
    cum = torch.cumsum(la, dim=-2)  # inclusive prefix S_t
    x = (delta * u)[..., None] * bmat  # b G H g T N: delta_s u_s B_s
    t_len = la.shape[-2]
    if parallel:
        diff = cum[..., :, None, :] - cum[..., None, :, :]  # b G H g T(t) T(s) N: S_t - S_s
        causal = torch.ones(t_len, t_len, dtype=torch.bool, device=la.device).tril()  # s <= t
        decay = torch.exp(diff.masked_fill(~causal[:, :, None], -math.inf))  # never exp(S_t - S_s) for s > t
        local = (decay * x[..., None, :, :]).sum(-2)  # b G H g T N: states of each chunk from a zero start
    else:
        step_decay = torch.exp(la)
        h = torch.zeros_like(x[..., 0, :])
        steps = []
        for t in range(t_len):
            h = step_decay[..., t, :] * h + x[..., t, :]
            steps.append(h)
        local = torch.stack(steps, dim=-2)
    chunk_decay = torch.exp(cum[..., -1, :])  # b G H g N
    starts = []
    for c in range(la.shape[3]):  # the sequential pass over chunk boundaries
        starts.append(state)
        state = chunk_decay[:, :, :, c] * state + local[:, :, :, c, -1]
    start = torch.stack(starts, dim=3)  # b G H g N
    states = local + torch.exp(cum) * start[..., None, :]
    return (states * cmat).sum(-1), state


def _group_size(b: int, dim: int, n: int, chunk: int, budget: int, parallel: bool) -> int:
    per_chunk = b * dim * n * chunk * (chunk if parallel else 1)
    return max(1, budget // max(per_chunk, 1))


def selective_scan_chunked(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                           D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                           delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                           return_last_state: bool = False, chunk: int = 16, chunks_per_group: int | None = None,
                           intra: str = "loop", max_group_elements: int | None = None,
                           checkpoint_groups: bool | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Chunked pure-PyTorch scan; same results as `selective_scan_ref` (see the module docstring).

    chunk: chunk length T. intra: how a chunk is solved from a zero state, `loop` (T steps vectorised over the
    chunks of a group; O(L N) work) or `parallel` (SSD-style T x T log-decay matrix; O(L T N) work, no step loop).
    chunks_per_group: chunks per group; None sizes it from the chunk length so that one group's largest
    intermediate (b x dim x g x T x N, times T for `parallel`) stays under `max_group_elements` (default by device:
    DEFAULT_GROUP_ELEMENTS).
    checkpoint_groups: recompute each group in the backward pass (default: whenever autograd records), so the
    memory held for the backward pass is the groups' inputs only."""
    if chunk < 1:
        raise ValueError(f"selective_scan: chunk must be >= 1, got {chunk}")
    if chunks_per_group is not None and chunks_per_group < 1:
        raise ValueError(f"selective_scan: chunks_per_group must be >= 1, got {chunks_per_group}")
    if intra not in INTRA_MODES:
        raise ValueError(f"selective_scan: intra must be one of {INTRA_MODES}, got {intra!r}")
    u_g, delta_g, a_g, b_g, c_g = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    b, groups, h, length = u_g.shape
    n = a_g.shape[-1]
    pad = (-length) % chunk
    if pad:  # delta = 0 after the softplus: decay 1 and input 0, the state passes through unchanged
        u_g, delta_g = F.pad(u_g, (0, pad)), F.pad(delta_g, (0, pad))
        b_g, c_g = F.pad(b_g, (0, pad)), F.pad(c_g, (0, pad))
    n_chunks = (length + pad) // chunk

    def chunked(t: torch.Tensor) -> torch.Tensor:  # ... x L -> ... x nc x T
        return t.reshape(*t.shape[:-1], n_chunks, chunk)

    u_c, delta_c = chunked(u_g), chunked(delta_g)
    b_c = chunked(b_g).squeeze(2).permute(0, 1, 3, 4, 2).unsqueeze(2)  # b G 1 nc T N
    c_c = chunked(c_g).squeeze(2).permute(0, 1, 3, 4, 2).unsqueeze(2)
    parallel = intra == "parallel"
    if max_group_elements is None:
        max_group_elements = DEFAULT_GROUP_ELEMENTS["cuda" if u.is_cuda else "cpu"]
    per_group = chunks_per_group or _group_size(b, groups * h, n, chunk, max_group_elements, parallel)
    use_checkpoint = torch.is_grad_enabled() if checkpoint_groups is None else checkpoint_groups
    state = u_g.new_zeros(b, groups, h, n)
    ys = []
    for start in range(0, n_chunks, per_group):
        part = slice(start, min(start + per_group, n_chunks))
        args = (state, delta_c[:, :, :, part], u_c[:, :, :, part], a_g, b_c[:, :, :, part], c_c[:, :, :, part],
                parallel)
        if use_checkpoint:
            y_part, state = checkpoint(_chunk_group, *args, use_reentrant=False)
        else:
            y_part, state = _chunk_group(*args)
        ys.append(y_part)
    y = torch.cat(ys, dim=3).reshape(b, groups * h, n_chunks * chunk)[..., :length]
    out = _finish(y, u, D, z)
    return (out, state.reshape(b, groups * h, n)) if return_last_state else out


BACKEND_NAMES = {"cuda": "mamba-ssm", "chunked": "chunked", "ref": "loop"}
"""The name a result row gives each back end (`scan_backend` column): mamba-ssm's kernel, the chunked scan, the loop."""


@functools.lru_cache(maxsize=1)
def mamba_import_error() -> str | None:
    """Why mamba-ssm, although installed, does not import (one line), or None (imports, or not installed). The first
    call that finds it broken logs a one-line warning: the pure-PyTorch scan then runs instead of the kernel."""
    if importlib.util.find_spec("mamba_ssm") is None:
        return None
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception as err:  # ImportError, or a build that does not load (wrong CUDA/torch ABI)
        line = f"{type(err).__name__}: {' '.join(str(err).split())}"[:300]
        log.warning("mamba-ssm is installed but does not import (%s); the selective scan falls back to the "
                    "pure-PyTorch scan", line)
        return line
    return None


def resolve_impl(u: torch.Tensor, A: torch.Tensor, impl: str = "auto") -> str:
    """The back end `selective_scan(..., impl=impl)` runs for inputs like `u` (B x D x L) and `A` (D x N): `auto` =
    mamba-ssm's kernel for CUDA tensors when it imports, the chunked scan for other CUDA tensors; on the CPU the
    chunked scan for small states, the loop ("ref") for large ones. Other values are returned as given."""
    if impl not in IMPLS:
        raise ValueError(f"selective_scan: unknown impl {impl!r}; valid: {', '.join(IMPLS)}")
    if impl != "auto":
        return impl
    if u.is_cuda:
        return "cuda" if mamba_available() else "chunked"
    return "ref" if u.shape[0] * u.shape[1] * A.shape[-1] > CPU_LOOP_MIN_STATE else "chunked"


def mamba_available() -> bool:
    """True when mamba-ssm's CUDA selective scan imports (the `mamba` extra) and CUDA is available."""
    if mamba_import_error() is not None or not torch.cuda.is_available():
        return False
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception:  # ImportError, or a build that does not load (wrong CUDA/torch ABI)
        return False
    return True


def _selective_scan_cuda(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                         D: torch.Tensor | None, z: torch.Tensor | None, delta_bias: torch.Tensor | None,
                         delta_softplus: bool, return_last_state: bool) -> Any:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as err:
        raise RuntimeError(MAMBA_HINT) from err
    if not u.is_cuda:
        raise ValueError("selective_scan impl='cuda' needs CUDA tensors")
    _prepare(u[..., :0], delta[..., :0], A, B[..., :0], C[..., :0], D, None, delta_bias, False)  # shape checks
    # the kernel keeps its weights in float32 (A, D, delta_bias), as mamba-ssm's own modules do
    D = D.float() if D is not None else None
    delta_bias = delta_bias.float() if delta_bias is not None else None
    return selective_scan_fn(u, delta, A.float(), B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
                             return_last_state=return_last_state)


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None, delta_bias: torch.Tensor | None = None,
                   delta_softplus: bool = False, return_last_state: bool = False, impl: str = "auto",
                   chunk: int = 16, chunks_per_group: int | None = None, intra: str = "loop") -> Any:
    """Dispatch: `auto` = mamba-ssm's kernel for CUDA tensors when it is installed, the chunked scan for other CUDA
    tensors; on the CPU the chunked scan for small states, the reference loop for large ones; or `chunked`, `ref`
    (the loop), `cuda` (the kernel, an error when unavailable). See the module docstring."""
    if intra not in INTRA_MODES:
        raise ValueError(f"selective_scan: intra must be one of {INTRA_MODES}, got {intra!r}")
    impl = resolve_impl(u, A, impl)
    if impl == "cuda":
        return _selective_scan_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if impl == "ref":
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, chunk=chunk,
                                  chunks_per_group=chunks_per_group, intra=intra)


def selective_scan_flops(batch: int, dim: int, length: int, d_state: int, with_D: bool = True,
                         with_z: bool = False) -> int:
    """Analytic FLOPs of one scan, VMamba's `flops_selective_scan_fn` convention: 9 B L D N (+ B D L for the D
    skip, + B D L for the z gate). torch.utils.flop_counter counts none of it (element-wise work)."""
    flops = 9 * batch * length * dim * d_state
    if with_D:
        flops += batch * dim * length
    if with_z:
        flops += batch * dim * length
    return flops
