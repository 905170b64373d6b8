"""AGM (ICCV 2023): adaptive gradient modulation of Shapley mono-modal responses; see README.md."""

from fusion_bench.methods.agm.module import AGMClassifier

__all__ = ["AGMClassifier"]
