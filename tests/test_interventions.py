"""fusion_bench.interventions: hole masks, complementary / same masking, modality dropout."""

from __future__ import annotations

import pytest
import torch

from fusion_bench.interventions import (
    MaskConfig,
    complementary_masking,
    complementary_masks,
    modality_dropout,
    random_hole_mask,
    resolve_overlap,
    same_masking,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_one_rectangle_masks_exactly_its_area():
    m = random_hole_mask(8, 40, 50, gen(), MaskConfig(hole_size=(16, 16), num_holes=(1, 1), p_rect=1.0))
    assert m.shape == (8, 1, 40, 50) and m.dtype == torch.float32
    for sample in m:
        ys, xs = torch.nonzero(sample[0] == 0, as_tuple=True)
        assert len(ys) == 256
        assert ys.max() - ys.min() == 15 and xs.max() - xs.min() == 15  # one 16x16 square


def test_one_disk_masks_its_lattice_disk():
    r = 8
    d = torch.arange(-r, r + 1)
    full = int(((d[:, None] ** 2 + d[None, :] ** 2) <= r * r).sum())  # 197 pixels
    m = random_hole_mask(16, 48, 48, gen(1), MaskConfig(hole_size=(16, 16), num_holes=(1, 1), p_rect=0.0))
    counts = (m == 0).flatten(1).sum(1)
    # a centre on the last allowed row/column (H - r) loses the disk's outermost pixel there
    assert all(full - 2 <= int(c) <= full for c in counts), counts


def test_hole_count_bounds_and_determinism():
    cfg = MaskConfig(num_holes=(1, 6))
    m = random_hole_mask(32, 64, 64, gen(3), cfg)
    zeros = (m == 0).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros <= 6 * 256).all()
    assert torch.equal(m, random_hole_mask(32, 64, 64, gen(3), cfg))
    assert not torch.equal(m, random_hole_mask(32, 64, 64, gen(4), cfg))
    assert (random_hole_mask(4, 16, 16, gen(), MaskConfig(num_holes=(0, 0))) == 1).all()
    # images smaller than a hole: clipped, never an error
    small = random_hole_mask(4, 8, 8, gen(), MaskConfig(num_holes=(1, 1)))
    assert small.shape == (4, 1, 8, 8) and (small == 0).any()


@pytest.mark.parametrize("seed", range(5))
def test_complementary_masks_are_disjoint_and_cover_the_union(seed):
    cfg = MaskConfig(hole_size=(12, 24), num_holes=(3, 6))
    c1, c2 = complementary_masks(16, 48, 48, gen(seed), cfg)
    g = gen(seed)  # the same draws, before the overlap is resolved
    r1, r2 = random_hole_mask(16, 48, 48, g, cfg), random_hole_mask(16, 48, 48, g, cfg)
    assert ((r1 == 0) & (r2 == 0)).any(), "the test needs overlapping raw masks"
    assert not ((c1 == 0) & (c2 == 0)).any(), "no pixel may be hidden in both modalities"
    assert torch.equal((c1 == 0) | (c2 == 0), (r1 == 0) | (r2 == 0)), "the masked union is preserved"
    assert not ((c1 == 0) & (r1 == 1)).any() and not ((c2 == 0) & (r2 == 1)).any(), "no new holes"


def test_resolve_overlap_splits_shared_pixels():
    m = torch.zeros(1, 1, 32, 32)
    a, b = resolve_overlap(m.clone(), m.clone(), gen())
    assert torch.equal(a + b, torch.ones_like(m))  # each pixel hidden in exactly one of the two
    assert 0.3 < float(a.mean()) < 0.7


def test_complementary_masking_applies_its_masks():
    x1, x2 = torch.rand(4, 1, 32, 32) + 0.1, torch.rand(4, 3, 32, 32) + 0.1
    y1, y2, m1, m2 = complementary_masking(x1, x2, gen(), MaskConfig(num_holes=(2, 4)))
    assert torch.equal(y1, x1 * m1) and torch.equal(y2, x2 * m2)
    assert torch.equal(y2 == 0, (m2 == 0).expand_as(y2))
    assert not ((y1 == 0) & (y2 == 0).all(1, keepdim=True)).any()


def test_same_masking_uses_one_mask_for_both():
    x1, x2 = torch.rand(4, 1, 32, 32) + 0.1, torch.rand(4, 3, 32, 32) + 0.1
    y1, y2, m = same_masking(x1, x2, gen(), MaskConfig(num_holes=(2, 4)))
    assert m.shape == (4, 1, 32, 32) and (m == 0).any()
    assert torch.equal(y1, x1 * m) and torch.equal(y2, x2 * m)
    assert torch.equal((y1 == 0).expand_as(y2), y2 == 0)


def test_modality_dropout_zeroes_exactly_one_modality_per_sample():
    x1, x2 = torch.rand(64, 1, 8, 8) + 0.1, torch.rand(64, 3, 8, 8) + 0.1
    y1, y2, drop_first = modality_dropout(x1, x2, gen())
    zero1, zero2 = (y1 == 0).flatten(1).all(1), (y2 == 0).flatten(1).all(1)
    assert torch.equal(zero1, drop_first) and torch.equal(zero2, ~drop_first)
    assert 0 < int(drop_first.sum()) < 64, "a fair coin per sample"
    kept1, kept2 = ~drop_first, drop_first
    assert torch.equal(y1[kept1], x1[kept1]) and torch.equal(y2[kept2], x2[kept2])
    y1, y2, d = modality_dropout(x1, x2, drop_first=False)
    assert not d.any() and torch.equal(y1, x1) and (y2 == 0).all()
    with pytest.raises(ValueError):
        modality_dropout(x1, x2)
    with pytest.raises(ValueError):
        modality_dropout(x1, x2, drop_first=torch.ones(3, dtype=torch.bool))


def test_mask_config_validates():
    for bad in ({"hole_size": (0, 4)}, {"hole_size": (8, 4)}, {"num_holes": (3, 1)}, {"p_rect": 1.5}):
        with pytest.raises(ValueError):
            MaskConfig(**bad)
