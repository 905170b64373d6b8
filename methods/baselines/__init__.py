"""Training-free baselines: mean, max, source pass-through and Laplacian-pyramid fusion."""

from fusion_bench.methods.baselines.model import LaplacianPyramidFusion, MaxFusion, MeanFusion, SourceA, SourceB

__all__ = ["LaplacianPyramidFusion", "MaxFusion", "MeanFusion", "SourceA", "SourceB"]
