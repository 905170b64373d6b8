"""Concatenation (late) fusion classifier baseline for audio-visual classification (the shared AV recipe)."""

from fusion_bench.methods.late_fusion.model import ConcatFusionNet
from fusion_bench.methods.late_fusion.module import LateFusionClassifier

__all__ = ["ConcatFusionNet", "LateFusionClassifier"]
