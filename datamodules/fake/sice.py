"""Fake SICE: `Dataset_Part1/{1,2,3}/` and `Dataset_Part2/{1,2}/` sequences of 3-5 exposure JPEGs, references in
`Dataset_Part1/Label/<n>.JPG` and (the casing variant) `Dataset_Part2/label/<n>.jpg`."""

from __future__ import annotations

from pathlib import Path

from fusion_bench.datamodules.fake.common import exposure_stack, rng_for, save

SIZE = (36, 48)
PARTS = {"Dataset_Part1": ("Label", ".JPG", [3, 5, 4]), "Dataset_Part2": ("label", ".jpg", [4, 3])}


def make_fake(root: Path, seed: int = 0) -> Path:
    root = Path(root)
    for part, (label, ext, counts) in PARTS.items():
        for n, count in enumerate(counts, start=1):
            rng = rng_for(seed, "sice", part, str(n))
            gains = [0.25 * 2.0 ** (i * 3 / max(count - 1, 1)) for i in range(count)]
            stack = exposure_stack(rng, *SIZE, gains=gains + [1.0])
            order = rng.permutation(count)  # file numbering does not follow brightness
            for i, j in enumerate(order, start=1):
                save(root / part / str(n) / f"{i}{ext}", stack[j], quality=95)
            save(root / part / label / f"{n}{ext}", stack[-1], quality=95)
    return root
