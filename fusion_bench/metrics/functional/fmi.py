"""FMI: feature mutual information (Haghighat, Aghagolzadeh & Seyedarabi 2011), in the "Fast-FMI" form of
Haghighat & Razian (2014) that the kits ship (MEFB ``metricsFMI.m``, TANG ``analysis_fmi.m``).

Per w x w window (every position where the window fits), the window of each feature image is min-max
normalised (a flat window becomes all ones), divided by its sum to give a PDF over the w^2 positions taken in
MATLAB's column-major order, and the joint PDF with the fused window is built by Nelsen's method from the
Frechet bound (upper bound for a non-negative Pearson correlation of the two PDFs, lower bound otherwise);
FMI_XF = 2 MI / (H_X + H_F) per window (1 where the windows are identical, 0 where MI == 0), and the score is
the mean over windows of (FMI_AF + FMI_BF) / 2. Features (``analysis_fmi``'s names): ``none`` (the pixels),
``gradient`` (MATLAB ``gradient(I)`` with one output, i.e. the x derivative only), ``dct`` (MATLAB ``dct2`` of
the whole image) and ``wavelet`` (``rerange([cA, cH; cV, cD])`` of a one-level discrete-Meyer ``dwt2``). TANG's
``analysis_Reference`` reports ``FMI_pixel``, ``FMI_dct`` and ``FMI_w``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fusion_bench.metrics.functional.basic import matlab_gradient
from fusion_bench.metrics.functional.transforms import dct2, minmax_rows, wavelet_mosaic

FEATURES = ("none", "gradient", "dct", "wavelet")
_NAMES = {"none": "FMI_pixel", "gradient": "FMI_gradient", "dct": "FMI_dct", "wavelet": "FMI_w"}
_CHUNK = 4096  # windows per chunk: the w^2 x w^2 joint tables of a chunk stay ~2.7 MB (cache-sized) for w = 3


def fmi_features(x: Tensor, feature: str) -> Tensor:
    """Feature image of Bx1xHxW float64 (see the module docstring). The wavelet mosaic is larger than x."""
    if feature == "none":
        return x
    if feature == "gradient":
        return matlab_gradient(x)[0]
    if feature == "dct":
        return dct2(x)
    if feature == "wavelet":
        return wavelet_mosaic(x, "dmey")
    raise ValueError(f"FMI feature must be one of {FEATURES}, got {feature!r}")


def _windows(x: Tensor, w: int) -> Tensor:
    """All w x w windows of BxHxW as (B*N)x(w*w), entries in MATLAB's column-major order within a window."""
    bsz, h, wd = x.shape
    p = x.unfold(1, w, 1).unfold(2, w, 1)  # B x (H-w+1) x (W-w+1) x w(rows) x w(cols)
    return p.transpose(-1, -2).reshape(bsz * (h - w + 1) * (wd - w + 1), w * w)


def _xlog2x_neg(p: Tensor) -> Tensor:
    """-p log2|p| where p != 0, else 0 (MATLAB's real(-p .* log2(p)) keeps this for negative p too)."""
    nz = p != 0
    return torch.where(nz, -p * torch.log2(torch.where(nz, p.abs(), torch.ones_like(p))), torch.zeros_like(p))


def _fmi_pair(xn: Tensor, fn: Tensor) -> Tensor:
    """Per-window normalised MI of the min-max normalised windows xn (source) and fn (fused), N x w^2."""
    npos = xn.shape[1]
    px = xn / xn.sum(1, keepdim=True)
    pf = fn / fn.sum(1, keepdim=True)
    cx, cf = px.cumsum(1), pf.cumsum(1)
    xt = px - px.mean(1, keepdim=True)
    ft = pf - pf.mean(1, keepdim=True)
    sxf = (xt * ft).sum(1)
    c = torch.where(sxf == 0, torch.zeros_like(sxf), sxf / torch.sqrt((xt * xt).sum(1) * (ft * ft).sum(1)))
    idx = torch.arange(1, npos + 1, dtype=px.dtype, device=px.device)
    sd_x = torch.sqrt((idx * idx * px).sum(1) - (idx * px).sum(1) ** 2)
    sd_f = torch.sqrt((idx * idx * pf).sum(1) - (idx * pf).sum(1) ** 2)
    fi, xj = cf[:, :, None], cx[:, None, :]  # rows: fused index i, columns: source index j
    upper = 0.5 * (fi + xj - (fi - xj).abs())  # Frechet upper bound min(F_i, X_j), as the kits compute it
    s = fi + xj - 1
    lower = 0.5 * (s + s.abs())  # Frechet lower bound max(F_i + X_j - 1, 0)
    pos = (c >= 0)[:, None, None]
    bound = torch.where(pos, upper, lower)
    indep = fi * xj
    cov = (bound - indep).sum((1, 2))
    degenerate = (sd_x == 0) | (sd_f == 0) | (c == 0)  # phi (c >= 0) or theta (c < 0) is 0
    weight = torch.where(degenerate, torch.zeros_like(c), c / torch.where(degenerate, torch.ones_like(cov),
                                                                           cov / (sd_f * sd_x)))
    # joint PDF of the bound copula: 2-D differences with a zero row/column in front
    padded = torch.nn.functional.pad(bound, (1, 0, 1, 0))
    jb = ((padded[:, 1:, 1:] - padded[:, :-1, 1:]) - padded[:, 1:, :-1]) + padded[:, :-1, :-1]
    w3 = weight[:, None, None]
    jpdf = w3 * jb + ((1 - w3) * pf[:, :, None]) * px[:, None, :]
    h_joint = _xlog2x_neg(jpdf).sum((1, 2))
    h_x = _xlog2x_neg(px).sum(1)
    h_f = _xlog2x_neg(pf).sum(1)
    mi = (h_x + h_f) - h_joint
    return torch.where(mi == 0, torch.zeros_like(mi), 2 * mi / (h_x + h_f))


def fmi(a: Tensor, b: Tensor, f: Tensor, feature: str = "none", window: int = 3) -> Tensor:
    """FMI of a fused image: mean over w x w windows of (FMI_AF + FMI_BF) / 2. Inputs Bx1xHxW. Shape (B,).

    Reproduces the kits' quirk that the B-branch "identical windows" test compares B with the fused window as
    left by the A branch (min-max normalised unless the A and F windows were identical).
    """
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"FMI window must be a positive int, got {window!r}")
    half = window // 2
    win = 2 * half + 1  # the kits use floor(w / 2) on each side
    if feature not in FEATURES:
        raise ValueError(f"FMI feature must be one of {FEATURES}, got {feature!r}")
    bsz = f.shape[0]
    if f.shape[-2] < win or f.shape[-1] < win:
        return torch.full((bsz,), float("nan"), dtype=torch.float64, device=f.device)
    feats = [fmi_features(t.to(torch.float64), feature) for t in (a, b, f)]
    h, w = feats[2].shape[-2], feats[2].shape[-1]
    fa, fb, ff = (_windows(t.reshape(bsz, h, w), win) for t in feats)
    n = fa.shape[0]
    out = torch.empty(n, dtype=torch.float64, device=f.device)
    for s in range(0, n, _CHUNK):
        wa, wb, wf = fa[s : s + _CHUNK], fb[s : s + _CHUNK], ff[s : s + _CHUNK]
        same_af = (wa == wf).all(1)
        fn = minmax_rows(wf)
        fmi_af = torch.where(same_af, torch.ones_like(same_af, dtype=torch.float64), _fmi_pair(minmax_rows(wa), fn))
        f_after_a = torch.where(same_af[:, None], wf, fn)
        same_bf = (wb == f_after_a).all(1)
        fmi_bf = torch.where(same_bf, torch.ones_like(same_bf, dtype=torch.float64), _fmi_pair(minmax_rows(wb), fn))
        out[s : s + _CHUNK] = (fmi_af + fmi_bf) / 2
    return out.reshape(bsz, -1).mean(1)


def fmi_name(feature: str) -> str:
    """Metric name of a feature, as TANG names them: FMI_pixel, FMI_gradient, FMI_dct, FMI_w."""
    return _NAMES[feature]

