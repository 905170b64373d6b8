"""PMR (CVPR 2023): prototypical modal rebalance; see README.md."""

from fusion_bench.methods.pmr.module import PMRClassifier

__all__ = ["PMRClassifier"]
