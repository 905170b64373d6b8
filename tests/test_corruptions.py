"""The test-time corruptions (fusion_bench.corruptions): severity 0 is the identity bit for bit, results repeat
from the seed, strength grows with the severity, and bad names are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion_bench.corruptions import CORRUPTIONS, SEVERITIES, check_corruption, corrupt_pair


def _pair(channels_a: int = 3, channels_b: int = 1, h: int = 40, w: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (1, channels_a, h, w), generator=g).float() / 255
    b = torch.randint(0, 256, (1, channels_b, h, w), generator=g).float() / 255
    return a, b


def _modality(name: str) -> str:
    return CORRUPTIONS[name].modalities[-1] if name != "modality_dropout" else "b"


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_severity_zero_is_identity(name: str) -> None:
    a, b = _pair()
    a2, b2 = corrupt_pair(a, b, name, 0, _modality(name), 0, "img")
    assert torch.equal(a2, a) and torch.equal(b2, b)
    assert a2.dtype == a.dtype


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_seeded_repeatability(name: str) -> None:
    a, b = _pair()
    first = corrupt_pair(a, b, name, 3, _modality(name), 7, "img")
    again = corrupt_pair(a.clone(), b.clone(), name, 3, _modality(name), 7, "img")
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert all(x.shape == y.shape and x.dtype == y.dtype for x, y in zip(first, (a, b)))
    if name not in ("modality_dropout", "jpeg"):  # another seed draws other noise / holes
        other = corrupt_pair(a, b, name, 3, _modality(name), 8, "img")
        if name in ("gaussian_noise", "low_light", "complementary_masking", "same_masking"):
            assert not all(torch.equal(x, y) for x, y in zip(first, other))


def test_float64_inputs_give_the_float32_values() -> None:
    a, b = _pair()
    x32 = corrupt_pair(a, b, "gaussian_noise", 2, "both", 0, "img")
    x64 = corrupt_pair(a.double(), b.double(), "gaussian_noise", 2, "both", 0, "img")
    assert all(torch.equal(p.double(), q.float().double()) for p, q in zip(x32, x64))


def _distortion(name: str, severity: int) -> float:
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    blocks = (((yy // 16) + (xx // 16)) % 2).float()  # 16-px blocks: blur and shifts move their edges
    a = (torch.round((0.25 + 0.5 * blocks) * 255) / 255).expand(1, 3, 64, 64).contiguous()
    b = a[:, :1].clone()
    total = 0.0
    for image in range(20 if name == "modality_dropout" else 1):  # dropout: a fraction of the images
        a2, b2 = corrupt_pair(a, b, name, severity, _modality(name), 0, f"img{image}")
        total += float((a2 - a).abs().mean() + (b2 - b).abs().mean())
    return total


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_strength_grows_with_severity(name: str) -> None:
    values = [_distortion(name, s) for s in (0, *SEVERITIES)]
    assert values[0] == 0.0
    assert values[-1] > values[1] > 0.0
    if name != "jpeg":  # JPEG quality steps are monotone in expectation only
        assert all(x <= y for x, y in zip(values, values[1:])), values


def test_gaussian_noise_sigma() -> None:
    a = torch.full((1, 1, 200, 200), 0.5)
    a2, _ = corrupt_pair(a, a, "gaussian_noise", 5, "a", 0, "img")
    assert float((a2 - a).std()) == pytest.approx(0.10, rel=0.05)


def test_modality_choice() -> None:
    a, b = _pair()
    a2, b2 = corrupt_pair(a, b, "gaussian_noise", 2, "a", 0, "img")
    assert not torch.equal(a2, a) and torch.equal(b2, b)
    a3, b3 = corrupt_pair(a, b, "gaussian_noise", 2, "both", 0, "img")
    assert torch.equal(a3, a2) and not torch.equal(b3, b)  # `a` draws the same noise alone or with `b`
    a4, b4 = corrupt_pair(a, b, "modality_dropout", 5, "a", 0, "img")
    assert float(a4.abs().max()) == 0.0 and torch.equal(b4, b)
    a5, b5 = corrupt_pair(a, b, "complementary_masking", 5, "both", 0, "img")
    hidden_a, hidden_b = (a5 == 0).all(1) & (a != 0).all(1), (b5 == 0).all(1) & (b != 0).all(1)
    assert hidden_a.any() and hidden_b.any() and not (hidden_a & hidden_b).any()


def test_outputs_on_8bit_grid_and_jpeg_repeats() -> None:
    a, b = _pair()
    for name in ("defocus_blur", "low_light", "haze", "jpeg", "misregistration"):
        a2, _ = corrupt_pair(a, b, name, 4, "a", 0, "img")
        levels = a2.double() * 255
        assert torch.allclose(levels, levels.round(), atol=1e-4)
        assert 0.0 <= float(a2.min()) and float(a2.max()) <= 1.0
    first = corrupt_pair(a, b, "jpeg", 5, "both", 0, "img")
    assert all(torch.equal(x, y) for x, y in zip(first, corrupt_pair(a, b, "jpeg", 5, "both", 0, "img")))


def test_known_values() -> None:
    """Exact arithmetic: a constant image stays constant under blur and haze; haze has its closed form."""
    a = torch.full((1, 1, 16, 16), 100 / 255)
    blurred, _ = corrupt_pair(a, a, "defocus_blur", 5, "a", 0, "img")
    assert torch.equal(blurred, a)
    hazed, _ = corrupt_pair(a, a, "haze", 3, "a", 0, "img")
    assert float(hazed[0, 0, 0, 0]) == float(torch.tensor(np.rint(100 * 0.5 + 204 * 0.5) / 255, dtype=torch.float32))
    shifted, _ = corrupt_pair(a, a, "misregistration", 5, "a", 0, "img")
    assert torch.equal(shifted, a)


@pytest.mark.parametrize("args", [("fog", "a", 1), ("gaussian_noise", "c", 1), ("gaussian_noise", "a", 6),
                                  ("complementary_masking", "a", 1), ("modality_dropout", "both", 1)])
def test_bad_requests(args: tuple) -> None:
    with pytest.raises(ValueError):
        check_corruption(*args)
