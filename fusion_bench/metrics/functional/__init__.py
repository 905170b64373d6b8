"""Metric functionals on float64 batches in the 0..255 scale (BxCxHxW); dialects add the input conventions."""

from fusion_bench.metrics.functional import basic, correlation, information

__all__ = ["basic", "correlation", "information"]
