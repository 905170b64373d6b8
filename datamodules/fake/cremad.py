"""Fake CREMA-D: real tiny media files for five real clip names.

`AudioWAV/<clip>.wav` (16 kHz mono PCM, 1-2 s, a per-emotion tone), `VideoFlash/<clip>.flv` (FLV container with
Sorenson/FLV1 video at 32x32, 10 fps, and an MP3 audio track, as the real files), `AudioMP3/<clip>.mp3` is not
written (unused). Train clips are names absent from OGM-GE's test list; test clips come from it, and
`fusion_bench_splits/test.txt` lists only those (the dataset's documented split override).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusion_bench.datamodules.av_common import write_tiny_video
from fusion_bench.datamodules.fake.common import rng_for

TRAIN = ["1001_IEO_NEU_XX", "1001_IEO_HAP_LO", "1002_DFA_ANG_XX"]
TEST = ["1041_TIE_NEU_XX", "1071_MTI_SAD_XX"]
TONES = {"NEU": 220.0, "HAP": 330.0, "SAD": 440.0, "FEA": 550.0, "DIS": 660.0, "ANG": 770.0}


def make_fake(root: Path, seed: int = 0) -> Path:
    import soundfile as sf

    root = Path(root)
    for i, clip in enumerate(TRAIN + TEST):
        rng = rng_for(seed, "cremad", clip)
        seconds = 1.0 + 0.5 * (i % 3)
        tone = TONES[clip.split("_")[2]]
        t = np.arange(int(16_000 * seconds)) / 16_000
        wav = 0.3 * np.sin(2 * np.pi * tone * t) + 0.01 * rng.standard_normal(t.size)
        (root / "AudioWAV").mkdir(parents=True, exist_ok=True)
        sf.write(str(root / "AudioWAV" / f"{clip}.wav"), wav.astype(np.float32), 16_000, subtype="PCM_16")
        write_tiny_video(root / "VideoFlash" / f"{clip}.flv", seconds, rng, video_codec="flv", audio_codec="mp3",
                         audio_rate=22_050, container_format="flv", tone_hz=tone)
    listing = root / "fusion_bench_splits" / "test.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("# fake subset of OGM-GE's test list\n" + "".join(f"{c}\n" for c in TEST))
    return root
