"""Exact known answers (constant, identical, two-level and ramp images) that need no data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fusion_bench.metrics import get_dialect

H, W = 48, 64


def _img(arr: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(arr, dtype=np.float64)) / 255
    return t.reshape(1, 1, *t.shape[-2:]) if t.ndim == 2 else t.permute(2, 0, 1)[None]


def _two_level() -> np.ndarray:
    x = np.zeros((H, W))
    x[:, W // 2 :] = 200
    return x


def _texture(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 254, (H, W)).astype(np.float64)


def _ramp() -> np.ndarray:
    return np.tile(np.arange(W) * 2.0, (H, 1))


@pytest.mark.parametrize("dialect", ["mmif", "vifb", "tang"])
def test_constant_fused(dialect: str) -> None:
    c = _img(np.full((H, W), 77.0))
    res = get_dialect(dialect).compute(_img(_texture(1)), _img(_texture(2)), c, ["EN", "SD", "SF", "AG"])
    for k in ("EN", "SD", "SF", "AG"):
        assert res[k].item() == 0.0, k


def test_two_level_statistics() -> None:
    f = _img(_two_level())
    a = _img(_texture(3))
    for name in ("mmif", "vifb", "tang"):
        res = get_dialect(name).compute(a, a, f, ["EN", "SD"])
        assert res["EN"].item() == pytest.approx(1.0, abs=1e-12)
        assert res["SD"].item() == pytest.approx(100.0, abs=1e-12)
    # SF: one vertical edge of height 200 per row
    mm = get_dialect("mmif").compute(a, a, f, ["SF"])["SF"].item()
    assert mm == pytest.approx(math.sqrt(200.0**2 * H / (H * (W - 1))), rel=1e-12)
    vb = get_dialect("vifb").compute(a, a, f, ["SF"])["SF"].item()
    assert vb == pytest.approx(math.sqrt(200.0**2 * H / (H * W)), rel=1e-12)
    # MI of identical two-level images: 2 H = 2 ln 2 nats (mmif, vifb) / 2 bits (tang)
    assert get_dialect("mmif").compute(f, f, f, ["MI"])["MI"].item() == pytest.approx(2 * math.log(2), rel=1e-12)
    assert get_dialect("vifb").compute(f, f, f, ["MI"])["MI"].item() == pytest.approx(2 * math.log(2), rel=1e-12)
    assert get_dialect("tang").compute(f, f, f, ["MI"])["MI"].item() == pytest.approx(2.0, rel=1e-12)


def test_tang_mi_254_255_merge() -> None:
    x = np.zeros((H, W))
    x[:, : W // 2] = 254
    x[:, W // 2 :] = 255  # the joint histogram merges 254/255, the marginals do not: MI = 2 (H_A + H_F - 0)
    f = _img(x)
    assert get_dialect("tang").compute(f, f, f, ["MI"])["MI"].item() == pytest.approx(4.0, rel=1e-12)
    assert get_dialect("mmif").compute(f, f, f, ["MI"])["MI"].item() == pytest.approx(2 * math.log(2), rel=1e-12)


def test_ramp_gradients() -> None:
    f = _img(_ramp())
    a = _img(_texture(4))
    g = math.sqrt(2.0**2 / 2)
    assert get_dialect("mmif").compute(a, a, f, ["AG"])["AG"].item() == pytest.approx(g, rel=1e-12)
    vb = get_dialect("vifb").compute(a, a, f, ["AG", "EI"])
    assert vb["AG"].item() == pytest.approx(g * H * W / ((H - 1) * (W - 1)), rel=1e-12)
    # Sobel (1,2,1) x (-1,0,1): 4 * 2 * 2 = 16 inside; replicate borders halve the difference at both ends
    assert vb["EI"].item() == pytest.approx((16.0 * (W - 2) + 8.0 * 2) / W, rel=1e-12)


def test_identical_inputs() -> None:
    x = _img(_texture(5))
    mm = get_dialect("mmif").compute(x, x, x)
    assert mm["CC"].item() == pytest.approx(1.0, abs=1e-12)
    assert mm["MSE"].item() == 0.0 and math.isinf(mm["PSNR"].item())
    assert mm["SSIM"].item() == pytest.approx(2.0, abs=1e-9)
    assert mm["VIF"].item() == pytest.approx(2.0, abs=1e-9)
    vb = get_dialect("vifb").compute(x, x, x)
    assert vb["CE"].item() == 0.0 and vb["RMSE"].item() == 0.0 and vb["Qcv"].item() == 0.0
    assert vb["SSIM"].item() == pytest.approx(2.0, abs=1e-9)
    assert vb["Qcb"].item() == pytest.approx(1.0, abs=1e-12)
    tg = get_dialect("tang").compute(x, x, x)
    assert tg["SSIM"].item() == pytest.approx(1.0, abs=1e-9)
    assert tg["Nabf"].item() == 0.0
    assert tg["MSE"].item() == 0.0
    assert tg["MS_SSIM"].item() == pytest.approx(1.0, abs=1e-2)
    ex = get_dialect("mmif").compute(x, x, x, ["NMI", "DeltaE"])
    assert ex["NMI"].item() == pytest.approx(2.0, abs=1e-12)
    assert math.isnan(ex["DeltaE"].item())  # no colour source


def test_qabf_equal_strength_quirk() -> None:
    """With F == A == B every strength ratio hits the kits' 'G = g_F' branch, so Qabf != 1 but a closed form."""
    x = _img(_two_level())
    qg = 0.9994 / (1 + math.exp(-15 * (800.0 - 0.5)))  # g_F = 800 (a 200 step under Sobel) -> saturated
    qa = 0.9879 / (1 + math.exp(-22 * (1 - 0.8)))
    # mmif/tang: float32 per-pixel terms on exact Sobel sums (relative error < 1e-5 by construction); vifb: float64
    for dialect, rel in (("mmif", 1e-6), ("tang", 1e-6), ("vifb", 1e-12)):
        got = get_dialect(dialect).compute(x, x, x, ["Qabf"])["Qabf"].item()
        assert got == pytest.approx(qg * qa, rel=rel), dialect


def test_flat_source_vif_conventions() -> None:
    flat = _img(np.full((H, W), 90.0))
    x = _img(_texture(6))
    assert get_dialect("mmif").compute(flat, x, x, ["VIF"])["VIF"].item() == pytest.approx(2.0, abs=1e-9)
    assert math.isnan(get_dialect("tang").compute(flat, x, x, ["VIF"])["VIF"].item())


def test_mse_psnr_hand_computed() -> None:
    a, b, f = _img(np.zeros((H, W))), _img(np.full((H, W), 255.0)), _img(np.full((H, W), 128.0))
    mse = (128.0**2 + 127.0**2) / 2
    mm = get_dialect("mmif").compute(a, b, f, ["MSE", "PSNR"])
    assert mm["MSE"].item() == pytest.approx(mse, rel=1e-12)
    assert mm["PSNR"].item() == pytest.approx(10 * math.log10(128.0**2 / mse), rel=1e-12)
    tg = get_dialect("tang").compute(a, b, f, ["MSE", "PSNR"])
    assert tg["MSE"].item() == pytest.approx(mse / 255**2, rel=1e-12)
    assert tg["PSNR"].item() == pytest.approx(10 * math.log10(255**2 / mse) + 20 * math.log10(255), rel=1e-12)
    vb = get_dialect("vifb").compute(a, b, f, ["RMSE", "PSNR"])
    r = (math.sqrt(128.0**2 * H * W) + math.sqrt(127.0**2 * H * W)) / 2 / (H * W)
    assert vb["RMSE"].item() == pytest.approx(r, rel=1e-12)
    assert vb["PSNR"].item() == pytest.approx(20 * math.log10(255 / math.sqrt(r)), rel=1e-12)


def test_reference_metrics_and_colour() -> None:
    from skimage.color import deltaE_ciede2000, rgb2lab
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(7)
    vis = rng.integers(0, 256, (H, W, 3)).astype(np.float64)
    fus = np.clip(vis + rng.integers(-20, 21, (H, W, 3)), 0, 255)
    ir = _img(_texture(8))
    d = get_dialect("mmif")
    res = d.compute(ir, _img(vis), _img(fus), ["DeltaE", "PSNR_ref", "SSIM_ref"], gt=_img(vis))
    want = deltaE_ciede2000(rgb2lab(vis / 255), rgb2lab(fus / 255)).mean()
    assert res["DeltaE"].item() == pytest.approx(want, rel=1e-6)
    assert res["PSNR_ref"].item() == pytest.approx(peak_signal_noise_ratio(vis, fus, data_range=255), rel=1e-9)
    ss = np.mean([structural_similarity(vis[..., k], fus[..., k], data_range=255, gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False) for k in range(3)])
    assert res["SSIM_ref"].item() == pytest.approx(ss, rel=1e-6)
    with pytest.raises(ValueError, match="gt"):
        d.compute(ir, _img(vis), _img(fus), ["PSNR_ref"])
    assert "PSNR_ref" in d.compute(ir, _img(vis), _img(fus), gt=_img(vis))


def test_gray_rules_on_primaries() -> None:
    # primaries and one mixed colour; both rules agree here (they differ by one level on ~3e-5 of real pixels)
    from fusion_bench.metrics._common import gray_cv2, gray_matlab

    rgb = torch.tensor([[[[r]], [[g]], [[b]]] for r, g, b in [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 200, 90)]],
                       dtype=torch.float64)
    assert gray_cv2(rgb).flatten().tolist() == [76.0, 150.0, 29.0, 131.0]
    assert gray_matlab(rgb).flatten().tolist() == [76.0, 150.0, 29.0, 131.0]


@pytest.mark.parametrize("dialect", ["mmif", "vifb", "tang"])
def test_metric_values_do_not_depend_on_batch_layout(dialect: str) -> None:
    rng = np.random.default_rng(9)
    a = torch.from_numpy(rng.integers(0, 256, (2, 3, 64, 70)) / 255.0)
    b = torch.from_numpy(rng.integers(0, 256, (2, 1, 64, 70)) / 255.0)
    f = torch.from_numpy(rng.integers(0, 256, (2, 3, 64, 70)) / 255.0)
    d = get_dialect(dialect)
    names = d.all_metric_names[: len(d.all_metric_names) - 2]  # without the gt ones
    both = d.compute(a, b, f, names)
    swapped = d.compute(a.flip(0), b.flip(0), f.flip(0), names)
    for k in names:
        torch.testing.assert_close(both[k], swapped[k].flip(0), rtol=1e-12, atol=1e-12, equal_nan=True)


def test_ms_ssim_identical_and_size_limit() -> None:
    x = _img(np.random.default_rng(10).integers(0, 256, (176, 180)).astype(np.float64))
    y = _img(np.clip(np.random.default_rng(11).integers(-30, 31, (176, 180)) + x.numpy()[0, 0] * 255, 0, 255))
    d = get_dialect("mmif")
    assert d.compute(x, x, x, ["MS_SSIM"])["MS_SSIM"].item() == pytest.approx(1.0, abs=1e-12)
    v = d.compute(x, x, y, ["MS_SSIM"])["MS_SSIM"].item()
    assert 0 < v < 1
    small = _img(_texture(12))
    assert math.isnan(d.compute(small, small, small, ["MS_SSIM"])["MS_SSIM"].item())


@pytest.mark.parametrize("dialect", ["mmif", "tang"])
def test_exact_moment_path_matches_two_pass(dialect: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CC/SCD/MSE/PSNR from exact integer moments equal the plain two-pass float64 formulas (which the dialects
    fall back to above EXACT_MAX_PIXELS), also in the degenerate F - B = const case (NaN)."""
    from fusion_bench.metrics.functional import correlation

    a, b = _img(_texture(5)), _img(_texture(6))
    f = _img(np.round((_texture(5) + _texture(6)) / 2))
    names = ["CC", "SCD", "MSE", "PSNR"]
    exact = get_dialect(dialect).compute(a, b, f, names)
    monkeypatch.setattr(correlation, "EXACT_MAX_PIXELS", 10)
    plain = get_dialect(dialect).compute(a, b, f, names)
    for k in names:
        torch.testing.assert_close(exact[k], plain[k], rtol=1e-13, atol=0, msg=k)
    # MSE (and so PSNR) take the exact path at any size: check it against the plain per-pixel mean directly
    la, lb, lf = (torch.from_numpy(z)[None, None] for z in (_texture(5), _texture(6), np.round((_texture(5) +
                                                                                              _texture(6)) / 2)))
    want = correlation.fusion_mse(la, lb, lf)
    torch.testing.assert_close(correlation.fusion_mse_exact(correlation.IntegerMoments(la, lb, lf)), want,
                               rtol=1e-13, atol=0)
    shifted = _img(_texture(6) + 1)  # F - B constant -> r(F - B, A) is 0/0
    monkeypatch.setattr(correlation, "EXACT_MAX_PIXELS", 5_000_000)
    assert math.isnan(get_dialect(dialect).compute(a, b, shifted, ["SCD"])["SCD"].item())
