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
