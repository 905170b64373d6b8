"""A small learned CNN fusion baseline trained with the intensity + Sobel-gradient loss."""

from methods.fusion_cnn.model import FusionCNN
from methods.fusion_cnn.module import FusionCNNModule

__all__ = ["FusionCNN", "FusionCNNModule"]
