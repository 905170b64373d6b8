"""SeAFusion: semantic-aware real-time infrared and visible image fusion (Tang et al., Information Fusion 2022)."""

from methods.seafusion.model import SeAFusionNet
from methods.seafusion.module import SeAFusion

__all__ = ["SeAFusion", "SeAFusionNet"]
