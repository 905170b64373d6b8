"""Embedded synthetic datasets, generated offline with numpy on first use.

Four small datasets let every method, metric and the runner work without downloading anything:

- ``synthetic-ivif``: road scenes, RGB visible + thermal, half of them at night, with segmentation masks and
  person/car boxes (the MSRS/M3FD layout in miniature).
- ``synthetic-mfif``: multi-focus pairs cut from the photographs shipped with scikit-image, with the sharp
  crop as reference.
- ``synthetic-meif``: under/over-exposed pairs from the same photographs, with the crop as reference.
- ``synthetic-av``: a 6-class "audio-visual" classification set (spectrogram + small frame) built to show CREMA-D's
  modality imbalance (generator version 3): class pairs share their audio, which is learned first; only the frames
  tell a pair apart (``audio_snr`` / ``visual_snr`` set the two modalities' contrast).

One module per task family holds its generator, Dataset and DataModule (ivif.py, mfif.py, meif.py, av.py;
photos.py: the photographs mfif and meif share; common.py: helpers of every generator); store.py owns the cache.

Each generator uses a fixed seed (a per-sample ``numpy.random.Generator``, never the global RNG), so the
bytes on disk are reproducible. Data are generated into a temporary folder next to the target and renamed
into place atomically, with a ``manifest.json`` holding the sha256 of every file. The default location is
``$FUSION_BENCH_CACHE`` (else ``$XDG_CACHE_HOME/fusion_bench``, else ``~/.cache/fusion_bench``) under
``synthetic/<name>/v<GENERATOR_VERSION>/`` (plus a parameter folder for ``synthetic-av``). The manifest is
verified whenever a DataModule resolves its root; a corrupt or incomplete cache is regenerated with a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion_bench.data.synthetic.av import AV, SyntheticAV, SyntheticAVDataModule
from fusion_bench.data.synthetic.ivif import IVIF, SyntheticIVIF, SyntheticIVIFDataModule
from fusion_bench.data.synthetic.meif import MEIF, SyntheticMEIF, SyntheticMEIFDataModule
from fusion_bench.data.synthetic.mfif import MFIF, SyntheticMFIF, SyntheticMFIFDataModule
from fusion_bench.data.synthetic.store import (
    GENERATOR_VERSION,
    MANIFEST,
    Generator,
    cache_dir,
    ensure,
    read_manifest,
    verify_manifest,
)

GENERATORS: dict[str, Generator] = {g.name: g for g in (IVIF, MFIF, MEIF, AV)}


def ensure_generated(name: str, root: str | Path | None = None, **params: Any) -> Path:
    """The folder holding the synthetic dataset `name`, generated if needed (see `store.ensure`); ValueError listing
    the valid names for an unknown one."""
    if name not in GENERATORS:
        raise ValueError(f"unknown synthetic dataset {name!r}; valid: {', '.join(sorted(GENERATORS))}")
    return ensure(GENERATORS[name], root, **params)


__all__ = ["GENERATORS", "GENERATOR_VERSION", "MANIFEST", "SyntheticAV", "SyntheticAVDataModule", "SyntheticIVIF",
           "SyntheticIVIFDataModule", "SyntheticMEIF", "SyntheticMEIFDataModule", "SyntheticMFIF",
           "SyntheticMFIFDataModule", "cache_dir", "ensure_generated", "read_manifest", "verify_manifest"]
