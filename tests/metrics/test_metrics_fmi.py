"""FMI (Haghighat's Fast-FMI as shipped by MEFB/TANG): known answers, the kits' quirks, and agreement with the
independent NumPy implementation in kit_reference.py (random images and crops of the real pairs)."""

from __future__ import annotations

import kit_reference as kr
import numpy as np
import pytest
import torch

from fusion_bench.metrics import DIALECTS, METRIC_CLASSES, get_dialect
from fusion_bench.metrics.functional import fmi

H, W = 18, 21


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, dtype=np.float64))[None, None]


def _images(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (H, W)).astype(np.float64)
    b = rng.integers(0, 256, (H, W)).astype(np.float64)
    return a, b, np.round((a + b) / 2)


@pytest.mark.parametrize("feature", fmi.FEATURES)
def test_identical_images_give_one(feature: str) -> None:
    a = _images(0)[0]
    assert fmi.fmi(_t(a), _t(a), _t(a), feature).item() == 1.0


@pytest.mark.parametrize("feature", ["none", "gradient"])
def test_constant_fused_gives_zero(feature: str) -> None:
    a, b, _ = _images(1)
    # flat fused windows -> uniform PDF, zero correlation, independent joint PDF -> MI = 0 up to rounding
    # (not for dct / wavelet: a constant image has a DC coefficient, and zero wavelet details are rounding noise
    # that the per-window min-max normalisation blows up, in the kit as well)
    assert fmi.fmi(_t(a), _t(b), _t(np.full((H, W), 90.0)), feature).item() == pytest.approx(0.0, abs=1e-12)


def test_dct_and_wavelet_features_match_scipy_and_pywavelets() -> None:
    """dct2 = scipy dctn(norm='ortho'); dwt2 = PyWavelets dwt2(mode='symmetric') (MATLAB's 'sym'), including
    an image shorter than the 62-tap dmey filter (repeated reflection)."""
    import pywt
    import scipy.fft

    from fusion_bench.metrics.functional import transforms

    rng = np.random.default_rng(3)
    for shape in [(37, 52), (70, 93), (24, 130)]:
        x = rng.integers(0, 256, shape).astype(np.float64)
        d = transforms.dct2(torch.from_numpy(x)[None, None])[0, 0].numpy()
        np.testing.assert_allclose(d, scipy.fft.dctn(x, norm="ortho"), rtol=0, atol=1e-12 * np.abs(x).sum())
        ca, (ch, cv, cd) = pywt.dwt2(x, "dmey", mode="symmetric")
        got = transforms.dwt2(torch.from_numpy(x)[None])
        for g, want in zip(got, (ca, ch, cv, cd), strict=True):
            assert g.shape[1:] == want.shape
            np.testing.assert_allclose(g[0].numpy(), want, rtol=0, atol=1e-13 * np.abs(want).max())
    flat = transforms.wavelet_mosaic(torch.full((1, 1, 20, 20), 3.0))
    assert flat.shape == (1, 1, 80, 80) and float(flat.max()) == 1.0


def _cases() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    a, b, f = _images(2)
    flat = (a.copy(), b.copy(), f.copy())
    flat[0][:8, :8] = 7
    flat[2][:8, :8] = 7  # identical A/F windows
    flat[1][4:12, 4:12] = 0  # flat B windows
    return [("mean", a, b, f), ("negative correlation", a, b, 255 - a), ("flat and identical windows", *flat)]


@pytest.mark.parametrize("feature", fmi.FEATURES)
@pytest.mark.parametrize("case", range(3))
def test_matches_numpy_reference(feature: str, case: int) -> None:
    _, a, b, f = _cases()[case]
    want = kr.fmi_ref(a, b, f, feature)
    got = fmi.fmi(_t(a), _t(b), _t(f), feature).item()
    assert got == pytest.approx(want, rel=1e-12)


def test_b_branch_compares_with_the_normalised_fused_window() -> None:
    """The kits normalise fSub in the A branch and then test bSub == fSub: a 0/1 source equal to the normalised
    fused window counts as identical (FMI_BF = 1) although the raw windows differ."""
    pattern = (np.indices((H, W)).sum(0) % 2).astype(np.float64)  # every 3x3 window holds both values
    a = _images(3)[0]
    f = 10 + 10 * pattern
    both = fmi.fmi(_t(a), _t(pattern), _t(f)).item()
    only_a = fmi.fmi(_t(a), _t(a), _t(f)).item()
    assert both == pytest.approx((only_a + 1) / 2, rel=1e-12)
    assert both == pytest.approx(kr.fmi_ref(a, pattern, f), rel=1e-12)


def test_batch_and_dialects() -> None:
    a, b, f = (np.stack(z) for z in zip(*[_images(s) for s in (4, 5)]))
    ta, tb, tf = (torch.from_numpy(z)[:, None] / 255 for z in (a, b, f))
    for name in DIALECTS:
        out = get_dialect(name).compute(ta, tb, tf, ["FMI_pixel", "FMI_gradient", "FMI_dct", "FMI_w"])
        for feature, key in (("none", "FMI_pixel"), ("gradient", "FMI_gradient"), ("dct", "FMI_dct"),
                             ("wavelet", "FMI_w")):
            want = [kr.fmi_ref(a[i], b[i], f[i], feature) for i in range(2)]
            torch.testing.assert_close(out[key], torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)
    assert {"FMI_pixel", "FMI_gradient", "FMI_dct", "FMI_w"} <= set(METRIC_CLASSES)
    assert "FMI_pixel" not in get_dialect("mmif").metric_names  # an extra, not part of a kit's default list


def test_argument_errors_and_small_images() -> None:
    x = _t(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="feature"):
        fmi.fmi(x, x, x, "edge")
    with pytest.raises(ValueError, match="window"):
        fmi.fmi(x, x, x, "none", 0)
    tiny = _t(np.zeros((2, 5)))
    assert torch.isnan(fmi.fmi(tiny, tiny, tiny)).all()


@pytest.mark.realdata
@pytest.mark.skipif(not kr.REALDATA.is_dir(), reason="real data not found")
def test_agreement_on_real_crops() -> None:
    from test_metrics_realdata import FAST, triples

    chosen = [t for t in triples() if t[0] in FAST]
    assert chosen
    for key, pa, pb, pf in chosen:
        a, b, f = (kr.gray_matlab(kr.load_rgb_or_gray(p)).astype(np.float64) for p in (pa, pb, pf))
        r0, c0 = a.shape[0] // 2 - 20, a.shape[1] // 2 - 28
        a, b, f = (z[r0 : r0 + 40, c0 : c0 + 56] for z in (a, b, f))
        names = {"FMI_pixel": "none", "FMI_gradient": "gradient", "FMI_dct": "dct", "FMI_w": "wavelet"}
        got = get_dialect("tang").compute(_t(a) / 255, _t(b) / 255, _t(f) / 255, list(names))
        for name, feature in names.items():
            assert got[name].item() == pytest.approx(kr.fmi_ref(a, b, f, feature), rel=1e-9), (key, name)
