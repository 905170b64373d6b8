"""Fake PST900: {train,test}/{rgb,thermal,thermal_raw,depth,labels}; thermal 8-bit L, thermal_raw and depth
16-bit, labels 1-channel indices 0..4, real-style names."""

from __future__ import annotations

from pathlib import Path

from fusion_bench.datamodules.fake.common import label_map, rng_for, save, scene

H, W = 48, 84  # 720x1280 scaled down (metrics need >= 48 px)
STEMS = {"train": ("31_bag1a_rect_rgb_frame0000000007", "31_bag1a_rect_rgb_frame0000000012",
                   "32_bag2b_rect_rgb_frame0000000003"),
         "test": ("40_bag4a_rect_rgb_frame0000000021", "40_bag4a_rect_rgb_frame0000000030")}


def make_fake(root: Path, seed: int = 0) -> Path:
    for split, stems in STEMS.items():
        for stem in stems:
            rng = rng_for(seed, "pst900", stem)
            base = root / split
            save(base / "rgb" / f"{stem}.png", scene(rng, H, W, 3))
            thermal = scene(rng, H, W, 1)
            thermal[:3] = 0  # projection holes along the border
            save(base / "thermal" / f"{stem}.png", thermal)
            save(base / "thermal_raw" / f"{stem}.png", scene(rng, H, W, 1, dtype="uint16") // 3 + 20000)
            save(base / "depth" / f"{stem}.png", scene(rng, H, W, 1, dtype="uint16"))
            save(base / "labels" / f"{stem}.png", label_map(rng, H, W, 5))
    return root
