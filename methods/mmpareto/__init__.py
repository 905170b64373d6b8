"""MMPareto (ICML 2024): unimodal assistance with Pareto-combined encoder gradients; see README.md."""

from methods.mmpareto.module import MMParetoClassifier

__all__ = ["MMParetoClassifier"]
