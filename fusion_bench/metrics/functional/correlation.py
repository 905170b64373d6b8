"""Correlation and error metrics: CC, SCD, MSE, RMSE, PSNR (inputs: BxCxHxW float64, 0..255 scale)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def pearson(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation over all pixels of each image (MATLAB corr2). NaN when one input is constant."""
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    xc = x - x.mean(1, keepdim=True)
    yc = y - y.mean(1, keepdim=True)
    return (xc * yc).sum(1) / torch.sqrt((xc * xc).sum(1) * (yc * yc).sum(1))


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error per image. Shape (B,)."""
    d = (x - y).reshape(x.shape[0], -1)
    return (d * d).mean(1)


def fusion_mse(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """(MSE(A,F) + MSE(B,F)) / 2 on the inputs' scale."""
    return (mse(a, f) + mse(b, f)) / 2


def psnr(x: Tensor, y: Tensor, data_range: float = 255.0) -> Tensor:
    """Standard PSNR in dB between two images."""
    return 10 * torch.log10(data_range**2 / mse(x, y))


def rmse_vifb(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """VIFB "RMSE": mean over sources of sqrt(sum (X-F)^2) / (MN) (i.e. RMSE / sqrt(MN); VIFB issue #15)."""
    hw = f.shape[-1] * f.shape[-2]

    def one(x: Tensor) -> Tensor:
        d = (x - f).reshape(x.shape[0], -1)
        return torch.sqrt((d * d).sum(1)) / hw

    return (one(a) + one(b)) / 2


def psnr_vifb(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """VIFB PSNR: 20 log10(255 / sqrt(R)) with R its non-standard "RMSE" (:func:`rmse_vifb`)."""
    return 20 * torch.log10(255.0 / torch.sqrt(rmse_vifb(a, b, f)))


def psnr_tang(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """TANG PSNR: 20 log10(255 / sqrt(MSE on [0,1])) = standard PSNR + 20 log10(255) dB."""
    m = fusion_mse(a / 255.0, b / 255.0, f / 255.0)
    return 20 * math.log10(255.0) - 10 * torch.log10(m)


# Exact-moment forms for whole 8-bit levels (mmif, tang): every pixel product is an integer <= 65025 and every
# sum of them an integer < 2^53, so the sums and the Gram matrix of (A, B, F) are exact in float64 in any
# summation order (BLAS dot products, no image-sized temporaries), and the centred numerators
# n * sum(uv) - sum(u) sum(v) are formed exactly in int64 (|.| < 2^63 while n <= EXACT_MAX_PIXELS).
EXACT_MAX_PIXELS = 5_000_000


class IntegerMoments:
    """Pixel count, sums and Gram matrix of the integer-valued images (A, B, F), each Bx1xHxW.

    ``cov_n = n G - S S^T`` (int64, exact) gives n^2 cov(u, v) = p^T cov_n q for any integer combinations
    u = p . (A, B, F), v = q . (A, B, F).
    """

    def __init__(self, a: Tensor, b: Tensor, f: Tensor) -> None:
        self.n = f.shape[-1] * f.shape[-2] * f.shape[-3]
        self.exact = self.n <= EXACT_MAX_PIXELS
        xs = [t.reshape(t.shape[0], -1).to(torch.float64) for t in (a, b, f)]
        self.images = xs
        sums = torch.stack([x.sum(1) for x in xs], 1)  # B x 3
        gram = torch.empty((f.shape[0], 3, 3), dtype=torch.float64, device=f.device)
        for i in range(3):
            for j in range(i, 3):
                d = torch.bmm(xs[i].unsqueeze(1), xs[j].unsqueeze(2)).reshape(-1)
                gram[:, i, j] = d
                gram[:, j, i] = d
        self.gram = gram
        s64 = sums.to(torch.int64)
        self.cov_n = self.n * gram.to(torch.int64) - s64[:, :, None] * s64[:, None, :]

    @staticmethod
    def _form(m: Tensor, p: tuple[int, int, int], q: tuple[int, int, int]) -> Tensor:
        """p^T m q per batch element, summing only the non-zero coefficient pairs (exact for int64 m)."""
        terms = [m[:, i, j] * (pi * qj) for i, pi in enumerate(p) if pi for j, qj in enumerate(q) if qj]
        return sum(terms[1:], terms[0])

    def centred(self, p: tuple[int, int, int], q: tuple[int, int, int]) -> Tensor:
        """n * sum(uv) - sum(u) sum(v) (= n^2 cov(u, v)), exact in int64, returned as float64."""
        return self._form(self.cov_n, p, q).to(torch.float64)

    def pearson(self, p: tuple[int, int, int], q: tuple[int, int, int]) -> Tensor:
        """Pearson correlation of u = p . (A, B, F) and v = q . (A, B, F); NaN when one is constant."""
        if not self.exact:
            x = self.images
            return pearson(sum(c * x[i] for i, c in enumerate(p) if c), sum(c * x[i] for i, c in enumerate(q) if c))
        return self.centred(p, q) / torch.sqrt(self.centred(p, p) * self.centred(q, q))

    def mse_to_fused(self, i: int) -> Tensor:
        """mean((X_i - F)^2) for X_0 = A, X_1 = B (exact numerator: an integer < 2^53 in float64)."""
        p = tuple(1 if k == i else (-1 if k == 2 else 0) for k in range(3))
        return self._form(self.gram, p, p) / self.n


A_, B_, F_ = (1, 0, 0), (0, 1, 0), (0, 0, 1)


def correlation_coefficient_exact(m: IntegerMoments) -> Tensor:
    """CC = (r(A,F) + r(B,F)) / 2 from exact moments."""
    return (m.pearson(A_, F_) + m.pearson(B_, F_)) / 2


def scd_exact(m: IntegerMoments) -> Tensor:
    """SCD = r(F - B, A) + r(F - A, B) from exact moments."""
    return m.pearson((0, -1, 1), A_) + m.pearson((-1, 0, 1), B_)


def fusion_mse_exact(m: IntegerMoments) -> Tensor:
    """(MSE(A,F) + MSE(B,F)) / 2 on the 0..255 scale from exact moments."""
    return (m.mse_to_fused(0) + m.mse_to_fused(1)) / 2
