"""Fake MEFB: `input/<Scene>/` folders with two exposures each, mimicking the real naming irregularities.

Scenes: `Arno` (`Arno_A.png` + `arno3.png`), `Candle` (`Imgp6075.png` + `Imgp6077.png`, the brighter one sorts
first), `ICCV_14` (`img1.JPG` + `img3.JPG`), `507` (TIFFs `507_B.tif` + `_MDF0003.tif`) and an
`ev.txt` beside one of them, as in the real repository.
"""

from __future__ import annotations

from pathlib import Path

from fusion_bench.datamodules.fake.common import exposure_stack, rng_for, save

SIZE = (36, 48)
SCENES = {  # scene -> (under-exposed file, over-exposed file)
    "507": ("_MDF0003.tif", "507_B.tif"),
    "Arno": ("Arno_A.png", "arno3.png"),
    "Candle": ("Imgp6077.png", "Imgp6075.png"),
    "ICCV_14": ("img1.JPG", "img3.JPG"),
}


def make_fake(root: Path, seed: int = 0) -> Path:
    root = Path(root)
    for scene, (under, over) in SCENES.items():
        low, high = exposure_stack(rng_for(seed, "mefb", scene), *SIZE, gains=[0.35, 2.2])
        for name, img in ((under, low), (over, high)):
            save(root / "input" / scene / name, img, **({"quality": 95} if name.lower().endswith(".jpg") else {}))
    (root / "input" / "Arno" / "ev.txt").write_text("-2\n+2\n")
    return root
