"""Deterministic separable filtering (same arithmetic class on CPU and CUDA; never FFT or Winograd).

CPU tensors go through ``scipy.ndimage.correlate1d`` (a cache-friendly C loop, much faster than shifted
tensor additions on a few cores); CUDA tensors use shifted additions. Both are direct sums, so integer-valued
inputs with integer kernels (Sobel) are exact and Gaussian sums carry only float64 rounding noise.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

FORCE_TORCH_BACKEND = False  # tests set this to run the CUDA code path on CPU
_SCIPY_MODE = {"zeros": "constant", "replicate": "nearest", "reflect": "mirror", "symmetric": "reflect"}


_POOL: ThreadPoolExecutor | None = None


def _map_chunks(fn: Callable[[np.ndarray], np.ndarray], arr: np.ndarray) -> np.ndarray:
    """Apply fn to ...xHxW in chunks of the leading dims on torch.get_num_threads() threads (SciPy's
    filters release the GIL)."""
    global _POOL
    shp = arr.shape
    flat = arr.reshape(-1, shp[-2], shp[-1])
    workers = min(torch.get_num_threads(), flat.shape[0])
    if workers < 2 or arr.size < 200_000:
        out = fn(flat)
    else:
        if _POOL is None or _POOL._max_workers < workers:  # noqa: SLF001
            _POOL = ThreadPoolExecutor(max_workers=workers)
        out = np.concatenate(list(_POOL.map(fn, np.array_split(flat, workers, axis=0))), axis=0)
    return out.reshape(*shp[:-2], *out.shape[-2:])


def gaussian_1d(size: int, sigma: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """Normalised 1-D Gaussian whose outer product is MATLAB's fspecial('gaussian', size, sigma)."""
    r = (size - 1) / 2.0
    x = torch.arange(size, dtype=torch.float64) - r
    g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return (g / g.sum()).to(dtype)


def box_1d(size: int) -> Tensor:
    return torch.full((size,), 1.0 / size, dtype=torch.float64)


def pad(x: Tensor, p: int, mode: str) -> Tensor:
    """Pad the last two dims by p: 'zeros', 'replicate', 'reflect' (no edge repeat), 'symmetric' (edge repeat)."""
    if p == 0:
        return x
    shp = x.shape
    x4 = x.reshape(-1, 1, shp[-2], shp[-1])
    if mode == "zeros":
        y = F.pad(x4, (p, p, p, p))
    elif mode in ("replicate", "reflect"):
        y = F.pad(x4, (p, p, p, p), mode=mode)
    elif mode == "symmetric":
        hi = torch.cat([x4[..., :, :p].flip(-1), x4, x4[..., :, -p:].flip(-1)], dim=-1)
        y = torch.cat([hi[..., :p, :].flip(-2), hi, hi[..., -p:, :].flip(-2)], dim=-2)
    else:
        raise ValueError(f"unknown padding {mode!r}")
    return y.reshape(*shp[:-2], y.shape[-2], y.shape[-1])


def _shift_valid(x: Tensor, kh: list[float], kw: list[float]) -> Tensor:
    nh, nw = len(kh), len(kw)
    oh, ow = x.shape[-2] - nh + 1, x.shape[-1] - nw + 1
    t = x[..., :, 0:ow] * kw[0]
    for j in range(1, nw):
        if kw[j] != 0.0:
            t.add_(x[..., :, j : j + ow], alpha=kw[j])
    out = t[..., 0:oh, :] * kh[0]
    for i in range(1, nh):
        if kh[i] != 0.0:
            out.add_(t[..., i : i + oh, :], alpha=kh[i])
    return out


def sep_filter(x: Tensor, kh: Tensor | list[float], kw: Tensor | list[float] | None = None,
               mode: str = "valid") -> Tensor:
    """Separable correlation sum_ij kh[i] kw[j] x[.., y+i-ch, x+j-cw] over the last two dims of x.

    mode: 'valid' (output shrinks by len-1) or a padding ('zeros', 'replicate', 'reflect', 'symmetric') for a
    'same'-size output centred like MATLAB imfilter / scipy.ndimage (centre = len // 2).
    """
    kh_l = [float(v) for v in (kh.tolist() if isinstance(kh, Tensor) else kh)]
    kw_l = kh_l if kw is None else [float(v) for v in (kw.tolist() if isinstance(kw, Tensor) else kw)]
    h, w = x.shape[-2], x.shape[-1]
    if mode == "valid" and (h < len(kh_l) or w < len(kw_l)):
        raise ValueError(f"image {h}x{w} is smaller than the {len(kh_l)}x{len(kw_l)} window")
    if x.device.type == "cpu" and not FORCE_TORCH_BACKEND:
        arr = x.detach().to(torch.float64).contiguous().numpy()
        scipy_mode = "constant" if mode == "valid" else _SCIPY_MODE[mode]
        # scipy centres a window of length n at n // 2; shift so even lengths match MATLAB's (n - 1) // 2
        oh, ow = (len(kh_l) - 1) // 2 - len(kh_l) // 2, (len(kw_l) - 1) // 2 - len(kw_l) // 2

        def run(z: np.ndarray) -> np.ndarray:
            z = ndi.correlate1d(z, np.asarray(kw_l), axis=-1, mode=scipy_mode, origin=-ow if ow else 0)
            return ndi.correlate1d(z, np.asarray(kh_l), axis=-2, mode=scipy_mode, origin=-oh if oh else 0)

        y = _map_chunks(run, arr)
        out = torch.from_numpy(y)
        if mode == "valid":
            ch, cw = len(kh_l) // 2, len(kw_l) // 2
            out = out[..., ch : ch + h - len(kh_l) + 1, cw : cw + w - len(kw_l) + 1]
        return out
    xx = x.to(torch.float64)
    if mode != "valid":
        ph, pw = len(kh_l) // 2, len(kw_l) // 2
        if ph != pw or len(kh_l) % 2 == 0 or len(kw_l) % 2 == 0:
            raise ValueError("padded CUDA filtering supports odd square windows only")
        xx = pad(xx, ph, mode)
    return _shift_valid(xx, kh_l, kw_l)


def filter_valid_down2(x: Tensor, k: Tensor) -> Tensor:
    """``filter_valid(x, k)[..., ::2, ::2]`` without computing the discarded rows and columns (CPU)."""
    if x.device.type != "cpu" or FORCE_TORCH_BACKEND:
        return filter_valid(x, k)[..., ::2, ::2]
    kl = np.asarray([float(v) for v in k.tolist()])
    n, c = len(kl), len(kl) // 2
    h, w = x.shape[-2], x.shape[-1]
    if h < n or w < n:
        raise ValueError(f"image {h}x{w} is smaller than the {n}x{n} window")
    arr = x.detach().to(torch.float64).contiguous().numpy()

    def run(z: np.ndarray) -> np.ndarray:
        z = ndi.correlate1d(z, kl, axis=-1, mode="constant")[..., :, c : c + w - n + 1 : 2]
        return ndi.correlate1d(np.ascontiguousarray(z), kl, axis=-2, mode="constant")[..., c : c + h - n + 1 : 2, :]

    y = _map_chunks(run, arr)
    return torch.from_numpy(np.ascontiguousarray(y))


def filter_valid(x: Tensor, kh: Tensor, kw: Tensor | None = None) -> Tensor:
    """Separable correlation with 'valid' output. x: ...xHxW."""
    return sep_filter(x, kh, kw, "valid")
