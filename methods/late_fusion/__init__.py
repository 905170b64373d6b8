"""Concatenation (late) fusion classifier baseline for audio-visual classification."""

from methods.late_fusion.model import ConcatFusionNet
from methods.late_fusion.module import LateFusionClassifier

__all__ = ["ConcatFusionNet", "LateFusionClassifier"]
