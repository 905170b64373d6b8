"""A small learned CNN fusion baseline trained with the intensity + Sobel-gradient loss."""

from fusion_bench.methods.fusion_cnn.model import FusionCNN
from fusion_bench.methods.fusion_cnn.module import FusionCNNModule

__all__ = ["FusionCNN", "FusionCNNModule"]
