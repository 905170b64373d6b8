"""OGM-GE (CVPR 2022): on-the-fly gradient modulation with generalisation enhancement; see README.md."""

from fusion_bench.methods.ogm_ge.module import OGMGEClassifier

__all__ = ["OGMGEClassifier"]
