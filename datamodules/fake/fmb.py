"""Fake FMB: {train,test}/{Visible,Infrared,Label,color} PNGs; Label = 1-channel indices 0..14, color = RGB."""

from __future__ import annotations

from pathlib import Path

from fusion_bench.datamodules.fake.common import label_map, rng_for, save, scene

H, W = 48, 64  # 600x800 scaled down


def make_fake(root: Path, seed: int = 0) -> Path:
    for split, stems in (("train", ("00001", "00002", "00003")), ("test", ("01221", "01222"))):
        for stem in stems:
            rng = rng_for(seed, "fmb", stem)
            save(root / split / "Visible" / f"{stem}.png", scene(rng, H, W, 3))
            save(root / split / "Infrared" / f"{stem}.png", scene(rng, H, W, 1))
            label = label_map(rng, H, W, 15)
            save(root / split / "Label" / f"{stem}.png", label)
            save(root / split / "color" / f"{stem}.png", (label[..., None] * [17, 40, 90] % 256).astype("uint8"))
    return root
