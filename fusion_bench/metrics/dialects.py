"""Named metric dialects: each reproduces the conventions of one reference evaluation kit.

* ``mmif``: MMIF-CDDFuse/EMMA ``utils/Evaluator.py`` (OpenCV float gray, 0..255 float, nats, SSIM sum).
* ``vifb``: the VIFB MATLAB benchmark (per-RGB-channel protocol, its own RMSE/PSNR).
* ``tang``: Tang's MATLAB kit (Evaluation-for-Image-Fusion; MATLAB rgb2gray, bits, MEF-SSIM as "MS_SSIM").

See docs/metrics.md for the per-metric table.
"""

from __future__ import annotations

from fusion_bench.metrics._mmif import MMIF
from fusion_bench.metrics._tang import TANG
from fusion_bench.metrics._vifb import VIFB
from fusion_bench.metrics.dialect_base import DIALECTS, get_dialect

DIALECTS.update({d.name: d for d in (MMIF, VIFB, TANG)})  # report order

__all__ = ["DIALECTS", "MMIF", "TANG", "VIFB", "get_dialect"]
