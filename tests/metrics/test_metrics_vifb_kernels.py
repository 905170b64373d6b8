"""The vifb dialect's faster kernels give the numbers of their previous formulation.

The previous code is kept here, small and self-contained: Qabf, SSIM, Qcb and Qcv computed channel by channel on
the full per-channel arrays (a gray source repeated for every fused channel), with the complex FFT, the SciPy /
direct Sobel and Gaussian filters and the toolbox's sign * floor(|y| * 255 + 0.5) rounding. The new code runs each
distinct source channel once, filters SSIM's moments in one call, uses shifted-addition Sobel sums on whole
numbers and real FFTs in Qcv.

Tolerance: 1e-10 relative. Measured on this code: bitwise equal for Qabf, SSIM and Qcb (random, structured and
the real-image mix), Qcv within 1e-15 (the real FFTs round differently); the margin allows other FFT/SIMD
builds, whose rounding Qcb's ratio of Gaussian sums amplifies on black backgrounds (to 5e-13 for a few-ulp
change of the filtered image, measured on MRI_PET).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch import Tensor

from fusion_bench.metrics import get_dialect
from fusion_bench.metrics._vifb import VIFB, channels, distinct_channels
from fusion_bench.metrics.dialect_base import Inputs
from fusion_bench.metrics.functional import chen, filters, qabf, ssim
from fusion_bench.metrics.functional.basic import filter3x3

RTOL = 1e-10
Fn3 = Callable[[Tensor, Tensor, Tensor], Tensor]


# ------------------------------------------------------------------------------ previous formulation (reference)
def _old_normalize1(x: Tensor) -> Tensor:
    flat = x.flatten(1)
    lo = flat.amin(1).view(-1, *([1] * (x.ndim - 1)))
    hi = flat.amax(1).view(-1, *([1] * (x.ndim - 1)))
    y = (x - lo) / (hi - lo)
    y = torch.sign(y) * torch.floor(y.abs() * 255 + 0.5)
    return torch.where((hi == 0) & (lo == 0), x, y)


def _old_freq_filter(x: Tensor, centred: Tensor) -> Tensor:
    return torch.fft.ifft2(torch.fft.fft2(x) * torch.fft.ifftshift(centred, dim=(-2, -1))).real


def _radius(h: int, w: int, sh: float, sw: float) -> Tensor:
    fu = (torch.arange(w, dtype=torch.float64) - w // 2) * (2.0 / w) * sw
    fv = (torch.arange(h, dtype=torch.float64) - h // 2) * (2.0 / h) * sh
    return torch.sqrt(fu.view(1, w) ** 2 + fv.view(h, 1) ** 2)


def _old_qcb(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    h, w = f.shape[-2:]
    r = _radius(h, w, h / 30.0, w / 30.0)
    sd = torch.exp(-((r / 15.3870) ** 2)) - 0.7622 * torch.exp(-((r / 1.3456) ** 2))
    filt = _old_freq_filter(torch.stack([_old_normalize1(a), _old_normalize1(b), _old_normalize1(f)]), sd)
    t = torch.arange(-15, 16, dtype=torch.float64)

    def g1d(sigma: float) -> Tensor:
        return torch.exp(-(t * t) / (2 * sigma * sigma)) / math.sqrt(2 * math.pi * sigma * sigma)

    c = (filters.sep_filter(filt, g1d(2.0), mode="zeros") / filters.sep_filter(filt, g1d(4.0), mode="zeros") - 1).abs()
    cp = c**3 / (c**2 + 1e-4)
    c1, c2, cf = cp[0], cp[1], cp[2]
    q1 = torch.where(c1 < cf, c1 / cf, cf / c1)
    q2 = torch.where(c2 < cf, c2 / cf, cf / c2)
    den = c1 * c1 + c2 * c2
    return ((c1 * c1) / den * q1 + (c2 * c2) / den * q2).flatten(1).mean(1)


def _old_block_sum(x: Tensor, size: int) -> Tensor:
    h, w = x.shape[-2:]
    xp = torch.nn.functional.pad(x, (0, -w % size, 0, -h % size))
    return xp.reshape(x.shape[0], xp.shape[-2] // size, size, xp.shape[-1] // size, size).sum(dim=(2, 4))


def _old_qcv(a: Tensor, b: Tensor, f: Tensor, window: int = 16, alpha: float = 5.0) -> Tensor:
    a, b, f = _old_normalize1(a), _old_normalize1(b), _old_normalize1(f)

    def grad(x: Tensor) -> Tensor:
        gx = filter3x3(x, ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0)), padding="zeros")
        gy = filter3x3(x, ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0)), padding="zeros")
        return torch.sqrt(gx * gx + gy * gy)

    lam1 = _old_block_sum(grad(a).flatten(0, 1) ** alpha, window)
    lam2 = _old_block_sum(grad(b).flatten(0, 1) ** alpha, window)
    h, w = f.shape[-2:]
    r = _radius(h, w, h / 8.0, w / 8.0)
    theta = 2.6 * (0.0192 + 0.144 * r) * torch.exp(-((0.144 * r) ** 1.1))
    df = _old_freq_filter(torch.stack([a - f, b - f]).flatten(1, 2), theta)
    d1 = _old_block_sum(df[0] ** 2, window) / (window * window)
    d2 = _old_block_sum(df[1] ** 2, window) / (window * window)
    return (lam1 * d1 + lam2 * d2).flatten(1).sum(1) / (lam1 + lam2).flatten(1).sum(1)


def _old_qabf(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """Float64 Qabf (vifb), direct Sobel filters."""

    def arrays(x: Tensor) -> tuple[Tensor, Tensor]:
        sx = filter3x3(x, qabf.H3, padding="zeros", correlate=False)
        sy = filter3x3(x, qabf.H1, padding="zeros", correlate=False)
        zero = sx == 0
        angle = torch.where(zero, math.pi / 2, torch.atan(sy / torch.where(zero, 1.0, sx)))
        return torch.sqrt(sx * sx + sy * sy), angle

    def q(gx: Tensor, ax: Tensor, gf: Tensor, af: Tensor) -> Tensor:
        gxf = torch.where(gx == gf, gf, torch.minimum(gx, gf) / torch.maximum(gx, gf))
        axf = 1 - (ax - af).abs() / (math.pi / 2)
        return 0.9994 * 0.9879 / ((1 + torch.exp(-15 * (gxf - 0.5))) * (1 + torch.exp(-22 * (axf - 0.8))))

    (ga, aa), (gb, ab), (gf, af) = arrays(a), arrays(b), arrays(f)
    num = (q(ga, aa, gf, af) * ga + q(gb, ab, gf, af) * gb).flatten(1).sum(1)
    return num / (ga.flatten(1).sum(1) + gb.flatten(1).sum(1))


def _old_ssim(x: Tensor, y: Tensor) -> Tensor:
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    ux, uy, uxx, uyy, uxy = filters.filter_valid(torch.stack([x, y, x * x, y * y, x * y]), filters.gaussian_1d(11, 1.5))
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    s = (2 * ux * uy + c1) / (ux * ux + uy * uy + c1) * ((2 * vxy + c2) / (vx + vy + c2))
    return s.flatten(1).mean(1)


OLD: dict[str, tuple[Fn3, bool]] = {  # metric -> (fn on Bx1xHxW, rounded gray rule)
    "Qabf": (_old_qabf, False),
    "SSIM": (lambda a, b, f: _old_ssim(b, f) + _old_ssim(a, f), True),
    "Qcb": (_old_qcb, True),
    "Qcv": (_old_qcv, True),
}


def _old_vifb(metric: str, a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """VIFB's per-channel protocol on the full per-channel arrays, one channel at a time."""
    fn, rounded = OLD[metric]
    x = Inputs(a, b, f, None, VIFB.gray)
    ca, cb, cf = channels(x, rounded)
    per = [fn(ca[:, k : k + 1], cb[:, k : k + 1], cf[:, k : k + 1]) for k in range(cf.shape[1])]
    return torch.stack(per, 1).mean(1)


# ---------------------------------------------------------------------------------------------------- images
def _levels(arr: np.ndarray) -> Tensor:
    """HxW, HxWx3 or BxCxHxW levels 0..255 -> [0, 1] tensor."""
    t = torch.from_numpy(np.asarray(arr, dtype=np.float64))
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t.permute(2, 0, 1)[None]
    return t / 255


def _blobs(h: int, w: int, seed: int, colour: bool) -> np.ndarray:
    """Smooth bright blobs on an exactly black background (as the medical pairs, where Qcb is ill-conditioned)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w, 3) if colour else (h, w))
    for _ in range(3):
        cy, cx, s = rng.uniform(0.3 * h, 0.7 * h), rng.uniform(0.3 * w, 0.7 * w), rng.uniform(0.06, 0.15) * min(h, w)
        g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        g = np.where(g > 0.05, g, 0.0)
        out += g[..., None] * rng.uniform(60, 200, 3) if colour else g * rng.uniform(60, 200)
    return np.clip(np.round(out), 0, 255)


def _cases() -> Iterator[tuple[str, Tensor, Tensor, Tensor]]:
    rng = np.random.default_rng(16)

    def rand(*shape: int) -> Tensor:
        return _levels(rng.integers(0, 256, shape))

    # random: gray source + colour source + colour F, odd sizes, batch 2
    yield "random gray/colour -> colour", rand(2, 1, 61, 77), rand(2, 3, 61, 77), rand(2, 3, 61, 77)
    yield "random colour/colour -> gray", rand(1, 3, 64, 70), rand(1, 3, 64, 70), rand(1, 1, 64, 70)
    yield "random gray/gray -> gray", rand(2, 1, 48, 52), rand(2, 1, 48, 52), rand(2, 1, 48, 52)
    gray_rgb = rand(1, 1, 56, 60).expand(1, 3, 56, 60).contiguous()  # gray stored as RGB (equal channels)
    yield "gray stored as RGB -> colour", gray_rgb, rand(1, 3, 56, 60), rand(1, 3, 56, 60)
    # structured: black backgrounds, a ramp, a constant (normalize1 -> NaN) and an all-black source
    a, b = _levels(_blobs(64, 80, 1, False)), _levels(_blobs(64, 80, 2, True))
    fc = _levels(np.round((_blobs(64, 80, 1, False)[..., None] + _blobs(64, 80, 2, True)) / 2))
    yield "blobs gray/colour -> colour", a, b, fc
    yield "blobs gray/colour -> gray", a, b, _levels(np.maximum(_blobs(64, 80, 1, False), _blobs(64, 80, 3, False)))
    ramp = _levels(np.tile(np.arange(80) * 3.0, (64, 1)))
    yield "ramp / blobs -> blobs", ramp, a, fc
    yield "black source", torch.zeros(1, 1, 64, 80, dtype=torch.float64), b, fc
    yield "constant fused", a, b, torch.full((1, 3, 64, 80), 0.5, dtype=torch.float64)


CASES = list(_cases())


def _assert_same(got: Tensor, want: Tensor, what: str) -> None:
    torch.testing.assert_close(got, want, rtol=RTOL, atol=0.0, equal_nan=True, msg=lambda m: f"{what}: {m}")


# ------------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("metric", list(OLD))
def test_vifb_kernels_match_previous_formulation(case: tuple[str, Tensor, Tensor, Tensor], metric: str) -> None:
    name, a, b, f = case
    got = get_dialect("vifb").compute(a, b, f, [metric], workers=1)[metric]
    _assert_same(got, _old_vifb(metric, a, b, f), f"{metric} on {name}")


@pytest.mark.parametrize("metric", list(OLD))
def test_vifb_kernels_match_previous_formulation_on_the_cuda_code_path(metric: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The shifted-addition filters (CUDA's path, run on the CPU) and the stacked maps of `filter_valid_maps`."""
    monkeypatch.setattr(filters, "FORCE_TORCH_BACKEND", True)
    for name, a, b, f in CASES[:1] + CASES[4:6]:
        got = get_dialect("vifb").compute(a, b, f, [metric], workers=1)[metric]
        _assert_same(got, _old_vifb(metric, a, b, f), f"{metric} on {name}")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_chen_and_qabf_functions_match_previous_formulation(case: tuple[str, Tensor, Tensor, Tensor]) -> None:
    """The public functions on Bx1xHxW arrays (used outside the dialect too)."""
    name, a, b, f = case
    x = Inputs(a, b, f, None, VIFB.gray)
    ca, cb, cf = (t[:, :1] * 1.0 for t in channels(x, True))
    for fn, old in ((chen.qcb, _old_qcb), (chen.qcv, _old_qcv), (qabf.qabf, _old_qabf)):
        _assert_same(fn(ca, cb, cf), old(ca, cb, cf), f"{fn.__name__} on {name}")


def test_normalize1_is_the_toolbox_rounding_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    x = torch.cat([
        torch.from_numpy(rng.integers(0, 256, (2, 1, 40, 50))).double(),
        torch.from_numpy(rng.uniform(-3.0, 700.0, (1, 1, 40, 50))),  # non-integer, negative
        torch.zeros(1, 1, 40, 50, dtype=torch.float64),  # stays zero
        torch.full((1, 1, 40, 50), 7.0, dtype=torch.float64),  # constant: NaN, as MATLAB's 0/0
        torch.from_numpy(np.tile(np.arange(50) * (255 / 49), (40, 1)))[None, None],  # exact .5 cases
    ])
    got, want = chen.normalize1(x), _old_normalize1(x)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(want))


@pytest.mark.parametrize("fraction", [False, True])
def test_qabf_sobel_equals_the_direct_filter_bit_for_bit(fraction: bool) -> None:
    """`_qabf_arrays`: shifted additions on whole numbers, the direct filter otherwise (vifb's unrounded rgb2gray
    levels, where the summation order would change the sums and the kits' exact-zero tests)."""
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.integers(0, 256, (3, 1, 33, 47))).double()
    if fraction:
        x = x + torch.from_numpy(rng.uniform(0, 1, x.shape)).mul(0.299)
    g, al = qabf._qabf_arrays(x)
    sx = filter3x3(x, qabf.H3, padding="zeros", correlate=False)
    sy = filter3x3(x, qabf.H1, padding="zeros", correlate=False)
    assert torch.equal(g, torch.sqrt(sx * sx + sy * sy))
    zero = sx == 0
    assert torch.equal(al, torch.where(zero, math.pi / 2, torch.atan(sy / torch.where(zero, 1.0, sx))))


def test_distinct_channels_shares_only_equal_channels() -> None:
    rng = np.random.default_rng(5)
    gray = _levels(rng.integers(0, 256, (1, 1, 20, 24)))
    stored_rgb = gray.expand(1, 3, 20, 24).contiguous()
    colour = _levels(rng.integers(0, 256, (1, 3, 20, 24)))
    a, b, f = distinct_channels(Inputs(gray, stored_rgb, colour, None, VIFB.gray))
    assert a.shape[1] == 1 and b.shape[1] == 1 and f.shape[1] == 3
    a, b, _ = distinct_channels(Inputs(colour, gray, colour, None, VIFB.gray))
    assert a.shape[1] == 3 and b.shape[1] == 1


def test_ssim_gaussian_valid_sum_equals_per_channel_ssim() -> None:
    rng = np.random.default_rng(6)
    y = torch.from_numpy(rng.integers(0, 256, (2, 3, 30, 34))).double()
    x3 = torch.from_numpy(rng.integers(0, 256, (2, 3, 30, 34))).double()
    x1 = torch.from_numpy(rng.integers(0, 256, (2, 1, 30, 34))).double()
    got = ssim.ssim_gaussian_valid_sum([x3, x1], y)
    for c in range(3):
        yc = y[:, c : c + 1]
        want = ssim.ssim_gaussian_valid(x3[:, c : c + 1], yc) + ssim.ssim_gaussian_valid(x1, yc)
        assert torch.equal(got[:, c], want)
