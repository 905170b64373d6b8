"""SSVIF: self-supervised segmentation-oriented visible-infrared image fusion (Zhao & Zhang, arXiv 2509.22450)."""

from methods.ssvif.backbones import BACKBONES, build_backbone
from methods.ssvif.model import FusedImageSegmenter, SegmentationHead
from methods.ssvif.module import SSVIF

__all__ = ["BACKBONES", "SSVIF", "FusedImageSegmenter", "SegmentationHead", "build_backbone"]
