"""MMPareto (ICML 2024): unimodal assistance with Pareto-combined encoder gradients; see README.md."""

from fusion_bench.methods.mmpareto.module import MMParetoClassifier

__all__ = ["MMParetoClassifier"]
