"""SSIM variants used by the fusion kits, standard MS-SSIM (Wang 2003) and MEF-SSIM (Ma et al. 2015)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fusion_bench.metrics.functional.filters import (
    box_1d,
    box_sum_valid_integer,
    filter_valid,
    filter_valid_maps,
    gaussian_1d,
    pad,
)


def _ssim_map(x: Tensor, y: Tensor, win: Tensor, c1: float, c2: float, cov_norm: float = 1.0,
              padding: str | None = None, return_cs: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """SSIM map by separable 'valid' filtering (optionally after padding by the half window)."""
    if padding is not None:
        p = (win.numel() - 1) // 2
        x, y = pad(x, p, padding), pad(y, p, padding)
    filt = filter_valid(torch.stack([x, y, x * x, y * y, x * y]), win)
    ux, uy, uxx, uyy, uxy = filt
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    cs = (2 * vxy + c2) / (vx + vy + c2)
    s = (2 * ux * uy + c1) / (ux * ux + uy * uy + c1) * cs
    return (s, cs) if return_cs else s


def _ssim_maps_shared(x: Tensor, ys: list[Tensor], c1: float, c2: float, win: Tensor | None = None,
                      box: int = 0, cov_norm: float = 1.0) -> list[Tensor]:
    """SSIM maps of (x, y) for every y in ys with one 'valid' filtering call (x's moments are shared).

    win: a 1-D window (separable float64 filtering); or box=n: n x n uniform window on integer levels, done
    with exact window sums (float32 maps, see :func:`box_sum_valid_integer`) divided by n^2.
    """
    k = len(ys)
    dtype = torch.float32 if box else torch.float64
    maps = torch.empty((3 * k + 2, *x.shape), dtype=dtype, device=x.device)
    maps[0] = x
    torch.mul(maps[0], maps[0], out=maps[1])
    for i, y in enumerate(ys):
        maps[2 + i] = y
        torch.mul(maps[2 + i], maps[2 + i], out=maps[2 + k + i])
        torch.mul(maps[0], maps[2 + i], out=maps[2 + 2 * k + i])
    filt = box_sum_valid_integer(maps, box).div_(box * box) if box else filter_valid(maps, win)
    ux, uxx = filt[0], filt[1]
    ux2_c1 = torch.mul(ux, ux).add_(c1)
    var_x = uxx - ux * ux  # uncorrected; cov_norm is applied below
    out = []
    for i in range(k):
        uy, uyy, uxy = filt[2 + i], filt[2 + k + i], filt[2 + 2 * k + i]
        uxuy = ux * uy
        num2 = torch.sub(uxy, uxuy).mul_(2 * cov_norm).add_(c2)  # 2 cov + c2
        den2 = torch.addcmul(uyy, uy, uy, value=-1.0).add_(var_x).mul_(cov_norm).add_(c2)  # var_x + var_y + c2
        num1 = uxuy.mul_(2).add_(c1)  # 2 ux uy + c1
        den1 = torch.addcmul(ux2_c1, uy, uy)  # ux^2 + uy^2 + c1
        out.append(num1.mul_(num2).div_(den1.mul_(den2)))
    return out


def ssim_skimage_sum(x: Tensor, ys: list[Tensor], data_range: float, win_size: int = 7,
                     integer_levels: bool = False) -> Tensor:
    """sum_y of scikit-image's structural_similarity(x, y) defaults: the moments of x are filtered once. Shape (B,).

    integer_levels=True (whole 8-bit levels): exact window sums (see :func:`box_sum_valid_integer`).
    """
    np_ = win_size * win_size
    c1, c2, cn = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2, np_ / (np_ - 1)
    if integer_levels:
        maps = _ssim_maps_shared(x, ys, c1, c2, box=win_size, cov_norm=cn)
    else:
        maps = _ssim_maps_shared(x, ys, c1, c2, win=box_1d(win_size), cov_norm=cn)
    return sum(s.flatten(1).mean(1) for s in maps)


def ssim_gaussian_valid(x: Tensor, y: Tensor, data_range: float = 255.0) -> Tensor:
    """Wang et al.'s reference ssim_index.m: 11x11 Gaussian (sigma 1.5), 'valid' filtering. Shape (B,)."""
    s = _ssim_map(x, y, gaussian_1d(11, 1.5), (0.01 * data_range) ** 2, (0.03 * data_range) ** 2)
    return s.flatten(1).mean(1)


def ssim_gaussian_valid_sum(xs: list[Tensor], y: Tensor, data_range: float = 255.0) -> Tensor:
    """sum over x in xs (in order) of `ssim_gaussian_valid`(x_c, y_c) for every channel c of y. Shape BxC.

    y: BxCxHxW; each x: BxCxHxW or Bx1xHxW (one channel shared by all of y's channels). One filtering call:
    y's moments are filtered once for every x, and a shared x channel's own moments once for all channels; y's
    variance is formed once. The per-pixel arithmetic is `_ssim_map`'s (2 ux uy regrouped as 2 (ux uy), exact),
    so the numbers are the same bit for bit.
    """
    bsz, c, h, w = y.shape
    win = gaussian_1d(11, 1.5)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    maps = [y, y * y]
    for x in xs:
        maps += [x, x * x, x * y]
    flat = [m.reshape(-1, h, w) for m in maps]
    filt = filter_valid_maps([img for m in flat for img in m], win).split([m.shape[0] for m in flat])
    filt = [f.view(bsz, -1, *f.shape[-2:]) for f in filt]  # Bx{C,1}xH'xW': a shared channel broadcasts
    uy, uyy = filt[0], filt[1]
    uy2 = uy * uy
    vy = uyy - uy2
    total = torch.zeros(bsz, c, dtype=torch.float64, device=y.device)
    for i in range(len(xs)):
        ux, uxx, uxy = filt[2 + 3 * i : 5 + 3 * i]
        ux2 = ux * ux
        uxuy = ux * uy
        cs = torch.sub(uxy, uxuy).mul_(2).add_(c2).div_((uxx - ux2).add(vy).add_(c2))  # (2 cov + c2) / (vx + vy + c2)
        ssim_map = uxuy.mul_(2).add_(c1).div_((ux2 + uy2).add_(c1)).mul_(cs)  # 2 ux uy = (2 ux) uy exactly
        total = total + ssim_map.flatten(2).mean(2)
    return total


def ssim_matlab(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """MATLAB built-in ``ssim`` defaults: Gaussian sigma 1.5 on an 11x11 support, replicate padding, full map.

    ``data_range`` is MATLAB's DynamicRange (1 for double input, which TANG passes on the 0..255 scale).
    """
    s = _ssim_map(x, y, gaussian_1d(11, 1.5), (0.01 * data_range) ** 2, (0.03 * data_range) ** 2,
                  padding="replicate")
    return s.flatten(1).mean(1)


def _down2_symmetric(x: Tensor) -> Tensor:
    """imfilter(x, ones(2)/4, 'symmetric', 'same') then x(1:2:end, 1:2:end): 2x2 block means, edge repeated."""
    h, w = x.shape[-2:]
    if h % 2:
        x = torch.cat([x, x[..., -1:, :]], dim=-2)
    if w % 2:
        x = torch.cat([x, x[..., :, -1:]], dim=-1)
    return (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) / 4


def mef_ssim_single(seq: list[Tensor], f: Tensor, k: float = 0.03) -> Tensor:
    """Ma, Zeng & Wang (2015) MEF-SSIM at one scale, in closed form (algebraically equal to the per-window code).

    seq: source images (each BxHxW, 0..255), f: fused BxHxW. Returns the mean quality map, shape (B,).
    """
    eps = torch.finfo(torch.float64).eps
    n = 11
    npx = float(n * n)
    box, gau = box_1d(n), gaussian_1d(n, 1.5)
    kk = len(seq)
    pairs = [(i, j) for i in range(kk) for j in range(i, kk)]
    bstack = filter_valid(torch.stack([*seq] + [seq[i] * seq[j] for i, j in pairs]), box)
    mu = bstack[:kk]
    bprod = {p: bstack[kk + t] for t, p in enumerate(pairs)}
    cov = {(i, j): npx * (bprod[(i, j)] - mu[i] * mu[j]) for i, j in pairs}  # <d_i, d_j> over the window
    for i in range(kk):
        cov[(i, i)] = cov[(i, i)].clamp_min(0)
    ed = torch.stack([torch.sqrt(cov[(i, i)]) + 0.001 for i in range(kk)])
    den = sum(torch.sqrt(cov[(i, i)]) for i in range(kk))
    ssum = sum(cov[(i, j)] * (1.0 if i == j else 2.0) for i, j in pairs)
    num = torch.sqrt(ssum.clamp_min(0))
    r = (num + eps) / (den + eps)
    r = torch.where(r > 1, torch.full_like(r, 1 - eps), r)
    r = torch.where(r < 0, torch.full_like(r, eps), r)
    p = torch.tan(math.pi / 2 * r).clamp(max=10)
    wmap = (ed / n) ** p + eps
    wmap = wmap / wmap.sum(0, keepdim=True)
    max_ed = ed.amax(0)
    c = wmap / ed  # coefficients of the deviation patches in rBlock
    # Gaussian-window moments
    gmaps = [*seq, f, f * f] + [seq[i] * seq[j] for i, j in pairs] + [s * f for s in seq]
    g = filter_valid(torch.stack(gmaps), gau)
    gm, gf, gff = g[:kk], g[kk], g[kk + 1]
    gprod = {p_: g[kk + 2 + t] for t, p_ in enumerate(pairs)}
    gsf = g[kk + 2 + len(pairs) :]
    norm2 = sum(c[i] * c[j] * cov[(i, j)] * (1.0 if i == j else 2.0) for i, j in pairs)
    norm = torch.sqrt(norm2.clamp_min(0))
    alpha = torch.where(norm > 0, max_ed / torch.where(norm > 0, norm, torch.ones_like(norm)), torch.ones_like(norm))
    gcov = {(i, j): gprod[(i, j)] - gm[i] * gm[j] for i, j in pairs}
    s1 = alpha * alpha * sum(c[i] * c[j] * gcov[(i, j)] * (1.0 if i == j else 2.0) for i, j in pairs)
    s12 = alpha * sum(c[i] * (gsf[i] - gm[i] * gf) for i in range(kk))
    s2 = gff - gf * gf
    cc = (k * 255.0) ** 2
    q = (2 * s12 + cc) / (s1 + s2 + cc)
    return q.flatten(1).mean(1)


MEF_WEIGHTS = (0.0448, 0.2856, 0.3001)


def mef_ssim(a: Tensor, b: Tensor, f: Tensor, levels: int = 3) -> Tensor:
    """Multi-scale MEF-SSIM (TANG's "MS_SSIM"): prod_l Q_l^w_l over 3 scales. NaN when min side / 4 < 11."""
    seq = [a.reshape(a.shape[0], *a.shape[-2:]), b.reshape(b.shape[0], *b.shape[-2:])]
    ff = f.reshape(f.shape[0], *f.shape[-2:])
    if min(ff.shape[-2:]) / 2 ** (levels - 1) < 11:
        return torch.full((ff.shape[0],), float("nan"), dtype=torch.float64, device=ff.device)
    w = torch.tensor(MEF_WEIGHTS[:levels], dtype=torch.float64)
    w = (w / w.sum()).tolist()
    out = torch.ones(ff.shape[0], dtype=torch.float64, device=ff.device)
    for lvl in range(levels):
        out = out * mef_ssim_single(seq, ff) ** w[lvl]
        if lvl < levels - 1:
            seq = [_down2_symmetric(s) for s in seq]
            ff = _down2_symmetric(ff)
    return out


MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(x: Tensor, y: Tensor, data_range: float = 255.0) -> Tensor:
    """Standard MS-SSIM (Wang, Simoncelli & Bovik 2003) as pytorch-msssim: Gaussian 11/1.5 'valid', 5 scales,
    2x2 average pooling (padding odd sizes like avg_pool2d(padding=s % 2)), cs at scales 1-4 and SSIM at 5,
    negative values clamped by relu. x, y: Bx1xHxW. NaN when the smallest side is <= 160."""
    if min(x.shape[-2:]) <= (11 - 1) * 2**4:
        return torch.full((x.shape[0],), float("nan"), dtype=torch.float64, device=x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    win = gaussian_1d(11, 1.5)
    vals = []
    for lvl in range(5):
        s, cs = _ssim_map(x, y, win, c1, c2, return_cs=True)
        if lvl < 4:
            vals.append(torch.relu(cs.flatten(1).mean(1)))
            pads = [s_ % 2 for s_ in x.shape[-2:]]
            x = torch.nn.functional.avg_pool2d(x, 2, padding=(pads[0], pads[1]))
            y = torch.nn.functional.avg_pool2d(y, 2, padding=(pads[0], pads[1]))
        else:
            vals.append(torch.relu(s.flatten(1).mean(1)))
    stack = torch.stack(vals, 0)
    w = torch.tensor(MS_WEIGHTS, dtype=torch.float64, device=stack.device).view(-1, 1)
    return torch.prod(stack**w, dim=0)
