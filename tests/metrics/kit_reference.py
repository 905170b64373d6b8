"""Straightforward NumPy/SciPy implementations of the reference kits' metric definitions.

Written from the definitions in ../shared/reference/metric_definitions.md (no kit code copied). They are the
independent side of the agreement tests and the baseline of benchmarks/perf. Inputs are uint8-valued arrays
(HxW gray or HxWx3 RGB). Nothing here is vectorised over a batch: one image triple at a time, like the kits.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import scipy.fft
from PIL import Image
from scipy import ndimage
from scipy.signal import convolve2d

REALDATA = Path(os.environ.get("FUSION_BENCH_REALDATA", Path(__file__).resolve().parents[2] / ".." / "shared" /
                               "realdata"))


def load_rgb_or_gray(path: Path) -> np.ndarray:
    """uint8 HxW (gray file) or HxWx3 array."""
    with Image.open(path) as img:
        img = img.convert("L" if img.mode in ("L", "1", "LA") else "RGB")
        return np.asarray(img).copy()


# ----------------------------------------------------------------------------------------------------- gray
def gray_cv2_f32(x: np.ndarray) -> np.ndarray:
    """CDD reader: float32 B*0.114 + G*0.587 + R*0.299 (OpenCV float cvtColor), np.round -> float32."""
    if x.ndim == 2:
        return x.astype(np.float32)
    r, g, b = (x[..., i].astype(np.float32) for i in range(3))
    y = b * np.float32(0.114) + g * np.float32(0.587)
    y = y + r * np.float32(0.299)
    return np.round(y).astype(np.float32)


def gray_matlab(x: np.ndarray) -> np.ndarray:
    """MATLAB rgb2gray on uint8 -> uint8 (round half away from zero)."""
    if x.ndim == 2:
        return x.astype(np.uint8)
    y = 0.298936021293775 * x[..., 0] + 0.587043074451121 * x[..., 1] + 0.114020904255103 * x[..., 2]
    return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------- mmif
def _hist_entropy(values: np.ndarray, base: float) -> float:
    counts = np.bincount(values.astype(np.int64).ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / values.size
    return float(-(p * np.log(p)).sum() / math.log(base))


def _mi_labels(x: np.ndarray, y: np.ndarray) -> float:
    """MI in nats from the contingency table of exact labels (like sklearn.metrics.mutual_info_score)."""
    _, xi = np.unique(x.ravel(), return_inverse=True)
    _, yi = np.unique(y.ravel(), return_inverse=True)
    joint = np.zeros((xi.max() + 1, yi.max() + 1))
    np.add.at(joint, (xi, yi), 1)
    pxy = joint / joint.sum()
    px, py = pxy.sum(1, keepdims=True), pxy.sum(0, keepdims=True)
    nz = pxy > 0
    return float((pxy[nz] * np.log(pxy[nz] / (px @ py)[nz])).sum())


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    x = x.astype(np.float64) - x.mean()
    y = y.astype(np.float64) - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def _matlab_gradient(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gy, gx = np.gradient(img.astype(np.float64))
    return gx, gy


def _fspecial_gauss(n: int, sigma: float) -> np.ndarray:
    r = (n - 1) / 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(float).eps * h.max()] = 0
    return h / h.sum()


def vifp_mscale(ref: np.ndarray, dist: np.ndarray) -> float:
    """LIVE pixel-domain multiscale VIF, direct 2-D convolution (as in the kits). NaN for a flat reference."""
    ref = ref.astype(np.float64)
    dist = dist.astype(np.float64)
    num = den = 0.0
    eps, sn = 1e-10, 2.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        win = _fspecial_gauss(n, n / 5)
        if scale > 1:
            ref = convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = convolve2d(dist, win, mode="valid")[::2, ::2]
        mu1, mu2 = convolve2d(ref, win, mode="valid"), convolve2d(dist, win, mode="valid")
        s1 = convolve2d(ref * ref, win, mode="valid") - mu1 * mu1
        s2 = convolve2d(dist * dist, win, mode="valid") - mu2 * mu2
        s12 = convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        m = s1 < eps
        g[m] = 0
        sv[m] = s2[m]
        s1[m] = 0
        m = s2 < eps
        g[m] = 0
        sv[m] = 0
        m = g < 0
        sv[m] = s2[m]
        g[m] = 0
        sv[sv <= eps] = eps
        num += np.log10(1 + g * g * s1 / (sv + sn)).sum()
        den += np.log10(1 + s1 / sn).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(num / den) if den != 0 else float("nan")


def _qabf_arrays(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)
    h3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    sx = convolve2d(img.astype(np.float64), h3, mode="same")
    sy = convolve2d(img.astype(np.float64), h1, mode="same")
    g = np.sqrt(sx * sx + sy * sy)
    a = np.full(img.shape, math.pi / 2)
    nz = sx != 0
    a[nz] = np.arctan(sy[nz] / sx[nz])
    return g, a


def _qabf_q(ga: np.ndarray, aa: np.ndarray, gf: np.ndarray, af: np.ndarray) -> np.ndarray:
    gaf = np.zeros_like(ga)
    m = ga > gf
    gaf[m] = gf[m] / ga[m]
    m = ga == gf
    gaf[m] = gf[m]
    m = ga < gf
    gaf[m] = ga[m] / gf[m]
    aaf = 1 - np.abs(aa - af) / (math.pi / 2)
    return 0.9994 / (1 + np.exp(-15 * (gaf - 0.5))) * 0.9879 / (1 + np.exp(-22 * (aaf - 0.8)))


def qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    ga, aa = _qabf_arrays(a)
    gb, ab = _qabf_arrays(b)
    gf, af = _qabf_arrays(f)
    return float((_qabf_q(ga, aa, gf, af) * ga + _qabf_q(gb, ab, gf, af) * gb).sum() / (ga + gb).sum())


def ssim_skimage019(x: np.ndarray, y: np.ndarray, data_range: float = 2.0, win: int = 7) -> float:
    """scikit-image 0.19 structural_similarity defaults on float32 input (uniform window, sample covariance)."""
    x = x.astype(np.float32)
    y = y.astype(np.float32)
    f = lambda z: ndimage.uniform_filter(z, size=win)  # noqa: E731
    ux, uy, uxx, uyy, uxy = f(x), f(y), f(x * x), f(y * y), f(x * y)
    cn = win * win / (win * win - 1)
    vx, vy, vxy = cn * (uxx - ux * ux), cn * (uyy - uy * uy), cn * (uxy - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    p = (win - 1) // 2
    return float(s[p:-p, p:-p].astype(np.float64).mean())


def mmif_metrics(a_raw: np.ndarray, b_raw: np.ndarray, f_raw: np.ndarray) -> dict[str, float]:
    """The CDD Evaluator's 12 metrics (A = a, B = b) on gray float32 0..255 inputs."""
    a, b, f = gray_cv2_f32(a_raw), gray_cv2_f32(b_raw), gray_cv2_f32(f_raw)
    fd = f.astype(np.float64)
    ad, bd = a.astype(np.float64), b.astype(np.float64)
    out: dict[str, float] = {}
    out["EN"] = _hist_entropy(np.round(f), 2.0)
    out["SD"] = float(np.std(f))
    out["SF"] = float(np.sqrt(np.mean((fd[:, 1:] - fd[:, :-1]) ** 2) + np.mean((fd[1:] - fd[:-1]) ** 2)))
    out["MI"] = _mi_labels(f, a) + _mi_labels(f, b)
    out["SCD"] = _corr(fd - bd, ad) + _corr(fd - ad, bd)
    va, vb = vifp_mscale(ad, fd), vifp_mscale(bd, fd)
    out["VIF"] = (1.0 if math.isnan(va) else va) + (1.0 if math.isnan(vb) else vb)
    out["Qabf"] = qabf(ad, bd, fd)
    out["SSIM"] = ssim_skimage019(f, a) + ssim_skimage019(f, b)
    gx, gy = _matlab_gradient(fd)
    out["AG"] = float(np.mean(np.sqrt((gx**2 + gy**2) / 2)))
    out["CC"] = (_corr(ad, fd) + _corr(bd, fd)) / 2
    mse = (np.mean((ad - fd) ** 2) + np.mean((bd - fd) ** 2)) / 2
    out["MSE"] = float(mse)
    out["PSNR"] = float(10 * np.log10(fd.max() ** 2 / mse))
    return out


# ----------------------------------------------------------------------------------------------------- vifb
def _sobel_fspecial() -> np.ndarray:
    return np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)


def _mm_gray_double(x: np.ndarray) -> np.ndarray:
    if x.ndim == 2:
        return x.astype(np.float64)
    return 0.298936021293775 * x[..., 0] + 0.587043074451121 * x[..., 1] + 0.114020904255103 * x[..., 2]


def _vifb_mutinf(a: np.ndarray, b: np.ndarray) -> float:
    """VIFB mutinf: min-max to [0,1], int16(x*255) (half away from zero), 256x256 joint histogram, nats."""

    def lab(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        x = (x - x.min()) / (x.max() - x.min()) if x.max() != x.min() else np.zeros_like(x)
        return np.floor(x * 255 + 0.5).astype(np.int64)

    ia, ib = lab(a).ravel(), lab(b).ravel()
    hab = np.zeros((256, 256))
    np.add.at(hab, (ia, ib), 1)

    def h(c: np.ndarray) -> float:
        p = c[c > 0] / c.sum()
        return float(-(p * np.log(p)).sum())

    return h(hab.sum(1)) + h(hab.sum(0)) - h(hab)


def _vifb_mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum()) / a.size)


def _fspecial_sobel_ei(f: np.ndarray) -> float:
    w = _sobel_fspecial()
    gx = ndimage.correlate(f, w, mode="nearest")
    gy = ndimage.correlate(f, w.T, mode="nearest")
    return float(np.sqrt(gx * gx + gy * gy).mean())


def _normalize1(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    da, xiao = x.max(), x.min()
    if da == 0 and xiao == 0:
        return x
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.floor((x - xiao) / (da - xiao) * 255 + 0.5)


def _freqspace_r(h: int, w: int, sh: float, sw: float) -> np.ndarray:
    u = (np.arange(w) - np.floor(w / 2)) * (2 / w) * sw
    v = (np.arange(h) - np.floor(h / 2)) * (2 / h) * sh
    uu, vv = np.meshgrid(u, v)
    return np.sqrt(uu**2 + vv**2)


def _csf_apply(x: np.ndarray, filt: np.ndarray) -> np.ndarray:
    return np.real(np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(x)) * filt)))


def qcb_ref(im1: np.ndarray, im2: np.ndarray, fused: np.ndarray) -> float:
    from scipy.signal import fftconvolve

    im1, im2, fused = _normalize1(im1), _normalize1(im2), _normalize1(fused)
    h, w = im1.shape
    r = _freqspace_r(h, w, h / 30, w / 30)
    sd = np.exp(-((r / 15.3870) ** 2)) - 0.7622 * np.exp(-((r / 1.3456) ** 2))
    x, y = np.meshgrid(np.arange(-15, 16), np.arange(-15, 16))

    def gk(s: float) -> np.ndarray:
        return np.exp(-(x * x + y * y) / (2 * s * s)) / (2 * np.pi * s * s)

    g1, g2 = gk(2), gk(4)

    def contrast_p(img: np.ndarray) -> np.ndarray:
        c = np.abs(fftconvolve(img, g1, mode="same") / fftconvolve(img, g2, mode="same") - 1)
        return c**3 / (c**2 + 1e-4)

    c1, c2, cf = (contrast_p(_csf_apply(z, sd)) for z in (im1, im2, fused))
    q1 = np.where(c1 < cf, c1 / cf, cf / c1)
    q2 = np.where(c2 < cf, c2 / cf, cf / c2)
    lam1 = c1 * c1 / (c1 * c1 + c2 * c2)
    lam2 = c2 * c2 / (c1 * c1 + c2 * c2)
    return float((lam1 * q1 + lam2 * q2).mean())


def qcv_ref(im1: np.ndarray, im2: np.ndarray, fused: np.ndarray) -> float:
    from scipy.signal import correlate2d

    im1, im2, fused = _normalize1(im1), _normalize1(im2), _normalize1(fused)
    f1 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    f2 = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64)

    def grad(z: np.ndarray) -> np.ndarray:
        gx, gy = correlate2d(z, f1, mode="same"), correlate2d(z, f2, mode="same")
        return np.sqrt(gx * gx + gy * gy)

    def blk(z: np.ndarray, fun) -> np.ndarray:  # noqa: ANN001
        hh, ww = z.shape
        out = np.zeros((-(-hh // 16), -(-ww // 16)))
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                block = np.zeros((16, 16))
                part = z[16 * i : 16 * i + 16, 16 * j : 16 * j + 16]
                block[: part.shape[0], : part.shape[1]] = part
                out[i, j] = fun(block)
        return out

    lam1 = blk(grad(im1), lambda z: (z**5).sum())
    lam2 = blk(grad(im2), lambda z: (z**5).sum())
    h, w = im1.shape
    r = _freqspace_r(h, w, h / 8, w / 8)
    theta = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
    d1 = blk(_csf_apply(im1 - fused, theta), lambda z: (z**2).mean())
    d2 = blk(_csf_apply(im2 - fused, theta), lambda z: (z**2).mean())
    return float((lam1 * d1 + lam2 * d2).sum() / (lam1 + lam2).sum())


def _ssim_wang_valid(x: np.ndarray, y: np.ndarray, L: float = 255.0) -> float:  # noqa: N803
    from scipy.signal import correlate2d

    w = _fspecial_gauss(11, 1.5)
    x, y = x.astype(np.float64), y.astype(np.float64)
    f = lambda z: correlate2d(z, w, mode="valid")  # noqa: E731
    ua, ub = f(x), f(y)
    sa, sb, sab = f(x * x) - ua * ua, f(y * y) - ub * ub, f(x * y) - ua * ub
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    return float((((2 * ua * ub + c1) * (2 * sab + c2)) / ((ua * ua + ub * ub + c1) * (sa + sb + c2))).mean())


def vifb_metrics(ir_raw: np.ndarray, vi_raw: np.ndarray, f_raw: np.ndarray,
                 which: tuple[str, ...] | None = None) -> dict[str, float]:
    """VIFB's 13 metrics with its per-channel colour protocol (called as metrics(VI, IR, F))."""
    colour = f_raw.ndim == 3
    fd = f_raw.astype(np.float64)

    def chans(rounded: bool) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if colour:
            pick = lambda z, k: (z[..., k] if z.ndim == 3 else z).astype(np.float64)  # noqa: E731
            return [(pick(vi_raw, k), pick(ir_raw, k), fd[..., k]) for k in range(3)]
        g = (lambda z: gray_matlab(z).astype(np.float64)) if rounded else _mm_gray_double
        return [(g(vi_raw), g(ir_raw), fd)]

    def avg(fn, rounded: bool = True) -> float:  # noqa: ANN001
        return float(np.mean([fn(v, i, f) for v, i, f in chans(rounded)]))

    def ce(v: np.ndarray, i: np.ndarray, f: np.ndarray) -> float:
        pf = np.bincount(f.astype(np.int64).ravel(), minlength=256) / f.size
        tot = 0.0
        for s in (v, i):
            ps = np.bincount(s.astype(np.int64).ravel(), minlength=256) / s.size
            m = (ps > 0) & (pf > 0)
            tot += float((ps[m] * np.log2(ps[m] / pf[m])).sum())
        return tot / 2

    def ag(f: np.ndarray) -> float:
        gx, gy = _matlab_gradient(f)
        return float(np.sqrt((gx**2 + gy**2) / 2).sum() / ((f.shape[0] - 1) * (f.shape[1] - 1)))

    def sf() -> float:
        z = np.hstack([fd[..., k] for k in range(3)]) if colour else fd
        rf = ((z[:, 1:] - z[:, :-1]) ** 2).sum() / z.size
        cf = ((z[1:, :] - z[:-1, :]) ** 2).sum() / z.size
        return float(np.sqrt(rf + cf))

    def rmse(v: np.ndarray, i: np.ndarray, f: np.ndarray) -> float:
        return (_vifb_mse(v, f) + _vifb_mse(i, f)) / 2

    table = {
        "CE": lambda: avg(ce),
        "EN": lambda: avg(lambda v, i, f: _hist_entropy(np.floor(f), 2.0)),
        "MI": lambda: avg(lambda v, i, f: _vifb_mutinf(v, f) + _vifb_mutinf(i, f)),
        "PSNR": lambda: avg(lambda v, i, f: 20 * np.log10(255 / np.sqrt(rmse(v, i, f))), rounded=False),
        "AG": lambda: avg(lambda v, i, f: ag(f)),
        "EI": lambda: _fspecial_sobel_ei(fd) if not colour else float(np.mean([_fspecial_sobel_ei(fd[..., k])
                                                                             for k in range(3)])),
        "Qabf": lambda: avg(lambda v, i, f: qabf(v, i, f), rounded=False),
        "SD": lambda: avg(lambda v, i, f: float(np.sqrt(((f - f.mean()) ** 2).sum() / f.size))),
        "SF": sf,
        "RMSE": lambda: avg(rmse, rounded=False),
        "SSIM": lambda: avg(lambda v, i, f: _ssim_wang_valid(v, f) + _ssim_wang_valid(i, f)),
        "Qcb": lambda: avg(qcb_ref),
        "Qcv": lambda: avg(qcv_ref),
    }
    return {k: fn() for k, fn in table.items() if which is None or k in which}


# ----------------------------------------------------------------------------------------------------- tang
def _tang_mi(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    def hab(x: np.ndarray, y: np.ndarray) -> float:
        ix = np.minimum(x.astype(np.int64) + 1, 255) - 1  # uint8 + 1 saturates at 255 (1-based index)
        iy = np.minimum(y.astype(np.int64) + 1, 255) - 1
        c = np.zeros((256, 256))
        np.add.at(c, (ix.ravel(), iy.ravel()), 1)
        p = c[c > 0] / c.sum()
        return float(-(p * np.log2(p)).sum())

    ha, hb, hf = (_hist_entropy(z, 2.0) for z in (a, b, f))
    return ha + hf - hab(f, a) + hb + hf - hab(f, b)


def _sobel_fn(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8
    h = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]) / 8
    xe = np.pad(x.astype(np.float64), 1, mode="reflect")
    p, q = x.shape
    gv = np.zeros((p, q))
    gh = np.zeros((p, q))
    for i in range(3):
        for j in range(3):
            gv += xe[i : i + p, j : j + q] * v[i, j]
            gh += xe[i : i + p, j : j + q] * h[i, j]
    return gv, gh


def nabf_ref(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """analysis_nabf(f, I1, I2) on 0..255 doubles."""
    gva, gha = _sobel_fn(a)
    gvb, ghb = _sobel_fn(b)
    gvf, ghf = _sobel_fn(f)
    ga, gb, gf = (np.sqrt(gh**2 + gv**2) for gv, gh in ((gva, gha), (gvb, ghb), (gvf, ghf)))

    def rel(g: np.ndarray) -> np.ndarray:
        out = np.where(g > gf, gf / np.where(g == 0, 1, g), g / np.where(gf == 0, 1, gf))
        return np.where((g == 0) | (gf == 0), 0.0, out)

    def ang(gv: np.ndarray, gh: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            a_ = np.arctan(gv / gh)
        return np.where((gv == 0) & (gh == 0), 0.0, a_)

    aa, ab, af = ang(gva, gha), ang(gvb, ghb), ang(gvf, ghf)

    def q(gxf: np.ndarray, ax: np.ndarray) -> np.ndarray:
        axf = np.abs(np.abs(ax - af) - np.pi / 2) * 2 / np.pi
        return np.sqrt(0.9999 / (1 + np.exp(-19 * (gxf - 0.5))) * 0.9995 / (1 + np.exp(-22 * (axf - 0.5))))

    qaf, qbf = q(rel(ga), aa), q(rel(gb), ab)
    wa = np.where(ga >= 2, ga**1.5, 0.001)
    wb = np.where(gb >= 2, gb**1.5, 0.001)
    na = (gf > ga) & (gf > gb)
    return float((na * ((1 - qaf) * wa + (1 - qbf) * wb)).sum() / (wa + wb).sum())


def ssim_matlab_ref(x: np.ndarray, y: np.ndarray, dr: float = 1.0) -> float:
    w = _fspecial_gauss(11, 1.5)
    x, y = x.astype(np.float64), y.astype(np.float64)
    f = lambda z: ndimage.correlate(z, w, mode="nearest")  # noqa: E731
    ux, uy = f(x), f(y)
    sx, sy, sxy = f(x * x) - ux * ux, f(y * y) - uy * uy, f(x * y) - ux * uy
    c1, c2 = (0.01 * dr) ** 2, (0.03 * dr) ** 2
    return float((((2 * ux * uy + c1) * (2 * sxy + c2)) / ((ux * ux + uy * uy + c1) * (sx + sy + c2))).mean())


def _mef_single_literal(seq: list[np.ndarray], f: np.ndarray, k: float = 0.03) -> float:
    """Per-window MEF-SSIM, vectorised over windows with sliding views (same arithmetic as the loops)."""
    from numpy.lib.stride_tricks import sliding_window_view as swv

    eps = np.finfo(float).eps
    n = 11
    win = _fspecial_gauss(n, 1.5).ravel()
    sq = np.ones((n, n)) / n**2
    from scipy.signal import correlate2d

    mus, eds, patches = [], [], []
    for img in seq:
        mu = correlate2d(img, sq, mode="valid")
        sig = correlate2d(img * img, sq, mode="valid") - mu * mu
        mus.append(mu)
        eds.append(np.sqrt(np.maximum(n * n * sig, 0)) + 0.001)
        patches.append(swv(img, (n, n)).reshape(mu.shape[0], mu.shape[1], n * n))
    dev = [p - m[..., None] for p, m in zip(patches, mus)]
    den = sum(np.linalg.norm(d, axis=-1) for d in dev)
    s = sum(patches)
    num = np.linalg.norm(s - s.mean(-1, keepdims=True), axis=-1)
    r = (num + eps) / (den + eps)
    r[r > 1] = 1 - eps
    r[r < 0] = eps
    p = np.minimum(np.tan(np.pi / 2 * r), 10)
    wmap = np.stack([(e / n) ** p + eps for e in eds])
    wmap /= wmap.sum(0)
    max_ed = np.max(np.stack(eds), 0)
    rb = sum(wmap[i][..., None] * dev[i] / eds[i][..., None] for i in range(len(seq)))
    nr = np.linalg.norm(rb, axis=-1)
    rb = np.where(nr[..., None] > 0, rb / np.where(nr > 0, nr, 1)[..., None] * max_ed[..., None], rb)
    fv = swv(f, (n, n)).reshape(rb.shape)
    mu1, mu2 = rb @ win, fv @ win
    s1 = ((rb - mu1[..., None]) ** 2) @ win
    s2 = ((fv - mu2[..., None]) ** 2) @ win
    s12 = ((rb - mu1[..., None]) * (fv - mu2[..., None])) @ win
    c = (k * 255) ** 2
    return float(((2 * s12 + c) / (s1 + s2 + c)).mean())


def mef_ms_ssim_ref(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    w = np.array([0.0448, 0.2856, 0.3001])
    w = w / w.sum()
    seq = [a.astype(np.float64), b.astype(np.float64)]
    f = f.astype(np.float64)
    qs = []
    for lvl in range(3):
        qs.append(_mef_single_literal(seq, f))
        if lvl < 2:
            down = lambda z: ndimage.correlate(z, np.ones((2, 2)) / 4, mode="reflect", origin=-1)[::2, ::2]  # noqa: E731
            seq = [down(z) for z in seq]
            f = down(f)
    return float(np.prod(np.array(qs) ** w))


def tang_metrics(ir_raw: np.ndarray, vi_raw: np.ndarray, f_raw: np.ndarray,
                 which: tuple[str, ...] | None = None) -> dict[str, float]:
    """analysis_Reference(F, ir, vi) after MATLAB rgb2gray of every 3-channel input."""
    a8, b8, f8 = gray_matlab(ir_raw), gray_matlab(vi_raw), gray_matlab(f_raw)
    a, b, f = (z.astype(np.float64) for z in (a8, b8, f8))
    mse01 = (np.mean((a / 255 - f / 255) ** 2) + np.mean((b / 255 - f / 255) ** 2)) / 2

    def ag() -> float:
        gx, gy = _matlab_gradient(f)
        return float(np.sqrt((gx**2 + gy**2) / 2).sum() / ((f.shape[0] - 1) * (f.shape[1] - 1)))

    table = {
        "EN": lambda: _hist_entropy(f8, 2.0),
        "SF": lambda: float(np.sqrt(np.mean((f[:, 1:] - f[:, :-1]) ** 2) + np.mean((f[1:] - f[:-1]) ** 2))),
        "SD": lambda: float(np.std(f)),
        "PSNR": lambda: float(20 * np.log10(255 / np.sqrt(mse01))),
        "MSE": lambda: float(mse01),
        "MI": lambda: _tang_mi(a8, b8, f8),
        "VIF": lambda: vifp_mscale(a, f) + vifp_mscale(b, f),
        "AG": ag,
        "CC": lambda: (_corr(a, f) + _corr(b, f)) / 2,
        "SCD": lambda: _corr(f - b, a) + _corr(f - a, b),
        "Qabf": lambda: qabf(a, b, f),
        "Nabf": lambda: nabf_ref(a, b, f),
        "SSIM": lambda: 0.5 * ssim_matlab_ref(f, a) + 0.5 * ssim_matlab_ref(f, b),
        "MS_SSIM": lambda: mef_ms_ssim_ref(a, b, f),
        "Nabf_fixed_order": lambda: nabf_ref(f, a, b),
    }
    return {k: fn() for k, fn in table.items() if which is None or k in which}


# ------------------------------------------------------------------------------------------------------ FMI
def _fmi_feature(x: np.ndarray, feature: str) -> np.ndarray:
    if feature == "none":
        return x.astype(np.float64)
    if feature == "gradient":  # MATLAB gradient(I) with one output: d/dx only
        return _matlab_gradient(x)[0]
    if feature == "dct":  # MATLAB dct2 = orthonormal DCT-II along both axes
        return scipy.fft.dctn(x.astype(np.float64), type=2, norm="ortho")
    if feature == "wavelet":  # rerange([cA, cH; cV, cD]) of dwt2(x, 'dmey') in MATLAB's default 'sym' mode
        import pywt

        ca, (ch, cv, cd) = pywt.dwt2(x.astype(np.float64), "dmey", mode="symmetric")
        m = np.block([[ca, ch], [cv, cd]])
        lo, hi = m.min(), m.max()
        return np.ones_like(m) if hi == lo else (m - lo) / (hi - lo)
    raise ValueError(feature)


def _fmi_windows(x: np.ndarray, w: int) -> np.ndarray:
    """(N, w*w) windows, window entries in MATLAB's column-major order (aSub(:))."""
    h, wd = x.shape
    rows = []
    for q in range(wd - w + 1):  # order of the windows does not matter for the mean
        for p in range(h - w + 1):
            rows.append(x[p : p + w, q : q + w].ravel(order="F"))
    return np.array(rows)


def _fmi_norm(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(hi == lo, 1.0, (x - lo) / (hi - lo))


def _fmi_one(xs: np.ndarray, fs: np.ndarray) -> np.ndarray:
    """Per window FMI_XF for normalised windows, with the MATLAB loops over i, j written out (vectorised over
    windows only): sequential sums, explicit corner / 1-D boundary / 2-D wall cases, separate c >= 0 and c < 0
    branches."""
    n, npos = xs.shape
    xp = xs / xs.sum(1, keepdims=True)
    fp = fs / fs.sum(1, keepdims=True)
    xc, fc = np.zeros_like(xp), np.zeros_like(fp)
    xc[:, 0], fc[:, 0] = xp[:, 0], fp[:, 0]
    for i in range(1, npos):
        xc[:, i] = xp[:, i] + xc[:, i - 1]
        fc[:, i] = fp[:, i] + fc[:, i - 1]
    xt, ft = xp - xp.mean(1, keepdims=True), fp - fp.mean(1, keepdims=True)
    s = (xt * ft).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(s == 0, 0.0, s / np.sqrt((xt * xt).sum(1) * (ft * ft).sum(1)))
    ex = e2x = ef = e2f = np.zeros(n)
    for i in range(npos):
        k = i + 1
        ex, e2x = ex + k * xp[:, i], e2x + k * k * xp[:, i]
        ef, e2f = ef + k * fp[:, i], e2f + k * k * fp[:, i]
    sdx, sdf = np.sqrt(e2x - ex**2), np.sqrt(e2f - ef**2)

    def up(i: int, j: int) -> np.ndarray:  # Frechet upper bound at (fused i, source j), 0 outside
        if i < 0 or j < 0:
            return np.zeros(n)
        return 0.5 * (fc[:, i] + xc[:, j] - np.abs(fc[:, i] - xc[:, j]))

    def lo(i: int, j: int) -> np.ndarray:
        if i < 0 or j < 0:
            return np.zeros(n)
        return 0.5 * (fc[:, i] + xc[:, j] - 1 + np.abs(fc[:, i] + xc[:, j] - 1))

    result = np.zeros(n)
    for bound, sel in ((up, c >= 0), (lo, c < 0)):
        cov = np.zeros(n)
        for i in range(npos):
            for j in range(npos):
                cov = cov + bound(i, j) - fc[:, i] * xc[:, j]
        with np.errstate(invalid="ignore", divide="ignore"):
            wgt = c / (cov / (sdf * sdx))
        wgt = np.where((sdx == 0) | (sdf == 0) | (c == 0), 0.0, wgt)
        hj = np.zeros(n)
        for i in range(npos):
            for j in range(npos):
                if i == 0 and j == 0:
                    jb = bound(0, 0)
                elif j == 0:
                    jb = bound(i, 0) - bound(i - 1, 0)
                elif i == 0:
                    jb = bound(0, j) - bound(0, j - 1)
                else:
                    jb = bound(i, j) - bound(i - 1, j) - bound(i, j - 1) + bound(i - 1, j - 1)
                jp = wgt * jb + (1 - wgt) * fp[:, i] * xp[:, j]
                with np.errstate(invalid="ignore", divide="ignore"):
                    term = np.where(jp != 0, -jp * np.log2(np.abs(jp)), 0.0)  # real(-p log2 p)
                hj = hj + term
        with np.errstate(invalid="ignore", divide="ignore"):
            hx = np.where(xp != 0, -xp * np.log2(xp), 0.0).sum(1)
            hf = np.where(fp != 0, -fp * np.log2(fp), 0.0).sum(1)
            mi = hx + hf - hj
            val = np.where(mi == 0, 0.0, 2 * mi / (hx + hf))
        result = np.where(sel, val, result)
    return result


def fmi_ref(a: np.ndarray, b: np.ndarray, f: np.ndarray, feature: str = "none", w: int = 3) -> float:
    """Haghighat's Fast-FMI as shipped by MEFB/TANG (fmi.m), on 2-D gray arrays."""
    fa, fb, ff = (_fmi_windows(_fmi_feature(z, feature), w) for z in (a, b, f))
    same_af = (fa == ff).all(1)
    fn = _fmi_norm(ff)
    v_af = np.where(same_af, 1.0, _fmi_one(_fmi_norm(fa), fn))
    f_now = np.where(same_af[:, None], ff, fn)  # the A branch overwrites fSub unless A == F
    same_bf = (fb == f_now).all(1)
    v_bf = np.where(same_bf, 1.0, _fmi_one(_fmi_norm(fb), fn))
    return float(np.mean((v_af + v_bf) / 2))
