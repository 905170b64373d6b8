"""Deterministic separable filtering (same arithmetic class on CPU and CUDA; never FFT or Winograd).

CPU tensors go through OpenCV's ``sepFilter2D`` for 'valid' filtering when OpenCV is importable (about 3x
faster than SciPy in float64: it filters a ring of rows in cache), else through ``scipy.ndimage.correlate1d``;
padded modes always use SciPy. CUDA tensors use shifted additions. All are direct sums, so integer-valued
inputs with integer kernels (Sobel) are exact and Gaussian sums carry only float64 rounding noise (the
backends differ by a few ulps). CPU maps are spread over ``torch.get_num_threads()`` threads (both libraries
release the GIL).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

FORCE_TORCH_BACKEND = False  # tests set this to run the CUDA code path on CPU
USE_OPENCV = True  # tests switch it off to compare the SciPy backend
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


def _map_indices(fn: Callable[[range], None], n: int, size: int) -> None:
    """Run fn over range(n) split into torch.get_num_threads() contiguous parts on a thread pool."""
    global _POOL
    workers = min(torch.get_num_threads(), n)
    if workers < 2 or size < 200_000:
        fn(range(n))
        return
    if _POOL is None or _POOL._max_workers < workers:  # noqa: SLF001
        _POOL = ThreadPoolExecutor(max_workers=workers)
    bounds = np.linspace(0, n, workers + 1).astype(int)
    list(_POOL.map(fn, [range(bounds[i], bounds[i + 1]) for i in range(workers)]))


def _opencv() -> Any:
    """The cv2 module when OpenCV is installed and enabled, else None."""
    global _CV2
    if not USE_OPENCV:
        return None
    if _CV2 is None:
        try:
            import cv2
        except ImportError:
            cv2 = False
        _CV2 = cv2
    return _CV2 or None


_CV2: Any = None


def _valid_cpu(arr: np.ndarray | list[np.ndarray], kh: list[float], kw: list[float], step: int = 1) -> np.ndarray:
    """'valid' separable correlation of ...xHxW float64 (optionally keeping every step-th row and column).

    arr may also be a list of contiguous HxW float64 arrays (OpenCV path only), filtered as if stacked.
    """
    nh, nw = len(kh), len(kw)
    h, w = arr[0].shape[-2:] if isinstance(arr, list) else arr.shape[-2:]
    cv2 = _opencv()
    if isinstance(arr, list) and cv2 is None:
        arr = np.stack(arr)
    if cv2 is not None:
        kx, ky = np.asarray(kw, dtype=np.float64), np.asarray(kh, dtype=np.float64)
        ch, cw = nh // 2, nw // 2  # OpenCV's default anchor is the kernel centre len // 2
        flat = arr if isinstance(arr, list) else np.ascontiguousarray(arr.reshape(-1, h, w))
        full = np.empty((len(flat), h, w), dtype=np.float64)
        if isinstance(arr, list):
            arr = full

        def run(idx: range) -> None:
            for i in idx:  # same-size output straight into the result buffer; the valid part is a view
                cv2.sepFilter2D(flat[i], cv2.CV_64F, kx, ky, dst=full[i], borderType=cv2.BORDER_CONSTANT)

        _map_indices(run, full.shape[0], full.size)
        out = full[:, ch : ch + h - nh + 1 : step, cw : cw + w - nw + 1 : step]
        return out.reshape(*arr.shape[:-2], *out.shape[-2:])
    kwa, kha = np.asarray(kw), np.asarray(kh)
    # scipy centres a window of length n at n // 2 (as OpenCV); crop the 'valid' part
    ch, cw = nh // 2, nw // 2

    def run_scipy(z: np.ndarray) -> np.ndarray:
        z = ndi.correlate1d(z, kwa, axis=-1, mode="constant")[..., :, cw : cw + w - nw + 1 : step]
        z = ndi.correlate1d(np.ascontiguousarray(z), kha, axis=-2, mode="constant")
        return np.ascontiguousarray(z[..., ch : ch + h - nh + 1 : step, :])

    return _map_chunks(run_scipy, arr)


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
        if mode == "valid":
            return torch.from_numpy(_valid_cpu(arr, kh_l, kw_l))
        scipy_mode = _SCIPY_MODE[mode]
        # scipy centres a window of length n at n // 2; shift so even lengths match MATLAB's (n - 1) // 2
        oh, ow = (len(kh_l) - 1) // 2 - len(kh_l) // 2, (len(kw_l) - 1) // 2 - len(kw_l) // 2

        def run(z: np.ndarray) -> np.ndarray:
            z = ndi.correlate1d(z, np.asarray(kw_l), axis=-1, mode=scipy_mode, origin=-ow if ow else 0)
            return ndi.correlate1d(z, np.asarray(kh_l), axis=-2, mode=scipy_mode, origin=-oh if oh else 0)

        return torch.from_numpy(_map_chunks(run, arr))
    xx = x.to(torch.float64)
    if mode != "valid":
        ph, pw = len(kh_l) // 2, len(kw_l) // 2
        if ph != pw or len(kh_l) % 2 == 0 or len(kw_l) % 2 == 0:
            raise ValueError("padded CUDA filtering supports odd square windows only")
        xx = pad(xx, ph, mode)
    return _shift_valid(xx, kh_l, kw_l)


def filter_valid_down2(x: Tensor, k: Tensor) -> Tensor:
    """``filter_valid(x, k)[..., ::2, ::2]`` (CPU: OpenCV filters the full image and the result is strided;
    the SciPy fallback skips the discarded columns before the second pass)."""
    if x.device.type != "cpu" or FORCE_TORCH_BACKEND:
        return filter_valid(x, k)[..., ::2, ::2]
    kl = [float(v) for v in k.tolist()]
    h, w = x.shape[-2], x.shape[-1]
    if h < len(kl) or w < len(kl):
        raise ValueError(f"image {h}x{w} is smaller than the {len(kl)}x{len(kl)} window")
    arr = x.detach().to(torch.float64).contiguous().numpy()
    return torch.from_numpy(_valid_cpu(arr, kl, kl, step=2))


def box_sum_valid_integer(x: Tensor, n: int) -> Tensor:
    """Sums over every n x n 'valid' window of ...xHxW integer-valued data whose window sums stay below 2^24.

    CPU with OpenCV: float32 maps and ``cv2.boxFilter`` (running sums accumulated in float64) -> exact
    float64 sums at half the memory traffic. Otherwise: the float64 separable filter with a ones kernel
    (also exact on such data). Returns float64.
    """
    h, w = x.shape[-2], x.shape[-1]
    if h < n or w < n:
        raise ValueError(f"image {h}x{w} is smaller than the {n}x{n} window")
    cv2 = _opencv() if x.device.type == "cpu" and not FORCE_TORCH_BACKEND else None
    if cv2 is None:
        return sep_filter(x, [1.0] * n, None, "valid")
    flat = np.ascontiguousarray(x.detach().to(torch.float32).reshape(-1, h, w).numpy())
    full = np.empty(flat.shape, dtype=np.float64)

    def run(idx: range) -> None:
        for i in idx:
            cv2.boxFilter(flat[i], cv2.CV_64F, (n, n), dst=full[i], normalize=False, borderType=cv2.BORDER_CONSTANT)

    _map_indices(run, flat.shape[0], flat.size)
    c = n // 2
    out = full[:, c : c + h - n + 1, c : c + w - n + 1]
    return torch.from_numpy(out.reshape(*x.shape[:-2], *out.shape[-2:]))


def filter_valid_maps(maps: list[Tensor], k: Tensor) -> Tensor:
    """filter_valid(torch.stack(maps), k) without the stacking copy on CPU (each map: ...xHxW float64)."""
    if maps[0].device.type != "cpu" or FORCE_TORCH_BACKEND or _opencv() is None:
        return filter_valid(torch.stack(maps), k)
    kl = [float(v) for v in k.tolist()]
    h, w = maps[0].shape[-2:]
    if h < len(kl) or w < len(kl):
        raise ValueError(f"image {h}x{w} is smaller than the {len(kl)}x{len(kl)} window")
    arrs = [z for m in maps for z in m.detach().to(torch.float64).contiguous().reshape(-1, h, w).numpy()]
    out = torch.from_numpy(_valid_cpu(arrs, kl, kl))
    return out.reshape(len(maps), *maps[0].shape[:-2], *out.shape[-2:])


def filter_valid(x: Tensor, kh: Tensor, kw: Tensor | None = None) -> Tensor:
    """Separable correlation with 'valid' output. x: ...xHxW."""
    return sep_filter(x, kh, kw, "valid")
