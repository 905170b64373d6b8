"""SSVIF: self-supervised segmentation-oriented visible-infrared image fusion (Zhao & Zhang, arXiv 2509.22450)."""

from fusion_bench.methods.ssvif.backbones import BACKBONES, build_backbone
from fusion_bench.methods.ssvif.model import FusedImageSegmenter, SegmentationHead
from fusion_bench.methods.ssvif.module import SSVIF

__all__ = ["BACKBONES", "SSVIF", "FusedImageSegmenter", "SegmentationHead", "build_backbone"]
