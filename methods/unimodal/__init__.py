"""Unimodal baseline: one encoder and a linear head on one modality; see README.md."""

from fusion_bench.methods.unimodal.module import UnimodalClassifier

__all__ = ["UnimodalClassifier"]
