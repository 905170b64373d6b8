"""Downstream evaluators: train a task model on a method's fused training images and score its fused test images.

- :mod:`fusion_bench.evaluators.segmentation`: SegFormer (``transformers``, the ``segmentation`` extra), mIoU.

Heavy dependencies are imported only when an evaluator runs.
"""

from fusion_bench.errors import DownstreamError
from fusion_bench.evaluators.common import FusedImages, fused_paths

__all__ = ["DownstreamError", "FusedImages", "fused_paths"]
