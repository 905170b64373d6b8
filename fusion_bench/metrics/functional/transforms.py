"""Whole-image transforms used as FMI features: MATLAB ``dct2`` and single-level ``dwt2`` (default 'sym' mode).

Both are batched float64 torch code (CPU and CUDA). Checked against SciPy's ``dctn(norm='ortho')`` and
PyWavelets' ``dwt2(mode='symmetric')`` in the tests (PyWavelets reproduces MATLAB's dwt conventions).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor


@lru_cache(maxsize=16)
def _dct_matrix(n: int, device: torch.device) -> Tensor:
    """Orthonormal DCT-II matrix C (n x n): dct(x) = C @ x, as MATLAB ``dct``."""
    k = torch.arange(n, dtype=torch.float64, device=device)[:, None]
    i = torch.arange(n, dtype=torch.float64, device=device)[None, :]
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c  # cached: used read-only


def dct2(x: Tensor) -> Tensor:
    """MATLAB ``dct2`` (orthonormal 2-D DCT-II) of the last two dims of a float64 tensor, by matrix products."""
    h, w = x.shape[-2], x.shape[-1]
    ch, cw = _dct_matrix(h, x.device), _dct_matrix(w, x.device)
    return ch @ x.to(torch.float64) @ cw.T


@lru_cache(maxsize=8)
def wavelet_filters(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Decomposition filters (Lo_D, Hi_D) of a wavelet, from PyWavelets (the same tables as MATLAB wfilters)."""
    try:
        import pywt
    except ImportError as exc:  # a core dependency; only a broken environment gets here
        raise ImportError("the FMI wavelet feature needs PyWavelets: pip install PyWavelets") from exc
    w = pywt.Wavelet(name)
    return tuple(w.dec_lo), tuple(w.dec_hi)


def _sym_index(n: int, pad: int, device: torch.device) -> Tensor:
    """Indices of a half-point symmetric extension (MATLAB 'sym': edge samples repeated) by pad on each side."""
    i = torch.arange(-pad, n + pad, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def _dwt_last_dim(x: Tensor, filters: list[list[float]]) -> list[Tensor]:
    """MATLAB ``dwt`` along the last dim for each filter: y = conv(sym-extend(x, L-1), h, 'valid'); y(2:2:end)."""
    n = x.shape[-1]
    length = len(filters[0])
    ext = x.index_select(-1, _sym_index(n, length - 1, x.device))
    flat = ext.reshape(-1, 1, ext.shape[-1])
    # correlation with the reversed filter = convolution; 'valid' then keep odd positions (1-based even)
    kernel = torch.tensor([f[::-1] for f in filters], dtype=torch.float64, device=x.device)[:, None, :]
    y = torch.nn.functional.conv1d(flat[..., 1:], kernel, stride=2)
    out_len = (n + length - 1) // 2
    return [y[:, j, :out_len].reshape(*x.shape[:-1], out_len) for j in range(len(filters))]


def dwt2(x: Tensor, wavelet: str = "dmey") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """MATLAB ``[cA, cH, cV, cD] = dwt2(x, wavelet)`` with the default 'sym' extension, over the last two dims.

    Rows are filtered first (along the width) with Lo_D and Hi_D, then the columns: cA = Lo/Lo, cH = Lo along
    the width and Hi along the height, cV = Hi/Lo, cD = Hi/Hi. Each output is floor((n + L - 1) / 2) long per
    dim (L: filter length, 62 for dmey).
    """
    lo, hi = wavelet_filters(wavelet)
    xl, xh = _dwt_last_dim(x.to(torch.float64), [list(lo), list(hi)])

    def cols(z: Tensor) -> list[Tensor]:
        return [t.transpose(-1, -2) for t in _dwt_last_dim(z.transpose(-1, -2), [list(lo), list(hi)])]

    ca, ch = cols(xl)
    cv, cd = cols(xh)
    return ca, ch, cv, cd


def minmax_rows(x: Tensor) -> Tensor:
    """Per row of an N x M tensor: (x - min) / (max - min), or all ones where the row is flat (fmi.m's rule)."""
    lo = x.amin(1, keepdim=True)
    hi = x.amax(1, keepdim=True)
    flat = hi == lo
    return torch.where(flat, torch.ones_like(x), (x - lo) / torch.where(flat, torch.ones_like(hi), hi - lo))


def rerange(x: Tensor) -> Tensor:
    """Per image (last two dims) min-max to [0, 1]; all ones for a flat image (``rerange`` in fmi.m)."""
    return minmax_rows(x.reshape(-1, x.shape[-2] * x.shape[-1])).reshape(x.shape)


def wavelet_mosaic(x: Tensor, wavelet: str = "dmey") -> Tensor:
    """fmi.m's wavelet feature: rerange([cA, cH; cV, cD]) of ``dwt2(x, wavelet)``."""
    ca, ch, cv, cd = dwt2(x, wavelet)
    return rerange(torch.cat([torch.cat([ca, ch], -1), torch.cat([cv, cd], -1)], -2))
