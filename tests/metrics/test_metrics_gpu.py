"""CUDA gives the same values as CPU (direct filters on both; only rounding may differ), and the CPU filter
backends (OpenCV / SciPy / the CUDA shifted additions run on CPU) agree."""

from __future__ import annotations

import pytest
import torch

from fusion_bench.metrics import get_dialect


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dialect", ["mmif", "vifb", "tang"])
def test_cuda_matches_cpu(dialect: str) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (3, 1, 96, 120), generator=g) / 255.0
    b = torch.randint(0, 256, (3, 3, 96, 120), generator=g) / 255.0
    f = torch.round((a + b) / 2 * 255) / 255
    d = get_dialect(dialect)
    names = [n for n in d.all_metric_names if n not in d.reference_metric_names]
    cpu = d.compute(a, b, f, names, gt=None)
    gpu = d.compute(a.cuda(), b.cuda(), f.cuda(), names)
    for k in names:
        assert gpu[k].device.type == "cuda"
        # float32 per-pixel terms (Qabf in mmif/tang, VIF's log terms): CUDA's atanf/expf/log1pf differ from the
        # CPU's by an ulp or so, i.e. ~1e-7 per pixel before averaging
        rtol = 1e-6 if k in ("Qabf", "VIF") else 1e-9
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], rtol=rtol, atol=1e-12, equal_nan=True, msg=k)


@pytest.mark.parametrize("dialect", ["mmif", "vifb", "tang"])
def test_torch_filter_backend_matches_scipy_backend(dialect: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shifted-addition filters used on CUDA, run on CPU, agree with the SciPy-backed CPU filters."""
    from fusion_bench.metrics.functional import filters

    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (2, 1, 80, 96), generator=g) / 255.0
    b = torch.randint(0, 256, (2, 3, 80, 96), generator=g) / 255.0
    f = torch.round((a + b) / 2 * 255) / 255
    d = get_dialect(dialect)
    names = [n for n in d.all_metric_names if n not in d.reference_metric_names]
    ref = d.compute(a, b, f, names)
    monkeypatch.setattr(filters, "FORCE_TORCH_BACKEND", True)
    got = d.compute(a, b, f, names)
    for k in names:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-9, atol=1e-12, equal_nan=True, msg=k)


@pytest.mark.parametrize("dialect", ["mmif", "vifb", "tang"])
def test_opencv_and_scipy_filter_backends_agree(dialect: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU 'valid' filters run on OpenCV when it is installed and on SciPy otherwise: same values (a few ulps
    of float64 summation order; exact window sums for the integer box filter)."""
    from fusion_bench.metrics.functional import filters

    pytest.importorskip("cv2")
    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 256, (2, 1, 64, 72), generator=g) / 255.0
    b = torch.randint(0, 256, (2, 3, 64, 72), generator=g) / 255.0
    f = torch.round((a + b) / 2 * 255) / 255
    d = get_dialect(dialect)
    names = [n for n in d.all_metric_names if n not in d.reference_metric_names and not n.startswith("FMI")]
    with_cv = d.compute(a, b, f, names)
    monkeypatch.setattr(filters, "USE_OPENCV", False)
    without = d.compute(a, b, f, names)
    for k in names:
        torch.testing.assert_close(with_cv[k], without[k], rtol=1e-9, atol=1e-12, equal_nan=True, msg=k)
